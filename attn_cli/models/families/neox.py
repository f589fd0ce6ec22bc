"""GPT-NeoX (model_type "gpt_neox": Pythia, EleutherAI/gpt-neox-20b …).

Follows transformers' models/gpt_neox/modeling_gpt_neox.py (eager path): no position table;
rotary positions on the first rotary_pct · d_head dims of each head (the rest pass through),
base rotary_emb_base; one fused query_key_value projection laid out head by head
([q_h; k_h; v_h] for each head h, de-interleaved here into [Q; K; V]); pre-LN; a parallel
residual x + Attn(LN1(x)) + MLP(LN2(x)) when use_parallel_residual; exact GELU.
"""

from __future__ import annotations

from attn_cli.models.config import ModelConfig
from attn_cli.models.families.hf_config import HFConfig, activation

NAMES = ("gpt_neox",)
PREFIXES = ("gpt_neox.",)
LAYER_KEY = r"^layers\.(\d+)\."
LAYERS_FIELD = "num_hidden_layers"


def config(hf: HFConfig) -> ModelConfig:
    d, nh = hf.int("hidden_size", default=6144), hf.int("num_attention_heads", default=64)
    if d % nh:
        raise hf.refuse(f"has hidden_size {d}, which num_attention_heads {nh} does not divide")
    rope = hf.hf.get("rope_parameters") or hf.hf.get("rope_scaling") or {}
    if not isinstance(rope, dict):
        raise hf.refuse(f"has rope_parameters {str(rope)[:60]}; it must be an object")
    if rope.get("rope_type", "default") != "default":
        raise hf.refuse(f"uses rope_type {rope.get('rope_type')!r}; attn's GPT-NeoX reads "
                        f"the default rotary positions")
    pct = HFConfig(rope, hf.where).float("partial_rotary_factor", default=None) \
        if rope.get("partial_rotary_factor") is not None \
        else hf.float("rotary_pct", default=0.25)
    theta = HFConfig(rope, hf.where).float("rope_theta") if rope.get("rope_theta") is not None \
        else hf.float("rotary_emb_base", "rope_theta", default=10000.0)
    rotary = int((d // nh) * pct)
    if rotary < 2 or rotary % 2:
        raise hf.refuse(f"turns {rotary} dimensions of each head (rotary_pct {pct} × d_head "
                        f"{d // nh}); attn needs an even number, at least 2")
    bias = hf.bool("attention_bias", True)
    return ModelConfig(
        n_layers=hf.int("num_hidden_layers", default=44), n_heads=nh, d_model=d,
        d_ff=hf.int("intermediate_size", default=24576), positions="rotary",
        n_positions=hf.int("max_position_embeddings", default=2048),
        vocab_size=hf.int("vocab_size", default=50432),
        layer_norm_eps=hf.float("layer_norm_eps", default=1e-5),
        activation=activation(hf, "hidden_act", "gelu"), rotary_dim=rotary, rope_theta=theta,
        parallel_residual=hf.bool("use_parallel_residual", True), qkv_bias=bias,
        out_bias=bias, tie_embeddings=hf.bool("tie_word_embeddings", False), family="gpt_neox")


def convert(w, cfg: ModelConfig) -> dict:
    d, ff, nh, hs = cfg.d_model, cfg.d_ff, cfg.n_heads, cfg.d_head
    out = {"wte.weight": w.get("embed_in.weight", (cfg.vocab_size, d))}
    for i in range(cfg.n_layers):
        p, q = f"h.{i}.", f"layers.{i}."
        # read into memory of its own: the regrouping below copies it (and frees this)
        fused = w.get(q + "attention.query_key_value.weight", (3 * d, d), own=True)
        # rows are [q_0 k_0 v_0 q_1 k_1 v_1 …], hs each: regroup as [Q; K; V]
        out[p + "attn.c_attn.weight"] = fused.view(nh, 3, hs, d).transpose(0, 1).reshape(3 * d, d)
        out[p + "attn.c_proj.weight"] = w.get(q + "attention.dense.weight", (d, d))
        if cfg.qkv_bias:
            b = w.get(q + "attention.query_key_value.bias", (3 * d,), own=True)
            out[p + "attn.c_attn.bias"] = b.view(nh, 3, hs).transpose(0, 1).reshape(3 * d)
            out[p + "attn.c_proj.bias"] = w.get(q + "attention.dense.bias", (d,))
        out[p + "mlp.c_fc.weight"] = w.get(q + "mlp.dense_h_to_4h.weight", (ff, d))
        out[p + "mlp.c_fc.bias"] = w.get(q + "mlp.dense_h_to_4h.bias", (ff,))
        out[p + "mlp.c_proj.weight"] = w.get(q + "mlp.dense_4h_to_h.weight", (d, ff))
        out[p + "mlp.c_proj.bias"] = w.get(q + "mlp.dense_4h_to_h.bias", (d,))
        for ours, theirs in (("ln_1", "input_layernorm"), ("ln_2", "post_attention_layernorm")):
            out[p + ours + ".weight"] = w.get(q + theirs + ".weight", (d,))
            out[p + ours + ".bias"] = w.get(q + theirs + ".bias", (d,))
    out["ln_f.weight"] = w.get("final_layer_norm.weight", (d,))
    out["ln_f.bias"] = w.get("final_layer_norm.bias", (d,))
    if not cfg.tie_embeddings and w.has("embed_out.weight"):  # GPTNeoXForCausalLM's head
        out["lm_head.weight"] = w.get("embed_out.weight", (cfg.vocab_size, d))
    return out
