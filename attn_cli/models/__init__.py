"""The models `attn` looks inside: one config, one attention, one stack, a converter per family.

    config.py       ModelConfig: every switch a family may need
    attention.py    attend (the only attention), masks, rotary positions
    transformer.py  Block and Transformer, configured by ModelConfig
    seeded.py       the seeded model
    checkpoint.py   a Hugging Face folder -> (Transformer, tokenizer), via families/
"""

import gc

# Importing torch makes ~170,000 objects that live as long as the process; the cyclic
# collector would walk them all at three full collections on the way (0.2-0.4 s of a
# command's start). They are plain modules and functions, not garbage: collect nothing
# while they are made.
_collecting = gc.isenabled()
gc.disable()
try:
    from attn_cli.models.attention import STAGES, attend, visible
    from attn_cli.models.config import MAX_SEED, ModelConfig
    from attn_cli.models.seeded import seeded, seeded_token_embeddings
    from attn_cli.models.transformer import (EXPLICIT_UP_TO, Block, Forward, Transformer,
                                             describe, parameter_count, sinusoidal_positions)
finally:
    if _collecting:
        gc.enable()

__all__ = ["STAGES", "attend", "visible", "MAX_SEED", "ModelConfig", "seeded",
           "seeded_token_embeddings", "EXPLICIT_UP_TO", "Block", "Forward", "Transformer",
           "describe", "parameter_count", "sinusoidal_positions"]
