"""The one model configuration: a frozen dataclass that every family fills in.

One Transformer stack (`transformer.py`) reads these fields; a family (`families/`) is only a
mapping from its config.json to them. Names follow TransformerLens where it has one.
"""

from __future__ import annotations

from dataclasses import dataclass

from attn_cli.errors import ConfigError

MAX_SEED = 2**32 - 1  # torch's CPU generator keeps 32 bits of a seed

NORMS = ("layernorm", "rmsnorm")
POSITIONS = ("sinusoidal", "learned", "rotary", "none")
ACTIVATIONS = ("gelu_tanh", "gelu", "silu", "relu")
DTYPES = ("float32", "bfloat16", "float16")  # what --dtype takes; torch.<name> is the dtype


def check_dtype(name: str) -> None:
    if name not in DTYPES:
        raise ConfigError(f"--dtype must be {', '.join(DTYPES[:-1])} or {DTYPES[-1]}, got "
                          f"{name!r}")


@dataclass(frozen=True)
class ModelConfig:
    n_layers: int = 2
    n_heads: int = 4
    d_model: int = 64
    d_ff: int | None = None  # None: 4 * d_model
    causal: bool = True
    seed: int | None = 0  # None for loaded weights
    positions: str = "sinusoidal"  # "sinusoidal", "learned", "rotary" or "none"
    n_positions: int | None = None  # the learned-position limit; None means no limit
    vocab_size: int | None = None  # only loaded weights carry a vocabulary
    layer_norm_eps: float = 1e-5
    source: str = "seeded"  # "seeded" or the folder the weights came from
    family: str = "seeded"  # the checkpoint's model_type, or "seeded"
    # --- what the families switch ------------------------------------------------------------
    head_dim: int | None = None  # None: d_model // n_heads (Llama configs may set head_dim)
    n_kv_heads: int | None = None  # grouped-query attention: key/value heads; None: n_heads
    norm: str = "layernorm"  # "layernorm" or "rmsnorm"
    post_norm: bool = False  # True: x = LN(x + sublayer(x)) (BERT); False: pre-norm (GPT-2)
    final_norm: bool = True  # a norm after the last block (GPT-2's ln_f); BERT has none
    embed_norm: bool = False  # a norm on the embeddings (BERT, BART)
    position_offset: int = 0  # learned positions start at this row (RoBERTa 2, BART 2)
    rotary_dim: int | None = None  # rotary on the first rotary_dim dims of each head; None: all
    rope_theta: float = 10000.0
    # e.g. (("rope_type", "llama3"), …); ("rope_type", "factors"), ("factors", (f₀, f₁, …)):
    # frequency i divided by fᵢ (a GGUF file's rope_freqs)
    rope_scaling: tuple[tuple[str, float | str | tuple[float, ...]], ...] = ()
    windows: tuple[int | None, ...] = ()  # per layer: keys within this distance, None: all
    scale_scores: bool = True  # ÷√d_k; GPT-Neo does not scale
    qkv_bias: bool = True
    out_bias: bool = True
    mlp_bias: bool = True
    gated_mlp: bool = False  # SwiGLU: down(act(gate(x)) · up(x))
    activation: str = "gelu_tanh"
    parallel_residual: bool = False  # x + Attn(LN1(x)) + MLP(LN2(x)) (GPT-NeoX)
    token_types: int = 0  # rows of BERT's token-type embedding; 0: none
    pad_id: int | None = None  # RoBERTa's padding index (positions skip it)
    tie_embeddings: bool = True  # the LM head is the token embedding (where there is one)
    dtype: str = "float32"  # the weights' and the computation's precision (softmax: float32)

    def __post_init__(self) -> None:
        for flag, value in (("--layers", self.n_layers), ("--heads", self.n_heads),
                            ("--d-model", self.d_model)):
            if value < 1:
                raise ConfigError(f"{flag} must be at least 1, got {value}")
        if self.d_ff is None:
            object.__setattr__(self, "d_ff", 4 * self.d_model)
        elif self.d_ff < 1:
            raise ConfigError(f"--d-ff must be at least 1, got {self.d_ff}")
        if self.head_dim is None and self.d_model % self.n_heads:
            raise ConfigError(
                f"--d-model {self.d_model} is not divisible by --heads {self.n_heads}: "
                f"pick a width that is a multiple of {self.n_heads}"
            )
        if self.n_kv_heads is not None and (self.n_kv_heads < 1 or self.n_heads % self.n_kv_heads):
            raise ConfigError(f"{self.n_heads} heads cannot share {self.n_kv_heads} key/value "
                              f"heads: the number of heads must be a multiple of it")
        if self.seed is not None and not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"--seed must be between 0 and {MAX_SEED}, got {self.seed}")
        if self.positions not in POSITIONS:
            raise ConfigError(f"unknown position scheme {self.positions!r}")
        if self.norm not in NORMS:
            raise ConfigError(f"unknown norm {self.norm!r}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"unknown activation {self.activation!r}")
        check_dtype(self.dtype)
        if self.windows and len(self.windows) != self.n_layers:
            raise ConfigError(f"{len(self.windows)} attention windows for {self.n_layers} layers")
        if self.rotary_dim is not None and not (0 < self.rotary_dim <= self.d_head
                                                and self.rotary_dim % 2 == 0):
            raise ConfigError(f"rotary dimension {self.rotary_dim} must be even and at most "
                              f"d_head {self.d_head}")

    @property
    def d_head(self) -> int:
        return self.head_dim if self.head_dim is not None else self.d_model // self.n_heads

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads if self.n_kv_heads is not None else self.n_heads

    @property
    def rotary(self) -> int:
        """How many dimensions of each head rotary positions turn (0 without rotary)."""
        if self.positions != "rotary":
            return 0
        return self.rotary_dim if self.rotary_dim is not None else self.d_head

    def window(self, layer: int) -> int | None:
        """Layer `layer`'s attention window (a query sees keys i − j < window), or None."""
        return self.windows[layer] if self.windows else None

    def kv_group(self, head: int) -> int:
        """The key/value head that query head `head` reads."""
        return head // (self.n_heads // self.kv_heads)

    def to_dict(self) -> dict:
        out = {
            "source": self.source,
            "layers": self.n_layers,
            "heads": self.n_heads,
            "d_model": self.d_model,
            "d_head": self.d_head,
            "d_ff": self.d_ff,
            "causal": self.causal,
            "seed": self.seed,
            "positions": self.positions,
            "family": self.family,
            "kv_heads": self.kv_heads,
            "window": self._window_field(),
            "dtype": self.dtype,
        }
        if self.positions == "learned":
            out["n_positions"] = self.n_positions
        if self.vocab_size is not None:
            out["vocab_size"] = self.vocab_size
        if self.positions == "rotary":
            out["rotary_dim"] = self.rotary
            out["rope_theta"] = self.rope_theta
        if not self.scale_scores:
            out["scale"] = 1.0
        return out

    def _window_field(self):
        """null (no window), one number (every layer), or a list per layer (null: global)."""
        if not self.windows or all(w is None for w in self.windows):
            return None
        if len(set(self.windows)) == 1:
            return self.windows[0]
        return list(self.windows)
