"""`attn steps`: the formula stage by stage for one head."""

from __future__ import annotations

from typing import Annotated, Optional

from attn_cli.commands.options import (AllowSpecial, Causal, Device, DFF, Dims, DModel, Dtype,
                                       Encoding, Errors, File, Full, Heads, Html, Json, Layers,
                                       ModelOptions, ModelPath, NDJson, NoColor, Precision, Seed,
                                       Svg, Text, Truncate, _capture, _check_formats, _dims,
                                       _terminal, _view, handle_errors)
from attn_cli.errors import ConfigError


@handle_errors
def steps(
    text: Text = None, file: File = None, errors: Errors = "strict",
    encoding: Encoding = None, allow_special: AllowSpecial = False,
    layers: Layers = None, heads: Heads = None, d_model: DModel = None, d_ff: DFF = None,
    seed: Seed = None, causal: Causal = None, model: ModelPath = None,
    truncate: Truncate = False, device: Device = "cpu", dtype: Dtype = None,
    layer: Annotated[int, _view("--layer", help="Layer of the head.")] = 0,
    head: Annotated[int, _view("--head", help="The head to take apart.")] = 0,
    query: Annotated[Optional[int], _view(
        "--query", help="Zoom on one query token: its attention and its output vector.")] = None,
    precision: Precision = 2, dims: Dims = "8", json: Json = False, ndjson: NDJson = False,
    no_color: NoColor = False, full: Full = False, svg: Svg = None, html: Html = None,
) -> None:
    """The formula stage by stage for one head: X, Q, K, V, QKᵀ, ÷√d_k, + mask, softmax, ·V."""
    _check_formats(json, ndjson, svg, html)
    opts = ModelOptions(layers, heads, d_model, d_ff, seed, causal, encoding, model, device,
                        truncate, dtype)
    _dims(dims)
    cap = _capture(opts, text, file, errors, allow_special, [layer], [head], stages=True)
    if query is not None and not 0 <= query < len(cap.tokens):
        n = len(cap.tokens)
        raise ConfigError(f"--query {query} is out of range: the input has {n} "
                          f"token{'s' if n != 1 else ''} (0-{n - 1})")
    from attn_cli import output
    from attn_cli.documents.attention import steps_doc, steps_ndjson
    from attn_cli.views.steps import steps_view

    h = cap.head(layer, head)
    if json or ndjson:
        doc = steps_doc(cap, h, query)
        if json:
            output.write_json(doc)
        else:
            output.write_ndjson(*steps_ndjson(doc))
    else:
        _terminal("steps", lambda view: steps_view(cap, h, view, query), no_color, svg,
                  html, precision=precision, dims=dims, full=full, n=len(cap.tokens))
