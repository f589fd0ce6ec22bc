"""Capture -> a grid of attention heat maps (rows are layers, columns heads), saved as PNG, SVG
or PDF with matplotlib, an optional extra (`pip install 'attn-cli[plot]'`).

The figure is a bare `matplotlib.figure.Figure` on the Agg canvas: no pyplot, no GUI backend.
Every setting it depends on is applied inside a style context (matplotlib's defaults, whatever
the user's matplotlibrc says), so nothing leaks out and the same capture gives the same bytes:
the files carry no dates and the SVG ids are salted with a constant.
"""

from __future__ import annotations

import io
import logging
import math
import textwrap
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attn_cli import output
from attn_cli.capture import Capture
from attn_cli.errors import ConfigError

try:
    import matplotlib
    import matplotlib.style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
except ImportError as exc:  # the [plot] extra is not installed
    _MISSING: ImportError | None = exc
else:
    _MISSING = None

# Per format, the metadata that would otherwise carry a date or matplotlib's version.
FORMATS = {"png": {"Software": None}, "svg": {"Date": None, "Creator": None},
           "pdf": {"CreationDate": None, "Creator": None, "Producer": None}}
_RC = {"svg.hashsalt": "attn", "text.parse_math": False, "text.usetex": False}
MASKED = "#d9d9d9"  # keys a causal query cannot see: not the same as a weight of 0
LABEL_CHARS = 12  # a token label is cut to this many characters
MAX_LABELS = 40  # tick labels per axis at most
TICK_PT = 7  # tick label font size, points
MAX_INCHES = 40.0  # the figure's longest side
MIN_PANEL = 1.2  # inches; below this, token labels go on the outer panels only
EVERY_PANEL = 16  # in grids of more panels, too
MAX_PIXELS = 20_000  # a PNG's longest side
SHARP_UP_TO = 128  # tokens; longer inputs are drawn with an antialiasing filter


def require() -> None:
    """Raise ConfigError if matplotlib cannot be imported."""
    if _MISSING is not None:
        raise ConfigError("attn plot needs matplotlib, an optional extra: "
                          "pip install 'attn-cli[plot]'") from _MISSING


@dataclass(frozen=True)
class _Layout:
    panel: float  # inches a side
    width: float
    height: float
    every_panel: bool  # token labels on every panel, or on the outer ones only
    stride: int  # label every stride-th token
    title: str  # the suptitle, wrapped to the figure's width


def _layout(rows: int, cols: int, T: int, label_chars: int, title: str) -> _Layout:
    """Panels grow with T until MAX_LABELS labels fit and shrink to keep the figure within
    MAX_INCHES; a big grid keeps its token labels to the outer panels."""
    margin = 0.25 + label_chars * 0.6 * TICK_PT / 72  # room for one axis' token labels
    pad_w, pad_h, extra_w, extra_h = 0.15, 0.35, 1.2, 0.8  # gaps, titles, colorbar, suptitle

    def fit(inner: float, outer: float) -> float:  # the largest panel within MAX_INCHES
        return min((MAX_INCHES - extra_w - outer) / cols - inner - pad_w,
                   (MAX_INCHES - extra_h - outer) / rows - inner - pad_h)

    every = rows * cols <= EVERY_PANEL and fit(margin, 0.0) >= MIN_PANEL
    inner, outer = (margin, 0.0) if every else (0.0, margin)
    panel = max(0.3, min(min(max(T, 12), MAX_LABELS) * 1.25 * TICK_PT / 72, fit(inner, outer)))
    width = cols * (panel + inner + pad_w) + outer + extra_w
    title = textwrap.fill(title, max(20, int((width - 0.3) * 72 / (0.6 * 11))))
    height = rows * (panel + inner + pad_h) + outer + extra_h + 0.2 * title.count("\n")
    per_axis = min(MAX_LABELS, max(1, int(panel * 72 / (1.25 * TICK_PT))))
    return _Layout(panel, width, height, every, math.ceil(T / per_axis), title)


def _short(text: str) -> str:
    return text if len(text) <= LABEL_CHARS else text[:LABEL_CHARS - 1] + "…"


def describe(cap: Capture) -> str:
    """The model in words, as the terminal header says it."""
    from attn_cli.views.matrix import plural
    from attn_cli.views.parts import describe as describe_config

    c = cap.config
    text = (f"{describe_config(c, d_head=False)} · {cap.encoding} · "
            f"{plural(len(cap.tokens), 'token')}")
    total = c.n_layers * c.n_heads
    return text if len(cap.heads) == total else f"{text} · {len(cap.heads)} of {total} heads"


