"""`attn heads`: every head of one layer side by side, with what kind of head each is."""

from __future__ import annotations

from typing import Annotated, Optional

from attn_cli.commands.options import (AllowSpecial, Causal, Device, DFF, DModel, Dtype, Encoding,
                                       Errors, File, Heads, Html, Json, Layers, ModelOptions,
                                       ModelPath, NDJson, NoColor, Precision, SaveTo, Seed, Svg,
                                       Text, Truncate, _capture, _check_formats, _input, _terminal,
                                       _view, handle_errors)
from attn_cli.errors import ConfigError


@handle_errors
def heads(
    text: Text = None, file: File = None, errors: Errors = "strict",
    encoding: Encoding = None, allow_special: AllowSpecial = False,
    layers: Layers = None, heads: Heads = None, d_model: DModel = None, d_ff: DFF = None,
    seed: Seed = None, causal: Causal = None, model: ModelPath = None,
    truncate: Truncate = False, device: Device = "cpu", dtype: Dtype = None,
    layer: Annotated[int, _view("--layer", help="The layer whose heads to show.")] = 0,
    pattern: Annotated[Optional[str], _view(
        "--pattern", help="Rank every head of every layer by one score: previous-token, self, "
                          "first-token, duplicate-token or induction.")] = None,
    repeat: Annotated[Optional[int], _input(
        "--repeat", help="Use N random tokens repeated twice as the input (the standard "
                         "induction-head probe).")] = None,
    precision: Precision = 2, json: Json = False, ndjson: NDJson = False,
    no_color: NoColor = False, svg: Svg = None, html: Html = None, save: SaveTo = None,
) -> None:
    """Every head of one layer side by side, with what kind of head each one is."""
    from attn_cli.summary import PATTERN_SCORES

    _check_formats(json, ndjson, svg, html, save)
    if pattern is not None and pattern not in PATTERN_SCORES:
        raise ConfigError(f"--pattern {pattern!r} is not a pattern: choose one of "
                          f"{', '.join(PATTERN_SCORES)}")
    opts = ModelOptions(layers, heads, d_model, d_ff, seed, causal, encoding, model, device,
                        truncate, dtype)
    cap = _capture(opts, text, file, errors, allow_special,
                   None if pattern else [layer], None, repeat=repeat)
    from attn_cli import capture, output
    from attn_cli.documents.attention import heads_doc
    from attn_cli.views.heads import heads_view
    from attn_cli import save as saving

    capture.select(cap.config, [layer], None)  # the layer shown must exist
    if save is not None:
        saving.heads(save, cap, layer)
    if json or ndjson:
        doc = heads_doc(cap, layer, pattern)
        if json:
            output.write_json(doc)
        else:
            output.write_ndjson({k: v for k, v in doc.items() if k != "heads"}, doc["heads"])
    else:
        _terminal("heads", lambda view: heads_view(cap, layer, view, pattern), no_color,
                  svg, html, precision=precision)
