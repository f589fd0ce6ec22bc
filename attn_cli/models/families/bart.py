"""BART (model_type "bart": facebook/bart-base, bart-large, distilbart …): an encoder–decoder.

Follows transformers' models/bart/modeling_bart.py (eager path): token embeddings shared by both
stacks (× √d_model when scale_embedding), learned positions from row 2 (BartLearnedPositional-
Embedding's offset), layernorm_embedding; post-LN blocks with exact GELU (activation_function);
the encoder layer is self_attn → self_attn_layer_norm, fc1/fc2 → final_layer_norm; the decoder
layer is causal self_attn → self_attn_layer_norm, encoder_attn (Q from the decoder, K and V from
the encoder's last hidden state, no mask) → encoder_attn_layer_norm, fc1/fc2 →
final_layer_norm; no final norm after either stack; every LayerNorm has ε = 1e-5.

BART is read only by `attn cross` (`models/encdec.py`); for the single-stack commands `config`
refuses it with a line that points there.
"""

from __future__ import annotations

import math

from attn_cli.models.config import ModelConfig
from attn_cli.models.families.hf_config import HFConfig, activation

NAMES = ("bart",)
PREFIXES = ("model.",)  # BartForConditionalGeneration keeps BartModel under model.
LAYER_KEY = r"^encoder\.layers\.(\d+)\."
DECODER_LAYER_KEY = r"^decoder\.layers\.(\d+)\."
LAYERS_FIELD = "encoder_layers"


def config(hf: HFConfig) -> ModelConfig:
    """The single-stack commands cannot show an encoder–decoder: say where to look instead."""
    folder = hf.where.parent
    raise hf.refuse(f"describes BART, an encoder–decoder: this command reads one stack; look at "
                    f"its encoder, decoder and cross-attention with attn cross SOURCE TARGET "
                    f"--model {folder}")


def configs(hf: HFConfig) -> tuple[ModelConfig, ModelConfig, int]:
    """(encoder config, decoder config, decoder start token id) of a BART config.json."""
    for key, bad, why in (("normalize_before", True, "pre-norm layers (mBART-style)"),
                          ("add_final_layer_norm", True, "a final layer norm (mBART-style)"),
                          ("normalize_embedding", False, "no layernorm_embedding"),
                          ("static_position_embeddings", True, "sinusoidal positions")):
        if hf.hf.get(key) is bad:
            raise hf.refuse(f"sets {key} {str(bad).lower()} ({why}); attn reads BART's own "
                            f"post-norm layers with learned positions")
    d = hf.int("d_model", default=1024)
    rows = hf.int("max_position_embeddings", default=1024)
    vocab = hf.int("vocab_size", default=50265)
    act = activation(hf, "activation_function", "gelu")
    stacks = []
    for side in ("encoder", "decoder"):
        nh = hf.int(f"{side}_attention_heads", default=16)
        if d % nh:
            raise hf.refuse(f"has d_model {d}, which {side}_attention_heads {nh} does not divide")
        stacks.append(ModelConfig(
            n_layers=hf.int(f"{side}_layers", default=12), n_heads=nh, d_model=d,
            d_ff=hf.int(f"{side}_ffn_dim", default=4096), causal=side == "decoder",
            positions="learned", n_positions=rows, position_offset=2, vocab_size=vocab,
            layer_norm_eps=1e-5, activation=act, post_norm=True, final_norm=False,
            embed_norm=True, family="bart", seed=None))
    start = hf.int("decoder_start_token_id", default=2, minimum=0)
    if start >= vocab:
        raise hf.refuse(f"has decoder_start_token_id {start}, outside the vocabulary of {vocab}")
    return stacks[0], stacks[1], start


def embed_scale(hf: HFConfig, d: int) -> float:
    return math.sqrt(d) if hf.bool("scale_embedding", False) else 1.0


def _linear(w, ours: str, theirs: str, shape: tuple[int, int], out: dict) -> None:
    out[ours + ".weight"] = w.get(theirs + ".weight", shape)
    out[ours + ".bias"] = w.get(theirs + ".bias", (shape[0],))


def _norm(w, ours: str, theirs: str, d: int, out: dict) -> None:
    out[ours + ".weight"] = w.get(theirs + ".weight", (d,))
    out[ours + ".bias"] = w.get(theirs + ".bias", (d,))


def convert_encdec(w, enc: ModelConfig, dec: ModelConfig, scale: float = 1.0) -> dict:
    """BART's names → encoder.* and decoder.* of `encdec.EncoderDecoder`."""
    out: dict = {}
    d = enc.d_model
    for side, cfg in (("encoder", enc), ("decoder", dec)):
        p, q = side + ".", side + "."
        ff = cfg.d_ff
        # each stack's embed_tokens is the shared table (tied); × √d_model when scale_embedding:
        # the same product transformers' BartScaledWordEmbedding takes, row by row
        table = w.get(q + "embed_tokens.weight", (cfg.vocab_size, d), alias="shared.weight")
        out[p + "wte.weight"] = table * scale if scale != 1.0 else table
        out[p + "wpe.weight"] = w.get(q + "embed_positions.weight",
                                      (cfg.n_positions + cfg.position_offset, d))
        _norm(w, p + "ln_emb", q + "layernorm_embedding", d, out)
        for i in range(cfg.n_layers):
            o, t = f"{p}h.{i}.", f"{q}layers.{i}."
            s = t + "self_attn."
            out[o + "attn.c_attn.weight"] = w.cat(
                [(s + f"{x}_proj.weight", (d, d)) for x in ("q", "k", "v")])
            out[o + "attn.c_attn.bias"] = w.cat(
                [(s + f"{x}_proj.bias", (d,)) for x in ("q", "k", "v")])
            _linear(w, o + "attn.c_proj", s + "out_proj", (d, d), out)
            _norm(w, o + "ln_1", t + "self_attn_layer_norm", d, out)
            if side == "decoder":
                c = t + "encoder_attn."
                _linear(w, o + "crossattn.c_q", c + "q_proj", (d, d), out)
                out[o + "crossattn.c_kv.weight"] = w.cat(
                    [(c + f"{x}_proj.weight", (d, d)) for x in ("k", "v")])
                out[o + "crossattn.c_kv.bias"] = w.cat(
                    [(c + f"{x}_proj.bias", (d,)) for x in ("k", "v")])
                _linear(w, o + "crossattn.c_proj", c + "out_proj", (d, d), out)
                _norm(w, o + "ln_x", t + "encoder_attn_layer_norm", d, out)
            _linear(w, o + "mlp.c_fc", t + "fc1", (ff, d), out)
            _linear(w, o + "mlp.c_proj", t + "fc2", (d, ff), out)
            _norm(w, o + "ln_2", t + "final_layer_norm", d, out)
    return out
