"""The seeded model: every weight follows from one seed, and is worth looking at.

Token embeddings are a counter-based hash of (seed, token id, dimension), so only the rows the
input uses are ever made and o200k's 200k-token vocabulary costs nothing. The other weights
come from a local `torch.Generator`; no global RNG state is touched.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import torch

from attn_cli.models.config import ModelConfig
from attn_cli.models.transformer import Transformer


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



def seeded_embedding_rows(start: int, stop: int, seed: int, d_model: int) -> np.ndarray:
    """Rows start … stop−1 of the same virtual table, bit for bit, made in place: what the
    tied LM head reads block by block (the whole vocabulary once per predicted position)."""
    u64 = np.uint64
    base = _splitmix64(np.array([seed], dtype=u64))
    z = _splitmix64(base ^ np.arange(start, stop, dtype=u64))[:, None] \
        ^ np.arange(d_model, dtype=u64)[None, :]
    tmp = np.empty_like(z)
    with np.errstate(over="ignore"):  # _splitmix64, one buffer at a time
        np.add(z, u64(0x9E3779B97F4A7C15), out=z)
        for shift, mult in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
            np.right_shift(z, u64(shift), out=tmp)
            np.bitwise_xor(z, tmp, out=z)
            np.multiply(z, u64(mult), out=z)
        np.right_shift(z, u64(31), out=tmp)
        np.bitwise_xor(z, tmp, out=z)
    np.right_shift(z, u64(11), out=z)
    u = z.astype(np.float64)
    u *= 2.0**-53  # the same float64 operations, in the same order, as above
    u *= 2.0
    u -= 1.0
    u *= math.sqrt(3.0)
    return u.astype(np.float32)

def token_rows(cfg: ModelConfig) -> Callable[[list[int]], np.ndarray]:
    """The seeded token table of cfg.seed, as the stack reads it: ids -> (T, d_model) rows."""
    return functools.partial(seeded_token_embeddings, seed=cfg.seed, d_model=cfg.d_model)


class Recipe:
    """The seeded draws of one stack's blocks, from one local generator, in a fixed order: what
    makes every head differ (Q scaled per head, query biases) and stay worth looking at. The
    seeded decoder (models/encdec.py) draws its blocks with the same recipe."""

    def __init__(self, cfg: ModelConfig, seed: int):
        self.cfg, self.g = cfg, torch.Generator().manual_seed(seed)

    def normal(self, *shape: int, std: float) -> torch.Tensor:
        return torch.randn(*shape, generator=self.g) * std

    def qkv(self) -> tuple[torch.Tensor, ...]:
        """wq, wk, wv, bq, bk, bv of one attention: Q scaled per head, K unbiased."""
        d, nh, hs = self.cfg.d_model, self.cfg.n_heads, self.cfg.d_head
        sharp = 0.6 + 1.6 * torch.rand(nh, generator=self.g)  # per-head score scale
        wq = self.normal(d, d, std=1.0 / math.sqrt(d)) * sharp.repeat_interleave(hs)[:, None]
        wk = self.normal(d, d, std=1.0 / math.sqrt(d))
        wv = self.normal(d, d, std=1.0 / math.sqrt(d))
        bq, bv = self.normal(d, std=0.5), self.normal(d, std=0.1)
        return wq, wk, wv, bq, torch.zeros(d), bv

    def projection(self, linear) -> None:
        """An attention's output projection: drawn weights, no bias."""
        d = self.cfg.d_model
        linear.weight.copy_(self.normal(d, d, std=1.0 / math.sqrt(d)))
        linear.bias.zero_()

    def self_attention(self, attn) -> None:
        wq, wk, wv, bq, bk, bv = self.qkv()
        attn.c_attn.weight.copy_(torch.cat([wq, wk, wv]))
        attn.c_attn.bias.copy_(torch.cat([bq, bk, bv]))
        self.projection(attn.c_proj)

    def mlp(self, mlp) -> None:
        d, ff = self.cfg.d_model, self.cfg.d_ff
        mlp.c_fc.weight.copy_(self.normal(ff, d, std=1.0 / math.sqrt(d)))
        mlp.c_fc.bias.copy_(self.normal(ff, std=0.1))
        mlp.c_proj.weight.copy_(self.normal(d, ff, std=0.5 / math.sqrt(ff)))
        mlp.c_proj.bias.zero_()

    def norms(self, *norms) -> None:
        d = self.cfg.d_model
        for ln in norms:
            ln.weight.copy_(1.0 + self.normal(d, std=0.1))
            ln.bias.copy_(self.normal(d, std=0.1))


def seeded(cfg: ModelConfig) -> Transformer:
    """A Transformer whose every weight follows from cfg.seed, scaled to be worth looking at.

    GPT-2's own init (std 0.02) gives near-uniform attention. Here Q and K are scaled so that
    scores have a spread of a few units, each head gets its own sharpness, and query biases
    give some heads a preference for particular keys: heads that differ from each other and
    are neither uniform nor one-hot. A local generator; no global RNG state is touched.
    """
    with torch.random.fork_rng(devices=[]):  # nn.Linear's own init draws from the global RNG
        model = Transformer(cfg)
    model.token_rows = token_rows(cfg)
    recipe = Recipe(cfg, cfg.seed)
    with torch.no_grad():
        for block in model.h:
            recipe.self_attention(block.attn)
            recipe.mlp(block.mlp)
            recipe.norms(block.ln_1, block.ln_2)
        model.ln_f.weight.fill_(1.0)
        model.ln_f.bias.zero_()
    return model.eval()
