"""The map of every head on one screen, the `--from A --to B` ranking, and the first screen
of `attn inspect` on a model with many heads. Plain data in (headmap's cells and rankings, a
Capture), rich renderables out; the heat colours are views/matrix.py's ramp.
"""

from __future__ import annotations

import numpy as np
from rich.cells import cell_len
from rich.console import Group, RenderableType
from rich.style import Style
from rich.text import Text

from attn_cli import headmap
from attn_cli.capture import Capture
from attn_cli.headmap import FromTo, MapCell
from attn_cli.views.matrix import (_BOLD, _DIM, _SHADES, Cells, View, _fmt, _ramp, _rgb_style,
                                   plural, token_strip, token_text, wrap_between)
from attn_cli.views.parts import embeddings_table, header

# `attn inspect` draws every head's matrix up to this many heads (the seeded 2 × 4 model has
# 8; a 4 × 4 one 16); above it, without --layer/--head/--all, it starts with the map.
FITS = 16
MAP_GROUP = 32  # heads a row of the map holds at most (80 columns: 32 two-character cells)
PANEL_GAP = 3  # spaces between the map and the panel beside it
PANEL_MIN = 34  # the panel goes beside the map when this much room is left, else below
RANKED = 10  # heads listed under a --pattern or --from/--to ranking
_CYAN = Style(color="cyan")

Line = list  # of (text, style) runs


def overview(cfg, asked: bool) -> bool:
    """Whether `attn inspect` starts with the map: more heads than FITS and none asked for
    (--layer, --head, --all or --reduce)."""
    return not asked and cfg.n_layers * cfg.n_heads > FITS


# ---------------------------------------------------------------- the grid

def _cell_width(n_heads: int, label: int, width: int) -> int:
    """3 characters a cell (' P ') when a whole layer fits so, else 2 ('P ')."""
    return 3 if label + 3 * n_heads <= width else 2


def _cell(c: MapCell, score: float | None, w: int, view: View) -> tuple[str, Style | str | None]:
    """' P ' on its score's colour; without colour 'P▓ ', the shade standing for the colour;
    dim when there is no score (a pattern that needs a repeated token)."""
    letter = c.letter
    if view.color:
        return (f" {letter} " if w == 3 else f"{letter} "), \
            _DIM if score is None else _rgb_style(*_ramp(score))
    if score is None:
        return f"{letter}  "[:w], _DIM
    shade = _SHADES[min(int(score * (len(_SHADES) - 1) + 0.5), len(_SHADES) - 1)]
    return f"{letter}{shade} "[:w], None


