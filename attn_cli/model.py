"""The Transformer that `attn` looks inside: a GPT-2-style pre-LN stack, read top to bottom.

    x = tok_emb(ids) + pos(T)
    for each block:  x = x + Attn(LN1(x));  x = x + MLP(LN2(x))
    embeddings = LN_f(x)

Attention is the one function `attend` below: softmax(QKᵀ/√d_k + mask)·V, returning every
stage. The forward pass calls it, and the CLI shows exactly what it computed. On long inputs
(more than EXPLICIT_UP_TO tokens) heads nobody asked to see go through the fused
`torch.nn.functional.scaled_dot_product_attention`, which computes the same thing without
materialising a T×T matrix (the tests hold the two equal).

References: Vaswani et al. 2017 (attention, sinusoidal positions); Radford et al. 2019 (GPT-2,
pre-LN); nanoGPT's model.py for the shape of this file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from attn_cli.config import ModelConfig

# Up to this many tokens every head goes through `attend`, kept or not, so a head's numbers do
# not depend on which other heads were asked for. Beyond it, heads nobody asked to see go
# through the fused kernel (no T×T matrix): the residual stream that later layers read may then
# differ in the last float32 bit from a run that kept every head.
EXPLICIT_UP_TO = 512

STAGES = ("x", "q", "k", "v", "scores", "scaled", "masked", "weights", "output")


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
           keep_stages: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """softmax(QKᵀ/√d_k + mask)·V for q, k, v of shape (nh, T, hs).

    Returns the output (nh, T, hs) and the stages: always "weights"; with keep_stages also
    "scores" (QKᵀ), "scaled" (÷√d_k) and "masked" (−∞ above the diagonal when causal).
    """
    T, hs = q.shape[-2], q.shape[-1]
    stages = {}
    att = q @ k.transpose(-2, -1)  # (nh, T, T)
    if keep_stages:
        stages["scores"] = att
    att = att / math.sqrt(hs)
    if keep_stages:
        stages["scaled"] = att
    if causal:
        future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu_(1)
        att = att.masked_fill(future, float("-inf"))
    if keep_stages:
        stages["masked"] = att
    att = torch.softmax(att, dim=-1)
    stages["weights"] = att
    return att @ v, stages


class SelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.c_attn = nn.Linear(cfg.d_model, 3 * cfg.d_model)  # Q, K, V projections
        self.c_proj = nn.Linear(cfg.d_model, cfg.d_model)  # output projection

    def forward(self, x: torch.Tensor, keep: tuple[int, ...], keep_stages: bool):
        """x: (T, d_model). keep: the heads whose stages to return (may be empty)."""
        T, nh, hs = x.shape[0], self.cfg.n_heads, self.cfg.d_head
        q, k, v = self.c_attn(x).split(self.cfg.d_model, dim=-1)
        q, k, v = (t.view(T, nh, hs).transpose(0, 1) for t in (q, k, v))  # (nh, T, hs)
        idx = list(keep)  # sorted, unique (Transformer.forward makes it so)
        kept = {}
        if len(keep) == nh or T <= EXPLICIT_UP_TO:
            z, stages = attend(q, k, v, self.cfg.causal, keep_stages)
            if keep:
                kept = stages if len(keep) == nh else {n: t[idx] for n, t in stages.items()}
        else:
            z = torch.empty_like(q)
            rest = [h for h in range(nh) if h not in keep]
            if rest:
                # 4-D (batch of 1): on the CPU, 3-D input falls back to a path that builds T×T
                z[rest] = F.scaled_dot_product_attention(
                    q[rest][None], k[rest][None], v[rest][None], is_causal=self.cfg.causal)[0]
            if keep:
                z[idx], kept = attend(q[idx], k[idx], v[idx], self.cfg.causal, keep_stages)
        if keep_stages and keep:
            kept.update(q=q[idx], k=k[idx], v=v[idx], output=z[idx])
        y = self.c_proj(z.transpose(0, 1).reshape(T, self.cfg.d_model))
        return y, kept


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.d_model, cfg.d_ff)
        self.c_proj = nn.Linear(cfg.d_ff, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # GPT-2's GELU is the tanh approximation ("gelu_new").
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.attn = SelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, keep: tuple[int, ...], keep_stages: bool):
        h = self.ln_1(x)
        a, kept = self.attn(h, keep, keep_stages)
        if keep_stages and keep:
            kept["x"] = h
        x = x + a
        x = x + self.mlp(self.ln_2(x))
        return x, kept


@dataclass
class Forward:
    """What one forward pass leaves behind: tensors on the model's device."""

    heads: dict[tuple[int, int], dict[str, torch.Tensor]] = field(default_factory=dict)
    hidden: list[torch.Tensor] = field(default_factory=list)  # after each block, (T, d_model)
    embeddings: torch.Tensor | None = None  # LN_f of the last hidden state


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        # Loaded weights bring a token table; the seeded model computes rows on demand.
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model) if cfg.vocab_size else None
        self.wpe = nn.Embedding(cfg.n_positions, cfg.d_model) \
            if cfg.positions == "learned" else None
        self.h = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)

    @property
    def device(self) -> torch.device:
        return self.ln_f.weight.device

    def embed(self, ids: list[int]) -> torch.Tensor:
        T = len(ids)
        if self.wte is not None:
            tok = self.wte(torch.tensor(ids, device=self.device))
        else:
            tok = torch.from_numpy(seeded_token_embeddings(ids, self.cfg.seed, self.cfg.d_model))
            tok = tok.to(self.device)
        if self.wpe is not None:
            pos = self.wpe(torch.arange(T, device=self.device))
        else:
            pos = sinusoidal_positions(T, self.cfg.d_model).to(self.device)
        return tok + pos

    @torch.inference_mode()
    def forward(self, ids: list[int], keep: dict[int, tuple[int, ...]] | None = None,
                keep_stages: bool = False) -> Forward:
        """keep maps layer -> heads whose attention to capture; other heads are not kept."""
        keep = keep or {}
        out = Forward()
        x = self.embed(ids)
        for layer, block in enumerate(self.h):
            heads = tuple(sorted(set(keep.get(layer, ()))))  # kept stages come in head order
            x, kept = block(x, heads, keep_stages)
            for name, tensor in kept.items():
                for i, head in enumerate(heads):
                    out.heads.setdefault((layer, head), {})[name] = tensor if name == "x" \
                        else tensor[i]
            out.hidden.append(x)
        out.embeddings = self.ln_f(x)
        return out


