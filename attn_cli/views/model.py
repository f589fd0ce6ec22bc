"""`attn model` on the terminal: the config, the parameter count and every weight's shape."""

from __future__ import annotations

import math

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from attn_cli import safe
from attn_cli.views.matrix import plural


def model_view(doc: dict) -> Group:
    cfg = doc["model"]
    info = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, show_header=False)
    info.add_column(style="bold")
    info.add_column()
    for key, value in cfg.items():
        info.add_row(key, safe.terminal(str(value)))
    info.add_row("encoding", safe.terminal(doc["encoding"]))
    info.add_row("parameters", f"{doc['parameters']:,}")
    if "token_embeddings" in doc:
        info.add_row("token embeddings", doc["token_embeddings"])
    shapes = Table(title="Weights", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                   pad_edge=False)
    shapes.add_column("name")
    shapes.add_column("shape", justify="right")
    shapes.add_column("count", justify="right")
    stored = "dtype" in doc["weights"][0]  # a checkpoint's tensors, under its own names
    if stored:
        shapes.add_column("stored")
        shapes.add_column("")
    unused = 0
    for w in doc["weights"]:
        row = [safe.terminal(w["name"]), " × ".join(map(str, w["shape"])),
               f"{math.prod(w['shape']):,}"]
        if stored:
            row += [w["dtype"], "" if w["used"] else "not used"]
            unused += not w["used"]
        shapes.add_row(*row)
    parts = [Text("attn model", style="bold"), info, Text(), shapes]
    if unused:
        parts.append(Text(f"{plural(unused, 'tensor')} not used: attn shows the base model's "
                          f"attention, not a task head, pooler or classifier"))
    return Group(*parts)
