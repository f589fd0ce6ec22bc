"""The Hugging Face reference of SPEC §5: GPT-2 (eager attention, output_attentions=True)
computing one head's attention matrix and writing it as JSON.

    python benchmarks/hf_reference.py --ids IDS.json --layers 4 --heads 8 --d-model 256 \
        --layer 3 --head 0 > out.json

- The model is `GPT2Model(GPT2Config(...))` with attn_implementation="eager", randomly
  initialised (torch.manual_seed(0)), put in eval mode, run once under torch.inference_mode()
  on the token ids in IDS.json (a JSON list, the ids attn gets from the same text).
- Vocabulary: attn's seeded model has no token table at all (rows are computed from the ids),
  so the reference gets GPT-2's small one (50,257 rows, 51 MB) and the ids modulo 50,257; a
  200k-row o200k table would add 205 MB to the reference and flatter attn's memory ratio.
- n_positions is the number of ids (learned positions must cover the input).
- The chosen head of the chosen layer is written with orjson and OPT_SERIALIZE_NUMPY, the
  serialiser attn itself uses, so the comparison is of the model work, not the JSON library.
- It does not tokenize: the ids are given. attn pays for its tokenizer, the reference does not.
"""

from __future__ import annotations

import argparse
import json
import sys

import orjson
import torch
from transformers import GPT2Config, GPT2Model

VOCAB = 50257


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ids", required=True, help="JSON list of token ids")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--layer", type=int, default=3)
    p.add_argument("--head", type=int, default=0)
    args = p.parse_args()

    with open(args.ids, "rb") as f:
        ids = [i % VOCAB for i in json.load(f)]
    config = GPT2Config(n_layer=args.layers, n_head=args.heads, n_embd=args.d_model,
                        n_positions=len(ids), vocab_size=VOCAB, attn_implementation="eager")
    torch.manual_seed(0)
    model = GPT2Model(config).eval()
    with torch.inference_mode():
        out = model(input_ids=torch.tensor([ids]), output_attentions=True)
        weights = out.attentions[args.layer][0, args.head].numpy()  # (T, T) float32
    sys.stdout.buffer.write(orjson.dumps(
        weights, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE))
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
