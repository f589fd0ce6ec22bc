"""The documents of `attn tokens`, `attn encodings` and `attn model` (schemas tokens, encodings,
model): plain dicts, no torch or NumPy needed."""

from __future__ import annotations

from attn_cli.documents import SCHEMA_VERSION
from attn_cli.tokenizers.base import Token


def tokens_doc(text: str, encoding: str, tokens: list[Token]) -> dict:
    return {"schema_version": SCHEMA_VERSION, "command": "tokens", "text": text,
            "encoding": encoding, "count": len(tokens), "tokens": [t.to_dict() for t in tokens]}


def encodings_doc(rows: list[tuple[str, str]]) -> dict:
    return {"schema_version": SCHEMA_VERSION, "command": "encodings",
            "encodings": [{"name": n, "offline": s} for n, s in rows]}


def model_doc(encoding: str, described: dict) -> dict:
    """`described`: models.describe(model) (config, parameters, weights)."""
    return {"schema_version": SCHEMA_VERSION, "command": "model", "encoding": encoding,
            **described}
