"""The model's configuration: one frozen dataclass, validated when it is made."""

from __future__ import annotations

from dataclasses import dataclass

from attn_cli.errors import ConfigError

MAX_SEED = 2**32 - 1  # torch's CPU generator keeps 32 bits of a seed


@dataclass(frozen=True)
class ModelConfig:
    n_layers: int = 2
    n_heads: int = 4
    d_model: int = 64
    d_ff: int | None = None  # None: 4 * d_model
    causal: bool = True
    seed: int | None = 0  # None for loaded weights
    positions: str = "sinusoidal"  # or "learned" (GPT-2)
    n_positions: int | None = None  # the learned-position limit; None means no limit
    vocab_size: int | None = None  # only loaded weights carry a vocabulary
    layer_norm_eps: float = 1e-5
    source: str = "seeded"  # "seeded" or the folder the weights came from

    def __post_init__(self) -> None:
        for flag, value in (("--layers", self.n_layers), ("--heads", self.n_heads),
                            ("--d-model", self.d_model)):
            if value < 1:
                raise ConfigError(f"{flag} must be at least 1, got {value}")
        if self.d_ff is None:
            object.__setattr__(self, "d_ff", 4 * self.d_model)
        elif self.d_ff < 1:
            raise ConfigError(f"--d-ff must be at least 1, got {self.d_ff}")
        if self.d_model % self.n_heads:
            raise ConfigError(
                f"--d-model {self.d_model} is not divisible by --heads {self.n_heads}: "
                f"pick a width that is a multiple of {self.n_heads}"
            )
        if self.seed is not None and not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"--seed must be between 0 and {MAX_SEED}, got {self.seed}")
        if self.positions not in ("sinusoidal", "learned"):
            raise ConfigError(f"unknown position scheme {self.positions!r}")

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

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
        }
        if self.positions == "learned":
            out["n_positions"] = self.n_positions
            out["vocab_size"] = self.vocab_size
        return out
