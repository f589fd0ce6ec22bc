"""The seeded model: every weight follows from one seed, and is worth looking at.

Token embeddings are a counter-based hash of (seed, token id, dimension), so only the rows the
input uses are ever made and o200k's 200k-token vocabulary costs nothing. The other weights
come from a local `torch.Generator`; no global RNG state is touched.
"""

from __future__ import annotations

import math

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
