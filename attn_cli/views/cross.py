"""`attn cross` on the terminal: CrossCapture -> rich renderables (documents/cross.py: JSON).

The matrices, heat maps, token strips, labels and top-k lines are views/matrix.py's; this module
only says which tokens are rows and which are columns for each kind of attention:
    encoder  source × source, nothing masked
    decoder  target × target, the future masked (·)
    cross    target × source (queries from the decoder, keys and values from the encoder)
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
from rich.console import Group, RenderableType
from rich.text import Text

from attn_cli import analysis
from attn_cli.cross import CrossCapture, CrossHead
from attn_cli.views.matrix import LABEL_WIDTH, View, _fmt, _label, matrix, plural, token_strip
from attn_cli.views.parts import embeddings_table, top_lines
from attn_cli.views.steps import vectors


TITLES = {
    "encoder": ("Encoder self-attention (bidirectional)",
                "which source tokens each source token reads; rows and columns are the source, "
                "nothing is masked"),
    "decoder": ("Decoder self-attention (causal)",
                "which earlier target tokens each target token reads; · is the future, which "
                "the decoder cannot see"),
    "cross": ("Cross-attention",
              "which source tokens each target token reads: target tokens down, source tokens "
              "across; Q from the decoder, K and V from the encoder's output"),
}


KIND_NAMES = {"encoder": "Encoder", "decoder": "Decoder", "cross": "Cross"}


def describe(cap: CrossCapture) -> str:
    enc, dec = cap.encoder, cap.decoder
    model = f"seeded model (seed {enc.seed})" if enc.source == "seeded" \
        else f"{enc.source} ({enc.family})"
    d_head = f"d_head {enc.d_head}" if enc.d_head == dec.d_head else \
        f"d_head {enc.d_head} (encoder), {dec.d_head} (decoder)"
    return (f"{model}: encoder {plural(enc.n_layers, 'layer')} × {plural(enc.n_heads, 'head')}, "
            f"decoder {plural(dec.n_layers, 'layer')} × {plural(dec.n_heads, 'head')}, "
            f"d_model {enc.d_model}, {d_head}")


def header(cap: CrossCapture, command: str = "cross") -> Text:
    return Text.assemble(("attn " + command, "bold"), f" · {describe(cap)} · ",
                         (cap.encoding, "cyan"),
                         f" · source {plural(len(cap.source_tokens), 'token')}, target "
                         f"{plural(len(cap.target_tokens), 'token')}")


def strips(cap: CrossCapture) -> list[RenderableType]:
    start = cap.target_tokens[0]
    return [token_strip(cap.source_tokens, prefix="source  "),
            token_strip(cap.target_tokens, prefix="target  "),
            Text(f"the decoder reads its start token '{start.display}' (id {start.id}) first, "
                 f"then the target", style="dim")]


def head_title(h: CrossHead) -> str:
    return f"{KIND_NAMES[h.kind]} · Layer {h.layer} · Head {h.head}"


def weights_matrix(cap: CrossCapture, h: CrossHead, view: View) -> RenderableType:
    rows = [_label(t) for t in cap.rows(h.kind)]
    cols = [str(t.index) for t in cap.cols(h.kind)]
    return matrix(h.weights, rows, cols, view, masked=cap.masked(h.kind))


def _stack(cap: CrossCapture, kind: str) -> SimpleNamespace:
    """What parts.top_lines and parts.embeddings_table read, for one stack's own tokens."""
    tokens = cap.source_tokens if kind == "encoder" else cap.target_tokens
    embeddings = cap.encoder_embeddings if kind == "encoder" else cap.decoder_embeddings
    return SimpleNamespace(tokens=tokens, config=cap.config(kind), embeddings=embeddings,
                           window=lambda layer: None)


def cross_top_lines(cap: CrossCapture, h: CrossHead, view: View) -> Text:
    """parts.top_lines for a matrix whose rows (target) and keys (source) differ."""
    text = Text()
    tops = analysis.top_k(h.weights, view.top_k, False)
    for t, keys in zip(cap.target_tokens, tops):
        text.append(f"{_label(t):>{LABEL_WIDTH}} → ", style="bold")
        for n, a in enumerate(keys):
            if n:
                text.append("  ")
            text.append(cap.source_tokens[a.index].display)
            text.append(f" {a.weight:.{view.precision}f}", style="cyan")
        text.append("\n")
    text.rstrip()
    return text


def head_lines(cap: CrossCapture, h: CrossHead, view: View) -> Text:
    if h.kind == "cross":
        return cross_top_lines(cap, h, view)
    return top_lines(_stack(cap, h.kind), h, view)


def top_caption(kind: str, k: int) -> str:
    return {"encoder": f"top {k} source tokens each source token reads",
            "decoder": f"top {k} earlier target tokens each target token reads",
            "cross": f"top {k} attended source tokens per target token"}[kind]


def embeddings_part(cap: CrossCapture, kind: str, view: View) -> list[RenderableType]:
    what = ("Encoder: the source's contextual embeddings, the memory that cross-attention's K "
            "and V read" if kind == "encoder" else
            "Decoder: the target's contextual embeddings (its final hidden state)")
    return [Text(what, style="bold underline"), embeddings_table(_stack(cap, kind), view)]


