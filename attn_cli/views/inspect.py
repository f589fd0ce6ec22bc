"""`attn inspect` on the terminal: tokens, every head's weights and top-k keys, embeddings."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.text import Text

from attn_cli.capture import Capture
from attn_cli.views.matrix import View, token_strip
from attn_cli.views.parts import embeddings_table, head_title, header, top_lines, weights_matrix


def inspect_view(cap: Capture, view: View) -> Group:
    parts: list[RenderableType] = [header(cap, "inspect"), token_strip(cap.tokens), Text()]
    for h in cap.heads:
        parts.append(Text(head_title(h), style="bold underline"))
        parts.append(weights_matrix(cap, h, view, title=None))
        parts.append(Text(f"top {view.top_k} attended keys per query", style="italic"))
        parts.append(top_lines(cap, h, view))
        parts.append(Text())
    parts.append(embeddings_table(cap, view))
    return Group(*parts)
