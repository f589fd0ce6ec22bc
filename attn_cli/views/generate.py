"""Predictions and generation on the terminal: `inspect --predict`, `attn generate`.

Plain data in (Candidate, Step from generate.py, Token), rich renderables out
(documents/generate.py: JSON); never a tensor. Terminal strings go through `shown` (whitespace
made visible, control and bidi characters escaped); JSON keeps the exact text.
"""

from __future__ import annotations

import codecs

import numpy as np
from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from attn_cli.tokenizers.base import Token, visible
from attn_cli.views.matrix import (LABEL_WIDTH, View, _fmt, _ramp, _rgb_style, plural,
                                   wrap_between)
from attn_cli.views.parts import describe


_SHADES = " ░▒▓█"


_BIDI = {0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}


STOPS = {"length": "the -n count", "end_of_text": "the model's end-of-text token",
         "positions": "the model's position limit"}


def _escape(text: str) -> str:
    """C1 controls and bidi overrides as <U+XXXX> (visible() has done C0, whitespace, bytes)."""
    return "".join(f"<U+{ord(c):04X}>" if 0x80 <= ord(c) < 0xA0 or ord(c) in _BIDI else c
                   for c in text)


def live_text(text: str) -> str:
    """Text for the live line: spaces as they are, a newline as ↵ (one line), a tab as ⇥,
    other control and bidi characters escaped."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch == "\n":
            out.append("↵")
        elif ch == "\t":
            out.append("⇥")
        elif code < 0x20 or code == 0x7F:
            out.append(f"<{code:02X}>")
        elif 0x80 <= code < 0xA0 or code in _BIDI:
            out.append(f"<U+{code:04X}>")
        else:
            out.append(ch)
    return "".join(out)


def shown(raw: bytes | None, token_id: int | None = None) -> str:
    """A token as the terminal shows it: '␣cat', '<F0><9F>', or <id N> for an id without one."""
    if raw is None:
        return f"<id {token_id}>"
    return _escape(visible(raw))


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def probability(p: float, precision: int) -> str:
    """A probability to `precision` decimals; one that is not zero but is under 0.001, or that
    those decimals would show as zero, in scientific form (3.1e-05), never 0.000 (SPEC §7)."""
    text = _fmt(p, precision)
    if p > 0 and (p < 1e-3 or float(text) == 0):
        return f"{p:.1e}"
    return text


def _prob_style(p: float, view: View):
    return _rgb_style(*_ramp(p)) if view.color else ""


def predictions_panel(tokens: list[Token], preds, view: View) -> RenderableType:
    """After the matrices: each position's most likely next tokens, probability-coloured."""
    k = max((len(top) for top in preds), default=0)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("after", no_wrap=True, style="bold")
    for rank in range(k):
        table.add_column(f"#{rank + 1}", no_wrap=True)
    for t, top in zip(tokens, preds):
        cells = []
        for c in top:
            cell = Text(_cut(shown(c.raw, c.id), 16) + " ")
            cell.append(probability(float(c.probability), view.precision),
                        style=_prob_style(float(c.probability), view))
            cells.append(cell)
        table.add_row(_cut(f"{t.index} {shown(t.raw)}", LABEL_WIDTH), *cells)
    return Panel(table, title=f"Next-token predictions (top {k}, softmax of the LM head's "
                              f"logits)", title_align="left", box=box.ROUNDED, expand=False)


def with_predictions(view_renderable: RenderableType, tokens, preds, view: View
                     ) -> RenderableType:
    return Group(view_renderable, Text(), predictions_panel(tokens, preds, view))


def generate_title(cfg, encoding: str, n_prompt: int, sampling) -> Text:
    how = "greedy" if sampling.greedy else (
        f"sampling: temperature {sampling.t:g}"
        + (f", top-k {sampling.top_k}" if sampling.top_k else "") + f", seed {sampling.seed}")
    return Text.assemble(("attn generate", "bold"), f" · {describe(cfg)} · ",
                         (encoding, "cyan"), f" · {plural(n_prompt, 'prompt token')} · {how}")


