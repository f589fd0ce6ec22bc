"""`attn heads`: the map of every head; one layer's heads side by side (--layer); the heads
that send one token to another (--from A --to B)."""

from __future__ import annotations

from typing import Annotated, Optional

from attn_cli.commands.options import (AllowSpecial, Causal, Device, DFF, DModel, Dtype, Encoding,
                                       Errors, File, Heads, Html, Json, Layers, ModelOptions,
                                       ModelPath, NDJson, NoColor, Precision, SaveTo, Seed, Svg,
                                       Text, Truncate, _capture, _check_formats, _input, _terminal,
                                       _view, handle_errors, note)
from attn_cli.errors import ConfigError


@handle_errors
def heads(
    text: Text = None, file: File = None, errors: Errors = "strict",
    encoding: Encoding = None, allow_special: AllowSpecial = False,
    layers: Layers = None, heads: Heads = None, d_model: DModel = None, d_ff: DFF = None,
    seed: Seed = None, causal: Causal = None, model: ModelPath = None,
    truncate: Truncate = False, device: Device = "cpu", dtype: Dtype = None,
    layer: Annotated[Optional[int], _view(
        "--layer", help="The layer whose heads to show side by side [default: the map of every "
                        "head].", show_default=False)] = None,
    pattern: Annotated[Optional[str], _view(
        "--pattern", help="Rank every head of every layer by one score: previous-token, self, "
                          "first-token, duplicate-token or induction.")] = None,
    from_: Annotated[Optional[str], _view(
        "--from", help="With --to: rank every head by the weight this query token puts on the "
                       "--to key. A token's text (it, ␣it or ' it'; TEXT@2 for its 2nd "
                       "occurrence) or its index.", show_default=False)] = None,
    to: Annotated[Optional[str], _view(
        "--to", help="The key token for --from, given the same way.", show_default=False)] = None,
    repeat: Annotated[Optional[int], _input(
        "--repeat", help="Use N random tokens repeated twice as the input (the standard "
                         "induction-head probe).")] = None,
    precision: Precision = 2, json: Json = False, ndjson: NDJson = False,
    no_color: NoColor = False, svg: Svg = None, html: Html = None, save: SaveTo = None,
) -> None:
    """The map of every head (a letter per head: what kind of head it is); with --layer, one
    layer's heads side by side; with --from A --to B, the heads that send A to B."""
    from attn_cli.summary import PATTERN_SCORES

    _check_formats(json, ndjson, svg, html, save)
    if pattern is not None and pattern not in PATTERN_SCORES:
        raise ConfigError(f"--pattern {pattern!r} is not a pattern: choose one of "
                          f"{', '.join(PATTERN_SCORES)}")
    if (from_ is None) != (to is None):
        raise ConfigError("--from and --to go together: --from it --to animal ranks every head "
                          "by the weight 'it' puts on 'animal'")
    if from_ is not None and pattern is not None:
        raise ConfigError("--pattern and --from/--to are two rankings: pick one")
    opts = ModelOptions(layers, heads, d_model, d_ff, seed, causal, encoding, model, device,
                        truncate, dtype)
    cap = _capture(opts, text, file, errors, allow_special,
                   [layer] if layer is not None and not pattern else None, None, repeat=repeat)
    from attn_cli import capture, headmap, output
    from attn_cli import save as saving
    from attn_cli.documents.attention import heads_doc

    shown = 0 if layer is None else layer  # the layer whose heads the JSON details
    capture.select(cap.config, [shown], None)  # the layer shown must exist
    ranked = None
    if from_ is not None:
        ranked = headmap.from_to(cap, _token_arg(cap.tokens, from_, "--from"),
                                 _token_arg(cap.tokens, to, "--to"))
    if pattern and headmap.cannot_occur(cap, pattern):
        note(f"no token repeats in this text, so no head can show the {pattern} pattern (every "
             f"score is empty); --repeat 20 probes with 20 random tokens, twice")
    cells = headmap.head_map(cap) if layer is None or ranked is not None else None
    if save is not None:
        saving.heads(save, cap, layer)
    if json or ndjson:
        doc = heads_doc(cap, shown, pattern, cells if layer is None else None, ranked)
        if json:
            output.write_json(doc)
        else:
            output.write_ndjson({k: v for k, v in doc.items() if k != "heads"}, doc["heads"])
    elif ranked is not None:
        from attn_cli.views.map import from_to_view

        labels = {(c.layer, c.head): c.pattern for c in cells}
        _terminal("heads", lambda view: from_to_view(cap, ranked, labels, view), no_color, svg,
                  html, precision=precision)
    elif layer is None:
        from attn_cli.views.map import heads_map_view

        _terminal("heads", lambda view: heads_map_view(cap, cells, view, pattern), no_color,
                  svg, html, precision=precision)
    else:
        from attn_cli.views.heads import heads_view

        _terminal("heads", lambda view: heads_view(cap, layer, view, pattern), no_color,
                  svg, html, precision=precision)


def _token_arg(tokens, spec: str, flag: str) -> int:
    """--from/--to: the token's index; a note when the text names several tokens."""
    from attn_cli.headmap import find_token

    found = find_token(tokens, spec, flag)
    if len(found.matches) > 1 and "@" not in spec:
        others = ", ".join(map(str, found.matches))
        note(f"{flag} {spec!r} matches tokens {others}: using {found.index} "
             f"({spec.strip()}@2 for the next)")
    return found.index
