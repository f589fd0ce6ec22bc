"""The Hugging Face reference for `attn generate`: greedy generation with attentions captured,
written as the same JSON attn writes.

    python benchmarks/hf_generate.py --model DIR --ids IDS.json -n 64 > out.json

- `GPT2LMHeadModel.from_pretrained(DIR, attn_implementation="eager")`, eval mode, under
  torch.inference_mode(), then `generate(ids, max_new_tokens=n, do_sample=False,
  output_attentions=True, output_logits=True, return_dict_in_generate=True)`: transformers'
  own KV cache, every layer's and head's attention kept at every step.
- Then the document `attn generate --json` writes by default: per new token its id, its
  probability and the 5 most likely tokens (softmax of that step's logits), and per layer the
  mean over heads of the row that predicted it; written with orjson + OPT_SERIALIZE_NUMPY,
  attn's serialiser, so the comparison is of the model work, not the JSON library.
- It does not tokenize or decode token text: the ids are given, and tokens are listed by id.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import orjson
import torch
from transformers import GPT2LMHeadModel


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="checkpoint folder")
    p.add_argument("--ids", required=True, help="JSON list of the prompt's token ids")
    p.add_argument("-n", type=int, default=64)
    args = p.parse_args()

    with open(args.ids, "rb") as f:
        ids = json.load(f)
    model = GPT2LMHeadModel.from_pretrained(args.model, attn_implementation="eager").eval()
    with torch.inference_mode():
        out = model.generate(torch.tensor([ids]), max_new_tokens=args.n, do_sample=False,
                             output_attentions=True, output_logits=True,
                             return_dict_in_generate=True, pad_token_id=0)
        generated = []
        for step, token in enumerate(out.sequences[0, len(ids):].tolist()):
            probs = torch.softmax(out.logits[step][0].double(), dim=-1)
            top = torch.topk(probs, 5)
            generated.append({
                "index": len(ids) + step, "id": token,
                "probability": np.float32(probs[token].item()),
                "top": [{"id": i, "probability": np.float32(v)}
                        for i, v in zip(top.indices.tolist(), top.values.float().tolist())],
                "attention": [{"layer": layer, "head": -1,
                               "weights": a[0, :, -1].double().mean(0).float().numpy()}
                              for layer, a in enumerate(out.attentions[step])]})
    doc = {"schema_version": 1, "command": "generate", "tokens": ids, "generated": generated}
    sys.stdout.buffer.write(orjson.dumps(
        doc, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE))
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
