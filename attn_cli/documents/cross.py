"""The document of `attn cross` and `attn cross --steps` (schema cross)."""

from __future__ import annotations

from attn_cli import analysis
from attn_cli.cross import CrossCapture, CrossHead
from attn_cli.documents import SCHEMA_VERSION
from attn_cli.documents.attention import f32


def model_doc(cap: CrossCapture) -> dict:
    enc, dec = cap.encoder, cap.decoder

    def stack(c) -> dict:
        return {"layers": c.n_layers, "heads": c.n_heads, "d_head": c.d_head, "d_ff": c.d_ff,
                "causal": c.causal}

    out = {"source": enc.source, "family": enc.family, "seed": enc.seed,
           "positions": enc.positions, "d_model": enc.d_model,
           "encoder": stack(enc), "decoder": stack(dec),
           "decoder_start_token_id": cap.start_id, "dtype": enc.dtype}
    if enc.positions == "learned":
        out["n_positions"] = enc.n_positions
    if enc.vocab_size is not None:
        out["vocab_size"] = enc.vocab_size
    return out


def header_doc(cap: CrossCapture) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "command": "cross",
        "source": cap.source,
        "target": cap.target,
        "encoding": cap.encoding,
        "model": model_doc(cap),
        "source_tokens": [t.to_dict() for t in cap.source_tokens],
        "target_tokens": [t.to_dict() for t in cap.target_tokens],
    }


def attention_record(cap: CrossCapture, h: CrossHead, top_k: int) -> dict:
    keys = cap.cols(h.kind)
    tops = analysis.top_k(h.weights, top_k, h.causal)
    return {
        "kind": h.kind,
        "layer": h.layer,
        "head": h.head,
        "weights": h.weights,
        "entropy": analysis.entropy(h.weights),
        "top": [{"query": i, "keys": [{"index": a.index, "token": keys[a.index].text,
                                       "weight": f32(a.weight)} for a in row]}
                for i, row in enumerate(tops)],
    }


def embeddings_doc(cap: CrossCapture) -> dict:
    return {"encoder": cap.encoder_embeddings, "decoder": cap.decoder_embeddings}


def query_doc(cap: CrossCapture, query: int) -> dict:
    return {"index": query, "token": cap.target_tokens[query].text,
            "heads": [{"kind": h.kind, "layer": h.layer, "head": h.head,
                       "weights": h.weights[query], "output": h.stages["output"][query]}
                      for h in cap.heads if h.kind != "encoder"]}


def cross_doc(cap: CrossCapture, top_k: int, query: int | None = None) -> dict:
    doc = header_doc(cap)
    doc["attention"] = [attention_record(cap, h, top_k) for h in cap.heads]
    doc["embeddings"] = embeddings_doc(cap)
    if query is not None:
        doc["query"] = query_doc(cap, query)
    return doc


STEP_NAMES = ("x", "memory", "q", "k", "v", "scores", "scaled", "masked", "weights", "output")


def steps_doc(cap: CrossCapture, h: CrossHead, query: int | None) -> dict:
    stages = dict(h.stages, weights=h.weights)
    out = {**header_doc(cap), "kind": h.kind, "layer": h.layer, "head": h.head,
           "d_head": cap.config(h.kind).d_head,
           "stages": {name: stages[name] for name in STEP_NAMES if name in stages}}
    if query is not None:
        out["query"] = {"index": query, "weights": h.weights[query],
                        "output": h.stages["output"][query]}
    return out
