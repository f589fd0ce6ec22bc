"""The views of `attn tokens` and `attn encodings`: tables that need neither torch nor NumPy
(SPEC §5: `attn tokens` is held to the cost of tiktoken alone)."""

from __future__ import annotations

from rich import box
from rich.table import Table

from attn_cli import safe
from attn_cli.tokenizers.base import Token


def tokens_table(tokens: list[Token]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("index", justify="right")
    table.add_column("id", justify="right")
    table.add_column("token", no_wrap=True)
    table.add_column("bytes", justify="right")
    specials = any(t.special for t in tokens)
    if specials:  # BOS, [CLS], [SEP]…: added by the tokenizer, not found in the text
        table.add_column("special")
    for t in tokens:
        row = [str(t.index), str(t.id), safe.terminal(t.display), str(len(t.raw))]
        table.add_row(*row, *(["special" if t.special else ""] if specials else []))
    return table


def encodings_table(rows: list[tuple[str, str]]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("encoding")
    table.add_column("offline")
    for name, status in rows:
        table.add_row(safe.terminal(name), status)
    return table
