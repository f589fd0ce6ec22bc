"""`attn compare`: two models on the same text, head by head; --a/--b parsed here."""

from __future__ import annotations

from typing import Annotated

from attn_cli.commands.options import (AllowSpecial, Causal, Device, DFF, DModel, Dtype, Encoding,
                                       Errors, File, Full, HeadList, Heads, Html, Json, LayerList,
                                       Layers, ModelOptions, ModelPath, NoColor, Precision, Seed,
                                       Svg, Text, Truncate, _check_formats, _model, _read, _run,
                                       _terminal, build, handle_errors, note)
from attn_cli.errors import AttnError, ConfigError


# The options --a and --b may set: flag -> (ModelOptions field, value type or the constant).
_SIDE_FLAGS = {"--seed": ("seed", int), "--layers": ("layers", int), "--heads": ("heads", int),
               "--d-model": ("d_model", int), "--d-ff": ("d_ff", int),
               "--encoding": ("encoding", str), "--model": ("model", str),
               "--dtype": ("dtype", str),
               "--causal": ("causal", True), "--bidirectional": ("causal", False)}


def side_options(base: ModelOptions, flag: str, spec: str) -> ModelOptions:
    """--a "--seed 1 --bidirectional": the shared options with these model options on top."""
    import dataclasses
    import shlex

    try:
        words = shlex.split(spec)
    except ValueError as exc:
        raise ConfigError(f"{flag}: cannot split {spec!r} into options: {exc}") from None
    changes = {}
    while words:
        word = words.pop(0)
        name, eq, value = word.partition("=")
        if name not in _SIDE_FLAGS:
            raise ConfigError(f"{flag}: {word!r} is not a model option; it takes "
                              f"{', '.join(_SIDE_FLAGS)}")
        field, kind = _SIDE_FLAGS[name]
        if isinstance(kind, bool):
            if eq:
                raise ConfigError(f"{flag}: {name} takes no value, got {word!r}")
            changes[field] = kind
            continue
        if not eq:
            if not words:
                raise ConfigError(f"{flag}: {name} needs a value")
            value = words.pop(0)
        try:
            changes[field] = kind(value)
        except ValueError:
            raise ConfigError(f"{flag}: {name} needs a whole number, got {value!r}") from None
    return dataclasses.replace(base, **changes)


def _side(base: ModelOptions, flag: str, spec: str, source: str, allow_special, layers, heads):
    """Build and run one side of a comparison; its errors name the side."""
    from attn_cli.summary import Side

    name = flag[2:].upper()
    opts = side_options(base, flag, spec)
    try:
        model, encoding, enc_name = build(opts)
        cap = _run(model, encoding, enc_name, opts, source, allow_special, layers, heads)
    except AttnError as exc:
        raise type(exc)(f"{name} ({flag} {spec!r}): {exc}") from None
    return Side(name, spec.strip(), cap)


@handle_errors
def compare(
    text: Text = None, file: File = None, errors: Errors = "strict",
    a: Annotated[str, _model(
        "--a", help="Model options of side A, in quotes: --seed, --layers, --heads, --d-model, "
                    "--d-ff, --causal/--bidirectional, --encoding, --model, --dtype.")] = "",
    b: Annotated[str, _model("--b", help="Model options of side B, likewise.")] = "",
    encoding: Encoding = None, allow_special: AllowSpecial = False,
    layers: Layers = None, heads: Heads = None, d_model: DModel = None, d_ff: DFF = None,
    seed: Seed = None, causal: Causal = None, model: ModelPath = None,
    truncate: Truncate = False, device: Device = "cpu", dtype: Dtype = None,
    layer: LayerList = None, head: HeadList = None,
    precision: Precision = 2, json: Json = False,
    no_color: NoColor = False, full: Full = False, svg: Svg = None, html: Html = None,
) -> None:
    """Two models on the same text, head by head: how far each head's attention moves (total
    variation distance per query), with the most different head side by side."""
    _check_formats(json, False, svg, html)
    if not a.strip() and not b.strip():
        raise ConfigError('compare needs two different sides: --a "--seed 0" --b "--seed 1", '
                          'for example, or --a --causal --b --bidirectional')
    base = ModelOptions(layers, heads, d_model, d_ff, seed, causal, encoding, model, device,
                        truncate, dtype)
    source = _read(text, file, errors)
    side_a = _side(base, "--a", a, source, allow_special, layer, head)
    side_b = _side(base, "--b", b, source, allow_special, layer, head)
    ta, tb = side_a.cap.tokens, side_b.cap.tokens
    if [t.raw for t in ta] != [t.raw for t in tb]:
        raise ConfigError(
            f"A and B split the text into different tokens ({len(ta)} with {side_a.cap.encoding}"
            f", {len(tb)} with {side_b.cap.encoding}), so their rows cannot be compared: give "
            f"both sides the same --encoding")
    from attn_cli import output
    from attn_cli.documents.attention import compare_doc
    from attn_cli.summary import head_diffs
    from attn_cli.views.compare import compare_view

    diffs = head_diffs(side_a.cap, side_b.cap)
    ca, cb = side_a.cap.config, side_b.cap.config
    if (ca.n_layers, ca.n_heads) != (cb.n_layers, cb.n_heads):
        note(f"A has {ca.n_layers} × {ca.n_heads} heads and B {cb.n_layers} × {cb.n_heads}; "
             f"comparing the {len(diffs)} (layer, head) pairs both have")
    if json:
        output.write_json(compare_doc(side_a, side_b, diffs))
    else:
        _terminal("compare", lambda view: compare_view(side_a, side_b, diffs, view),
                  no_color, svg, html, precision=precision, full=full, n=len(ta))
