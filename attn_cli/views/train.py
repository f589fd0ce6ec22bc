"""`attn train` progress and `attn history` on the terminal.

Plain data in (Report, History from train.py), rich renderables out (documents/train.py: JSON).
"""

from __future__ import annotations

import numpy as np
from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from attn_cli.views.matrix import View, _fmt, _opt, panels, plural


BAR = 12  # characters for a score of 1


_EIGHTHS = " ▏▎▍▌▋▊▉"


def bar(score: float) -> str:
    """A score in [0, 1] as a bar of BAR characters' width, to the eighth of a character."""
    eighths = int(round(max(0.0, min(1.0, score)) * BAR * 8))
    full, part = divmod(eighths, 8)
    return ("█" * full + (_EIGHTHS[part] if part else "")).ljust(BAR)


def title(cfg, tokenizer, task: dict, settings) -> Text:
    if task["task"] == "induction":
        what = (f"induction task: random words repeating every {task['periods'][0]}–"
                f"{task['periods'][1]} tokens")
    else:
        what = (f"next-token prediction on a text of {plural(task['tokens'], 'token')} "
                f"({tokenizer.n_vocab - 1} distinct)")
    out = Text(f"attn train · {what}\n", style="bold")
    out.append(f"from the seeded model (seed {cfg.seed}): {plural(cfg.n_layers, 'layer')} × "
               f"{plural(cfg.n_heads, 'head')}, d_model {cfg.d_model}, d_ff {cfg.d_ff}\n"
               f"{tokenizer.n_vocab} tokens ({tokenizer.n_vocab - 1} and <unk>) · "
               f"{settings.steps} steps × {settings.batch} sequences of {settings.context} "
               f"tokens, AdamW lr {settings.lr:g}, on the CPU")
    return out


def columns() -> Text:
    return Text(f"{'step':>6}  {'loss':>7}   {'best induction head':<{BAR + 14}}"
                f"best previous-token head", style="bold")


def _best(best: tuple[int, int, float] | None) -> str:
    if best is None:
        return f"{'–':<{BAR + 14}}"
    layer, head, score = best
    return f"L{layer} H{head}  {score:4.2f} {bar(score)} "


def line(report) -> Text:
    return Text(f"{report.step:>6}  {report.loss:7.3f}   {_best(report.induction)}"
                f"{_best(report.previous).rstrip()}")


def _spread(n: int, k: int) -> list[int]:
    """k indices of 0 … n−1 spread evenly, first and last included."""
    if n <= k:
        return list(range(n))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)}) if k > 1 else [n - 1]


def history_view(hist, view: View, maps: int) -> RenderableType:
    parts: list[RenderableType] = []
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    if hist.weights is None:
        parts.append(Text(f"{hist.folder}: training progress", style="bold"))
        for name in ("step", "loss", "best induction head", "best previous-token head"):
            table.add_column(name, justify="right" if name in ("step", "loss") else "left")
        for r in hist.reports:
            table.add_row(str(r["step"]), _fmt(r["loss"], 3),
                          *(_best_doc(r.get(k)) for k in ("induction", "previous_token")))
        return Group(*parts, table, Text("(no snapshots: train with --snapshots N to see a head's "
                                 "attention as it forms)", style="dim"))
    parts.append(Text(f"{hist.folder}: layer {hist.layer} · head {hist.head} on the probe "
                      f"({plural(len(hist.probe), 'token')}), snapshot by snapshot",
                      style="bold"))
    for name in ("step", "loss", "induction", "previous-token", ""):
        table.add_column(name, justify="left" if not name else "right")
    for step, loss, s in zip(hist.steps, hist.losses, hist.scores):
        score = s.induction if s.induction is not None else s.previous_token
        table.add_row(str(step), "–" if np.isnan(loss) else _fmt(loss, 3),
                      _opt(s.induction, view.precision), _fmt(s.previous_token, view.precision),
                      bar(score))
    parts.append(table)
    T = len(hist.probe)
    masked = np.triu(np.ones((T, T), dtype=bool), k=1)  # attn train's models are causal
    shown = _spread(len(hist.steps), maps)
    parts.append(Text(""))
    parts.append(panels(hist.probe, [(f"step {hist.steps[i]}", hist.weights[i], masked)
                                     for i in shown], view))
    return Group(*parts)


def _best_doc(best: dict | None) -> str:
    if best is None:
        return "–"
    return f"L{best['layer']} H{best['head']}  {best['score']:.2f} {bar(best['score'])}"
