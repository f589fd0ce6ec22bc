"""`attn rollout`: attention rollout (Abnar & Zuidema 2020)."""

from __future__ import annotations

from attn_cli.commands.options import (AllowSpecial, Causal, Device, DFF, DModel, Dtype, Encoding,
                                       Errors, File, Full, Heads, Html, Json, Layers, ModelOptions,
                                       ModelPath, NoColor, Precision, SaveTo, Seed, Svg, Text, TopK,
                                       Truncate, _capture, _check_formats, _terminal, handle_errors)


@handle_errors
def rollout(
    text: Text = None, file: File = None, errors: Errors = "strict",
    encoding: Encoding = None, allow_special: AllowSpecial = False,
    layers: Layers = None, heads: Heads = None, d_model: DModel = None, d_ff: DFF = None,
    seed: Seed = None, causal: Causal = None, model: ModelPath = None,
    truncate: Truncate = False, device: Device = "cpu", dtype: Dtype = None,
    top_k: TopK = 3, precision: Precision = 2, json: Json = False,
    no_color: NoColor = False, full: Full = False, svg: Svg = None, html: Html = None,
    save: SaveTo = None,
) -> None:
    """Attention rollout (Abnar & Zuidema 2020): which input tokens each token draws on."""
    _check_formats(json, False, svg, html, save)
    opts = ModelOptions(layers, heads, d_model, d_ff, seed, causal, encoding, model, device,
                        truncate, dtype)
    cap = _capture(opts, text, file, errors, allow_special, None, None)
    from attn_cli import analysis, output
    from attn_cli.documents.attention import rollout_doc
    from attn_cli.summary import layer_means
    from attn_cli.views.rollout import rollout_view
    from attn_cli import save as saving

    means = layer_means(cap)
    rolled = analysis.rollout(means)
    if save is not None:
        saving.rollout(save, cap, means, rolled)
    if json:
        output.write_json(rollout_doc(cap, rolled, top_k))
    else:
        _terminal("rollout", lambda view: rollout_view(cap, rolled, view), no_color, svg,
                  html, precision=precision, top_k=top_k, full=full, n=len(cap.tokens))