def _style():
    """matplotlib's defaults plus ours, for as long as the figure is built or drawn."""
    return matplotlib.style.context(["default", _RC])


@contextmanager
def _quiet() -> Iterator[None]:
    """No 'Glyph … missing from font' warnings or font_manager log lines (CJK, emoji)."""
    logger = logging.getLogger("matplotlib.font_manager")
    drop = lambda record: False  # noqa: E731
    logger.addFilter(drop)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Glyph .* missing from font")
            yield
    finally:
        logger.removeFilter(drop)


def figure(cap: Capture, title: str | None = None) -> Figure:
    """One heat map per head in the capture, on one colour scale from 0 to 1."""
    require()
    if not cap.heads:
        raise ConfigError("there are no heads to plot")
    layers = sorted({h.layer for h in cap.heads})
    heads = sorted({h.head for h in cap.heads})
    T = len(cap.tokens)
    labels = [_short(t.display) for t in cap.tokens]
    title = describe(cap) if title is None else title
    lay = _layout(len(layers), len(heads), T, max(len(s) for s in labels), title)
    ticks = list(range(0, T, lay.stride))
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad=MASKED)
    # One pixel a weight or more: draw cells as they are. Fewer: filter the colours, so a sharp
    # weight is blurred into its neighbours rather than dropped with every skipped row.
    smoothing = dict(interpolation="nearest", interpolation_stage="data") if T <= SHARP_UP_TO \
        else dict(interpolation="antialiased", interpolation_stage="rgba")
    with _style():
        fig = Figure(figsize=(lay.width, lay.height), layout="constrained")
        FigureCanvasAgg(fig)
        grid = fig.add_gridspec(len(layers), len(heads))
        axes, image = [], None
        for h in cap.heads:
            row, col = layers.index(h.layer), heads.index(h.head)
            ax = fig.add_subplot(grid[row, col])
            shown = np.ma.masked_array(h.weights, mask=~cap.allowed(h.layer))
            image = ax.imshow(shown, cmap=cmap, vmin=0.0, vmax=1.0, **smoothing)
            ax.set_title(f"L{h.layer} H{h.head}", fontsize=9)
            _label_axes(ax, ticks, [labels[i] for i in ticks],
                        left=col == 0, bottom=row == len(layers) - 1, every=lay.every_panel)
            axes.append(ax)
        fig.colorbar(image, ax=axes, label="attention weight",
                     shrink=min(1.0, 8.0 / lay.height), aspect=30)
        fig.suptitle(lay.title, fontsize=11)
    return fig


def _label_axes(ax, ticks: list[int], labels: list[str], *, left: bool, bottom: bool,
                every: bool) -> None:
    """Token labels (the inner panels of a big grid get no ticks: they are slow to draw)."""
    ax.set_xticks(ticks if every or bottom else [], labels if every or bottom else [],
                  rotation=90, fontsize=TICK_PT)
    ax.set_yticks(ticks if every or left else [], labels if every or left else [],
                  fontsize=TICK_PT)
    if bottom:
        ax.set_xlabel("key")
    if left:
        ax.set_ylabel("query")


def save(cap: Capture, path: Path, dpi: int = 100) -> None:
    """Draw the capture to `path`; the suffix picks the format (.png, .svg or .pdf)."""
    require()
    fmt = check_path(path)
    if dpi < 1:
        raise ConfigError(f"the dpi must be at least 1, got {dpi}")
    fig = figure(cap)
    if fmt == "png" and max(fig.get_size_inches()) * dpi > MAX_PIXELS:
        w, h = (round(x * dpi) for x in fig.get_size_inches())
        raise ConfigError(f"dpi {dpi} would make a {w}×{h} pixel image: lower the dpi, "
                          f"or write .svg or .pdf")
    out = io.BytesIO()
    with _style(), _quiet():
        fig.savefig(out, format=fmt, dpi=dpi, metadata=FORMATS[fmt])
    output.write_file(path, out.getvalue())  # atomic; a failed write is a WriteError


def check_path(path: Path) -> str:
    """The format `path` asks for, if it can be written (before any work is done)."""
    fmt = _format(path)
    _check_target(path)
    return fmt


def _format(path: Path) -> str:
    choices = ", ".join("." + f for f in FORMATS)
    if not path.suffix:
        raise ConfigError(f"{path} has no suffix to tell the image format: use {choices}")
    fmt = path.suffix[1:].lower()
    if fmt not in FORMATS:
        raise ConfigError(f"unknown image format '{path.suffix}' in {path}: use {choices}")
    return fmt


def _check_target(path: Path) -> None:
    output.check_writable(path)  # the same checks and words as --svg and --html