def sinusoidal_positions(T: int, d_model: int) -> torch.Tensor:
    """PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(p / 10000^(2i/d)); (T, d_model)."""
    pos = torch.arange(T, dtype=torch.float64)[:, None]
    inv = 10000.0 ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    pe = torch.zeros(T, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos * inv)
    pe[:, 1::2] = torch.cos(pos * inv)[:, : d_model // 2]
    return pe.float()


_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A counter-based 64-bit hash (Steele et al. 2014): same input, same bits, anywhere."""
    with np.errstate(over="ignore"):
        z = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return z ^ (z >> np.uint64(31))


def seeded_token_embeddings(ids: list[int], seed: int, d_model: int) -> np.ndarray:
    """Row `id` of a virtual (vocab, d_model) table, uniform with mean 0 and variance 1.

    Each entry is a hash of (seed, id, dimension), so only the rows the input needs are made
    and the cost does not grow with the vocabulary. Exact integer and float64 arithmetic:
    bit-identical on every machine.
    """
    ids_arr = np.asarray(ids, dtype=np.uint64)[:, None]
    dims = np.arange(d_model, dtype=np.uint64)[None, :]
    base = _splitmix64(np.array([seed], dtype=np.uint64))
    z = _splitmix64(_splitmix64(base ^ ids_arr) ^ dims)
    u = (z >> np.uint64(11)).astype(np.float64) * 2.0**-53  # [0, 1)
    return ((2.0 * u - 1.0) * math.sqrt(3.0)).astype(np.float32)


def seeded(cfg: ModelConfig) -> Transformer:
    """A Transformer whose every weight follows from cfg.seed, scaled to be worth looking at.

    GPT-2's own init (std 0.02) gives near-uniform attention. Here Q and K are scaled so that
    scores have a spread of a few units, each head gets its own sharpness, and query biases
    give some heads a preference for particular keys: heads that differ from each other and
    are neither uniform nor one-hot. A local generator; no global RNG state is touched.
    """
    with torch.random.fork_rng(devices=[]):  # nn.Linear's own init draws from the global RNG
        model = Transformer(cfg)
    g = torch.Generator().manual_seed(cfg.seed)
    d, nh, hs = cfg.d_model, cfg.n_heads, cfg.d_head

    def normal(*shape: int, std: float) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * std

    with torch.no_grad():
        for block in model.h:
            sharp = 0.6 + 1.6 * torch.rand(nh, generator=g)  # per-head score scale
            wq = normal(d, d, std=1.0 / math.sqrt(d)) * sharp.repeat_interleave(hs)[:, None]
            wk = normal(d, d, std=1.0 / math.sqrt(d))
            wv = normal(d, d, std=1.0 / math.sqrt(d))
            block.attn.c_attn.weight.copy_(torch.cat([wq, wk, wv]))
            block.attn.c_attn.bias.copy_(torch.cat([
                normal(d, std=0.5), torch.zeros(d), normal(d, std=0.1)]))
            block.attn.c_proj.weight.copy_(normal(d, d, std=1.0 / math.sqrt(d)))
            block.attn.c_proj.bias.zero_()
            block.mlp.c_fc.weight.copy_(normal(cfg.d_ff, d, std=1.0 / math.sqrt(d)))
            block.mlp.c_fc.bias.copy_(normal(cfg.d_ff, std=0.1))
            block.mlp.c_proj.weight.copy_(normal(d, cfg.d_ff, std=0.5 / math.sqrt(cfg.d_ff)))
            block.mlp.c_proj.bias.zero_()
            for ln in (block.ln_1, block.ln_2):
                ln.weight.copy_(1.0 + normal(d, std=0.1))
                ln.bias.copy_(normal(d, std=0.1))
        model.ln_f.weight.fill_(1.0)
        model.ln_f.bias.zero_()
    return model.eval()


def parameter_count(model: Transformer) -> int:
    return sum(p.numel() for p in model.parameters())


def describe(model: Transformer) -> dict:
    """The architecture as plain data: config, parameter count, every weight's shape."""
    weights = [{"name": name, "shape": list(p.shape)} for name, p in model.named_parameters()]
    out = {"model": model.cfg.to_dict(), "parameters": parameter_count(model),
           "weights": weights}
    if model.wte is None:
        out["token_embeddings"] = (
            "computed on demand from (seed, token id): no vocabulary-sized table is built")
    return out
