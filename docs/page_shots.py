"""Make the README's pictures of `--page` (docs/page-*.png) in headless Chromium.

    python docs/page_shots.py      # needs /usr/bin/chromium and playwright
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SENTENCE = "The animal didn't cross the street because it was too tired."
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def attn(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "attn_cli", *args], check=True, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=str(ROOT)))


def main() -> int:
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="attn-shots-"))
    attn("inspect", SENTENCE, "--page", str(tmp / "inspect.html"))
    attn("heads", SENTENCE, "--layers", "6", "--heads", "8", "--d-model", "128", "--layer", "2",
         "--page", str(tmp / "heads.html"))
    attn("cross", "Le chat est assis sur le tapis.", "The cat sat on the mat.",
         "--page", str(tmp / "cross.html"))
    attn("generate", SENTENCE, "-n", "6", "--page", str(tmp / "generate.html"))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)

        def shot(name: str, page_file: str, scheme: str = "light", width: int = 1000, act=None):
            page = browser.new_page(viewport={"width": width, "height": 600},
                                    color_scheme=scheme)
            page.goto((tmp / page_file).as_uri())
            page.wait_for_function("document.documentElement.dataset.ready === '1'")
            if act:
                act(page)
            page.wait_for_timeout(100)
            page.screenshot(path=str(DOCS / f"page-{name}.png"), full_page=True)
            page.close()

        def point_at_it(page):
            page.locator(".queries .tok >> nth=7").click()  # " it", pinned

        shot("inspect", "inspect.html", act=point_at_it)
        shot("inspect-dark", "inspect.html", "dark", act=point_at_it)
        shot("heads", "heads.html", "dark")
        shot("cross", "cross.html", act=lambda p: (p.click("#tab-cross"), p.locator(
            ".queries .tok >> nth=2").click()))
        shot("generate", "generate.html", act=lambda p: [p.click("#next") for _ in range(2)])
        shot("phone", "inspect.html", "dark", width=380, act=point_at_it)
        browser.close()
    for png in sorted(DOCS.glob("page-*.png")):
        print(png.relative_to(ROOT), f"{png.stat().st_size / 1000:.0f} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
