"""Llama and its kin (model_type "llama": Llama 2/3, SmolLM, TinyLlama; "mistral"; "qwen2").

Follows transformers' models/llama/modeling_llama.py (eager path), with what
modeling_mistral.py and modeling_qwen2.py change: RMSNorm, pre-norm; no position table, rotary
positions on every dim of each head (base rope_theta; Llama 3's "llama3" and "linear" scaling);
grouped-query attention (num_key_value_heads key/value heads, each read by a group of query
heads); SwiGLU MLP down(silu(gate(x)) · up(x)); no biases, except q/k/v in Qwen2 (and
wherever attention_bias / mlp_bias say so); a sliding window of `sliding_window` keys on every
layer (Mistral) or on the layers `layer_types` marks "sliding_attention" (Qwen2).
"""

from __future__ import annotations

from attn_cli.models.config import ModelConfig
from attn_cli.models.families.hf_config import HFConfig, activation

NAMES = ("llama", "mistral", "qwen2")
PREFIXES = ("model.",)
LAYER_KEY = r"^layers\.(\d+)\."
LAYERS_FIELD = "num_hidden_layers"


def _rope(hf: HFConfig) -> tuple[float, tuple]:
    """(theta, scaling) from rope_parameters (transformers 5) or rope_theta + rope_scaling."""
    rope = hf.hf.get("rope_parameters") or hf.hf.get("rope_scaling") or {}
    if not isinstance(rope, dict):
        raise hf.refuse(f"has rope_parameters {str(rope)[:60]}; it must be an object")
    r = HFConfig(rope, hf.where)
    theta = r.float("rope_theta") if rope.get("rope_theta") is not None \
        else hf.float("rope_theta", default=10000.0)
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind == "default":
        return theta, ()
    if kind == "linear":
        return theta, (("rope_type", "linear"), ("factor", r.float("factor")))
    if kind == "llama3":
        return theta, (("rope_type", "llama3"), ("factor", r.float("factor")),
                       ("low_freq_factor", r.float("low_freq_factor")),
                       ("high_freq_factor", r.float("high_freq_factor")),
                       ("original_max_position_embeddings",
                        float(r.int("original_max_position_embeddings"))))
    raise hf.refuse(f"uses rope_type {str(kind)[:40]!r}; attn computes default, linear and "
                    f"llama3 rotary positions")


def _windows(hf: HFConfig, model_type: str, n_layers: int) -> tuple:
    window = hf.optional_int("sliding_window")
    if model_type == "llama" or window is None:
        return ()
    if model_type == "qwen2":
        if not hf.bool("use_sliding_window", False):
            return ()
        kinds = hf.hf.get("layer_types")
        if kinds is None:
            first = hf.int("max_window_layers", default=28, minimum=0)
            kinds = ["sliding_attention" if i >= first else "full_attention"
                     for i in range(n_layers)]
    else:
        kinds = hf.hf.get("layer_types") or ["sliding_attention"] * n_layers
    if not isinstance(kinds, list) or len(kinds) != n_layers or \
            not set(kinds) <= {"sliding_attention", "full_attention"}:
        raise hf.refuse(f"has layer_types {str(kinds)[:80]}; it must name 'full_attention' or "
                        f"'sliding_attention' for each of the {n_layers} layers")
    return tuple(window if k == "sliding_attention" else None for k in kinds)


def config(hf: HFConfig) -> ModelConfig:
    model_type = hf.hf.get("model_type", "llama")
    d, nh = hf.int("hidden_size", default=4096), hf.int("num_attention_heads", default=32)
    head_dim = hf.optional_int("head_dim")
    if head_dim is None and d % nh:
        raise hf.refuse(f"has hidden_size {d}, which num_attention_heads {nh} does not divide")
    n_layers = hf.int("num_hidden_layers", default=32)
    theta, scaling = _rope(hf)
    attention_bias = hf.bool("attention_bias", False)
    return ModelConfig(
        n_layers=n_layers, n_heads=nh, d_model=d, head_dim=head_dim,
        n_kv_heads=hf.optional_int("num_key_value_heads"),
        d_ff=hf.int("intermediate_size", default=11008), positions="rotary",
        n_positions=hf.int("max_position_embeddings", default=2048),
        vocab_size=hf.int("vocab_size", default=32000), norm="rmsnorm",
        layer_norm_eps=hf.float("rms_norm_eps", default=1e-6), rope_theta=theta,
        rope_scaling=scaling, windows=_windows(hf, model_type, n_layers),
        qkv_bias=attention_bias or model_type == "qwen2", out_bias=attention_bias,
        mlp_bias=hf.bool("mlp_bias", False), gated_mlp=True,
        activation=activation(hf, "hidden_act", "silu"),
        tie_embeddings=hf.bool("tie_word_embeddings", False), family=model_type)


def convert(w, cfg: ModelConfig) -> dict:
    d, ff, hs = cfg.d_model, cfg.d_ff, cfg.d_head
    q_out, kv_out = cfg.n_heads * hs, cfg.kv_heads * hs
    out = {"wte.weight": w.get("embed_tokens.weight", (cfg.vocab_size, d))}
    for i in range(cfg.n_layers):
        p, a, m = f"h.{i}.", f"layers.{i}.self_attn.", f"layers.{i}.mlp."
        sizes = {"q": q_out, "k": kv_out, "v": kv_out}
        out[p + "attn.c_attn.weight"] = w.cat(
            [(a + f"{x}_proj.weight", (n, d)) for x, n in sizes.items()])
        if cfg.qkv_bias:
            out[p + "attn.c_attn.bias"] = w.cat(
                [(a + f"{x}_proj.bias", (n,)) for x, n in sizes.items()])
        out[p + "attn.c_proj.weight"] = w.get(a + "o_proj.weight", (d, q_out))
        if cfg.out_bias:
            out[p + "attn.c_proj.bias"] = w.get(a + "o_proj.bias", (d,))
        out[p + "mlp.c_fc.weight"] = w.cat(
            [(m + "gate_proj.weight", (ff, d)), (m + "up_proj.weight", (ff, d))])
        out[p + "mlp.c_proj.weight"] = w.get(m + "down_proj.weight", (d, ff))
        if cfg.mlp_bias:
            out[p + "mlp.c_fc.bias"] = w.cat(
                [(m + "gate_proj.bias", (ff,)), (m + "up_proj.bias", (ff,))])
            out[p + "mlp.c_proj.bias"] = w.get(m + "down_proj.bias", (d,))
        out[p + "ln_1.weight"] = w.get(f"layers.{i}.input_layernorm.weight", (d,))
        out[p + "ln_2.weight"] = w.get(f"layers.{i}.post_attention_layernorm.weight", (d,))
    out["ln_f.weight"] = w.get("norm.weight", (d,))
    if not cfg.tie_embeddings and w.has("lm_head.weight"):  # LlamaForCausalLM's own head
        out["lm_head.weight"] = w.get("lm_head.weight", (cfg.vocab_size, d))
    return out
