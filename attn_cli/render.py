"""Capture -> rich renderables, and Capture -> JSON-ready dicts. Never sees a tensor.

Tables print numbers rounded to --precision; JSON keeps every float32 as it is (shortest
repr that round-trips), with masked (−∞) scores as null.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from itertools import groupby

import numpy as np
from rich import box
from rich.cells import cell_len
from rich.columns import Columns
from rich.console import Group, RenderableType
from rich.measure import Measurement
from rich.segment import Segment
from rich.style import Style
from rich.table import Table
from rich.text import Text

from attn_cli import analysis, output, safe
from attn_cli.capture import Capture, HeadCapture
from attn_cli.tokenize import Token
from attn_cli.tokens_view import SCHEMA_VERSION

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


# ---------------------------------------------------------------- colours

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


# ---------------------------------------------------------------- matrices

def token_text(token: Token) -> str:
    """A token's visible text, safe for the terminal (SPEC §4: escapes for control, format
    and bidi characters that tokenize.visible leaves as they are)."""
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


# ---------------------------------------------------------------- pieces

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


def weights_matrix(cap: Capture, h: HeadCapture, view: View, title: str) -> RenderableType:
    T = len(cap.tokens)
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


# ---------------------------------------------------------------- commands

def inspect_view(cap: Capture, view: View) -> Group:
    parts: list[RenderableType] = [header(cap, "inspect"), token_strip(cap.tokens), Text()]
    for h in cap.heads:
        parts.append(Text(head_title(h), style="bold underline"))
        parts.append(weights_matrix(cap, h, view, title=None))
        parts.append(Text(f"top {view.top_k} attended keys per query", style="italic"))
        parts.append(top_lines(cap, h, view))
        parts.append(Text())
    parts.append(embeddings_table(cap, view))
    return Group(*parts)


@dataclass(frozen=True)
class HeadSummary:
    head: HeadCapture
    mean_entropy: float
    strongest: analysis.Strongest
    scores: analysis.HeadScores
    pattern: str | None


PATTERN_SCORES = {"previous-token": "previous_token", "self": "self",
                  "first-token": "first_token", "duplicate-token": "duplicate_token",
                  "induction": "induction"}


def summarise(cap: Capture, layer: int | None = None) -> list[HeadSummary]:
    out = []
    for h in cap.heads:
        if layer is not None and h.layer != layer:
            continue
        scores = analysis.head_scores(h.weights, [t.id for t in cap.tokens])
        out.append(HeadSummary(
            head=h,
            mean_entropy=float(analysis.entropy(h.weights).mean()),
            strongest=analysis.strongest(h.weights, cap.config.causal, cap.window(h.layer)),
            scores=scores,
            pattern=analysis.label(h.weights, cap.config.causal, scores, cap.window(h.layer)),
        ))
    return out


def ranking(cap: Capture, pattern: str) -> list[tuple[int, int, float | None]]:
    """(layer, head, score) of every captured head, best first; None scores last."""
    key = PATTERN_SCORES[pattern]
    rows = [(s.head.layer, s.head.head, s.scores.to_dict()[key]) for s in summarise(cap)]
    return sorted(rows, key=lambda r: (r[2] is None, -(r[2] or 0.0), r[0], r[1]))


def ranking_table(cap: Capture, pattern: str, view: View) -> Group:
    """The ranking under its title (a line of its own: a table title wraps to the table's
    narrow width)."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for name in ("rank", "layer", "head", "score"):
        table.add_column(name, justify="right")
    for n, (layer, head, score) in enumerate(ranking(cap, pattern), start=1):
        table.add_row(str(n), str(layer), str(head), _opt(score, view.precision))
    return Group(Text(f"Every head ranked by its {pattern} score", style="italic"), table)


