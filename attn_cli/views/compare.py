"""`attn compare` on the terminal: each head's distance between two models, and the most
different head side by side with B − A."""

from __future__ import annotations

import numpy as np
from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from attn_cli import safe
from attn_cli.summary import HeadDiff, Side, most_different, patterns
from attn_cli.views.matrix import (View, _fmt, _label, _ramp, _style, matrix, panels, plural,
                                   token_strip)
from attn_cli.views.parts import describe


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
    pa, pb = patterns(a), patterns(b)
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
