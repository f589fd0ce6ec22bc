"""The encoder–decoder of *Attention Is All You Need*, built from the one stack's pieces.

    encoder:  the one `Transformer`, bidirectional (causal=False): memory = its output
    decoder:  y = tok_emb(start, target ids) + pos   [→ LN_emb]
              per block, pre-norm (seeded):  y = y + SelfAttn(LN1(y))          causal
                                             y = y + CrossAttn(LNx(y), memory)  no mask
                                             y = y + MLP(LN2(y))
                         post-norm (BART):   y = LN1(y + SelfAttn(y))
                                             y = LNx(y + CrossAttn(y, memory))
                                             y = LN2(y + MLP(y))
              decoder embeddings = LN_f(y)   (or y itself where the family has no final norm)

Cross-attention is `attention.attend` as every other head is: its queries come from the
decoder's states (T_tgt × d), its keys and values from the encoder's output (T_src × d), and no
key is masked, so its weights are T_tgt × T_src. `DecoderBlock` is a `Block` (ln_1, attn,
ln_2, mlp: the same modules, the same self-attention) with `ln_x` and `crossattn` added.

Module names: encoder.* and decoder.* are the one stack's names (wte, wpe, ln_emb, h.N.ln_1,
h.N.attn.c_attn, …, ln_f); a decoder block adds h.N.ln_x and h.N.crossattn.c_q (Q from the
decoder), h.N.crossattn.c_kv (fused K, V from the encoder output) and h.N.crossattn.c_proj.

References: Vaswani et al. 2017 (figure 1); Lewis et al. 2019 (BART); transformers'
models/bart/modeling_bart.py for the post-norm decoder layer (self-attention, then
encoder_attn, then fc1/fc2, each followed by its LayerNorm).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from attn_cli.models.attention import attend
from attn_cli.models.config import ModelConfig
from attn_cli.models.transformer import Block, Forward, Transformer, norm


class CrossAttention(nn.Module):
    """softmax(Q·Kᵀ/√d_k)·V with Q from the decoder's states and K, V from the encoder's output."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        nh, kvh, hs = cfg.n_heads, cfg.kv_heads, cfg.d_head
        self.c_q = nn.Linear(cfg.d_model, nh * hs, bias=cfg.qkv_bias)  # Q from the decoder
        self.c_kv = nn.Linear(cfg.d_model, 2 * kvh * hs, bias=cfg.qkv_bias)  # K, V from memory
        self.c_proj = nn.Linear(nh * hs, cfg.d_model, bias=cfg.out_bias)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, keep: tuple[int, ...],
                keep_stages: bool):
        """x: (T_tgt, d_model) decoder states; memory: (T_src, d_model) the encoder output."""
        cfg = self.cfg
        T_q, T_k, nh, kvh, hs = x.shape[0], memory.shape[0], cfg.n_heads, cfg.kv_heads, cfg.d_head
        q = self.c_q(x).view(T_q, nh, hs).transpose(0, 1)  # (nh, T_tgt, hs)
        k, v = self.c_kv(memory).split([kvh * hs, kvh * hs], dim=-1)
        k, v = (t.view(T_k, kvh, hs).transpose(0, 1) for t in (k, v))  # (kvh, T_src, hs)
        # the one attention function; nothing is masked: every target token sees every source one
        z, stages = attend(q, k, v, False, keep_stages, scale=cfg.scale_scores)
        kept = {}
        if keep:
            idx = list(keep)
            kept = {name: t[idx] for name, t in stages.items()}
            if keep_stages:
                from attn_cli.models.attention import expand_kv

                kept.update(q=q[idx], k=expand_kv(k, nh)[idx], v=expand_kv(v, nh)[idx],
                            output=z[idx])
        y = self.c_proj(z.transpose(0, 1).reshape(T_q, nh * hs))
        return y, kept