def query_lines(cap: CrossCapture, h: CrossHead, query: int, view: View) -> list[RenderableType]:
    """Target token `query` in one decoder or cross head: what it reads, and what it gets."""
    tok = cap.target_tokens[query]
    keys = cap.cols(h.kind)
    p = view.precision
    w = h.weights[query]
    where = "the source" if h.kind == "cross" else "the target so far"
    out = [Text(head_title(h), style="bold underline"),
           Text.assemble("Attention from ", (f"'{tok.display}'", "bold cyan"), f" to {where}:")]
    visible = np.flatnonzero(~cap.masked(h.kind)[query])
    order = visible[np.argsort(-w[visible], kind="stable")]
    for j in order:
        bar = "█" * int(round(float(w[j]) * 30))
        out.append(Text.assemble(f"  '{keys[j].display}' ", (f"{w[j]:.{p}f}", "cyan"), "  ",
                                 (bar, "green")))
    z = h.stages["output"][query]
    values = "V from the encoder's output" if h.kind == "cross" else "V of the target"
    out.append(Text(f"Its context vector from this head, Σ_j A[{query}, j]·V[j] "
                    f"({z.shape[0]} dims; {values}):", style="bold"))
    out.append(Text("  [" + ", ".join(_fmt(float(x), p) for x in z) + "]"))
    return out


def cross_view(cap: CrossCapture, chosen: list[str], view: View,
               query: int | None = None) -> Group:
    parts: list[RenderableType] = [header(cap), *strips(cap), Text()]
    if query is not None:
        for h in cap.heads:
            if h.kind != "encoder":
                parts.extend(query_lines(cap, h, query, view))
                parts.append(Text())
        return Group(*parts)
    for kind in chosen:
        title, what = TITLES[kind]
        parts.append(Text.assemble((title, "bold"), (": " + what, "italic")))
        parts.append(Text())
        for h in (h for h in cap.heads if h.kind == kind):
            parts.append(Text(head_title(h), style="bold underline"))
            parts.append(weights_matrix(cap, h, view))
            parts.append(Text(top_caption(kind, view.top_k), style="italic"))
            parts.append(head_lines(cap, h, view))
            parts.append(Text())
    for kind in ("encoder", "decoder"):
        parts.extend(embeddings_part(cap, kind, view))
        if kind == "encoder":
            parts.append(Text())
    return Group(*parts)


def formula(h: CrossHead) -> str:
    if h.kind == "cross":
        return "softmax(Q_dec·K_encᵀ/√d_k)·V_enc   (no mask: every target token sees the source)"
    if h.kind == "decoder":
        return "softmax(Q·Kᵀ/√d_k + M)·V   (M: −∞ on the future)"
    return "softmax(Q·Kᵀ/√d_k)·V   (bidirectional: no mask)"


def stage_lines(cap: CrossCapture, h: CrossHead) -> dict[str, tuple[str, str]]:
    cfg = cap.config(h.kind)
    post = cfg.post_norm
    if h.kind == "cross":
        x = ("X = y" if post else "X = LN_x(y)",
             "the decoder's states after its self-attention: what the queries read")
        src = "M·W_"
    else:
        x = ("X = h" if post else "X = LN₁(h)", "the block's input: what the head reads")
        src = "X·W_"
    lines = {"x": x}
    if h.kind == "cross":
        lines["memory"] = ("M = encoder output", "the source's contextual embeddings, the same "
                           "for every decoder layer: what the keys and values read")
    lines.update({
        "q": ("Q = X·W_Q + b_Q", "the Query: what each target token asks for" if h.kind != "encoder"
              else "the Query: what each token asks for"),
        "k": (f"K = {src}K + b_K", "the Key: what each source token answers to"
              if h.kind == "cross" else "the Key: what each token answers to"),
        "v": (f"V = {src}V + b_V", "the Value: what each source token carries"
              if h.kind == "cross" else "the Value: what each token carries"),
        "scores": ("S = Q·Kᵀ", "how well each query matches each key"),
        "scaled": ("S / √d_k", f"√d_k = √{cfg.d_head} = {math.sqrt(cfg.d_head):.4g}"),
        "masked": ("S / √d_k + M", "M is −∞ where the key comes after the query (causal), 0 "
                   "elsewhere" if h.kind == "decoder" else "no mask: every key is visible (M = 0)"),
        "weights": ("A = softmax(S / √d_k + M)", "each row sums to 1"),
        "output": ("Z = A·V", "each query's new vector: a weighted mix of Values"),
    })
    return lines


def steps_view(cap: CrossCapture, h: CrossHead, view: View, query: int | None) -> Group:
    rows = [_label(t) for t in cap.rows(h.kind)]
    keys = cap.cols(h.kind)
    key_rows = [_label(t) for t in keys]
    key_cols = [str(t.index) for t in keys]
    masked = cap.masked(h.kind)
    parts: list[RenderableType] = [
        header(cap, "cross --steps"),
        Text.assemble((head_title(h), "bold"), "   " + formula(h)), *strips(cap), Text()]
    stages = dict(h.stages, weights=h.weights)
    for n, (name, (line, note)) in enumerate(stage_lines(cap, h).items(), start=1):
        values = stages[name]
        shape = f"({values.shape[0]} × {values.shape[1]})"
        parts.append(Text.assemble((f"{n}. ", "bold"), (line, "bold"),
                                   (f"    {note}" if note else "", "bold"), "  ", (shape, "cyan")))
        if name in ("scores", "scaled", "masked", "weights"):
            parts.append(matrix(values, rows, key_cols, view,
                                scale="weights" if name == "weights" else "signed",
                                masked=masked if name == "weights" else None))
        else:
            parts.append(vectors(values, key_rows if name in ("memory", "k", "v")
                                 and h.kind == "cross" else rows, view))
        parts.append(Text())
    if query is not None:
        parts.extend(query_lines(cap, h, query, view))
    return Group(*parts)