def heads_view(cap: Capture, layer: int, view: View, pattern: str | None = None) -> Group:
    summaries = summarise(cap, layer)
    cfg = cap.config
    grouped = cfg.kv_heads != cfg.n_heads  # grouped-query: say which K/V each head reads
    columns = tuple((name, justify) for name, justify in (
        ("head", "right"), ("kv", "right"), ("mean H", "right"), ("strongest pair", "left"),
        ("prev", "right"), ("self", "right"), ("first", "right"), ("dist", "right"),
        ("dup", "right"), ("ind", "right"), ("pattern", "left")) if name != "kv" or grouped)
    p = view.precision
    rows = []
    for s in summaries:
        st = s.strongest
        pair = (f"{token_text(cap.tokens[st.query])} → {token_text(cap.tokens[st.key])} "
                f"{st.weight:.{p}f}")
        kv = [str(cfg.kv_group(s.head.head))] if grouped else []
        rows.append((str(s.head.head), *kv, _fmt(s.mean_entropy, p), pair,
                     _fmt(s.scores.previous_token, p), _fmt(s.scores.self, p),
                     _fmt(s.scores.first_token, p), _fmt(s.scores.mean_distance, p),
                     _opt(s.scores.duplicate_token, p), _opt(s.scores.induction, p),
                     s.pattern or "—"))
    # rich puts 3 characters between columns; 2 when that keeps each row on one line
    natural = sum(max(cell_len(c) for c in col) for col in zip(*[[n for n, _ in columns]] + rows))
    narrow = natural + 3 * (len(columns) - 1) > view.width
    table = Table(title=f"Layer {layer}: every head", title_justify="left",
                  box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  padding=(0, 0, 0, 1) if narrow else (0, 1))
    for name, justify in columns:
        table.add_column(name, justify=justify, no_wrap=name != "strongest pair")
    for row in rows:
        table.add_row(*row)
    kv_note = (f"kv: the key/value head it reads ({cfg.kv_heads} shared by {cfg.n_heads} "
               f"heads) · ") if grouped else ""
    legend = Text(kv_note + "mean H: mean row entropy (nats) · prev / self / first: mean "
                  "weight on the "
                  "previous / same / first token · dist: mean |query − key| · dup / ind: "
                  "duplicate-token / induction scores (— when no token repeats; try --repeat) "
                  "· numbers for one head: attn inspect --layer L --head H, or --json",
                  style="dim")
    parts = [header(cap, "heads"), token_strip(cap.tokens), Text()]
    if pattern:
        parts += [ranking_table(cap, pattern, view), Text()]
    return Group(*parts, side_by_side(cap, [s.head for s in summaries], view), Text(), table,
                 legend)


def side_by_side(cap: Capture, heads: list[HeadCapture], view: View) -> RenderableType:
    return panels(cap.tokens, [(f"head {h.head}", h.weights, ~cap.allowed(h.layer))
                               for h in heads], view)


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


STAGE_LINES = {
    "x": ("X = LN₁(h)", "the block's input, normalised: what the head reads"),
    "q": ("Q = X·W_Q + b_Q", "the Query: what each token asks for"),
    "k": ("K = X·W_K + b_K", "the Key: what each token answers to"),
    "v": ("V = X·W_V + b_V", "the Value: what each token carries"),
    "scores": ("S = Q·Kᵀ", "how well each query matches each key"),
    "scaled": ("S / √d_k", ""),
    "masked": ("S / √d_k + M", ""),
    "weights": ("A = softmax(S / √d_k + M)", "each row sums to 1"),
    "output": ("Z = A·V", "each token's new vector: a weighted mix of Values"),
}


def formula(cfg, layer: int) -> str:
    """The attention this layer really computes, e.g. softmax(RoPE(Q)·RoPE(K)ᵀ/√d_k + M)·V."""
    q, k = ("RoPE(Q)", "RoPE(K)") if cfg.rotary else ("Q", "K")
    scale = "/√d_k" if cfg.scale_scores else ""
    mask = " + M_window" if cfg.window(layer) is not None else " + M" if cfg.causal else ""
    return f"softmax({q}·{k}ᵀ{scale}{mask})·V"


