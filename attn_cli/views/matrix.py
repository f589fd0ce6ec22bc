"""The primitives every terminal view draws with: View, colour ramps, numeric tables that fit
the terminal, compact heat maps, token strips and panels of small maps.

Tables print numbers rounded to --precision; a matrix too wide for the terminal becomes a heat
map. Rendered straight to rich Segments where a rich Table would cost more than the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from rich.cells import cell_len
from rich.console import Group, RenderableType
from rich.measure import Measurement
from rich.segment import Segment
from rich.style import Style
from rich.text import Text

from attn_cli import safe
from attn_cli.tokenizers.base import Token


LABEL_WIDTH = 14  # characters of a token label on a matrix's rows


@dataclass(frozen=True)
class View:
    """How the user asked to see things."""

    precision: int = 2
    top_k: int = 3
    dims: int | None = 8  # None: all
    color: bool = True
    width: int = 100  # the console's width
    full: bool = False  # numbers even when a matrix is wider than the terminal


# A sequential ramp for weights in [0, 1] (dark blue -> teal -> yellow, like viridis).
_RAMP = [(0.0, (30, 30, 60)), (0.25, (59, 82, 139)), (0.5, (33, 145, 140)),
         (0.75, (94, 201, 98)), (1.0, (253, 231, 37))]


@lru_cache(maxsize=512)
def _ramp_q(level: int) -> tuple[int, int, int]:
    return _ramp_exact(level / 255)


def _ramp(x: float) -> tuple[int, int, int]:
    """The ramp at 256 levels (cached): more than the eye or the terminal tells apart."""
    return _ramp_q(round(min(max(x, 0.0), 1.0) * 255))


def _ramp_exact(x: float) -> tuple[int, int, int]:
    x = min(max(x, 0.0), 1.0)
    for (x0, c0), (x1, c1) in zip(_RAMP, _RAMP[1:]):
        if x <= x1:
            t = (x - x0) / (x1 - x0)
            return tuple(round(a + (b - a) * t) for a, b in zip(c0, c1))
    return _RAMP[-1][1]


def _diverging(x: float) -> tuple[int, int, int]:
    """x in [-1, 1]: blue for negative, near-black for 0, red for positive."""
    x = min(max(x, -1.0), 1.0)
    lo, hi, mid = (59, 110, 220), (220, 70, 60), (40, 40, 40)
    end = hi if x > 0 else lo
    t = abs(x)
    return tuple(round(m + (e - m) * t) for m, e in zip(mid, end))


def _style(rgb: tuple[int, int, int], color: bool) -> Style | str:
    return _rgb_style(*rgb) if color else ""


@lru_cache(maxsize=4096)
def _rgb_style(r: int, g: int, b: int) -> Style:
    fg = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "white"
    return Style.parse(f"{fg} on rgb({r},{g},{b})")


def _cell_rgb(value: float, scale: str, span: float) -> tuple[int, int, int]:
    if scale == "weights":
        return _ramp(value)
    return _diverging(value / span if span else 0.0)


def token_text(token: Token) -> str:
    """A token's visible text, safe for the terminal (SPEC §4: escapes for control, format
    and bidi characters that tokenizers.visible leaves as they are)."""
    return safe.terminal(token.display)


def _label(token: Token, width: int = LABEL_WIDTH) -> str:
    text = f"{token.index} {token_text(token)}"
    return text if len(text) <= width else text[: width - 1] + "…"


def _fmt(value: float, precision: int) -> str:
    if math.isinf(value):
        return safe.fmt_inf(value < 0)
    text = f"{value:.{precision}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def _compact(text: str, precision: int) -> str:
    """A formatted number without its leading zero (.61, -.55); 1 for one that rounds to 1."""
    if text.startswith("0."):
        return text[1:]
    if text.startswith("-0."):
        return "-" + text[2:]
    if precision and text == "1." + "0" * precision:
        return "1"
    return text


def _fmt_rows(values: np.ndarray, precision: int, compact: bool) -> list[list[str]]:
    """Every value as _fmt (or _compact) writes it; fast enough for a 300 × 300 --full."""
    spec = f"{{:.{precision}f}}".format
    negative_zero = spec(-0.0)
    fixes = {"inf": safe.fmt_inf(False), "-inf": safe.fmt_inf(True), negative_zero: spec(0.0)}
    rows = []
    for row in values.tolist():
        texts = [spec(v) for v in row]
        texts = [fixes.get(t, t) if t[0] in "-i" else t for t in texts]
        if compact:
            texts = [_compact(t, precision) for t in texts]
        rows.append(texts)
    return rows


def matrix(values: np.ndarray, rows: list[str], cols: list[str], view: View, *,
           scale: str = "weights", masked: np.ndarray | None = None,
           title: str | None = None) -> RenderableType:
    """A numeric table with heat-coloured cells; when that is wider than the terminal, the
    same numbers closer together, then without their leading zeros (.61, 1 for 1.00); when
    even that is too wide, a compact heat map."""
    finite = values[np.isfinite(values)]
    span = float(np.abs(finite).max()) if finite.size else 0.0
    label_width = max((cell_len(r) for r in rows), default=0)
    fits = None
    tries = ((False, 3), (False, 1), (True, 1))
    if not view.full and label_width + 2 * values.shape[1] > view.width:
        tries = ()  # not even one character and a space per column: no need to format them
    for compact, gap in tries:
        texts = _fmt_rows(values, view.precision, compact)
        widths = [max(len(c), *map(len, column)) for c, column in zip(cols, zip(*texts))]
        if view.full or label_width + sum(widths) + gap * len(widths) <= view.width:
            fits = texts, widths, gap
            break
    if fits is None:
        return heat_map(values, rows, view, scale=scale, masked=masked, title=title)
    texts, widths, gap = fits
    dim = ~np.isfinite(values)
    grid = _NumberGrid(rows, cols, texts, widths, gap,
                       styles=_cell_styles(values, scale, span) if view.color else None,
                       dim=dim.tolist() if dim.any() else None,
                       masked=masked.tolist() if masked is not None else None)
    return Group(Text(title, style="italic"), grid) if title else grid


_SHADES = " ░▒▓█"


_BOLD, _DIM = Style(bold=True), Style(dim=True)


class Cells:
    """Lines of (text, style) runs, rendered straight to rich Segments. A heat map has
    thousands of one-character cells; as a rich Text each would be a span to merge on every
    line, which costs more than the model itself."""

    def __init__(self) -> None:
        self.lines: list[list[Segment]] = [[]]
        self.widths: list[int] = [0]

    def add(self, text: str, style: Style | str | None = None) -> None:
        """Append a run; one with the same style as the run before it joins that run (a
        numeric row without colours is one segment, not one per cell)."""
        line, style = self.lines[-1], style or None
        if line and line[-1].style == style:
            line[-1] = Segment(line[-1].text + text, style)
        else:
            line.append(Segment(text, style))
        self.widths[-1] += cell_len(text)

    def newline(self) -> None:
        self.lines.append([])
        self.widths.append(0)

    def __rich_console__(self, console, options):
        for line in self.lines:
            yield from line
            yield Segment.line()

    def __rich_measure__(self, console, options) -> Measurement:
        width = max(self.widths, default=0)
        return Measurement(width, width)


class _NumberGrid(Cells):
    """A numeric table as rich Segments: what rich's Table draws with SIMPLE_HEAD, without its
    cost per cell (a 300-token --full matrix has 90,000 cells). `styles[i][j]` colours a
    cell (None: plain); `dim[i][j]` shows it dimmed, as · if `masked`."""

    def __init__(self, rows: list[str], cols: list[str], texts: list[list[str]],
                 widths: list[int], gap: int, styles=None, dim=None, masked=None,
                 corner: str = "") -> None:
        super().__init__()
        label_width = max(map(cell_len, [corner] + rows))
        width = label_width + sum(widths) + gap * len(widths)
        header = [Segment(corner + " " * (label_width - cell_len(corner)),
                          _BOLD if corner else None)]
        for c, w in zip(cols, widths):
            header += [Segment(" " * gap), Segment(c.rjust(w), _BOLD)]
        lines = [header, [Segment("─" * width)]]
        pad = [gap + w for w in widths]
        plain = [None] * len(widths)
        for i, label in enumerate(rows):
            line = [Segment(label + " " * (label_width - cell_len(label)), _BOLD)]
            run, run_style = [], None  # cells of one style, joined into one segment
            row_styles = styles[i] if styles is not None else plain
            row_dim = dim[i] if dim is not None else plain
            row_masked = masked[i] if masked is not None else plain
            for text, p, w, style, dimmed, hide in zip(texts[i], pad, widths, row_styles,
                                                       row_dim, row_masked):
                if dimmed or hide:
                    style, cell = _DIM, ("·" if hide else text).rjust(p)
                elif style is not None:  # a coloured cell; the gap before it stays plain
                    if run_style is not None and run:
                        line.append(Segment("".join(run), run_style))
                        run = []
                    run.append(" " * gap)
                    line.append(Segment("".join(run), None))
                    line.append(Segment(text.rjust(w), style))
                    run, run_style = [], None
                    continue
                else:
                    cell = text.rjust(p)
                if style is not run_style and run:
                    line.append(Segment("".join(run), run_style))
                    run = []
                run_style = style
                run.append(cell)
            if run:
                line.append(Segment("".join(run), run_style))
            lines.append(line)
        self.lines = lines
        self.widths = [width] * len(lines)


def _cell_styles(values: np.ndarray, scale: str, span: float) -> list[list[Style | None]]:
    """The heat colour of every finite cell (others: None)."""
    if scale == "weights":  # the ramp has 256 levels: look each cell's level up
        palette = [_rgb_style(*_ramp_q(level)) for level in range(256)]
        with np.errstate(invalid="ignore"):
            levels = np.rint(np.clip(np.nan_to_num(values.astype(np.float64), nan=0.0,
                                                   posinf=1.0, neginf=0.0), 0.0, 1.0) * 255)
        levels = levels.astype(np.int64)
        return [[palette[lv] for lv in row] for row in levels.tolist()]
    return [[_rgb_style(*_cell_rgb(v, scale, span)) if math.isfinite(v) else None
             for v in row] for row in values.tolist()]


def heat_map(values: np.ndarray, rows: list[str], view: View, *, scale: str = "weights",
             masked: np.ndarray | None = None, title: str | None = None) -> RenderableType:
    """One character per weight (or per block of weights, averaged, when even that is too
    wide), token labels on the rows, key indices along the top."""
    T_rows, T_cols = values.shape
    room = max(view.width - LABEL_WIDTH - 2, 8)
    block = max(1, math.ceil(T_cols / room))
    if block > 1:
        values, masked = _pool(values, block, masked)
        rows = [rows[i * block] + f"…{min((i + 1) * block, T_rows) - 1}"
                for i in range(values.shape[0])]
        rows = [r if len(r) <= LABEL_WIDTH else r[: LABEL_WIDTH - 1] + "…" for r in rows]
    finite = values[np.isfinite(values)]
    span = float(np.abs(finite).max()) if finite.size else 0.0
    out = []
    if title:
        out.append(Text(title, style="italic"))
    ruler = "".join(str((j * block // 10) % 10) if (j * block) % 10 == 0 else " "
                    for j in range(values.shape[1]))
    out.append(Text(" " * (LABEL_WIDTH + 1) + ruler, style="dim"))
    cells = Cells()
    for i, label in enumerate(rows):
        if i:
            cells.newline()
        cells.add(f"{label:>{LABEL_WIDTH}} ", _BOLD)
        for j in range(values.shape[1]):
            v = float(values[i, j])
            if (masked is not None and masked[i, j]) or not math.isfinite(v):
                cells.add("·", _DIM)
            elif view.color:
                cells.add(" ", _style(_cell_rgb(v, scale, span), True))
            else:
                level = v if scale == "weights" else abs(v) / span if span else 0.0
                cells.add(_SHADES[min(int(level * (len(_SHADES) - 1) + 0.5), 4)])
    out.append(cells)
    note = "compact heat map"
    if block > 1:
        note += f" (each cell is the mean of a {block}×{block} block)"
    out.append(Text(f"{note}; numbers: --full or --json", style="dim"))
    return Group(*out)


def _pool(values: np.ndarray, block: int, masked: np.ndarray | None):
    T_r, T_c = values.shape
    nr, nc = math.ceil(T_r / block), math.ceil(T_c / block)
    m = masked if masked is not None else ~np.isfinite(values)
    v = np.where(m, 0.0, values).astype(np.float64)
    pad = np.zeros((nr * block, nc * block))
    cnt = np.zeros_like(pad)
    pad[:T_r, :T_c] = v
    cnt[:T_r, :T_c] = ~m
    s = pad.reshape(nr, block, nc, block).sum(axis=(1, 3))
    n = cnt.reshape(nr, block, nc, block).sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, s / np.maximum(n, 1), np.nan), n == 0


def _opt(value: float | None, precision: int) -> str:
    return "—" if value is None else _fmt(value, precision)


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def token_strip(tokens: list[Token], prefix: str = "") -> RenderableType:
    return TokenStrip([(str(t.index), token_text(t)) for t in tokens], prefix)


class TokenStrip:
    """'0 The  1 ␣cat  2 ␣sat', wrapped between tokens: an index stays with its token."""

    def __init__(self, items: list[tuple[str, str]], prefix: str = "") -> None:
        self.items, self.prefix = items, prefix  # prefix: a bold label before the first line

    def __rich_console__(self, console, options):
        width = options.max_width
        line, used = Text(self.prefix, style="bold"), len(self.prefix)
        start = used
        for index, token in self.items:
            size = len(index) + 1 + cell_len(token)
            if used > start and used + 2 + size > width:
                yield line
                line, used = Text(" " * start), start
            if used > start:
                line.append("  ")
                used += 2
            line.append(index, style="dim")
            line.append(" " + token)
            used += size
        yield line

    def __rich_measure__(self, console, options) -> Measurement:
        sizes = [len(i) + 1 + cell_len(t) for i, t in self.items] or [0]
        start = len(self.prefix)
        return Measurement(start + max(sizes), start + sum(sizes) + 2 * (len(sizes) - 1))


def wrap_between(items: list[Text], width: int, lead: Text | None = None, sep: str = " · ",
                 indent: int | None = None) -> list[Text]:
    """Items on lines of at most `width` cells, broken between two items, never inside one:
    `lead` starts the first line; later lines start with `indent` spaces (default: under the
    first item). Only an item wider than a line by itself goes past the width."""
    line = lead.copy() if lead is not None else Text()
    pad = line.cell_len if indent is None else indent
    lines, items_here, bare = [], 0, not line.cell_len  # bare: nothing but indentation yet
    for item in items:
        room = width - line.cell_len - (len(sep) if items_here else 0)
        if item.cell_len > room and not bare:
            lines.append(line)
            line, items_here, bare = Text(" " * pad), 0, True
        if items_here:
            line.append(sep)
        line.append_text(item)
        items_here, bare = items_here + 1, False
    return lines + [line]


def _columns_that_fit(widths: list[int], used: int, width: int, gap: int = 3) -> int:
    """How many columns of these widths fit beside `used` characters within `width`, `gap`
    characters apart: whole columns are left out, never cut."""
    n = 0
    for w in widths:
        used += gap + w
        if used > width:
            break
        n += 1
    return n


def panels(tokens: list[Token], items: list[tuple[str, np.ndarray, np.ndarray]], view: View
           ) -> RenderableType:
    """Small heat maps of several (title, weights, masked) in a grid, two characters per
    weight, token labels on the left of every row of maps."""
    T = len(tokens)
    labels = [_label(t) for t in tokens]
    cell = 2 if T * 2 + LABEL_WIDTH + 3 <= view.width else 1
    map_width = max(T * cell + 2, max(len(title) for title, _, _ in items) + 2)
    per_row = max(1, (view.width - LABEL_WIDTH - 1) // map_width)
    if (T * cell + LABEL_WIDTH + 1) > view.width:  # even one map does not fit: pool it
        return Group(*(heat_map(w, labels, view, masked=m, title=title)
                       for title, w, m in items))
    out = Cells()
    for start in range(0, len(items), per_row):
        group = items[start:start + per_row]
        if start:  # a blank line between rows of maps
            out.newline()
            out.newline()
        out.add(" " * (LABEL_WIDTH + 1))
        for title, _, _ in group:
            out.add(f"{title:<{map_width}}", _BOLD)
        for i, label in enumerate(labels):
            out.newline()
            out.add(f"{label:>{LABEL_WIDTH}} ", _BOLD)
            for _, weights, masked in group:
                for j in range(T):
                    v = float(weights[i, j])
                    if masked[i, j]:
                        out.add("·" + " " * (cell - 1), _DIM)
                    elif view.color:
                        out.add(" " * cell, _style(_ramp(v), True))
                    else:
                        out.add(_SHADES[min(int(v * 4 + 0.5), 4)] * cell)
                out.add(" " * (map_width - T * cell))
    return out
