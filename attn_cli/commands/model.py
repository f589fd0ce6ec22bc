"""`attn model`: the architecture in use, its parameter count, every weight's shape."""

from __future__ import annotations

from attn_cli.commands.options import (Causal, Device, DFF, DModel, Dtype, Encoding, Heads, Json,
                                       Layers, ModelOptions, ModelPath, NoColor, Seed, build,
                                       handle_errors)


@handle_errors
def model_command(
    layers: Layers = None, heads: Heads = None, d_model: DModel = None, d_ff: DFF = None,
    seed: Seed = None, causal: Causal = None, model: ModelPath = None,
    encoding: Encoding = None, device: Device = "cpu", dtype: Dtype = None,
    json: Json = False, no_color: NoColor = False,
) -> None:
    """The architecture in use: config, parameter count, the shape of every weight."""
    opts = ModelOptions(layers, heads, d_model, d_ff, seed, causal, encoding, model, device,
                        False, dtype)
    net, _, name = build(opts)
    from attn_cli import output
    from attn_cli.documents.tokens import model_doc
    from attn_cli.models import describe
    from attn_cli.views.model import model_view

    doc = model_doc(name, describe(net))
    if json:
        output.write_json(doc)
    else:
        console = output.make_console(no_color, record=False)
        output.show(console, model_view(doc), None, None, "attn model")