def _grid(cells: list[MapCell], view: View, pattern: str | None, room: int) -> list[Line]:
    """The map's lines: a header of head indices, then one line per layer; layers wider than
    `room` wrap in groups of heads (a blank line between groups)."""
    layers = sorted({c.layer for c in cells})
    heads = sorted({c.head for c in cells})
    by = {(c.layer, c.head): c for c in cells}
    label = len(f"L{layers[-1]}") + 1
    w = _cell_width(len(heads), label, room)
    per = max(1, min(MAP_GROUP, (room - label) // w))
    if per < len(heads) and per >= 8:
        per -= per % 8
    step = next(s for s in (1, 2, 4, 5, 8, 10, 16, 32, 64) if s * w >= len(str(heads[-1])) + 1)
    lines: list[Line] = []
    for start in range(0, len(heads), per):
        group = heads[start:start + per]
        if start:
            lines.append([])
        ruler = "".join(f"{h:<{w * step}}" for h in group[::step])[:w * len(group)]
        lines.append([(" " * label, None), (ruler, _BOLD)])
        for la in layers:
            line: Line = [(f"L{la}".ljust(label), _BOLD)]
            for h in group:
                c = by.get((la, h))
                line.append(_cell(c, c.score(pattern), w, view) if c is not None
                            else (" " * w, None))
            lines.append(line)
    return lines


# ---------------------------------------------------------------- the panel

def _score(value: float, view: View) -> tuple[str, Style | str | None]:
    text = _fmt(value, view.precision)
    return text, (_rgb_style(*_ramp(value)) if view.color else None)


def _entry(layer: int, head: int, score: float, view: View) -> Line:
    return [(f"L{layer} H{head} ", None), _score(score, view)]


def _width(line: Line) -> int:
    return sum(cell_len(t) for t, _ in line)


def _swatch(view: View) -> Line:
    if not view.color:
        return [("shade: 0 ", None), (_SHADES[1:], None), (" 1", None)]
    return [("colour: 0 ", None)] + [("  ", _rgb_style(*_ramp(x / 4))) for x in range(5)] + \
        [(" 1", None)]


def _letters_panel(cells: list[MapCell], view: View, width: int, cap: Capture,
                   flow: bool) -> list[Line]:
    """What each letter means, with the best heads of each pattern (as many as fit `width`);
    `flow`: items to run on one after another, not a column of lines."""
    best = headmap.best_heads(cells, 1 if flow else 3)
    name_w = 0 if flow else max(map(len, headmap.PATTERN_SCORES)) + 2
    out: list[Line] = [[("best heads:" if flow else "letter · pattern · its best heads", _BOLD)]]
    for pattern in headmap.PATTERN_SCORES:
        line: Line = [(headmap.LETTERS[pattern] + " ", _BOLD),
                      ((pattern + " ").ljust(name_w), None)]
        if not best[pattern]:
            line.append(("—", _DIM))
        used = _width(line)
        for n, (la, he, sc) in enumerate(best[pattern]):
            entry = _entry(la, he, sc, view)
            if n and used + 2 + _width(entry) > width:
                break
            if n:
                line.append(("  ", None))
            line += entry
            used = _width(line)
        out.append(line)
    out.append([("L ", _BOLD), ("local: mean |query − key| ≤ 1.5", None)])
    out.append([("· ", _BOLD), ("no clear pattern, or diffuse", None)])
    out.append([])
    out.append(_swatch(view) + [(" of the letter's score", None)])
    out.append([("(L and ·: the best of its scores)", _DIM)])
    if headmap.cannot_occur(cap, "induction"):
        repeat = "attn heads --repeat 20"
        out += [[(f"I, D need a repeated token: {repeat}", _DIM)]] if flow else \
            [[("I, D need a repeated token:", _DIM)], [(f"  {repeat}", _DIM)]]
    out.append([("one layer's numbers: --layer L", _DIM)])
    return out


def _ranked_panel(cells: list[MapCell], pattern: str, view: View, flow: bool) -> list[Line]:
    """The best heads by one pattern, then the letters."""
    ranked = headmap.rank(cells, pattern)
    out: list[Line] = [[(f"best {pattern} heads" + (":" if flow else
                                                    " (colour: that score)"), _BOLD)]]
    scored = [r for r in ranked if r[2] is not None]
    if not scored:
        out.append([("none: no token repeats in this text;", _DIM)])
        out.append([("try --repeat 20 (random tokens, twice)", _DIM)])
    for n, (la, he, sc) in enumerate(scored[:RANKED], start=1):
        out.append([(f"{n:>2}. ", _DIM)] + _entry(la, he, sc, view))
    out.append([])
    out.append([("P previous-token  S self  F first-token", _DIM)])
    out.append([("I induction  D duplicate-token  L local", _DIM)])
    out.append([("· none · every head: --json", _DIM)])
    out.append(_swatch(view))
    return out


def _lines(lines: list[Line]) -> Cells:
    out = Cells()
    for n, line in enumerate(lines):
        if n:
            out.newline()
        for text, style in line:
            out.add(text, style)
    return out


def _beside(left: list[Line], right: list[Line]) -> Cells:
    """Two blocks of lines side by side (the right one starting on the left's first line)."""
    left_w = max(map(_width, left), default=0)
    merged = []
    for n in range(max(len(left), len(right))):
        line = left[n] if n < len(left) else []
        if n < len(right) and right[n]:
            line = line + [(" " * (left_w - _width(line) + PANEL_GAP), None)] + right[n]
        merged.append(line)
    return _lines(merged)


def _below(left: list[Line], right: list[Line], width: int) -> Group:
    """The map, a blank line, then the panel's lines run on one after another, wrapped
    between them."""
    items = [Text.assemble(*line) for line in right if line]
    for item in items:
        item.rstrip()
    return Group(_lines(left), Text(), *wrap_between(items, width, sep="   ", indent=0))


def head_map(cap: Capture, cells: list[MapCell], view: View,
             pattern: str | None = None) -> RenderableType:
    """The map with its panel (the letters and the best heads, or the --pattern ranking)
    beside it when there is room, else below it."""
    grid = _grid(cells, view, pattern, view.width)
    room = view.width - max(map(_width, grid)) - PANEL_GAP
    beside = room >= PANEL_MIN

    def panel(flow: bool) -> list[Line]:
        return _ranked_panel(cells, pattern, view, flow) if pattern else \
            _letters_panel(cells, view, room, cap, flow)

    if beside:
        lines = panel(False)
        if max(map(_width, lines)) <= room:
            return _beside(grid, lines)
    return _below(grid, panel(True), view.width)


def map_title(cells: list[MapCell], pattern: str | None) -> Text:
    what = f"; colour: {pattern} score" if pattern else ""
    return Text(f"The map: {plural(len(cells), 'head')}, layers down, heads across{what}",
                style="italic")


def heads_map_view(cap: Capture, cells: list[MapCell], view: View,
                   pattern: str | None = None) -> Group:
    """`attn heads` without --layer."""
    return Group(header(cap, "heads"), token_strip(cap.tokens), Text(),
                 map_title(cells, pattern), head_map(cap, cells, view, pattern))


def inspect_map_view(cap: Capture, view: View) -> Group:
    """`attn inspect` on a model with more heads than fit: the map, how to see the matrices,
    the embeddings."""
    cells = headmap.head_map(cap)
    n = len(cells)
    hint = Text(f"Matrices: --all for all {n} heads, --layer L [--head H] for some",
                style="dim")
    return Group(header(cap, "inspect"), token_strip(cap.tokens), Text(),
                 map_title(cells, None), head_map(cap, cells, view), Text(), hint,
                 Text(), embeddings_table(cap, view))


# ---------------------------------------------------------------- --from A --to B

STRIPS = 3  # heads whose row for the query is drawn


def _strip(weights: np.ndarray, visible: np.ndarray, w: int, view: View) -> Line:
    """`w` characters per key the query sees, coloured by its weight (shaded without colour);
    a key it does not see is a dim ·."""
    line: Line = []
    for x, seen in zip(weights.tolist(), visible.tolist()):
        if not seen:
            line.append(("·".ljust(w), _DIM))
        elif view.color:
            line.append((" " * w, _rgb_style(*_ramp(x))))
        else:
            line.append((_SHADES[min(int(x * (len(_SHADES) - 1) + 0.5), 4)] * w, None))
    return line


def _top_keys(cap: Capture, weights: np.ndarray, visible: np.ndarray, view: View) -> Line:
    order = [j for j in np.argsort(-weights.astype(np.float64), kind="stable").tolist()
             if visible[j]][:3]
    line: Line = []
    for n, j in enumerate(order):
        if n:
            line.append((" · ", _DIM))
        line.append((_cut(token_text(cap.tokens[j]), 12) + " ", None))
        line.append((_fmt(float(weights[j]), view.precision), _CYAN))
    return line


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def from_to_view(cap: Capture, ranked: FromTo, cells: dict, view: View) -> Group:
    """Every head ranked by weights[A, B] (the first RANKED shown), then the top heads' rows
    for query A as strips."""
    tok = cap.tokens
    a, b = ranked.query, ranked.key
    qa, kb = f"{a} {token_text(tok[a])}", f"{b} {token_text(tok[b])}"
    n = len(ranked.heads)
    title = Text.assemble(("Which heads send ", "bold"), (qa, "bold cyan"), (" to ", "bold"),
                          (kb, "bold cyan"), ("?", "bold"),
                          f" All {n} ranked by weights[{a}, {b}]" if n > 1 else
                          f" weights[{a}, {b}]")
    rows: list[Line] = [[(f"{'rank':>4}  {'layer':>5}  {'head':>4}  {'weight':>7}  pattern",
                          _BOLD)]]
    for r, (la, he, w) in enumerate(ranked.heads[:RANKED], start=1):
        rows.append([(f"{r:>4}  {la:>5}  {he:>4}  ", None),
                     (f"{_fmt(w, view.precision):>7}",
                      _rgb_style(*_ramp(w)) if view.color else None),
                     (f"  {cells.get((la, he)) or '—'}", None)])
    parts: list[RenderableType] = [header(cap, "heads"), token_strip(cap.tokens), Text(), title,
                                   _lines(rows)]
    if n > RANKED:
        parts.append(Text(f"… {n - RANKED} more heads: --json ranks every one", style="dim"))
    hidden = headmap.masked_layers(cap, a, b)
    if hidden:
        parts.append(Text(f"layers {', '.join(map(str, hidden))}: the attention window hides "
                          f"key {b} from query {a} (weight 0)", style="dim"))
    tops = headmap.top_heads(cap, ranked, STRIPS)
    prefix = max(len(f"L{h.layer} H{h.head}") for h, _ in tops) + 2
    T = len(tok)
    w = next((w for w in (2, 1) if prefix + w * T + 2 + 40 <= view.width), 0)  # 0: no strip
    parts += [Text(), Text.assemble(
        ("Query ", "bold"), (qa, "bold cyan"), (f" in the top {plural(len(tops), 'head')}: "
                                                 + (f"its weights (▼ key {b}) and " if w
                                                    else "") + "its top 3 keys", "bold"))]
    strips: list[Line] = []
    if w:
        strips.append([(" " * (prefix + w * b) + "▼", _BOLD)])
    for h, weights in tops:
        visible = cap.allowed(h.layer)[a]
        line: Line = [(f"L{h.layer} H{h.head}".ljust(prefix), _BOLD)]
        if w:
            line += _strip(weights, visible, w, view) + [("  ", None)]
        strips.append(line + _top_keys(cap, weights, visible, view))
    parts.append(_lines(strips))
    return Group(*parts)
