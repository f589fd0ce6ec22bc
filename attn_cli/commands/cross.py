"""`attn cross SOURCE TARGET`: the encoder–decoder command (SPEC §6).

Like every command it parses, calls the core
(cross.py, models/encdec.py), prints once, and imports torch only inside the command.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from attn_cli.commands.options import (AllowSpecial, Device, DFF, Dims, DModel, Dtype, Encoding,
                                       Errors, File, Full, HeadList, Heads, Html, Json, LayerList,
                                       Layers, NDJson, NoColor, Precision, Seed, Svg, TopK,
                                       Truncate, _check_formats, _dims, _resolve_device, _terminal,
                                       handle_errors, note)
from attn_cli.errors import ConfigError, InputError


DEFAULT_SOURCE = "Le chat est assis sur le tapis."
DEFAULT_TARGET = "The cat sat on the mat."
_EXAMPLE = 'e.g. attn cross "Le chat est assis" "The cat sat"'


def _read_one(text: str | None, file: Path | None, errors: str, which: str) -> str:
    from attn_cli.inputs import read_text

    if text is not None and text != "-" and not text.strip():
        raise InputError(f"the {which} is empty or only whitespace: give some text, {_EXAMPLE}")
    try:
        result, _ = read_text(text, file, errors)
    except InputError as exc:
        message = str(exc)
        if message.startswith("the input is empty"):
            message = f"the {which} is empty or only whitespace: give some text, {_EXAMPLE}"
        elif which not in message:
            message = f"the {which}: {message}"
        raise InputError(message) from None
    return result


def read_pair(texts: list[str], file: Path | None, target_file: Path | None, errors: str,
              stdin=None) -> tuple[str, str]:
    """SOURCE and TARGET from arguments, --file / --target-file, or '-' (standard input)."""
    stdin = stdin if stdin is not None else sys.stdin
    texts = list(texts or [])
    wanted = [which for which, f in (("source", file), ("target", target_file)) if f is None]
    if not texts and file is None and target_file is None:
        if stdin is not None and not _isatty(stdin):
            raise InputError("attn cross reads two texts: give SOURCE and TARGET, and '-' for "
                             "the one to read from standard input")
        note(f'no texts given; using the default pair "{DEFAULT_SOURCE}" → "{DEFAULT_TARGET}"')
        return DEFAULT_SOURCE, DEFAULT_TARGET
    if len(texts) > len(wanted):
        given = " and ".join(f"--{'file' if w == 'source' else 'target-file'}"
                             for w in ("source", "target") if w not in wanted)
        raise InputError(f"attn cross takes two texts, SOURCE and TARGET, but got "
                         f"{len(texts) + 2 - len(wanted)}" + (f" (with {given})" if given else "")
                         + ": quote each text")
    if len(texts) < len(wanted):
        missing = wanted[len(texts)]
        flag = "--file" if missing == "source" else "--target-file"
        raise InputError(f"attn cross needs a {missing} too: give it as an argument or with "
                         f"{flag}, {_EXAMPLE}")
    given = dict(zip(wanted, texts))
    if given.get("source") == "-" and given.get("target") == "-":
        raise InputError("only one of SOURCE and TARGET can come from standard input ('-'): "
                         "give the other as an argument or a file")
    return (_read_one(given.get("source"), file, errors, "source"),
            _read_one(given.get("target"), target_file, errors, "target"))


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def build(layers, heads, d_model, d_ff, seed, encoding, model, device, dtype=None):
    """(EncoderDecoder, tiktoken encoding, encoding name); both stacks' weights held and
    computed in `dtype` (None: float32, or a checkpoint's own dtype on a GPU)."""
    dev = _resolve_device(device)
    if model is not None:
        given = [flag for flag, value in (
            ("--layers", layers), ("--heads", heads), ("--d-model", d_model), ("--d-ff", d_ff),
            ("--seed", seed), ("--encoding", encoding)) if value is not None]
        if given:
            raise ConfigError(
                f"{', '.join(given)} cannot be combined with --model: the checkpoint fixes its "
                f"own sizes, weights and tokenizer; drop {given[0]}")
        from attn_cli.models import encdec

        net, tokenizer = encdec.load(model, device=str(dev), dtype=dtype)
        return net, tokenizer, tokenizer.name
    import dataclasses

    from attn_cli import budget
    from attn_cli.models import encdec
    from attn_cli.models.config import ModelConfig
    from attn_cli.tokenizers import get_tokenizer

    cfg = ModelConfig(n_layers=2 if layers is None else layers,
                      n_heads=4 if heads is None else heads,
                      d_model=64 if d_model is None else d_model, d_ff=d_ff, causal=True,
                      seed=0 if seed is None else seed,
                      # drawn in float32 (the same bits everywhere), then rounded to --dtype
                      dtype=dtype or "float32")
    name = encoding or "o200k_base"
    tokenizer = get_tokenizer(name)
    budget.check_weights(dataclasses.replace(cfg, causal=False), str(dev))  # the encoder
    budget.check_weights(cfg, str(dev))  # the decoder
    import torch

    return encdec.seeded(cfg).to(dev, getattr(torch, cfg.dtype)), tokenizer, name


def _fit(tokens, limit, truncate: bool, which: str):
    if limit is None or len(tokens) <= limit or not truncate:
        return tokens
    note(f"the {which} has {len(tokens)} tokens; keeping the first {limit} (the model's "
         f"positions)")
    return tokens[:limit]


def _one(values: list, flag: str, default):
    if not values:
        return default
    if len(values) > 1:
        raise ConfigError(f"--steps takes one head apart: give one {flag}, not {len(values)}")
    return values[0]


@handle_errors
def cross(
    texts: Annotated[Optional[list[str]], typer.Argument(
        help="SOURCE (what the encoder reads) and TARGET (what the decoder reads); '-' reads "
             "one of them from standard input.", show_default=False, metavar="SOURCE TARGET")] = None,
    file: File = None,
    target_file: Annotated[Optional[Path], typer.Option(
        "--target-file", help="Read the target from this file (UTF-8).")] = None,
    errors: Errors = "strict",
    encoding: Encoding = None, allow_special: AllowSpecial = False,
    layers: Layers = None, heads: Heads = None, d_model: DModel = None, d_ff: DFF = None,
    seed: Seed = None,
    model: Annotated[Optional[str], typer.Option(
        "--model", help="BART weights (model_type bart): a folder (config.json, "
                        "model.safetensors, vocab.json, merges.txt) or a name in the local "
                        "Hugging Face cache. Never downloads.")] = None,
    truncate: Truncate = False, device: Device = "cpu", dtype: Dtype = None,
    kind: Annotated[Optional[list[str]], typer.Option(
        "--kind", help="encoder, decoder or cross (repeatable) [default: all three].",
        show_default=False)] = None,
    layer: LayerList = None, head: HeadList = None, top_k: TopK = 3,
    query: Annotated[Optional[int], typer.Option(
        "--query", help="Zoom on one target token: what it reads in each decoder and cross "
                        "head, and its context vector.")] = None,
    steps: Annotated[bool, typer.Option(
        "--steps", help="Take one head apart stage by stage (--kind, default cross; --layer "
                        "and --head, default 0).")] = False,
    precision: Precision = 2, dims: Dims = "8", json: Json = False, ndjson: NDJson = False,
    no_color: NoColor = False, full: Full = False, svg: Svg = None, html: Html = None,
) -> None:
    """Encoder–decoder: encoder self-attention, decoder (causal) self-attention and
    cross-attention (target tokens read the source), head by head."""
    from attn_cli import cross as cross_lib
    from attn_cli.models.config import check_dtype

    _check_formats(json, ndjson, svg, html)
    chosen = cross_lib.kinds(kind)
    _dims(dims)
    if dtype is not None:
        check_dtype(dtype)  # before any text or folder is read
    if steps:
        chosen = [_one(kind or [], "--kind", "cross")]
        cross_lib.kinds(chosen)
        layer, head = [_one(layer or [], "--layer", 0)], [_one(head or [], "--head", 0)]
    if query is not None and chosen == ["encoder"]:
        raise ConfigError("--query zooms on a target token, which only the decoder and cross "
                          "heads read: add --kind decoder or --kind cross")
    source, target = read_pair(texts, file, target_file, errors)
    net, tokenizer, name = build(layers, heads, d_model, d_ff, seed, encoding, model, device,
                                 dtype)
    from attn_cli.tokenizers import tokenize

    enc, dec = net.encoder.cfg, net.decoder.cfg
    src = _fit(tokenize(source, tokenizer, allow_special), enc.n_positions, truncate, "source")
    tgt_limit = None if dec.n_positions is None else dec.n_positions - 1
    tgt = _fit(tokenize(target, tokenizer, allow_special), tgt_limit, truncate, "target")
    for which, toks in (("source", src), ("target", tgt)):
        if not toks:
            raise InputError(f"the {which} produced no tokens")
    tgt = cross_lib.target_tokens(cross_lib.start_token(net, tokenizer), tgt, tokenizer)
    if query is not None and not 0 <= query < len(tgt):
        raise ConfigError(f"--query {query} is out of range: the decoder reads {len(tgt)} tokens "
                          f"(0-{len(tgt) - 1}, 0 is the start token)")
    keep = cross_lib.select(enc, dec, chosen, layer, head)
    cap = cross_lib.run(net, source, target, name, src, tgt, keep,
                        stages=steps or query is not None)
    from attn_cli import output
    from attn_cli.documents.cross import (attention_record, cross_doc, embeddings_doc,
                                          header_doc, query_doc, steps_doc)
    from attn_cli.documents.attention import steps_ndjson
    from attn_cli.views.cross import cross_view, steps_view

    n = max(len(src), len(tgt))
    if steps:
        h = cap.heads[0]
        if json or ndjson:
            doc = steps_doc(cap, h, query)
            if json:
                output.write_json(doc)
            else:
                output.write_ndjson(*steps_ndjson(doc))
        else:
            _terminal("cross", lambda view: steps_view(cap, h, view, query), no_color,
                      svg, html, precision=precision, dims=dims, full=full, n=n)
        return
    if json:
        output.write_json(cross_doc(cap, top_k, query))
    elif ndjson:
        records = (attention_record(cap, h, top_k) for h in cap.heads)
        last = [{"embeddings": embeddings_doc(cap)}]
        if query is not None:
            last.append({"query": query_doc(cap, query)})
        output.write_ndjson(header_doc(cap), _chain(records, last))
    else:
        _terminal("cross", lambda view: cross_view(cap, chosen, view, query),
                  no_color, svg, html, precision=precision, top_k=top_k, dims=dims, full=full,
                  n=n)


def _chain(records, last):
    yield from records
    yield from last
