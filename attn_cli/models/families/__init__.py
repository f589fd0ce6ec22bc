"""One small converter per family: config.json → ModelConfig, checkpoint names → ours.

A family module has
    NAMES       the model_type values it reads
    PREFIXES    what a checkpoint may put before the base model's names ("transformer.", …)
    LAYER_KEY   a regex whose group 1 is the block index of a tensor name
    config(hf: HFConfig) -> ModelConfig
    convert(w: Weights, cfg) -> {our name: tensor}   (Weights checks names and shapes)
and never computes anything itself: what a family needs beyond the stack becomes a
ModelConfig field that every family may use.
"""

from __future__ import annotations

from attn_cli.models.families.hf_config import HFConfig, activation

__all__ = ["HFConfig", "activation", "families", "supported"]


def families() -> dict:
    """model_type -> family module."""
    from attn_cli.models.families import bert, gpt2, gpt_neo, llama, neox
    from attn_cli.models.families import bart  # encoder–decoder: attn cross (config() refuses)
    from attn_cli.models.families import attn  # trained by attn train

    out = {}
    for module in (gpt2, gpt_neo, neox, llama, bert, bart, attn):
        for name in module.NAMES:
            out[name] = module
    return out


def supported() -> list[str]:
    return sorted(families())
