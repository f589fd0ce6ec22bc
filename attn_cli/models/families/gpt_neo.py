"""GPT-Neo (model_type "gpt_neo": TinyStories, EleutherAI/gpt-neo-125M …).

Follows transformers' models/gpt_neo/modeling_gpt_neo.py (eager path): learned positions,
pre-LN, separate q/k/v projections without biases, scores NOT scaled by 1/√d_k, and layers
alternating global attention with local attention over a window of `window_size` keys
(query i sees key j when 0 ≤ i − j < window_size), per `attention_types`.
"""

from __future__ import annotations

from attn_cli.models.config import ModelConfig
from attn_cli.models.families.hf_config import HFConfig, activation

NAMES = ("gpt_neo",)
PREFIXES = ("transformer.",)
LAYER_KEY = r"^h\.(\d+)\."
LAYERS_FIELD = "num_layers"


def _layer_kinds(hf: HFConfig, n_layers: int) -> list[str]:
    """attention_types [[["global", "local"], 12]] → one kind per layer."""
    _, spec = hf.raw("attention_types", default=[[["global", "local"], n_layers // 2]])
    kinds = []
    try:
        for pattern, repeat in spec:
            kinds += list(pattern) * int(repeat)
    except (TypeError, ValueError):
        raise hf.refuse(f"has attention_types {str(spec)[:80]}; it must be a list of "
                        f"[[kinds…], count] pairs") from None
    if len(kinds) != n_layers or not set(kinds) <= {"global", "local"}:
        raise hf.refuse(f"has attention_types for {len(kinds)} layers of kinds "
                        f"{sorted(set(map(str, kinds)))}, but num_layers is {n_layers}: every "
                        f"layer must be 'global' or 'local'")
    return kinds


def config(hf: HFConfig) -> ModelConfig:
    n_layers = hf.int("num_layers", default=12)
    d = hf.int("hidden_size", default=2048)
    window = hf.int("window_size", default=256)
    kinds = _layer_kinds(hf, n_layers)
    return ModelConfig(
        n_layers=n_layers, n_heads=hf.int("num_heads", default=8), d_model=d,
        d_ff=hf.optional_int("intermediate_size") or 4 * d, positions="learned",
        n_positions=hf.int("max_position_embeddings", default=2048),
        vocab_size=hf.int("vocab_size", default=50257),
        layer_norm_eps=hf.float("layer_norm_epsilon", default=1e-5),
        activation=activation(hf, "activation_function", "gelu_new"),
        windows=tuple(window if k == "local" else None for k in kinds),
        scale_scores=False, qkv_bias=False, family="gpt_neo",
        tie_embeddings=hf.bool("tie_word_embeddings", True))


def convert(w, cfg: ModelConfig) -> dict:
    d, ff = cfg.d_model, cfg.d_ff
    out = {"wte.weight": w.get("wte.weight", (cfg.vocab_size, d), alias="lm_head.weight"),
           "wpe.weight": w.get("wpe.weight", (cfg.n_positions, d))}
    for i in range(cfg.n_layers):
        p, a = f"h.{i}.", f"h.{i}.attn.attention."
        out[p + "attn.c_attn.weight"] = w.cat([(a + f"{x}_proj.weight", (d, d)) for x in "qkv"])
        out[p + "attn.c_proj.weight"] = w.get(a + "out_proj.weight", (d, d))
        out[p + "attn.c_proj.bias"] = w.get(a + "out_proj.bias", (d,))
        out[p + "mlp.c_fc.weight"] = w.get(p + "mlp.c_fc.weight", (ff, d))
        out[p + "mlp.c_fc.bias"] = w.get(p + "mlp.c_fc.bias", (ff,))
        out[p + "mlp.c_proj.weight"] = w.get(p + "mlp.c_proj.weight", (d, ff))
        out[p + "mlp.c_proj.bias"] = w.get(p + "mlp.c_proj.bias", (d,))
        for ln in ("ln_1", "ln_2"):
            out[p + ln + ".weight"] = w.get(p + ln + ".weight", (d,))
            out[p + ln + ".bias"] = w.get(p + ln + ".bias", (d,))
    out["ln_f.weight"] = w.get("ln_f.weight", (d,))
    out["ln_f.bias"] = w.get("ln_f.bias", (d,))
    if not cfg.tie_embeddings and w.has("lm_head.weight"):  # an untied LM head
        out["lm_head.weight"] = w.get("lm_head.weight", (cfg.vocab_size, d))
    return out