def stage_note(name: str, cap: Capture, d_head: int, layer: int = 0, head: int = 0) -> str:
    cfg = cap.config
    line, note = STAGE_LINES[name]
    scaled = "S / √d_k" if cfg.scale_scores else "S"
    if name == "x" and cfg.post_norm:
        line, note = "X = h", "the block's input (post-norm: the norm comes after attention)"
    if name in ("q", "k", "v") and not cfg.qkv_bias:
        line = line.replace(f" + b_{name.upper()}", "")
    if name in ("q", "k") and cfg.rotary:
        what = "all" if cfg.rotary == d_head else f"the first {cfg.rotary} of {d_head}"
        line = f"{name.upper()} = RoPE({line.split(' = ')[1]})"
        note = f"{note}; rotary positions turn {what} dims by each token's position"
    if name in ("k", "v") and cfg.kv_heads != cfg.n_heads:
        note = f"{note}; from key/value head {cfg.kv_group(head)} of {cfg.kv_heads}, " \
               f"shared by {cfg.n_heads // cfg.kv_heads} query heads"
    if name == "scaled":
        line = scaled
        note = f"√d_k = √{d_head} = {math.sqrt(d_head):.4g}" if cfg.scale_scores else \
            f"no scaling: {cfg.family} does not divide by √d_k"
    if name == "masked":
        line = f"{scaled} + M"
        window = cap.window(layer)
        if window is not None:
            note = (f"M is −∞ where the key comes after the query or {window} or more tokens "
                    f"before it (a window of {window}), 0 elsewhere")
        else:
            note = ("M is −∞ where the key comes after the query (causal), 0 elsewhere"
                    if cfg.causal else
                    "no mask: bidirectional, every key is visible (M = 0)")
    if name == "weights":
        line = f"A = softmax({scaled} + M)"
    return f"{line}    {note}" if note else line


def steps_view(cap: Capture, h: HeadCapture, view: View, query: int | None) -> Group:
    T = len(cap.tokens)
    d_head = cap.config.d_head
    rows = [_label(t) for t in cap.tokens]
    key_cols = [str(t.index) for t in cap.tokens]
    masked = ~cap.allowed(h.layer)
    parts: list[RenderableType] = [
        header(cap, "steps"),
        Text.assemble(("Layer ", "bold"), (str(h.layer), "bold"), (" · Head ", "bold"),
                      (str(h.head), "bold"), "   " + formula(cap.config, h.layer)),
        token_strip(cap.tokens), Text()]
    stages = dict(h.stages, weights=h.weights)
    for n, name in enumerate(("x", "q", "k", "v", "scores", "scaled", "masked", "weights",
                              "output"), start=1):
        values = stages[name]
        shape = f"({values.shape[0]} × {values.shape[1]})"
        note = stage_note(name, cap, d_head, h.layer, h.head)
        parts.append(Text.assemble((f"{n}. ", "bold"), (note, "bold"), "  ", (shape, "cyan")))
        if name in ("scores", "scaled", "masked", "weights"):
            parts.append(matrix(values, rows, key_cols, view,
                                scale="weights" if name == "weights" else "signed",
                                masked=masked if name == "weights" else None))
        else:
            parts.append(vectors(values, rows, view))
        parts.append(Text())
    if query is not None:
        parts.extend(query_lines(cap, h, query, view))
    return Group(*parts)


def vectors(values: np.ndarray, rows: list[str], view: View) -> RenderableType:
    d = values.shape[1]
    asked = d if view.dims is None else min(view.dims, d)
    widths = [max(len(str(j)), *(len(_fmt(x, view.precision)) for x in values[:, j].tolist()))
              for j in range(asked)]
    shown = asked if view.full else \
        _columns_that_fit(widths, max(map(cell_len, rows), default=0), view.width)
    cols = [str(j) for j in range(shown)]
    table = matrix(values[:, :shown], rows, cols, View(
        precision=view.precision, color=view.color, width=10**6, full=True), scale="signed")
    if shown < asked:
        return Group(table, Text(f"first {shown} of {d} dims, as many as fit in {view.width} "
                                 f"columns; --json has every one", style="dim"))
    if shown == d:
        return table
    return Group(table, Text(f"first {shown} of {d} dims; --dims all for every one",
                             style="dim"))


def query_lines(cap: Capture, h: HeadCapture, query: int, view: View) -> list[RenderableType]:
    tok = cap.tokens[query]
    p = view.precision
    w = h.weights[query]
    out = [Text.assemble(("Query ", "bold"), (f"{query} '{token_text(tok)}'", "bold cyan"),
                         " asks; the keys answer:")]
    visible = np.flatnonzero(cap.allowed(h.layer)[query])
    order = visible[np.argsort(-w[visible], kind="stable")]
    for j in order:
        bar = "█" * int(round(float(w[j]) * 30))
        out.append(Text.assemble(f"  Attention to '{token_text(cap.tokens[j])}': ",
                                 (f"{w[j]:.{p}f}", "cyan"), "  ", (bar, "green")))
    z = h.stages["output"][query]
    out.append(Text(f"Its contextual vector from this head, Σ_j A[{query}, j]·V[j] "
                    f"({z.shape[0]} dims):", style="bold"))
    out.append(Text("  [" + ", ".join(_fmt(float(x), p) for x in z) + "]"))
    return out


