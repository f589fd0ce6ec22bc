"""`attn heads` on the terminal: a layer's heads side by side, their scores and patterns, and
the ranking of every head by one pattern."""

from __future__ import annotations

from rich import box
from rich.cells import cell_len
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from attn_cli.capture import Capture, HeadCapture
from attn_cli.summary import ranking, summarise
from attn_cli.views.matrix import View, _fmt, _opt, panels, token_strip, token_text
from attn_cli.views.parts import header


RANKING_ROWS = 20  # a --pattern table lists this many heads; --json ranks every one


def ranking_table(cap: Capture, pattern: str, view: View) -> Group:
    """The ranking under its title (a line of its own: a table title wraps to the table's
    narrow width): the best RANKING_ROWS heads, or one line when no head can be scored."""
    rows = ranking(cap, pattern)
    title = Text(f"Every head ranked by its {pattern} score", style="italic")
    if all(score is None for _, _, score in rows):
        return Group(title, Text("none can be scored: no token repeats in this text (try "
                                 "--repeat 20)", style="dim"))
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for name in ("rank", "layer", "head", "score"):
        table.add_column(name, justify="right")
    for n, (layer, head, score) in enumerate(rows[:RANKING_ROWS], start=1):
        table.add_row(str(n), str(layer), str(head), _opt(score, view.precision))
    if len(rows) <= RANKING_ROWS:
        return Group(title, table)
    return Group(title, table, Text(f"… {len(rows) - RANKING_ROWS} more heads: --json ranks "
                                    f"every one", style="dim"))


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
