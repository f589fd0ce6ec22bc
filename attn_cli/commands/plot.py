"""`attn plot`: a grid of per-head heat maps saved as a picture (the [plot] extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from attn_cli.commands.options import (AllowSpecial, Causal, Device, DFF, DModel, Dtype, Encoding,
                                       Errors, File, HeadList, Heads, LayerList, Layers,
                                       ModelOptions, ModelPath, Seed, Text, Truncate, _capture,
                                       _output, handle_errors, note)


@handle_errors
def plot(
    text: Text = None, file: File = None, errors: Errors = "strict",
    output: Annotated[Path, _output(
        "-o", "--output", help="The picture to write: .png, .svg or .pdf.",
        show_default=False)] = ...,
    encoding: Encoding = None, allow_special: AllowSpecial = False,
    layers: Layers = None, heads: Heads = None, d_model: DModel = None, d_ff: DFF = None,
    seed: Seed = None, causal: Causal = None, model: ModelPath = None,
    truncate: Truncate = False, device: Device = "cpu", dtype: Dtype = None,
    layer: LayerList = None, head: HeadList = None,
    dpi: Annotated[int, _output("--dpi", help="Pixels per inch (PNG).", min=20,
                                max=600)] = 100,
) -> None:
    """A grid of per-head heat maps (layers × heads, tokens on both axes) saved as a picture;
    needs the optional extra: pip install 'attn-cli[plot]'."""
    from attn_cli import plot as plot_lib

    plot_lib.require()
    plot_lib.check_path(output)
    opts = ModelOptions(layers, heads, d_model, d_ff, seed, causal, encoding, model, device,
                        truncate, dtype)
    cap = _capture(opts, text, file, errors, allow_special, layer, head)
    plot_lib.save(cap, output, dpi=dpi)
    from attn_cli.views.matrix import plural

    note(f"wrote {output} ({plural(len(cap.heads), 'head')}, "
         f"{plural(len(cap.tokens), 'token')})")
