"""Writing results: one JSON document, NDJSON records, or one rich renderable. Light: no torch,
no NumPy import (orjson serialises NumPy arrays it is handed without importing NumPy here)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path

import orjson
from rich.console import Console, RenderableType

_JSON_OPTS = orjson.OPT_SERIALIZE_NUMPY


def _contiguous(obj):
    """orjson's fallback: NumPy views that are not C-contiguous, and NumPy scalars."""
    import numpy as np

    if isinstance(obj, np.ndarray):
        return np.ascontiguousarray(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def dumps(doc) -> bytes:
    """Compact JSON; float32 values keep float32 precision; −∞ and NaN become null."""
    return orjson.dumps(doc, default=_contiguous, option=_JSON_OPTS | orjson.OPT_APPEND_NEWLINE)


def write_json(doc) -> None:
    out = sys.stdout.buffer
    out.write(dumps(doc))
    out.flush()


def write_ndjson(header: dict, records: Iterable[dict]) -> None:
    """The header fields on the first line, then one record per line, written as made."""
    out = sys.stdout.buffer
    out.write(dumps(header))
    for record in records:
        out.write(dumps(record))
    out.flush()


def make_console(no_color: bool, record: bool) -> Console:
    no_color = no_color or "NO_COLOR" in os.environ
    return Console(file=sys.stdout, no_color=no_color, highlight=False, record=record,
                   soft_wrap=False, emoji=False, markup=False)


def uses_color(console: Console) -> bool:
    return console.color_system is not None and not console.no_color


def show(console: Console, renderable: RenderableType, svg: Path | None, html: Path | None,
         title: str) -> None:
    console.print(renderable)
    if svg is not None:
        console.save_svg(str(svg), title=title, clear=False)
    if html is not None:
        console.save_html(str(html), clear=False)
