"""GPT-2 (model_type "gpt2": gpt2, distilgpt2, gpt2-medium …).

Follows transformers' models/gpt2/modeling_gpt2.py (eager path): learned positions, pre-LN,
fused c_attn stored as Conv1D (in, out), ÷√d_k, GELU(tanh) MLP, ln_f.
"""

from __future__ import annotations

from attn_cli.models.config import ModelConfig
from attn_cli.models.families.hf_config import HFConfig

NAMES = ("gpt2",)
PREFIXES = ("transformer.",)
LAYER_KEY = r"^h\.(\d+)\."
LAYERS_FIELD = "n_layer"
IGNORED = r"(^|\.)attn\.(bias|masked_bias)$|^lm_head\."


def config(hf: HFConfig) -> ModelConfig:
    act = hf.str("activation_function", "gelu_new")
    if act not in ("gelu_new", "gelu_pytorch_tanh"):
        raise hf.refuse(f"says activation_function {act!r}; attn's GPT-2 MLP uses the tanh GELU "
                        f"(gelu_new or gelu_pytorch_tanh), so this checkpoint's outputs would be "
                        f"wrong")
    if not hf.bool("scale_attn_weights", True):
        raise hf.refuse("sets scale_attn_weights false (no ÷√d_k); attn supports only GPT-2's "
                        "scaled attention")
    if hf.bool("scale_attn_by_inverse_layer_idx", False):
        raise hf.refuse("sets scale_attn_by_inverse_layer_idx; attn supports only GPT-2's plain "
                        "÷√d_k scaling, not an extra 1/(layer+1)")
    # reorder_and_upcast_attn only changes the order of float operations in half precision:
    # in float32 it is the same attention (the tests hold it equal); under --dtype bfloat16 or
    # float16 attn's scores stay in that dtype (its softmax is float32 either way), so the two
    # differ by half-precision rounding of QKᵀ.
    n_embd, n_head = hf.int("n_embd", default=768), hf.int("n_head", default=12)
    if n_embd % n_head:
        raise hf.refuse(f"has n_embd {n_embd}, which n_head {n_head} does not divide: the "
                        f"config is broken")
    return ModelConfig(
        n_layers=hf.int("n_layer", default=12), n_heads=n_head, d_model=n_embd,
        d_ff=hf.optional_int("n_inner") or 4 * n_embd, positions="learned",
        n_positions=hf.int("n_positions", default=1024),
        vocab_size=hf.int("vocab_size", default=50257),
        layer_norm_eps=hf.float("layer_norm_epsilon", default=1e-5), family="gpt2",
        tie_embeddings=hf.bool("tie_word_embeddings", True))


def convert(w, cfg: ModelConfig) -> dict:
    d, ff = cfg.d_model, cfg.d_ff
    out = {"wte.weight": w.get("wte.weight", (cfg.vocab_size, d), alias="lm_head.weight"),
           "wpe.weight": w.get("wpe.weight", (cfg.n_positions, d))}
    for i in range(cfg.n_layers):
        p = f"h.{i}."
        for ln in ("ln_1", "ln_2"):
            out[p + ln + ".weight"] = w.get(p + ln + ".weight", (d,))
            out[p + ln + ".bias"] = w.get(p + ln + ".bias", (d,))
        # Conv1D stores (in, out). In float32 a transposed view, not a copy: nn.Linear then runs
        # the very matmul GPT-2's Conv1D runs on the same memory, so the projections agree bit
        # for bit. In bfloat16 or float16 a CPU multiplies by a transposed weight ten times
        # slower: read it into memory of its own and lay it out (out, in) (the read is freed).
        half = cfg.dtype != "float32"
        for name, shape in (("attn.c_attn", (d, 3 * d)), ("attn.c_proj", (d, d)),
                            ("mlp.c_fc", (d, ff)), ("mlp.c_proj", (ff, d))):
            weight = w.get(p + name + ".weight", shape, own=half).t()
            out[p + name + ".weight"] = weight.contiguous() if half else weight
            out[p + name + ".bias"] = w.get(p + name + ".bias", (shape[1],))
    out["ln_f.weight"] = w.get("ln_f.weight", (d,))
    out["ln_f.bias"] = w.get("ln_f.bias", (d,))
    if not cfg.tie_embeddings and w.has("lm_head.weight"):  # an untied LM head
        out["lm_head.weight"] = w.get("lm_head.weight", (cfg.vocab_size, d))
    return out
