"""`attn inspect`: tokens, every head's attention and top-k keys, embeddings (SPEC §3)."""

from __future__ import annotations

from typing import Annotated, Optional

from attn_cli.commands.options import (AllowSpecial, Causal, Device, DFF, Dims, DModel, Dtype,
                                       Encoding, Errors, File, Full, HeadList, Heads, Html, Json,
                                       LayerList, Layers, ModelOptions, ModelPath, NDJson, NoColor,
                                       Precision, Predict, SaveTo, Seed, Svg, Text, TopK, Truncate,
                                       _capture, _capture_predict, _check_formats, _dims, _terminal,
                                       _then, _view, handle_errors)
from attn_cli.errors import ConfigError


@handle_errors
def inspect(
    text: Text = None, file: File = None, errors: Errors = "strict",
    encoding: Encoding = None, allow_special: AllowSpecial = False,
    layers: Layers = None, heads: Heads = None, d_model: DModel = None, d_ff: DFF = None,
    seed: Seed = None, causal: Causal = None, model: ModelPath = None,
    truncate: Truncate = False, device: Device = "cpu", dtype: Dtype = None,
    layer: LayerList = None, head: HeadList = None, top_k: TopK = 3,
    reduce: Annotated[Optional[str], _view(
        "--reduce", help="mean or max over the heads shown: one matrix per layer (one for the "
                         "whole model with --reduce-layers).")] = None,
    reduce_layers: Annotated[bool, _view(
        "--reduce-layers", help="With --reduce: also over layers.")] = False,
    precision: Precision = 2, dims: Dims = "8", json: Json = False, ndjson: NDJson = False,
    no_color: NoColor = False, full: Full = False, svg: Svg = None, html: Html = None,
    predict: Predict = None, save: SaveTo = None,
    every: Annotated[bool, _view(
        "--all", help="Every head's matrix, however many heads the model has (a model with more "
                      "than 16 starts with the map of its heads).")] = False,
) -> None:
    """Tokens, per-head attention (heat-coloured), top-k attended tokens, embeddings."""
    _check_formats(json, ndjson, svg, html, save)
    if reduce not in (None, "mean", "max"):
        raise ConfigError(f"--reduce must be mean or max, got {reduce!r}")
    if reduce_layers and reduce is None:
        raise ConfigError("--reduce-layers needs --reduce mean or --reduce max")
    opts = ModelOptions(layers, heads, d_model, d_ff, seed, causal, encoding, model, device,
                        truncate, dtype)
    _dims(dims)
    if predict is None:
        # JSON of every head, as is: written layer by layer while the next layers are computed
        streamed = (json or ndjson) and not reduce and save is None
        cap = _capture(opts, text, file, errors, allow_special, layer, head, streamed=streamed)
        preds = None
    else:
        cap, preds = _capture_predict(opts, text, file, errors, allow_special, layer, head,
                                      predict)
    from attn_cli import output
    from attn_cli.documents.attention import (attention_records, embeddings_record,
                                              inspect_doc, inspect_header)
    from attn_cli.summary import reduced_captures
    from attn_cli.views.inspect import inspect_view
    from attn_cli import save as saving

    if reduce:
        cap.heads = reduced_captures(cap, reduce, reduce_layers)
    if save is not None:
        saving.inspect(save, cap)

    if json:
        output.write_json(_with_predictions(inspect_doc(cap, top_k), cap, preds))
    elif ndjson:
        records = attention_records(cap, top_k)
        # made when its turn comes: a streamed capture has its embeddings only then
        records = _then(records, lambda: {"embeddings": embeddings_record(cap)})
        if preds is not None:
            records = _then(records, _with_predictions({}, cap, preds))
        output.write_ndjson(inspect_header(cap), records)
    else:
        from attn_cli.views.map import inspect_map_view, overview

        first = inspect_map_view if overview(
            cap.config, bool(layer or head or every or reduce)) else inspect_view
        make = (lambda view: first(cap, view)) if preds is None else \
            _predicted_view(cap, preds, first)
        _terminal("inspect", make, no_color, svg, html,
                  precision=precision, top_k=top_k, dims=dims, full=full, n=len(cap.tokens))


def _with_predictions(doc: dict, cap, preds) -> dict:
    if preds is not None:
        from attn_cli.documents.generate import predictions_records

        doc["predictions"] = predictions_records(cap.tokens, preds)
    return doc


def _predicted_view(cap, preds, first):
    from attn_cli.views.generate import with_predictions

    return lambda view: with_predictions(first(cap, view), cap.tokens, preds, view)
