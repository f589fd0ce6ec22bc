"""Target 4 of run.py, in a process of its own: the forward pass and the rendering of one
`attn inspect` (all heads) on a text file, timed in-process, once each, as the CLI does them.

    python benchmarks/_render.py --file TEXT_FILE --out RENDER_FILE

Prints one JSON line: tokens, heads, forward_s (capture.run: the model, and copying the heads
out as NumPy) and render_s (views.inspect.inspect_view + console.print to RENDER_FILE). It uses attn's
public pieces the way `attn inspect` does (cli.inspect), with the CLI's default view options
(--precision 2 --top-k 3 --dims 8, colour). run.py sets COLUMNS=120, FORCE_COLOR=1 and
COLORTERM=truecolor, so rich renders what a 120-column true-colour terminal would get, although
the output goes to a file. Both steps run once, cold, in a fresh process: that is what a user's
`attn inspect` pays (a second render in the same process would be warmer).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--file", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()

    from attn_cli import capture, output
    from attn_cli.views.inspect import inspect_view
    from attn_cli.views.matrix import View
    from attn_cli import models as model_lib
    from attn_cli.models.config import ModelConfig
    from attn_cli.tokenizers import get_encoding, tokenize

    text = Path(args.file).read_text(encoding="utf-8")
    cfg = ModelConfig()  # the CLI's defaults: 2 layers x 4 heads, d_model 64, seed 0
    net = model_lib.seeded(cfg)
    tokens = tokenize(text, get_encoding("o200k_base"))
    keep = capture.select(cfg, None, None)  # no --layer/--head: every head

    t0 = time.perf_counter()
    cap = capture.run(net, text, "o200k_base", tokens, keep)
    forward = time.perf_counter() - t0

    real_stdout = sys.stdout
    with open(args.out, "w", encoding="utf-8") as f:
        sys.stdout = f  # output.make_console writes to sys.stdout
        try:
            t0 = time.perf_counter()
            console = output.make_console(no_color=False, record=False)
            view = View(precision=2, top_k=3, dims=8, color=output.uses_color(console),
                               width=console.width, full=False)
            output.show(console, inspect_view(cap, view), None, None, "attn inspect")
            f.flush()
            rendered = time.perf_counter() - t0
        finally:
            sys.stdout = real_stdout
    print(json.dumps({"tokens": len(tokens), "heads": len(cap.heads), "forward_s": forward,
                      "render_s": rendered, "width": console.width,
                      "color_system": console.color_system}))


if __name__ == "__main__":
    main()
