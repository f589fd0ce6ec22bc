"""Every JSON document attn writes, and the schema it answers to (attn_cli/schemas/).

    tokens.py     tokens, encodings, model                   (neither torch nor NumPy)
    attention.py  inspect (and its NDJSON records), heads, steps, rollout, compare
    cross.py      cross (and cross --steps)
    generate.py   generate (and its NDJSON records), inspect --predict's predictions
    train.py      train's header line, history

Each document starts with "schema_version" and "command"; `schema_path(command)` is the JSON
Schema file it is validated against. Adding a field keeps SCHEMA_VERSION; renaming or removing
one bumps it.
"""

from __future__ import annotations

SCHEMA_VERSION = 1
SCHEMAS = ("tokens", "encodings", "model", "inspect", "heads", "steps", "rollout", "compare",
           "cross", "generate", "train", "history")


def schema_path(command: str):
    """The shipped JSON Schema of `command`'s document (an importlib.resources Traversable)."""
    from importlib import resources

    return resources.files("attn_cli").joinpath("schemas", f"{command}.schema.json")