# ---------------------------------------------------------------- JSON

def f32(x: float) -> np.float32:
    return np.float32(x)


def _head_doc(cap: Capture, command: str) -> dict:
    """The fields every model command's JSON starts with, in the documented order."""
    return {
        "schema_version": SCHEMA_VERSION,
        "command": command,
        "text": cap.text,
        "encoding": cap.encoding,
        "model": cap.config.to_dict(),
        "tokens": [t.to_dict() for t in cap.tokens],
    }


def attention_records(cap: Capture, top_k: int) -> Iterator[dict]:
    """inspect's attention records, one per head in cap.heads order (or, from capture.stream,
    in the order cap.pending makes each layer's heads), made as they are asked for:
    entropy and top-k for all the heads of a layer at once, each head's top list already JSON
    (orjson.Fragment). The next layer's entropy, top-k and top lists (NumPy, which releases
    the GIL) are made on a second thread while this layer's records are written."""
    from concurrent.futures import Future, ThreadPoolExecutor

    prefixes = _key_prefixes(cap.tokens)
    layers = cap.pending if cap.pending is not None else \
        [list(g) for _, g in groupby(cap.heads, key=lambda h: (h.layer, h.reduced))]

    def analyse(group: list[HeadCapture]):
        # head by head (each row's figures are its own: the same bits as for a stack of the
        # heads, without copying the layer's matrices into one)
        window = cap.window(group[0].layer)
        ent = None if group[0].reduced == "max" else [analysis.entropy(h.weights) for h in group]
        tops = [analysis.top_k_arrays(h.weights, top_k, cap.config.causal, window)
                for h in group]
        keys, values = (np.stack(arrays) for arrays in zip(*tops))
        return ent, _top_json(prefixes, keys, values)

    pool: list[ThreadPoolExecutor] = []

    def start(group: list[HeadCapture]) -> Future:
        if not pool:  # the first layer: there is nothing to write while it is analysed
            pool.append(ThreadPoolExecutor(max_workers=1))
            done = Future()
            done.set_result(analyse(group))
            return done
        return pool[0].submit(analyse, group)

    try:
        for group, pending in _one_ahead(layers, start):
            ent, tops = pending.result()
            for i, h in enumerate(group):
                yield {"layer": h.layer, "head": h.head, "weights": output.Rows(h.weights),
                       "entropy": None if ent is None else ent[i], "top": tops[i]}
    finally:
        for executor in pool:
            executor.shutdown(wait=True)


def _one_ahead(items: Iterable, start) -> Iterator[tuple]:
    """(item, start(item)) for each item, start(next item) called before this one is handed
    on: the work on the next item runs while the caller uses this one."""
    previous = None
    for item in items:
        current = (item, start(item))
        if previous is not None:
            yield previous
        previous = current
    if previous is not None:
        yield previous


def _key_prefixes(tokens: list[Token]) -> output.Texts:
    """Per key index j, the JSON of a top entry up to its weight: {"index":j,"token":…,"weight":"""
    return output.Texts.of([b'{"index":%d,"token":%b,"weight":' % (j, output.dumps(t.text)[:-1])
                            for j, t in enumerate(tokens)])


_TOP_ENDS = (b"}", b"},", b"]},", b"]}]")  # an entry (last in its row or not), a row (last or not)