class LiveText:
    """The continuation as it is made: on a terminal one growing line (the prompt dim, then
    each new token's text); otherwise one plain line per token (index, token, probability)."""

    def __init__(self, console, live: bool, precision: int):
        self.console, self.live, self.precision = console, live, precision
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def _text(self, raw: bytes | None, token_id: int) -> str:
        if raw is None:
            return f"<id {token_id}>"
        return live_text(self.decoder.decode(raw))

    def start(self, tokens: list[Token]) -> None:
        if self.live:
            prompt = b"".join(t.raw for t in tokens).decode("utf-8", errors="replace")
            self.console.print(Text(live_text(prompt), style="dim"), end="", soft_wrap=True)
            self.console.file.flush()

    def add(self, step) -> None:
        if self.live:
            self.console.print(Text(self._text(step.raw, step.id), style="bold"), end="",
                               soft_wrap=True)
            self.console.file.flush()
        else:
            self.console.print(f"{step.index:>5}  {shown(step.raw, step.id):<16} "
                               f"{probability(float(step.probability), self.precision)}",
                               soft_wrap=True)

    def end(self) -> None:
        if self.live:
            tail = self.decoder.decode(b"", final=True)
            if tail:
                self.console.print(Text(live_text(tail)), end="", soft_wrap=True)
            self.console.print()


STRIP = 32  # heat-strip cells at most: the latest earlier tokens


def heat_strip(weights: np.ndarray, tokens: list[Token], view: View) -> Text:
    """One cell per earlier token (the latest STRIP of them), shaded relative to the row's
    largest weight (colour, or ░▒▓█ without), then the three it attended to most."""
    text = Text()
    start = max(0, len(weights) - STRIP)
    if start:
        text.append("…", style="dim")
    top = float(weights.max()) if len(weights) else 0.0
    for w in weights[start:]:
        level = float(w) / top if top > 0 else 0.0
        if view.color:
            text.append(" ", style=_rgb_style(*_ramp(level)))
        else:
            text.append(_SHADES[min(int(level * (len(_SHADES) - 1) + 0.5), 4)])
    order = np.argsort(-weights.astype(np.float64), kind="stable")[:3]
    for n, j in enumerate(order):
        text.append("  " if n == 0 else " · ")
        text.append(f"#{j} ", style="dim")
        text.append(_cut(shown(tokens[j].raw), 12))
        text.append(f" {_fmt(float(weights[j]), view.precision)}", style="cyan")
    return text


def summary(tokens: list[Token], steps, stop: str, sampling, view: View) -> RenderableType:
    """Per new token: its probability and the runners-up on one line, then one heat strip per
    watched layer (head mean) or head: what the query that predicted it attended to."""
    how = "greedy" if sampling.greedy else "sampled"
    parts: list[RenderableType] = [Text(
        f"Generated {plural(len(steps), 'token')} ({how}); stopped at {STOPS[stop]}. Under each: "
        f"the attention of the query that predicted it over every earlier token (strip shaded "
        f"relative to its largest weight; #i: the token's index)", style="bold")]
    every = list(tokens)
    for step in steps:
        line = Text()
        line.append(f"{step.index:>5} ", style="dim")
        line.append(f"{_cut(shown(step.raw, step.id), LABEL_WIDTH):<{LABEL_WIDTH}} ",
                    style="bold")
        p = float(step.probability)
        line.append(probability(p, view.precision), style=_prob_style(p, view))
        runners = [c for c in step.top if c.id != step.id]
        if runners:
            line.append("   runners-up: ", style="dim")
        items = [Text.assemble(_cut(shown(c.raw, c.id), 12),
                               (f" {probability(float(c.probability), view.precision)}", "cyan"))
                 for c in runners]
        parts += wrap_between(items, view.width, lead=line)
        for layer, head, w in step.attention:
            strip = Text(" " * 6)
            label = f"L{layer} " + ("mean" if head < 0 else f"H{head}")
            strip.append(f"{label:<9}", style="dim")
            strip.append_text(heat_strip(w, every, view))
            parts.append(strip)
        every.append(Token(step.index, step.id, step.raw or b""))
    return Group(*parts)
