"""What every capture view shares: the header line, a model config in words, a head's weights
matrix and top-k lines, the contextual-embeddings table.
"""

from __future__ import annotations

import numpy as np
from rich.cells import cell_len
from rich.console import Group, RenderableType
from rich.text import Text

from attn_cli import analysis, safe
from attn_cli.capture import Capture, HeadCapture
from attn_cli.views.matrix import (LABEL_WIDTH, View, _NumberGrid, _columns_that_fit, _fmt_rows,
                                   _label, matrix, plural, token_text)


def describe(c, d_head: bool = True) -> str:
    """A ModelConfig in words: 'seeded model (seed 0): 2 layers × 4 heads, …, causal'."""
    sizes = f"{plural(c.n_layers, 'layer')} × {plural(c.n_heads, 'head')}, d_model {c.d_model}"
    if d_head:
        sizes += f", d_head {c.d_head}"
    if c.kv_heads != c.n_heads:
        sizes += f", {c.kv_heads} key/value heads"
    model = f"seeded model (seed {c.seed}): {sizes}" if c.source == "seeded" \
        else f"{safe.terminal(str(c.source))} ({c.family}): {sizes}"
    return f"{model}, {'causal' if c.causal else 'bidirectional'}"


def header(cap: Capture, command: str) -> Text:
    return Text.assemble(("attn " + command, "bold"), f" · {describe(cap.config)} · ",
                         (safe.terminal(cap.encoding), "cyan"),
                         f" · {plural(len(cap.tokens), 'token')}")


def weights_matrix(cap: Capture, h: HeadCapture, view: View, title: str) -> RenderableType:
    rows = [_label(t) for t in cap.tokens]
    cols = [str(t.index) for t in cap.tokens]
    masked = ~cap.allowed(h.layer)
    return matrix(h.weights, rows, cols, view, masked=masked, title=title)


def top_lines(cap: Capture, h: HeadCapture, view: View) -> Text:
    text = Text()
    tops = analysis.top_k(h.weights, view.top_k, cap.config.causal, cap.window(h.layer))
    for t, keys in zip(cap.tokens, tops):
        text.append(f"{_label(t):>{LABEL_WIDTH}} → ", style="bold")
        for n, a in enumerate(keys):
            if n:
                text.append("  ")
            text.append(token_text(cap.tokens[a.index]))
            text.append(f" {a.weight:.{view.precision}f}", style="cyan")
        text.append("\n")
    text.rstrip()
    return text


def embeddings_table(cap: Capture, view: View) -> RenderableType:
    d = cap.embeddings.shape[1]
    asked = d if view.dims is None else min(view.dims, d)
    labels = [_label(t) for t in cap.tokens]
    norms = np.linalg.norm(cap.embeddings.astype(np.float64), axis=1)
    values = np.column_stack([norms, cap.embeddings[:, :asked]])
    texts = _fmt_rows(values, view.precision, compact=False)
    cols = ["‖v‖"] + [str(j) for j in range(asked)]
    widths = [max(len(c), *map(len, column)) for c, column in zip(cols, zip(*texts))]
    used = max(map(cell_len, ["token"] + labels))
    gap = 3  # as rich draws a table; 2 if that fits more dims
    shown = asked if view.full else _columns_that_fit(widths, used, view.width, gap) - 1
    if shown < asked:
        gap = 2
        shown = max(_columns_that_fit(widths, used, view.width, gap) - 1, 0)
    what = "LN_f of the last block's output" if cap.config.final_norm else \
        "the last block's output"
    title = f"Contextual embeddings: {what} ({shown} of {d} dims"
    if shown < asked:
        title += f": as many as fit in {view.width} columns; --json has every one)"
    else:
        title += ")" if shown == d else "; --dims all for every one)"
    grid = _NumberGrid(labels, cols[:shown + 1], [row[:shown + 1] for row in texts],
                       widths[:shown + 1], gap, corner="token")
    return Group(Text(title, style="italic"), grid)


def head_title(h: HeadCapture) -> str:
    if h.layer < 0:
        return "All layers · all heads (reduced)"
    if h.head < 0:
        return f"Layer {h.layer} · all heads (reduced)"
    return f"Layer {h.layer} · Head {h.head}"
