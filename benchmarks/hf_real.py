"""The Hugging Face reference for the real-size figures: a checkpoint folder loaded with
transformers, every layer's and head's attention and the last hidden state written as JSON.

    python benchmarks/hf_real.py --model DIR --ids IDS.json > out.json

- `AutoModel.from_pretrained(DIR, attn_implementation="eager")` (GPT2Model, LlamaModel, ...:
  the family's base model, no LM head; safetensors, memory-mapped by transformers), eval
  mode, one forward pass under torch.inference_mode() with output_attentions=True on the token
  ids in IDS.json (the ids attn's tokenizer gives for the same text).
- Written with orjson + OPT_SERIALIZE_NUMPY, the serialiser attn uses, as one document: the
  token ids, `attentions` (layers × heads × T × T float32) and `last_hidden_state` (T ×
  d_model), so the comparison is of the model work and the JSON it writes, not the JSON library.
- It does not tokenize and computes no entropy or top-k (attn writes both for every head).
"""

from __future__ import annotations

import argparse
import json
import sys

import orjson
import torch
from transformers import AutoModel


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="checkpoint folder")
    p.add_argument("--ids", required=True, help="JSON list of token ids")
    args = p.parse_args()

    with open(args.ids, "rb") as f:
        ids = json.load(f)
    model = AutoModel.from_pretrained(args.model, attn_implementation="eager").eval()
    with torch.inference_mode():
        out = model(input_ids=torch.tensor([ids]), output_attentions=True)
        doc = {"tokens": ids,
               "attentions": [a[0].numpy() for a in out.attentions],  # (heads, T, T) each
               "last_hidden_state": out.last_hidden_state[0].numpy()}
        data = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE)
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
