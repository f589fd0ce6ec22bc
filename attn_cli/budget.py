"""Memory is budgeted before it is allocated (SPEC §4).

Every size a user or a config.json can set — layers, widths, the vocabulary, the text's length,
`--repeat` — is turned into an estimate of the bytes a command will hold at its peak (the
weights in their --dtype, the matrices it keeps, the activations of one block), and compared
with the memory this machine has free before anything is built (a GPU's own free memory for
the weights under --device cuda). A refusal is one line with the estimate and a way out.
`ATTN_MEMORY_LIMIT` (bytes, or with K/M/G) caps the budget further, e.g. for a shared machine.
No torch here (except to ask a GPU what it has free): the estimate is arithmetic on the config.
"""

from __future__ import annotations

import os
import re

from attn_cli.errors import ConfigError

FLOAT = 4  # bytes: the matrices attn keeps and hands on are float32 whatever the --dtype
ITEMSIZE = {"float32": 4, "bfloat16": 2, "float16": 2}  # bytes per weight, by --dtype
HEADROOM = 0.8  # of the memory available: the interpreter, torch and the output need the rest


def human(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n:.3g} PB"


def _parse_size(text: str) -> int | None:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", text.lower())
    if not m:
        return None
    scale = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}[m.group(2)]
    return int(float(m.group(1)) * scale)


def available() -> int:
    """Bytes this process may still allocate: free memory, the cgroup's limit, ATTN_MEMORY_LIMIT."""
    limits = []
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    for cur, top in (("/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory.max"),
                     ("/sys/fs/cgroup/memory/memory.usage_in_bytes",
                      "/sys/fs/cgroup/memory/memory.limit_in_bytes")):
        try:
            with open(top, encoding="ascii") as f:
                cap = f.read().strip()
            with open(cur, encoding="ascii") as f:
                used = int(f.read().strip())
            if cap.isdigit() and int(cap) < 2**60:
                limits.append(int(cap) - used)
            break
        except (OSError, ValueError):
            continue
    if not limits:
        try:
            limits.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (OSError, ValueError, AttributeError):
            limits.append(8 * 2**30)
    env = os.environ.get("ATTN_MEMORY_LIMIT", "").strip()
    if env:
        cap = _parse_size(env)
        if cap is None:
            raise ConfigError(f"ATTN_MEMORY_LIMIT must be a size such as 4G or 512M, got {env!r}")
        limits.append(cap)
    return max(0, min(limits))


def parameters(cfg) -> int:
    """The number of weights a ModelConfig describes, exactly (without building it)."""
    norm = cfg.d_model * (1 if cfg.norm == "rmsnorm" else 2)
    total = cfg.n_layers * block_parameters(cfg) + norm * (cfg.final_norm + cfg.embed_norm)
    d = cfg.d_model
    if cfg.vocab_size:
        total += cfg.vocab_size * d
    if cfg.positions == "learned" and cfg.n_positions:
        total += (cfg.n_positions + cfg.position_offset) * d
    return total + cfg.token_types * d


def block_parameters(cfg) -> int:
    """The weights of one block."""
    d, hs, nh, kvh, ff = cfg.d_model, cfg.d_head, cfg.n_heads, cfg.kv_heads, cfg.d_ff
    norm = d * (1 if cfg.norm == "rmsnorm" else 2)
    qkv = (nh + 2 * kvh) * hs
    fc = ff * (2 if cfg.gated_mlp else 1)
    return (d * qkv + qkv * cfg.qkv_bias  # Q, K, V
            + nh * hs * d + d * cfg.out_bias  # output projection
            + d * fc + fc * cfg.mlp_bias + ff * d + d * cfg.mlp_bias  # MLP
            + 2 * norm)


def held_weights(cfg, weights: int | None = None, streamed: bool = False) -> int:
    """How many of the model's `weights` (default parameters(cfg)) are in memory at once:
    all of them; or, streamed (checkpoint.load), all but the blocks' and two blocks' worth
    (the one that runs, and room for reading the next one)."""
    n = weights or parameters(cfg)
    if not streamed or cfg.n_layers <= 2:
        return n
    return n - (cfg.n_layers - 2) * block_parameters(cfg)


def _refuse(what: str, need: int, have: int, way_out: str, memory: str = "memory"
            ) -> ConfigError:
    return ConfigError(f"{what} needs about {human(need)} of {memory} but about {human(have)} "
                       f"is free: {way_out}")


