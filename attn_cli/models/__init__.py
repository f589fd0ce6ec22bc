"""The models `attn` looks inside: one config, one attention, one stack, a converter per family.

    config.py       ModelConfig: every switch a family may need
    attention.py    attend (the only attention), masks, rotary positions
    transformer.py  Block and Transformer, configured by ModelConfig
    seeded.py       the seeded model
    folders.py      where a checkpoint is, its config.json and tokenizer (no torch)
    weights.py      its weight files, read and checked tensor by tensor
    checkpoint.py   a Hugging Face folder -> (Transformer, tokenizer), via families/

The names below are imported when first used, so that `attn_cli.models.folders` (and
`attn tokens --model`) never import torch.
"""

import importlib
import sys
import types

_WHERE = {
    "STAGES": "attention", "attend": "attention", "visible": "attention",
    "MAX_SEED": "config", "ModelConfig": "config",
    "seeded": "seeded", "seeded_token_embeddings": "seeded",
    "EXPLICIT_UP_TO": "transformer", "Block": "transformer", "Forward": "transformer",
    "Transformer": "transformer", "describe": "transformer", "parameter_count": "transformer",
    "sinusoidal_positions": "transformer",
}

__all__ = list(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)


class _Package(types.ModuleType):
    """`models.seeded` is the function, as when this file imported it eagerly: importing the
    submodule seeded.py would otherwise bind the module over that name."""

    def __setattr__(self, name, value):
        if name in _WHERE and isinstance(value, types.ModuleType):
            return  # the submodule stays reachable as sys.modules["attn_cli.models.seeded"]
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