def _top_json(prefixes: output.Texts, keys: np.ndarray, values: np.ndarray) -> list:
    """keys, values (..., T, k) from analysis.top_k_arrays -> per leading index the `top`
    list [{query, keys: [{index, token, weight}]}] as an orjson.Fragment: every weight
    formatted in one call, the pieces put together by NumPy (output.joined).

    Row i of a head is the pieces  {"query":i,"keys":[  then per entry  <prefix of its key>
    <weight> }  (or }, before the next entry), then ]}, (or ]}] after the head's last row;
    its first row starts with [ )."""
    import orjson

    T, k = keys.shape[-2:]
    keys = keys.reshape(-1, T, k)
    valid = keys >= 0  # a row's entries come first, then -1s
    n = valid.sum(axis=-1).ravel()  # entries per row, rows of every head in order
    rows, entries = len(n), int(n.sum())
    queries = [b'{"query":%d,"keys":[' % i for i in range(T)]
    table, (ends_at, prefix_at, query_at, weight_at) = output.Texts.concat(
        output.Texts.of(list(_TOP_ENDS)), prefixes, output.Texts.of(queries + [b"[" + queries[0]]),
        output.float_texts(values.reshape(keys.shape)[valid].astype(np.float32)))
    pieces = 2 + 3 * n  # per row
    first = np.cumsum(pieces) - pieces  # each row's first piece
    ids = np.empty(int(pieces.sum()), dtype=np.int64)
    query = query_at + np.tile(np.arange(T), len(keys))
    query[::T] = query_at + T  # a head's first row opens its list
    ids[first] = query
    closing = first + 1 + 3 * n
    row_end = np.full(rows, ends_at + 2)
    row_end[T - 1::T] = ends_at + 3
    ids[closing] = row_end
    row = np.repeat(np.arange(rows), n)  # each entry's row
    nth = np.arange(entries) - np.repeat(np.cumsum(n) - n, n)  # its place in the row
    at = first[row] + 1 + 3 * nth
    ids[at] = prefix_at + keys[valid]
    ids[at + 1] = weight_at + np.arange(entries)
    ids[at + 2] = ends_at + (nth < n[row] - 1)
    text, ends = output.joined(table, ids)
    data, bounds = text.tobytes(), [0, *ends[closing[T - 1::T]].tolist()]
    return [orjson.Fragment(data[a:b]) for a, b in zip(bounds, bounds[1:])]


def top_records(cap: Capture, weights: np.ndarray, top_k: int, window: int | None = None):
    """The `top` list of one (T, C) matrix, as JSON (an orjson.Fragment)."""
    keys, values = analysis.top_k_arrays(weights, top_k, cap.config.causal, window)
    return _top_json(_key_prefixes(cap.tokens), keys, values)[0]


def inspect_header(cap: Capture) -> dict:
    return _head_doc(cap, "inspect")


def inspect_doc(cap: Capture, top_k: int) -> dict:
    """The inspect document; its attention list is an output.Stream, made as it is written
    (as the forward pass goes, from capture.stream: the embeddings are known after it)."""
    doc = inspect_header(cap)
    doc["attention"] = output.Stream(attention_records(cap, top_k))
    doc["embeddings"] = output.Later(lambda: embeddings_record(cap))
    return doc


def embeddings_record(cap: Capture) -> dict:
    return {"layer": "final", "vectors": cap.embeddings}


def heads_doc(cap: Capture, layer: int, pattern: str | None = None) -> dict:
    out = {**_head_doc(cap, "heads"), "layer": layer, "heads": []}
    if pattern:
        out["ranking"] = {"pattern": pattern, "heads": [
            {"layer": la, "head": he, "score": None if sc is None else f32(sc)}
            for la, he, sc in ranking(cap, pattern)]}
    for s in summarise(cap, layer):
        out["heads"].append({
            "head": s.head.head,
            "kv_group": cap.config.kv_group(s.head.head),
            "weights": s.head.weights,
            "mean_entropy": f32(s.mean_entropy),
            "strongest": {"query": s.strongest.query, "key": s.strongest.key,
                          "weight": f32(s.strongest.weight)},
            "scores": {k: None if v is None else f32(v) for k, v in s.scores.to_dict().items()},
            "pattern": s.pattern,
        })
    return out


def steps_doc(cap: Capture, h: HeadCapture, query: int | None) -> dict:
    stages = dict(h.stages, weights=h.weights)
    out = {**_head_doc(cap, "steps"), "layer": h.layer, "head": h.head, "d_head": cap.config.d_head,
           "stages": {name: stages[name] for name in ("x", "q", "k", "v", "scores", "scaled",
                                                      "masked", "weights", "output")}}
    if query is not None:
        out["query"] = {"index": query, "weights": h.weights[query],
                        "output": h.stages["output"][query]}
    return out


