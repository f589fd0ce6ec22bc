"""config.json as a family reads it: HFConfig (each value checked, one clear error per bad
value) and the activation names every family maps the same way."""

from __future__ import annotations

import math
from pathlib import Path

from attn_cli.errors import ModelLoadError


_MISSING = object()


class HFConfig:
    """A config.json, read with one clear error per bad value."""

    def __init__(self, hf: dict, where: Path):
        self.hf, self.where = hf, where

    def has(self, key: str) -> bool:
        return self.hf.get(key) is not None

    def raw(self, *keys: str, default=_MISSING):
        for key in keys:
            if self.hf.get(key) is not None:
                return key, self.hf[key]
        if default is _MISSING:
            raise ModelLoadError(f"{self.where} has no {keys[0]}: the config is incomplete; "
                                 f"save the model again with save_pretrained")
        return keys[0], default

    def int(self, *keys: str, default=_MISSING, minimum: int = 1) -> int:
        key, value = self.raw(*keys, default=default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            what = "a positive whole number" if minimum == 1 else f"a whole number ≥ {minimum}"
            raise ModelLoadError(f"{self.where} has {key} {value!r}; it must be {what}")
        return value

    def optional_int(self, *keys: str, minimum: int = 1) -> int | None:
        key, value = self.raw(*keys, default=None)
        return None if value is None else self.int(key, minimum=minimum)

    def float(self, *keys: str, default=_MISSING, positive: bool = True) -> float:
        key, value = self.raw(*keys, default=default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or (positive and not value > 0):
            what = "a positive finite number" if positive else "a finite number"
            raise ModelLoadError(f"{self.where} has {key} {value!r}; it must be {what}")
        return float(value)

    def bool(self, key: str, default: bool) -> bool:
        value = self.hf.get(key, default)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise ModelLoadError(f"{self.where} has {key} {value!r}; it must be true or false")
        return value

    def str(self, key: str, default: str) -> str:
        value = self.hf.get(key, default)
        if value is None:
            return default
        if not isinstance(value, str):
            raise ModelLoadError(f"{self.where} has {key} {value!r}; it must be a string")
        return value

    def choice(self, key: str, default: str, allowed: dict[str, str], why: str) -> str:
        """A string value mapped through `allowed`; anything else is refused with `why`."""
        value = self.str(key, default)
        if value not in allowed:
            raise ModelLoadError(f"{self.where} says {key} {value!r}; {why} "
                                 f"({' or '.join(allowed)})")
        return allowed[value]

    def refuse(self, message: str) -> ModelLoadError:
        return ModelLoadError(f"{self.where} {message}")


def activation(hf: HFConfig, key: str, default: str) -> str:
    """config.json's activation name → ModelConfig.activation."""
    return hf.choice(key, default, {
        "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh",
        "gelu": "gelu", "silu": "silu", "swish": "silu", "relu": "relu"},
        "attn's MLP computes only these activations")
