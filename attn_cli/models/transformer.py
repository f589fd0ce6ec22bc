"""The one Transformer stack of `attn`, read top to bottom; a ModelConfig switches it.

    x = tok_emb(ids) [+ pos(ids)] [+ type_emb] [→ LN_emb]
    for each block, pre-norm (GPT-2, Llama):  x = x + Attn(LN1(x));  x = x + MLP(LN2(x))
                    parallel (GPT-NeoX):      x = x + Attn(LN1(x)) + MLP(LN2(x))
                    post-norm (BERT):         x = LN1(x + Attn(x));  x = LN2(x + MLP(x))
    embeddings = LN_f(x)   (or x itself where the family has no final norm)

LN is LayerNorm or RMSNorm; positions are sinusoidal, learned (with an offset), rotary (on all
or part of each head, applied to Q and K inside attention) or none; attention is multi-head or
grouped-query with an optional window; the MLP is Linear–act–Linear or gated (SwiGLU). Module
names are GPT-2's (wte, wpe, h.N.ln_1, attn.c_attn, attn.c_proj, ln_2, mlp.c_fc, mlp.c_proj,
ln_f), whatever the family: a family's converter maps its checkpoint's names onto them.

Attention is `attention.attend`, the only one. On long inputs (more than EXPLICIT_UP_TO tokens)
heads nobody asked to see go through the fused `scaled_dot_product_attention`, which computes
the same thing without materialising a T×T matrix (the tests hold the two equal).

References: Vaswani et al. 2017; Radford et al. 2019 (GPT-2); nanoGPT's model.py for the shape
of this file; TransformerLens for one config serving many families.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from attn_cli.models.attention import (attend, expand_kv, rope_cos_sin, rope_frequencies, rotate,
                                       visible)
from attn_cli.models.config import ModelConfig

# Up to this many tokens every head goes through `attend`, kept or not, so a head's numbers do
# not depend on which other heads were asked for. Beyond it, heads nobody asked to see go
# through the fused kernel (no T×T matrix): the residual stream that later layers read may then
# differ in the last float32 bit from a run that kept every head.
EXPLICIT_UP_TO = 512


class RMSNorm(nn.Module):
    """x / √(mean(x²) + ε) · w, in float32 (transformers' LlamaRMSNorm)."""

    def __init__(self, d: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


def norm(cfg: ModelConfig) -> nn.Module:
    if cfg.norm == "rmsnorm":
        return RMSNorm(cfg.d_model, cfg.layer_norm_eps)
    return nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)


_ACT = {"gelu_tanh": lambda x: F.gelu(x, approximate="tanh"), "gelu": F.gelu,
        "silu": F.silu, "relu": F.relu}


class SelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        nh, kvh, hs = cfg.n_heads, cfg.kv_heads, cfg.d_head
        self.c_attn = nn.Linear(cfg.d_model, (nh + 2 * kvh) * hs, bias=cfg.qkv_bias)  # Q, K, V
        self.c_proj = nn.Linear(nh * hs, cfg.d_model, bias=cfg.out_bias)  # output projection

    def qkv(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None):
        """q (…, nh, T, hs) and k, v (…, kv_heads, T, hs) of x (…, T, d_model), rotary applied
        (the leading dimensions: a training batch, or none)."""
        cfg = self.cfg
        lead, nh, kvh, hs = x.shape[:-1], cfg.n_heads, cfg.kv_heads, cfg.d_head
        q, k, v = self.c_attn(x).split([nh * hs, kvh * hs, kvh * hs], dim=-1)
        q = q.view(*lead, nh, hs).transpose(-3, -2)
        k, v = (t.view(*lead, kvh, hs).transpose(-3, -2) for t in (k, v))
        if rope is not None:
            q, k = rotate(q, *rope), rotate(k, *rope)
        return q, k, v

    def forward(self, x: torch.Tensor, keep: tuple[int, ...], keep_stages: bool,
                rope: tuple[torch.Tensor, torch.Tensor] | None, window: int | None):
        """x: (T, d_model), or (batch, T, d_model) with keep empty (training). keep: the heads
        whose stages to return (may be empty)."""
        cfg = self.cfg
        T, nh, hs = x.shape[-2], cfg.n_heads, cfg.d_head
        q, k, v = self.qkv(x, rope)
        idx = list(keep)  # sorted, unique (Transformer.forward makes it so)
        kept = {}
        opts = dict(window=window, scale=cfg.scale_scores)
        if len(keep) == nh or T <= EXPLICIT_UP_TO:
            z, stages = attend(q, k, v, cfg.causal, keep_stages, **opts)
            if keep:
                kept = stages if len(keep) == nh else {n: t[idx] for n, t in stages.items()}
        else:
            z = torch.empty_like(q)
            rest = [h for h in range(nh) if h not in keep]
            if rest:
                kf, vf = expand_kv(k, nh), expand_kv(v, nh)
                seen = visible(T, T, cfg.causal, window, device=x.device) \
                    if window is not None else None
                # 4-D (batch of 1): on the CPU, 3-D input falls back to a path that builds T×T
                z[rest] = F.scaled_dot_product_attention(
                    q[rest][None], kf[rest][None], vf[rest][None], attn_mask=seen,
                    is_causal=cfg.causal and seen is None,
                    scale=None if cfg.scale_scores else 1.0)[0]
            if keep:
                sub_k = expand_kv(k, nh)[idx]
                sub_v = expand_kv(v, nh)[idx]
                z[idx], kept = attend(q[idx], sub_k, sub_v, cfg.causal, keep_stages, **opts)
        if keep_stages and keep:
            kept.update(q=q[idx], k=expand_kv(k, nh)[idx], v=expand_kv(v, nh)[idx],
                        output=z[idx])
        y = self.c_proj(z.transpose(-3, -2).reshape(*x.shape[:-1], nh * hs))
        return y, kept

    def step(self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor], start: int,
             keep: tuple[int, ...], rope: tuple[torch.Tensor, torch.Tensor] | None,
             window: int | None):
        """forward for tokens at positions start … start+T−1 with a KV cache: their keys and
        values are written into `past` ((kv_heads, capacity, hs) each, positions 0 … start−1
        already there) and the queries read keys 0 … start+T−1 through the same `attend`, with
        q_offset = start. Returns the output and {"weights": (len(keep), T, start+T)}."""
        cfg = self.cfg
        T, nh, hs = x.shape[0], cfg.n_heads, cfg.d_head
        q, k, v = self.qkv(x, rope)
        keys, values = past
        keys[:, start:start + T] = k
        values[:, start:start + T] = v
        k, v = keys[:, :start + T], values[:, :start + T]  # every position so far
        opts = dict(window=window, scale=cfg.scale_scores)
        idx = list(keep)
        if T <= EXPLICIT_UP_TO:
            z, stages = attend(q, k, v, cfg.causal, False, q_offset=start, **opts)
            kept = {"weights": stages["weights"][idx]} if keep else {}
        else:  # a long prompt: the fused kernel, and the kept heads' last row through attend
            seen = visible(T, start + T, cfg.causal, window, start, x.device)
            z = F.scaled_dot_product_attention(
                q[None], expand_kv(k, nh)[None], expand_kv(v, nh)[None], attn_mask=seen,
                scale=None if cfg.scale_scores else 1.0)[0]
            kept = {}
            if keep:
                _, stages = attend(q[idx, -1:], expand_kv(k, nh)[idx], expand_kv(v, nh)[idx],
                                   cfg.causal, False, q_offset=start + T - 1, **opts)
                kept = {"weights": stages["weights"]}
        y = self.c_proj(z.transpose(0, 1).reshape(T, nh * hs))
        return y, kept


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gated = cfg.gated_mlp
        self.act = _ACT[cfg.activation]
        width = 2 * cfg.d_ff if cfg.gated_mlp else cfg.d_ff  # gated: [gate; up]
        self.c_fc = nn.Linear(cfg.d_model, width, bias=cfg.mlp_bias)
        self.c_proj = nn.Linear(cfg.d_ff, cfg.d_model, bias=cfg.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c_fc(x)
        if self.gated:
            gate, up = h.chunk(2, dim=-1)
            return self.c_proj(self.act(gate) * up)
        return self.c_proj(self.act(h))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.ln_1 = norm(cfg)
        self.attn = SelfAttention(cfg)
        self.ln_2 = norm(cfg)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, keep: tuple[int, ...], keep_stages: bool,
                rope=None, window: int | None = None):
        post = self.cfg.post_norm
        h = x if post else self.ln_1(x)  # what attention reads: stage "x"
        a, kept = self.attn(h, keep, keep_stages, rope, window)
        if keep_stages and keep:
            kept["x"] = h
        return self.residual(x, a), kept

    def residual(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """The block's output from its input x and its attention output a: post-norm,
        parallel or sequential, as the config says."""
        if self.cfg.post_norm:
            x = self.ln_1(a + x)
            return self.ln_2(self.mlp(x) + x)
        if self.cfg.parallel_residual:
            return self.mlp(self.ln_2(x)) + a + x
        x = x + a
        return x + self.mlp(self.ln_2(x))

    def step(self, x: torch.Tensor, past, start: int, keep: tuple[int, ...], rope=None,
             window: int | None = None):
        """forward with a KV cache (SelfAttention.step): the same norms and residuals."""
        post = self.cfg.post_norm
        h = x if post else self.ln_1(x)
        a, kept = self.attn.step(h, past, start, keep, rope, window)
        return self.residual(x, a), kept


@dataclass
class Forward:
    """What one forward pass leaves behind: tensors on the model's device."""

    heads: dict[tuple[int, int], dict[str, torch.Tensor]] = field(default_factory=dict)
    hidden: list[torch.Tensor] = field(default_factory=list)  # after each block, (T, d_model)
    embeddings: torch.Tensor | None = None  # the final norm of the last hidden state


@dataclass
class KVCache:
    """Keys (rotary applied) and values of every position read so far, per layer, in buffers
    of a fixed capacity: generating N tokens costs N one-token steps, not N full passes."""

    keys: list[torch.Tensor]  # per layer (kv_heads, capacity, d_head)
    values: list[torch.Tensor]
    length: int = 0  # positions filled

    @property
    def capacity(self) -> int:
        return self.keys[0].shape[1] if self.keys else 0


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        # Loaded weights bring a token table; the seeded model computes rows on demand: whoever
        # builds a stack without a table gives it token_rows(ids) -> (T, d_model) float32 rows.
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model) if cfg.vocab_size else None
        self.token_rows: Callable[[list[int]], np.ndarray] | None = None
        self.wpe = nn.Embedding(cfg.n_positions + cfg.position_offset, cfg.d_model) \
            if cfg.positions == "learned" else None
        self.wtt = nn.Embedding(cfg.token_types, cfg.d_model) if cfg.token_types else None
        self.ln_emb = norm(cfg) if cfg.embed_norm else None
        self.h = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = norm(cfg) if cfg.final_norm else None
        # An untied LM head (checkpoint.build attaches one where the checkpoint has it);
        # otherwise the LM head is the token embedding (cfg.tie_embeddings).
        self.lm_head: nn.Linear | None = None
        # Streamed weights (checkpoint.load): block i's tensors, read when it runs
        self.block_source: Callable[[int], dict[str, torch.Tensor]] | None = None
        # The check of the streamed blocks' values, while it has not been made (see
        # stream_blocks)
        self.unchecked: Callable[[], None] | None = None

    def stream_blocks(self, source: Callable[[int], dict[str, torch.Tensor]],
                      check: Callable[[], None] | None = None) -> None:
        """Hold no block's weights but while it runs: source(i) gives block i's tensors
        (names as in the block's state dict) each time; the blocks stay on the meta device
        until then, and go back to it after. For a model that is run once.

        check: checks every block's values (raises if one is not finite). It is made before
        the first block is read, unless a caller takes it first (model.unchecked) to make it
        itself before anything it shows (capture.stream: beside the forward pass)."""
        self.block_source = source
        self.unchecked = check

    @contextmanager
    def _resident(self, layer: int):
        """Block `layer`'s weights in memory while the with-body runs (streamed: read now and
        let go after; otherwise they always are)."""
        if self.block_source is None:
            yield
            return
        if self.unchecked is not None:
            check, self.unchecked = self.unchecked, None
            check()
        block = self.h[layer]
        block.load_state_dict(self.block_source(layer), strict=True, assign=True)
        try:
            yield
        finally:
            block.to("meta")

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The weights' dtype, which the computation follows (cfg.dtype)."""
        return next(self.parameters()).dtype

    def position_ids(self, ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Row of the position table for each token: start, start + 1, … plus the family's
        offset; with a padding index (RoBERTa, an encoder: start is 0), pad tokens take that
        row and the others count past it."""
        cfg = self.cfg
        if cfg.pad_id is None:
            return torch.arange(start, start + ids.shape[-1], device=ids.device) \
                + cfg.position_offset
        real = (ids != cfg.pad_id).long()
        return torch.cumsum(real, -1) * real + cfg.pad_id

    def embed(self, ids: list[int] | torch.Tensor, start: int = 0) -> torch.Tensor:
        """Token (+ type) (+ position) embeddings of tokens at positions start … start+T−1
        (start > 0: a causal stack's next tokens, read through the KV cache). ids may be a
        (batch, T) tensor where the model has a token table (training)."""
        T, cfg = (ids.shape[-1] if torch.is_tensor(ids) else len(ids)), self.cfg
        id_t = ids if torch.is_tensor(ids) else torch.tensor(ids, device=self.device)
        if self.wte is not None:
            x = self.wte(id_t)
        else:
            if self.token_rows is None:
                raise TypeError("a stack without a token table needs token_rows (models.seeded)")
            x = torch.from_numpy(self.token_rows(ids))
            x = x.to(self.device, self.dtype)
        if self.wtt is not None:  # every token is of type 0: one segment
            x = x + self.wtt(torch.zeros_like(id_t))
        if self.wpe is not None:
            x = x + self.wpe(self.position_ids(id_t, start))
        elif cfg.positions == "sinusoidal":
            x = x + sinusoidal_rows(start, T, cfg.d_model).to(self.device, x.dtype)
        if self.ln_emb is not None:
            x = self.ln_emb(x)
        return x

    def rope(self, T: int, start: int = 0):
        """cos and sin of positions start … start+T−1 for rotary families, else None: computed
        in float32, then rounded to the model's dtype (as transformers' rotary embedding)."""
        if not self.cfg.rotary:
            return None
        scaling = dict(self.cfg.rope_scaling) or None
        inv = rope_frequencies(self.cfg.rotary, self.cfg.rope_theta, scaling)
        cos, sin = rope_cos_sin(torch.arange(start, start + T, device=self.device), inv)
        return cos.to(self.dtype), sin.to(self.dtype)

    @torch.inference_mode()
    def layers(self, ids: list[int], keep: dict[int, tuple[int, ...]] | None = None,
               keep_stages: bool = False) -> Iterator[tuple[int, dict, torch.Tensor]]:
        """The forward pass one block at a time: yields (layer, {head: {stage: tensor}}, x),
        x being the residual stream after the block, as soon as the block has run. keep maps
        layer -> heads whose attention to capture; other heads are not kept."""
        keep = keep or {}
        x = self.embed(ids)
        rope = self.rope(len(ids))
        for layer, block in enumerate(self.h):
            heads = tuple(sorted(set(keep.get(layer, ()))))  # kept stages come in head order
            with self._resident(layer):
                x, kept = block(x, heads, keep_stages, rope, self.cfg.window(layer))
            yield layer, {head: {name: tensor if name == "x" else tensor[i]
                                 for name, tensor in kept.items()}
                          for i, head in enumerate(heads)}, x

    @torch.inference_mode()
    def final(self, x: torch.Tensor) -> torch.Tensor:
        """The contextual embeddings: the final norm of the last hidden state (or itself)."""
        return self.ln_f(x) if self.ln_f is not None else x

    def forward(self, ids: list[int], keep: dict[int, tuple[int, ...]] | None = None,
                keep_stages: bool = False) -> Forward:
        """Every block at once (`layers`, collected)."""
        out = Forward()
        for layer, heads, x in self.layers(ids, keep, keep_stages):
            out.heads.update({(layer, head): stages for head, stages in heads.items()})
            out.hidden.append(x)
        out.embeddings = self.final(x)
        return out

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        """Next-token logits (batch, T, vocab) of id rows (batch, T), with gradients: what
        `attn train` optimises. The same embed, blocks and final norm as forward(), keeping
        no head, and the LM head (tied to the token table unless the model has its own)."""
        x = self.embed(ids)
        rope = self.rope(ids.shape[-1])
        for layer, block in enumerate(self.h):
            x, _ = block(x, (), False, rope, self.cfg.window(layer))
        if self.ln_f is not None:
            x = self.ln_f(x)
        head = self.lm_head.weight if self.lm_head is not None else self.wte.weight
        return x @ head.T

    @torch.inference_mode()
    def new_cache(self, capacity: int) -> KVCache:
        """An empty KV cache for up to `capacity` positions."""
        cfg = self.cfg
        shape = (cfg.kv_heads, capacity, cfg.d_head)
        p = next(self.parameters())
        make = lambda: torch.empty(shape, dtype=p.dtype, device=p.device)  # noqa: E731
        return KVCache([make() for _ in self.h], [make() for _ in self.h])

    @torch.inference_mode()
    def step(self, ids: list[int], cache: KVCache, keep: dict[int, tuple[int, ...]] | None = None
             ) -> Forward:
        """forward() for the next tokens, reading and extending the KV cache: the tokens sit at
        positions cache.length …; heads[(layer, head)]["weights"] is (T, cache.length + T)."""
        keep = keep or {}
        start, T = cache.length, len(ids)
        if start + T > cache.capacity:
            raise ValueError(f"KV cache of {cache.capacity} positions cannot take {start + T}")
        out = Forward()
        x = self.embed(ids, start)
        rope = self.rope(T, start)
        for layer, block in enumerate(self.h):
            heads = tuple(sorted(set(keep.get(layer, ()))))
            past = (cache.keys[layer], cache.values[layer])
            x, kept = block.step(x, past, start, heads, rope, self.cfg.window(layer))
            for name, tensor in kept.items():
                for i, head in enumerate(heads):
                    out.heads.setdefault((layer, head), {})[name] = tensor[i]
            out.hidden.append(x)
        cache.length = start + T
        out.embeddings = self.final(x)
        return out

def sinusoidal_positions(T: int, d_model: int) -> torch.Tensor:
    """PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(p / 10000^(2i/d)); (T, d_model)."""
    pos = torch.arange(T, dtype=torch.float64)[:, None]
    inv = 10000.0 ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    pe = torch.zeros(T, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos * inv)
    pe[:, 1::2] = torch.cos(pos * inv)[:, : d_model // 2]
    return pe.float()



def sinusoidal_rows(start: int, T: int, d_model: int) -> torch.Tensor:
    """Rows start … start+T−1 of sinusoidal_positions, computed alone (the same elementwise
    float64 operations, so the same bits): a cached step needs only its own position."""
    pos = torch.arange(start, start + T, dtype=torch.float64)[:, None]
    inv = 10000.0 ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    pe = torch.zeros(T, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos * inv)
    pe[:, 1::2] = torch.cos(pos * inv)[:, : d_model // 2]
    return pe.float()

def parameter_count(model: Transformer) -> int:
    return sum(p.numel() for p in model.parameters())


def describe(model: Transformer) -> dict:
    """The architecture as plain data: config, parameter count, every weight's shape (a
    checkpoint's under its own names, with the dtype stored and whether attn reads it)."""
    weights = getattr(model, "stored_weights", None) or \
        [{"name": name, "shape": list(p.shape)} for name, p in model.named_parameters()]
    out = {"model": model.cfg.to_dict(), "parameters": parameter_count(model),
           "weights": weights}
    if model.wte is None:
        out["token_embeddings"] = (
            "computed on demand from (seed, token id): no vocabulary-sized table is built")
    return out