def model_view(doc: dict) -> Group:
    cfg = doc["model"]
    info = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, show_header=False)
    info.add_column(style="bold")
    info.add_column()
    for key, value in cfg.items():
        info.add_row(key, safe.terminal(str(value)))
    info.add_row("encoding", safe.terminal(doc["encoding"]))
    info.add_row("parameters", f"{doc['parameters']:,}")
    if "token_embeddings" in doc:
        info.add_row("token embeddings", doc["token_embeddings"])
    shapes = Table(title="Weights", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                   pad_edge=False)
    shapes.add_column("name")
    shapes.add_column("shape", justify="right")
    shapes.add_column("count", justify="right")
    stored = "dtype" in doc["weights"][0]  # a checkpoint's tensors, under its own names
    if stored:
        shapes.add_column("stored")
        shapes.add_column("")
    unused = 0
    for w in doc["weights"]:
        row = [safe.terminal(w["name"]), " × ".join(map(str, w["shape"])),
               f"{math.prod(w['shape']):,}"]
        if stored:
            row += [w["dtype"], "" if w["used"] else "not used"]
            unused += not w["used"]
        shapes.add_row(*row)
    parts = [Text("attn model", style="bold"), info, Text(), shapes]
    if unused:
        parts.append(Text(f"{plural(unused, 'tensor')} not used: attn shows the base model's "
                          f"attention, not a task head, pooler or classifier"))
    return Group(*parts)


def layer_means(cap: Capture) -> list[np.ndarray]:
    layers = sorted({h.layer for h in cap.heads})
    return [analysis.reduce_heads([h.weights for h in cap.heads if h.layer == la], "mean")
            for la in layers]


def rollout_view(cap: Capture, rolled: np.ndarray, view: View) -> Group:
    title = (f"Attention rollout over {plural(cap.config.n_layers, 'layer')}: "
             "R = Â_L ··· Â_1, Â = rownorm(0.5·mean_heads(A) + 0.5·I)")
    holder = HeadCapture(layer=-1, head=-1, weights=rolled)
    return Group(header(cap, "rollout"), token_strip(cap.tokens), Text(),
                 Text(title, style="bold"), weights_matrix(cap, holder, view, title=None),
                 Text(f"top {view.top_k} input tokens each token draws on", style="italic"),
                 top_lines(cap, holder, view))


def rollout_doc(cap: Capture, rolled: np.ndarray, top_k: int) -> dict:
    return {**_head_doc(cap, "rollout"), "rollout": rolled,
            "top": top_records(cap, rolled, top_k)}


def reduced_captures(cap: Capture, how: str, whole_model: bool) -> list[HeadCapture]:
    """--reduce: one matrix per layer (head = -1), or one for the whole model (both -1)."""
    if whole_model:
        return [HeadCapture(-1, -1, analysis.reduce_heads([h.weights for h in cap.heads], how),
                            reduced=how)]
    layers = sorted({h.layer for h in cap.heads})
    return [HeadCapture(la, -1, analysis.reduce_heads(
        [h.weights for h in cap.heads if h.layer == la], how), reduced=how) for la in layers]


# ---------------------------------------------------------------- compare

@dataclass(frozen=True)
class Side:
    """One side of `attn compare`: its name, the options that made it, its capture."""

    name: str
    options: str
    cap: Capture

    @property
    def masked(self) -> np.ndarray:
        return ~analysis.allowed(len(self.cap.tokens), self.cap.config.causal)


@dataclass(frozen=True)
class HeadDiff:
    a: HeadCapture
    b: HeadCapture
    rows: np.ndarray  # (T,) float64: total variation distance of each query's row

    @property
    def mean(self) -> float:
        return float(self.rows.mean())

    @property
    def worst_query(self) -> int:
        return int(np.argmax(self.rows))


def head_diffs(a: Capture, b: Capture) -> list[HeadDiff]:
    """Every (layer, head) that both captures hold, in order, with its per-row distance."""
    b_heads = {(h.layer, h.head): h for h in b.heads}
    return [HeadDiff(h, b_heads[h.layer, h.head],
                     analysis.total_variation(h.weights, b_heads[h.layer, h.head].weights))
            for h in a.heads if (h.layer, h.head) in b_heads]


def most_different(diffs: list[HeadDiff]) -> HeadDiff:
    """The head with the largest mean distance (the first such in (layer, head) order)."""
    return max(diffs, key=lambda d: d.mean)  # max keeps the first of equals


