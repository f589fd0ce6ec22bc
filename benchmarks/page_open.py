"""`--page`: how fast a big page opens and answers a hover in headless Chromium (issue 25).

Builds the page of a 270-head model (30 layers × 9 heads, d_model 144, seeded) on 500 tokens
with `attn inspect --page` and `attn heads --page`, then, in one Chromium (Debian's, driven by
playwright), opens each page N times and measures, side by side:
- open: navigation start → the page says it is drawn (`data-ready`: the first layer's weights
  inflated and painted, the map and the token columns built);
- reference: the same file with attn's script replaced by one line that marks the page ready at
  DOMContentLoaded: what the browser needs to read and parse the file's bytes at all;
- empty: a page of one line that marks itself ready: what opening any page costs here;
- on screen: when the first frame of the drawn page was presented (Paint Timing);
- hover: in the page, a pointerover on query 250 → its weights drawn and the next frame painted.
Prints the file size, each median and min, and open / reference. Nothing is asserted.

    python benchmarks/page_open.py [--repeats 5] [--tokens 500]
    python benchmarks/page_open.py --page FILE.html   # a page made elsewhere (a real model)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
MODEL = ["--layers", "30", "--heads", "9", "--d-model", "144"]
HOVER_MS = (ROOT / "benchmarks" / "hover_ms.js").read_text(encoding="utf-8")


def text_of(tokens: int) -> str:
    sys.path.insert(0, str(ROOT))
    from attn_cli.tokenizers import get_encoding

    enc = get_encoding("o200k_base")
    base = (ROOT / "sample_texts" / "paragraph.txt").read_text(encoding="utf-8").strip()
    text = base
    while len(enc.encode(text)) < tokens:
        text += " " + base
    return enc.decode(enc.encode(text)[:tokens])


def reference(page: Path, out: Path) -> None:
    html = page.read_text(encoding="utf-8")
    inert = ('document.addEventListener("DOMContentLoaded", () => '
             '{ document.documentElement.dataset.ready = "1"; });')
    start = html.index("<script>\n") + len("<script>\n")
    end = html.index("\n</script>", start)
    out.write_text(html[:start] + inert.ljust(end - start) + html[end:], encoding="utf-8")


# when the first frame was presented (Paint Timing; 0 if none within a second). attn's page is
# drawn in one task before any frame, so that frame shows it drawn; a run whose first frame came
# before `ready` is counted apart.
FIRST_PAINT = """() => new Promise((done) => {
  new PerformanceObserver((list, observer) => { observer.disconnect(); done(list.getEntries()[0].startTime); })
    .observe({ type: "paint", buffered: true });
  setTimeout(() => done(0), 1000);
})"""


def opened_ms(browser, path: Path, paint: bool = False) -> tuple[float, float | None]:
    """(ready: since navigation start, when the page says it is drawn; with `paint`, when its
    first frame was presented)."""
    page = browser.new_page(viewport={"width": 1100, "height": 800})
    page.goto(path.as_uri())
    page.wait_for_function("document.documentElement.dataset.ready", polling=5)
    ms = page.evaluate("performance.now()")  # since navigation start, after `ready`
    ready = page.evaluate("window.attnReadyAt ?? null")
    painted = page.evaluate(FIRST_PAINT) if paint else None
    page.close()
    return (ready if ready is not None else ms), painted


def hover_ms(browser, path: Path, query: int | None) -> float:
    page = browser.new_page(viewport={"width": 1100, "height": 800})
    page.goto(path.as_uri())
    page.wait_for_function("document.documentElement.dataset.ready === '1'")
    if page.locator("button[data-mode='lines']").get_attribute("aria-pressed") != "true":
        page.click("button[data-mode='lines']")
    page.wait_for_selector(".queries .tok")
    if query is None:
        query = page.locator(".queries .tok").count() // 2
    ms = page.evaluate(HOVER_MS, query)
    page.close()
    return ms


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--tokens", type=int, default=500)
    p.add_argument("--dir", type=Path, help="keep the pages here, and reuse those found there")
    p.add_argument("--page", type=Path, help="measure this page (hover: its middle query) "
                                             "instead of building the 270-head ones")
    a = p.parse_args()
    from playwright.sync_api import sync_playwright  # noqa: F401  (missing: fail before building pages)

    tmp = a.dir or Path(tempfile.mkdtemp(prefix="attn-page-"))
    tmp.mkdir(parents=True, exist_ok=True)
    if a.page is not None:
        print(f"{a.page.name}: {a.page.stat().st_size / 1e6:.2f} MB")
        ref = tmp / "page-reference.html"
        reference(a.page, ref)
        return measure({a.page.name: (a.page.resolve(), ref)}, tmp, a.repeats, None)
    src = tmp / "text.txt"
    src.write_text(text_of(a.tokens), encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    pages = {}
    for command in ("inspect", "heads"):
        out = tmp / f"{command}.html"
        if not out.exists():
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "attn_cli", command, "--file", str(src), *MODEL,
                            "--page", str(out)], check=True, env=env, stdout=subprocess.DEVNULL)
            print(f"attn {command} --page: {time.perf_counter() - start:.1f} s")
        print(f"{command} page: {out.stat().st_size / 1e6:.2f} MB")
        ref = tmp / f"{command}-reference.html"
        reference(out, ref)
        pages[command] = (out, ref)
    return measure(pages, tmp, a.repeats, a.tokens // 2)


def measure(pages: dict, tmp: Path, repeats: int, query: int | None) -> int:
    """Open each page `repeats` times beside its reference and an empty page; hover `query`
    (None: the page's middle query)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        empty = tmp / "empty.html"
        empty.write_text('<!DOCTYPE html><script>document.documentElement.dataset.ready = "1"'
                         '</script>', encoding="utf-8")
        opened_ms(browser, next(iter(pages.values()))[0])  # warm up
        for command, (page, ref) in pages.items():
            opens, paints, refs, hovers, empties = [], [], [], [], []
            for _ in range(repeats):
                empties.append(opened_ms(browser, empty)[0])
                refs.append(opened_ms(browser, ref)[0])
                ready, painted = opened_ms(browser, page, paint=True)
                opens.append(ready)
                paints.append(painted)
                hovers.append(hover_ms(browser, page, query))
            med = statistics.median
            print(f"{command}: open {med(opens):.0f} ms (min {min(opens):.0f}), on screen "
                  f"{med(paints):.0f} ms (min {min(paints):.0f}); reference "
                  f"{med(refs):.0f} ms (min {min(refs):.0f}), open / reference "
                  f"{med(opens) / med(refs):.2f}; empty page {med(empties):.0f} ms (min "
                  f"{min(empties):.0f}); hover {med(hovers):.0f} ms (min {min(hovers):.0f})")
            early = sum(p < r for p, r in zip(paints, opens))
            if early:
                print(f"  ({early} of {repeats} runs presented a frame before the page was drawn: "
                      f"their 'on screen' is that frame's)")
        browser.close()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
