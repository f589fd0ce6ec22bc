"""The only attention in `attn`: softmax(QKᵀ·scale + M)·V, returning every stage.

Every family and every kind of attention goes through `attend`: multi-head or grouped-query
(keys and values with fewer heads, each shared by a group of query heads), causal or not, a
sliding window or not, scaled by 1/√d_k or not (GPT-Neo). Rotary positions (`rotate`) turn Q
and K before they get here, so the captured q and k are the vectors whose dot products are
the scores. The forward pass uses what `attend` returns; the CLI shows exactly that.

References: Vaswani et al. 2017; Su et al. 2021 (RoPE, "rotate half" layout as in GPT-NeoX and
transformers' `apply_rotary_pos_emb`); Ainslie et al. 2023 (grouped-query attention).
"""

from __future__ import annotations

import math

import torch

STAGES = ("x", "q", "k", "v", "scores", "scaled", "masked", "weights", "output")


def visible(T_q: int, T_k: int, causal: bool, window: int | None = None, q_offset: int = 0,
            device=None) -> torch.Tensor | None:
    """(T_q, T_k) bool: which keys each query sees, or None when it sees every key.

    Query i sits at position i + q_offset; it sees key j if j ≤ i (causal) and i − j < window.
    """
    if not causal and window is None:
        return None
    i = torch.arange(T_q, device=device)[:, None] + q_offset
    j = torch.arange(T_k, device=device)[None, :]
    seen = torch.ones(T_q, T_k, dtype=torch.bool, device=device)
    if causal:
        seen &= j <= i
    if window is not None:
        seen &= (i - j) < window
    return seen


def expand_kv(t: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(…, kv_heads, T, hs) -> (…, n_heads, T, hs): head h reads key/value head h // group."""
    kv = t.shape[-3]
    return t if kv == n_heads else t.repeat_interleave(n_heads // kv, dim=-3)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
           keep_stages: bool, *, window: int | None = None, scale: bool = True,
           q_offset: int = 0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """softmax(QKᵀ/√d_k + M)·V for q (…, nh, T_q, hs) and k, v (…, nh or kv_heads, T_k, hs);
    the leading dimensions (a training batch) are optional.

    Returns the output (…, nh, T_q, hs) and the stages: always "weights"; with keep_stages also
    "scores" (QKᵀ), "scaled" (÷√d_k, or the scores themselves when scale is False) and
    "masked" (−∞ where a key is hidden: after the query when causal, or outside the window).
    Scores are computed in the dtype of q and k (bfloat16 or float16 under --dtype); the
    softmax always in float32, and "weights" stays float32.
    """
    nh, T_q, hs = q.shape[-3:]
    k, v = expand_kv(k, nh), expand_kv(v, nh)
    stages = {}
    att = q @ k.transpose(-2, -1)  # (…, nh, T_q, T_k)
    # the same operations in place where no stage before the softmax is kept and no gradient
    # is wanted: two T×T buffers fewer to allocate (and fault in) per layer, the same bits
    in_place = not keep_stages and not torch.is_grad_enabled()
    if keep_stages:
        stages["scores"] = att
    if scale:
        att = att.div_(math.sqrt(hs)) if in_place else att / math.sqrt(hs)
    if keep_stages:
        stages["scaled"] = att
    seen = visible(T_q, k.shape[-2], causal, window, q_offset, q.device)
    if seen is not None:
        att = att.masked_fill_(~seen, float("-inf")) if in_place else \
            att.masked_fill(~seen, float("-inf"))
    if keep_stages:
        stages["masked"] = att
    # the softmax in float32 whatever the model's dtype (as transformers' eager Llama does);
    # the weights are kept in float32 and rounded to the model's dtype only to weigh V
    att = torch.softmax(att, dim=-1, dtype=torch.float32)
    stages["weights"] = att
    return att.to(v.dtype) @ v, stages


def rope_frequencies(rotary_dim: int, theta: float, scaling: dict | None = None) -> torch.Tensor:
    """The inverse frequencies θ^(−2i/d) of rotary positions, float32, as transformers makes
    them (`compute_default_rope_parameters`; Llama 3's `_compute_llama3_parameters` and
    "linear" scaling when the config asks). "factors" divides each frequency by its own
    factor, as llama.cpp does with a GGUF file's `rope_freqs` tensor (`ggml_rope_ext`)."""
    inv = 1.0 / (theta ** (torch.arange(0, rotary_dim, 2, dtype=torch.int64).float() / rotary_dim))
    kind = (scaling or {}).get("rope_type", "default")
    if kind == "linear":
        inv = inv / float(scaling["factor"])
    elif kind == "factors":
        inv = inv / torch.tensor(scaling["factors"], dtype=torch.float32)
    elif kind == "llama3":
        factor = float(scaling["factor"])
        low, high = float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
        old = float(scaling["original_max_position_embeddings"])
        low_wavelen, high_wavelen = old / low, old / high
        wavelen = 2 * math.pi / inv
        scaled = torch.where(wavelen > low_wavelen, inv / factor, inv)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
        inv = torch.where(medium, smoothed, scaled)
    return inv


def rope_cos_sin(positions: torch.Tensor, inv_freq: torch.Tensor):
    """cos and sin of position · frequency, each (T, rotary_dim), float32."""
    freqs = positions[:, None].float() * inv_freq[None, :].to(positions.device)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE on the first cos.shape[-1] dims of each head of x (heads, T, hs); the rest pass."""
    rd = cos.shape[-1]
    rot, rest = x[..., :rd], x[..., rd:]
    half = rd // 2
    turned = torch.cat((-rot[..., half:], rot[..., :half]), dim=-1)  # "rotate half"
    out = rot * cos + turned * sin
    return torch.cat((out, rest), dim=-1) if rest.shape[-1] else out