def load_bytes(cfg, dtype: str | None = None, weights: int | None = None) -> int:
    """The peak of making the model's `weights` (default: parameters(cfg)) in `dtype`
    (default cfg.dtype).

    A checkpoint's weights are mapped from its files or read straight into their place, never
    held twice; one layer's worth on top covers a tensor being converted or regrouped. The
    seeded model draws each layer's weights once more while it builds, in float32, and is then
    rounded to a narrower dtype (both copies are held for that moment)."""
    dtype = dtype or cfg.dtype
    n, layers = weights or parameters(cfg), max(cfg.n_layers, 1)
    if cfg.source != "seeded":
        need = n * ITEMSIZE[dtype]
        return need + need // layers
    need = n * FLOAT + n * FLOAT // layers * 2
    return need + (n * ITEMSIZE[dtype] if dtype != "float32" else 0)


def gpu_free(device: str) -> int:
    """Bytes free on a CUDA device (torch is imported only here, only for a GPU)."""
    import torch

    return torch.cuda.mem_get_info(torch.device(device))[0]


def check_weights(cfg, device: str = "cpu", weights: int | None = None,
                  streamed: bool = False) -> None:
    """Refuse a model whose weights in cfg.dtype cannot fit where they will live, before one
    is read: one line with what they need and a way out (a narrower --dtype where it fits).
    `weights`: how many a checkpoint holds, counted from its headers (an untied LM head
    included); default parameters(cfg). streamed: see held_weights."""
    total = weights or parameters(cfg)
    n = held_weights(cfg, total, streamed)
    need = load_bytes(cfg, weights=n)
    gpu = device.startswith("cuda")
    have = int((gpu_free(device) if gpu else available()) * HEADROOM)
    if need <= have:
        return
    if cfg.source == "seeded":
        raise _refuse(f"a seeded model of {cfg.n_layers} layers × d_model {cfg.d_model}, d_ff "
                      f"{cfg.d_ff} in {cfg.dtype}", need, have,
                      "choose smaller --layers, --d-model or --d-ff")
    way_out = "use a smaller model"
    narrower = [d for d in ("bfloat16", "float16") if ITEMSIZE[d] < ITEMSIZE[cfg.dtype]]
    if narrower and load_bytes(cfg, narrower[0], n) <= have:
        way_out = (f"pass --dtype {narrower[0]} (about "
                   f"{human(load_bytes(cfg, narrower[0], n))}), or use a smaller model")
    held = ", read a block at a time" if n < total else ""
    raise _refuse(f"the model in {cfg.source} ({total:,} weights, "
                  f"{cfg.n_layers} layers, d_model {cfg.d_model}{held}) in {cfg.dtype}", need,
                  have, way_out, "GPU memory" if gpu else "memory")


def run_bytes(cfg, T: int, kept_heads: int, stages: bool = False, streamed: bool = False
              ) -> int:
    """The peak of one forward pass that keeps `kept_heads` heads' matrices (streamed: the
    weights as held_weights counts them)."""
    head = 0 if cfg.tie_embeddings or not cfg.vocab_size else cfg.vocab_size * cfg.d_model
    weights = (held_weights(cfg, None, streamed) + head) * ITEMSIZE[cfg.dtype]
    per_matrix = T * T * FLOAT
    # kept: weights (and with stages, scores, scaled, masked) in torch, and counted twice for
    # a NumPy copy (made of a GPU's tensors; on the CPU, NumPy shares a float32 tensor's memory)
    kept = kept_heads * per_matrix * (4 if stages else 1) * 2
    # one block at a time: every head's scores, masked scores and weights when they are explicit
    heads_now = cfg.n_heads if T <= 512 else max(kept_heads, 1)
    attention = heads_now * per_matrix * 3
    width = max(cfg.d_model, cfg.d_ff * (2 if cfg.gated_mlp else 1))
    activations = attention + T * width * FLOAT * 4
    hidden = (cfg.n_layers + 2) * T * cfg.d_model * FLOAT * 2  # every block's output, kept
    return weights + kept + activations + hidden


def check_run(cfg, T: int, kept_heads: int, stages: bool = False, streamed: bool = False
              ) -> None:
    """Refuse a forward pass that cannot fit, before the model or the text is touched."""
    need = run_bytes(cfg, T, kept_heads, stages, streamed)
    have = int(available() * HEADROOM)
    if need > have:
        heads = f"{kept_heads} head{'s' if kept_heads != 1 else ''}"
        raise _refuse(f"{T:,} tokens with {heads} kept", need, have,
                      "pick fewer heads with --layer/--head, or give a shorter text")
