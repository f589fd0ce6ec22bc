"""`attn model` on the terminal: the config, the parameter count and every weight's shape."""

from __future__ import annotations

import math

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from attn_cli import safe


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
    for w in doc["weights"]:
        shapes.add_row(safe.terminal(w["name"]), " × ".join(map(str, w["shape"])),
                       f"{math.prod(w['shape']):,}")
    return Group(Text("attn model", style="bold"), info, Text(), shapes)
