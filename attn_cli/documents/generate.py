"""The document of `attn generate` (whole, or as NDJSON header, step records and tail; schema
generate), and inspect --predict's predictions list."""

from __future__ import annotations

from attn_cli.documents import SCHEMA_VERSION
from attn_cli.tokenizers.base import Token


def predictions_records(tokens: list[Token], preds) -> list[dict]:
    """JSON: one {index, top: [{id, token, probability}]} per input position."""
    return [{"index": t.index, "top": [c.to_dict() for c in top]} for t, top in zip(tokens, preds)]


def generate_header(prompt: str, encoding: str, cfg, tokens: list[Token], sampling) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "command": "generate",
        "prompt": prompt,
        "encoding": encoding,
        "model": cfg.to_dict(),
        "tokens": [t.to_dict() for t in tokens],
        "sampling": sampling.to_dict(),
    }


def step_record(step) -> dict:
    return {
        "index": step.index,
        "id": step.id,
        "token": step.text,
        "bytes": "" if step.raw is None else step.raw.hex(),
        "probability": step.probability,
        "top": [c.to_dict() for c in step.top],
        "attention": [{"layer": layer, "head": head, "weights": w}
                      for layer, head, w in step.attention],
    }


def continuation(steps) -> str:
    return b"".join(s.raw or b"" for s in steps).decode("utf-8", errors="replace")


def generate_tail(prompt: str, steps, stop: str) -> dict:
    return {"text": prompt + continuation(steps), "stop": stop}


def generate_doc(prompt: str, encoding: str, cfg, tokens, sampling, steps, stop: str) -> dict:
    doc = generate_header(prompt, encoding, cfg, tokens, sampling)
    doc["generated"] = [step_record(s) for s in steps]
    doc.update(generate_tail(prompt, steps, stop))
    return doc
