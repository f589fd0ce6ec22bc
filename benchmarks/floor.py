"""The FLOOR of SPEC §5: the light floor (floor_light.py) that also imports torch.

`attn inspect "The cat sat on the mat" --json` is held to 1.15 × this program: everything
attn does beyond importing its libraries and tokenizing (building the model, the forward pass,
the JSON) must fit in the remaining 15 %.

    python benchmarks/floor.py --ranks /tmp/o200k_base.tiktoken "some text"
"""

import torch  # noqa: F401  (the one difference from the light floor)

from floor_light import app  # this file's folder is on sys.path when run as a script

if __name__ == "__main__":
    app()
