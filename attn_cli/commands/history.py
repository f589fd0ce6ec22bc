"""`attn history --model DIR` (SPEC §8): a head forming over the snapshots `attn train
--snapshots N` kept."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from attn_cli.commands.options import (Json, NoColor, Precision, _check_formats, _input,
                                       handle_errors)
from attn_cli.errors import ConfigError, InputError


@handle_errors
def history(
    model: Annotated[Optional[str], _input(
        "--model", help="A folder written by attn train --snapshots N.",
        show_default=False)] = None,
    layer: Annotated[Optional[int], typer.Option(
        "--layer", help="Layer of the head to follow [default: the best induction head's].",
        show_default=False)] = None,
    head: Annotated[Optional[int], typer.Option(
        "--head", help="Head to follow [default: the best induction head].",
        show_default=False)] = None,
    maps: Annotated[int, typer.Option("--maps", help="Heat maps shown (snapshots spread "
                                                     "evenly, first and last included).")] = 3,
    precision: Precision = 2, json: Json = False, no_color: NoColor = False,
) -> None:
    """How a trained model's head formed: its scores at every snapshot, and its attention on
    the probe at a few of them."""
    from attn_cli import output
    from attn_cli import train as tr
    from attn_cli.documents.train import history_doc
    from attn_cli.views.train import history_view

    _check_formats(json, False, None, None)
    if model is None:
        raise ConfigError("attn history needs --model DIR: a folder written by attn train "
                          "--snapshots N")
    if maps < 1:
        raise ConfigError(f"--maps must be at least 1, got {maps}")
    folder = Path(model)
    if not (folder / "training.json").is_file():
        raise InputError(f"{folder} has no training.json: attn history reads folders written "
                         f"by attn train")
    hist = tr.load_history(folder, layer, head)
    if json:
        output.write_json(history_doc(hist))
        return
    from attn_cli.views.matrix import View

    console = output.make_console(no_color, record=False)
    view = View(precision=precision, color=output.uses_color(console), width=console.width)
    output.show(console, history_view(hist, view, maps), None, None, "attn history")
