"""BERT and RoBERTa (model_type "bert", "roberta"): the encoders BertViz's users open first.

Follows transformers' models/bert/modeling_bert.py and models/roberta/modeling_roberta.py
(eager path): word + token-type (all type 0: one segment) + learned position embeddings, then a
LayerNorm; post-LN blocks x = LN(x + Attn(x)), x = LN(x + MLP(x)); bidirectional attention,
÷√d_k; exact GELU; no final norm (the contextual embeddings are the last block's output).
RoBERTa numbers positions from padding_idx + 1 (a pad token itself takes row padding_idx).
"""

from __future__ import annotations

from attn_cli.models.config import ModelConfig
from attn_cli.models.families.hf_config import HFConfig, activation

NAMES = ("bert", "roberta")
PREFIXES = ("bert.", "roberta.")
LAYER_KEY = r"^encoder\.layer\.(\d+)\."
LAYERS_FIELD = "num_hidden_layers"


def config(hf: HFConfig) -> ModelConfig:
    roberta = hf.hf.get("model_type") == "roberta"
    kind = hf.str("position_embedding_type", "absolute")
    if kind != "absolute":
        raise hf.refuse(f"says position_embedding_type {kind!r}; attn reads BERT's absolute "
                        f"positions")
    if hf.bool("is_decoder", False):
        raise hf.refuse("sets is_decoder: attn reads BERT and RoBERTa as encoders")
    d, nh = hf.int("hidden_size", default=768), hf.int("num_attention_heads", default=12)
    if d % nh:
        raise hf.refuse(f"has hidden_size {d}, which num_attention_heads {nh} does not divide")
    rows = hf.int("max_position_embeddings", default=512)
    pad = hf.int("pad_token_id", default=1, minimum=0) if roberta else None
    offset = pad + 1 if roberta else 0
    if rows <= offset:
        raise hf.refuse(f"has max_position_embeddings {rows}, no more than the padding offset "
                        f"{offset}")
    return ModelConfig(
        n_layers=hf.int("num_hidden_layers", default=12), n_heads=nh, d_model=d,
        d_ff=hf.int("intermediate_size", default=3072), causal=False, positions="learned",
        n_positions=rows - offset, position_offset=offset, pad_id=pad,
        vocab_size=hf.int("vocab_size", default=30522),
        layer_norm_eps=hf.float("layer_norm_eps", default=1e-12),
        activation=activation(hf, "hidden_act", "gelu"), post_norm=True, final_norm=False,
        embed_norm=True, token_types=hf.int("type_vocab_size", default=2),
        family="roberta" if roberta else "bert")


def _norm(w, ours: str, theirs: str, d: int, out: dict) -> None:
    """A LayerNorm; old checkpoints call its weight gamma and its bias beta."""
    out[ours + ".weight"] = w.get(theirs + ".weight", (d,), alias=theirs + ".gamma")
    out[ours + ".bias"] = w.get(theirs + ".bias", (d,), alias=theirs + ".beta")


def convert(w, cfg: ModelConfig) -> dict:
    d, ff = cfg.d_model, cfg.d_ff
    e = "embeddings."
    out = {"wte.weight": w.get(e + "word_embeddings.weight", (cfg.vocab_size, d)),
           "wpe.weight": w.get(e + "position_embeddings.weight",
                               (cfg.n_positions + cfg.position_offset, d)),
           "wtt.weight": w.get(e + "token_type_embeddings.weight", (cfg.token_types, d))}
    _norm(w, "ln_emb", e + "LayerNorm", d, out)
    for i in range(cfg.n_layers):
        p, q = f"h.{i}.", f"encoder.layer.{i}."
        s = q + "attention.self."
        out[p + "attn.c_attn.weight"] = w.cat(
            [(s + f"{x}.weight", (d, d)) for x in ("query", "key", "value")])
        out[p + "attn.c_attn.bias"] = w.cat(
            [(s + f"{x}.bias", (d,)) for x in ("query", "key", "value")])
        out[p + "attn.c_proj.weight"] = w.get(q + "attention.output.dense.weight", (d, d))
        out[p + "attn.c_proj.bias"] = w.get(q + "attention.output.dense.bias", (d,))
        _norm(w, p + "ln_1", q + "attention.output.LayerNorm", d, out)
        out[p + "mlp.c_fc.weight"] = w.get(q + "intermediate.dense.weight", (ff, d))
        out[p + "mlp.c_fc.bias"] = w.get(q + "intermediate.dense.bias", (ff,))
        out[p + "mlp.c_proj.weight"] = w.get(q + "output.dense.weight", (d, ff))
        out[p + "mlp.c_proj.bias"] = w.get(q + "output.dense.bias", (d,))
        _norm(w, p + "ln_2", q + "output.LayerNorm", d, out)
    return out