class DecoderBlock(Block):
    """A `Block` (causal self-attention and MLP) with cross-attention between the two."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.ln_x = norm(cfg)
        self.crossattn = CrossAttention(cfg)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, keep_self: tuple[int, ...],
                keep_cross: tuple[int, ...], keep_stages: bool):
        post = self.cfg.post_norm
        h = x if post else self.ln_1(x)
        a, kept_self = self.attn(h, keep_self, keep_stages, None, None)
        if keep_stages and keep_self:
            kept_self["x"] = h
        x = self.ln_1(a + x) if post else x + a
        h = x if post else self.ln_x(x)
        c, kept_cross = self.crossattn(h, memory, keep_cross, keep_stages)
        if keep_stages and keep_cross:
            kept_cross["x"] = h
            kept_cross["memory"] = memory
        x = self.ln_x(c + x) if post else x + c
        x = self.ln_2(self.mlp(x) + x) if post else x + self.mlp(self.ln_2(x))
        return x, kept_self, kept_cross


class Decoder(Transformer):
    """The one stack's embeddings and final norm, with decoder blocks (causal, cross)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.h = nn.ModuleList(DecoderBlock(cfg) for _ in range(cfg.n_layers))

    @torch.inference_mode()
    def forward(self, ids: list[int], memory: torch.Tensor,
                keep_self: dict[int, tuple[int, ...]] | None = None,
                keep_cross: dict[int, tuple[int, ...]] | None = None,
                keep_stages: bool = False):
        keep_self, keep_cross = keep_self or {}, keep_cross or {}
        out, cross = Forward(), Forward()
        x = self.embed(ids)
        for layer, block in enumerate(self.h):
            hs = tuple(sorted(set(keep_self.get(layer, ()))))
            hc = tuple(sorted(set(keep_cross.get(layer, ()))))
            x, kept_self, kept_cross = block(x, memory, hs, hc, keep_stages)
            for heads, kept, into in ((hs, kept_self, out), (hc, kept_cross, cross)):
                for name, tensor in kept.items():
                    for i, head in enumerate(heads):
                        into.heads.setdefault((layer, head), {})[name] = \
                            tensor if name in ("x", "memory") else tensor[i]
            out.hidden.append(x)
        out.embeddings = self.ln_f(x) if self.ln_f is not None else x
        return out, cross


@dataclass
class EncDecForward:
    encoder: Forward
    decoder: Forward
    cross: Forward  # heads only: (layer, head) -> stages of the cross-attention


class EncoderDecoder(nn.Module):
    """An encoder (the one Transformer, bidirectional) and a decoder that reads its output."""

    def __init__(self, encoder: Transformer, decoder: Decoder, start_id: int | None = None):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.start_id = start_id  # the decoder start token (None: the encoding's end of text)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.inference_mode()
    def forward(self, source_ids: list[int], target_ids: list[int],
                keep_encoder: dict | None = None, keep_decoder: dict | None = None,
                keep_cross: dict | None = None, keep_stages: bool = False) -> EncDecForward:
        """target_ids are what the decoder reads: the start token first."""
        enc = self.encoder(source_ids, keep=keep_encoder, keep_stages=keep_stages)
        dec, cross = self.decoder(target_ids, enc.embeddings, keep_decoder, keep_cross,
                                  keep_stages)
        return EncDecForward(enc, dec, cross)


# --------------------------------------------------------------------------- seeded

def decoder_seed(seed: int) -> int:
    """The decoder's own generator stream: a hash of the seed, so the two stacks differ."""
    from attn_cli.models.seeded import _splitmix64
    import numpy as np

    return int(_splitmix64(np.array([seed ^ 0xDEC0DE], dtype=np.uint64))[0]) & 0xFFFFFFFF


def seeded(cfg: ModelConfig) -> EncoderDecoder:
    """Encoder and decoder whose every weight follows from cfg.seed.

    The encoder is exactly `models.seeded` of the bidirectional config (so it equals `attn
    inspect SOURCE --bidirectional`). The decoder draws its blocks from a second local
    generator (seeded with a hash of the seed) in the same way: Q scaled per head, query biases,
    and cross-attention drawn like self-attention. Token embeddings are the shared seeded table
    (like BART's shared embedding). No global RNG state is touched.
    """
    import dataclasses

    from attn_cli.models.seeded import Recipe, token_rows
    from attn_cli.models.seeded import seeded as seeded_stack

    encoder = seeded_stack(dataclasses.replace(cfg, causal=False))
    dec_cfg = dataclasses.replace(cfg, causal=True)
    with torch.random.fork_rng(devices=[]):  # nn.Linear's own init draws from the global RNG
        decoder = Decoder(dec_cfg)
    decoder.token_rows = token_rows(dec_cfg)
    recipe = Recipe(dec_cfg, decoder_seed(cfg.seed))
    with torch.no_grad():
        for block in decoder.h:
            recipe.self_attention(block.attn)
            wq, wk, wv, bq, bk, bv = recipe.qkv()  # cross-attention: drawn like self-attention
            block.crossattn.c_q.weight.copy_(wq)
            block.crossattn.c_q.bias.copy_(bq)
            block.crossattn.c_kv.weight.copy_(torch.cat([wk, wv]))
            block.crossattn.c_kv.bias.copy_(torch.cat([bk, bv]))
            recipe.projection(block.crossattn.c_proj)
            recipe.mlp(block.mlp)
            recipe.norms(block.ln_1, block.ln_x, block.ln_2)
        decoder.ln_f.weight.fill_(1.0)
        decoder.ln_f.bias.zero_()
    return EncoderDecoder(encoder, decoder.eval()).eval()


