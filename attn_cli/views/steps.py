"""`attn steps` on the terminal: the formula stage by stage for one head, and one query's
attention and output vector."""

from __future__ import annotations

import math

import numpy as np
from rich.cells import cell_len
from rich.console import Group, RenderableType
from rich.text import Text

from attn_cli.capture import Capture, HeadCapture
from attn_cli.views.matrix import View, _columns_that_fit, _fmt, _label, matrix, token_strip, token_text
from attn_cli.views.parts import header


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