def _patterns(side: Side) -> dict[tuple[int, int], str | None]:
    return {(s.head.layer, s.head.head): s.pattern for s in summarise(side.cap)}


def compare_view(a: Side, b: Side, diffs: list[HeadDiff], view: View) -> Group:
    T = len(a.cap.tokens)
    p = view.precision
    same = a.cap.encoding == b.cap.encoding
    lines = [Text.assemble(("attn compare", "bold"), " · ",
                           (safe.terminal(a.cap.encoding) if same else "two encodings", "cyan"),
                           f" · {T} tokens")]
    for side in (a, b):
        line = Text.assemble((f"  {side.name}", "bold"),
                             f" ({safe.terminal(side.options) or 'shared options'}"
                             f"): {describe(side.cap.config, d_head=False)}")
        if not same:
            line.append(f" · {safe.terminal(side.cap.encoding)}", style="cyan")
        lines.append(line)
    table = Table(title="Per head: TV_i = ½·Σ_j |A[i, j] − B[i, j]| for each query i",
                  title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for name, justify in (("layer", "right"), ("head", "right"), ("mean TV", "right"),
                          ("max TV", "right"), ("at query", "left"), ("A pattern", "left"),
                          ("B pattern", "left")):
        table.add_column(name, justify=justify, no_wrap=True)
    pa, pb = _patterns(a), _patterns(b)
    for d in diffs:
        key = (d.a.layer, d.a.head)
        q = d.worst_query
        table.add_row(str(d.a.layer), str(d.a.head),
                      Text(_fmt(d.mean, p), style=_style(_ramp(d.mean), view.color)),
                      _fmt(float(d.rows[q]), p), _label(a.cap.tokens[q]),
                      pa[key] or "—", pb[key] or "—")
    overall = float(np.mean([d.mean for d in diffs]))
    focus = most_different(diffs)
    title = f"Layer {focus.a.layer} · Head {focus.a.head}"
    if len(diffs) > 1:
        title += f": the most different head (mean TV {_fmt(focus.mean, p)})"
    delta = focus.b.weights.astype(np.float64) - focus.a.weights.astype(np.float64)
    legend = Text("TV 0: the query attends exactly as before; 1: it attends to other keys "
                  "entirely · pattern: what kind of head it is in A and in B (see attn heads) "
                  "· one head side by side: --layer L --head H", style="dim")
    return Group(
        *lines, token_strip(a.cap.tokens), Text(), table,
        Text(f"mean TV over {plural(len(diffs), 'head')}: {_fmt(overall, p)}", style="bold"),
        Text(), Text(title, style="bold underline"),
        panels(a.cap.tokens, [(side.name, w, side.masked) for side, w in
                              ((a, focus.a.weights), (b, focus.b.weights))], view),
        Text(),
        Text("B − A (" + ("red: B attends more, blue: less" if view.color else
                          "positive: B attends more, negative: less") + ")", style="italic"),
        matrix(delta, [_label(t) for t in a.cap.tokens], [str(t.index) for t in a.cap.tokens],
               view, scale="signed", masked=a.masked & b.masked),
        Text(), legend)


def compare_doc(a: Side, b: Side, diffs: list[HeadDiff]) -> dict:
    pa, pb = _patterns(a), _patterns(b)
    focus = most_different(diffs)

    def side(s: Side) -> dict:
        return {"options": s.options, "encoding": s.cap.encoding,
                "model": s.cap.config.to_dict(), "token_ids": [t.id for t in s.cap.tokens]}

    return {
        "schema_version": SCHEMA_VERSION,
        "command": "compare",
        "text": a.cap.text,
        "tokens": [t.to_dict() for t in a.cap.tokens],
        "a": side(a),
        "b": side(b),
        "metric": "total_variation",
        "mean": f32(np.mean([d.mean for d in diffs])),
        "most_different": {"layer": focus.a.layer, "head": focus.a.head},
        "heads": [{
            "layer": d.a.layer,
            "head": d.a.head,
            "mean": f32(d.mean),
            "max": f32(d.rows[d.worst_query]),
            "max_query": d.worst_query,
            "rows": d.rows.astype(np.float32),
            "a_pattern": pa[d.a.layer, d.a.head],
            "b_pattern": pb[d.a.layer, d.a.head],
        } for d in diffs],
    }