# --------------------------------------------------------------------------- loaded

def build(enc_cfg: ModelConfig, dec_cfg: ModelConfig, tensors: dict[str, torch.Tensor],
          start_id: int) -> EncoderDecoder:
    """An EncoderDecoder holding these tensors (our names: encoder.*, decoder.*; cfg.dtype),
    made on the meta device so no random init is spent on weights about to be replaced."""
    with torch.device("meta"):
        model = EncoderDecoder(Transformer(enc_cfg), Decoder(dec_cfg), start_id)
    model.load_state_dict(tensors, strict=True, assign=True)
    return model


def parameter_count(model: EncoderDecoder) -> int:
    return sum(p.numel() for p in model.parameters())



def load(spec: str, device: str = "cpu", dtype: str | None = None):
    """(EncoderDecoder in eval mode on `device`, tokenizer) of a BART folder or cached name.

    `dtype` (float32, bfloat16, float16) is what both stacks' weights are held and computed in
    (every softmax is float32); None: float32 on the CPU, the checkpoint's own dtype elsewhere.
    Checked as `checkpoint.load` checks a single stack: config values, both stacks' block
    counts and every tensor's name and shape from the headers before a weight is read, finite
    weights, the memory budget (in that dtype), the tokenizer against the embedding table.
    """
    import dataclasses
    import re
    import types

    from attn_cli import budget
    from attn_cli.errors import AttnError, ModelLoadError
    from attn_cli.models import checkpoint
    from attn_cli.models.families import HFConfig, bart, families
    from attn_cli.models.weights import _strip

    folder = checkpoint.resolve(spec)
    where = folder / "config.json"
    hf = checkpoint.read_config(folder)
    model_type = hf.get("model_type", "gpt2")
    if model_type not in bart.NAMES:
        shown = repr(model_type)[:80]
        kind = "a single-stack model" if model_type in families() else "not a family attn reads"
        raise ModelLoadError(
            f"{where} says model_type {shown}, {kind}: attn cross needs an encoder–decoder "
            f"({', '.join(bart.NAMES)}); look at this one with attn inspect --model {folder}")
    config = HFConfig(hf, where)
    try:
        enc, dec, start = bart.configs(config)
    except ModelLoadError:
        raise
    except AttnError as exc:
        raise ModelLoadError(f"{where} describes a model attn cannot build: {exc}") from None
    files = checkpoint.WeightFiles(folder)
    dtype = dtype or checkpoint.default_dtype(files, device)
    enc, dec = (dataclasses.replace(c, source=str(folder), seed=None, dtype=dtype)
                for c in (enc, dec))
    scale = bart.embed_scale(config, enc.d_model)
    for key, field_name, cfg in ((bart.LAYER_KEY, "encoder_layers", enc),
                                 (bart.DECODER_LAYER_KEY, "decoder_layers", dec)):
        pattern = re.compile(key)
        blocks = {int(m.group(1)) for k in files.shapes
                  if (m := pattern.match(_strip(k, bart.PREFIXES)))}
        n = max(blocks) + 1 if blocks else 0
        if n != cfg.n_layers:
            raise ModelLoadError(
                f"the checkpoint in {folder} has {n} {field_name.split('_')[0]} "
                f"block{'s' if n != 1 else ''} but config.json says {field_name} "
                f"{cfg.n_layers}: the weights and config.json do not belong together")
    tokenizer = checkpoint.load_tokenizer(folder)
    family = types.SimpleNamespace(PREFIXES=bart.PREFIXES,
                                   convert=lambda w, _cfg: bart.convert_encdec(w, enc, dec))
    checkpoint.Weights.dry_run(files, family, enc)
    for cfg in (enc, dec):
        budget.check_weights(cfg, device)
    tensors = bart.convert_encdec(checkpoint.Weights(files, family, enc), enc, dec, scale)
    model = build(enc, dec, tensors, start)
    if tokenizer.max_token_value >= enc.vocab_size:
        raise ModelLoadError(
            f"the tokenizer in {folder} has {tokenizer.max_token_value + 1} tokens but the "
            f"model's embedding table has only {enc.vocab_size} rows: the tokenizer files do "
            f"not belong to these weights")
    return model.to(device).eval(), tokenizer
