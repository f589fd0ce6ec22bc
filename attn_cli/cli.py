"""The `attn` command line: parse options, call the core, print once, map errors to exits.

Heavy modules (torch, the model, NumPy) are imported inside the commands that need them, so
`attn --help` and `attn tokens` never import torch.
"""

from __future__ import annotations

import errno
import functools
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from attn_cli import safe
from attn_cli.errors import AttnError, ConfigError, DeviceError

try:  # typer 0.2x carries its own copy of click
    from typer._click import exceptions as click_exceptions
except ImportError:  # older typer uses click itself
    from click import exceptions as click_exceptions

app = typer.Typer(
    name="attn",
    help="Look inside attention: softmax(QKᵀ/√d_k + mask)·V, head by head, from the terminal.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # "rich" would eat "[default: 2]" and "[plot]" as tags
    context_settings={"help_option_names": ["-h", "--help"]},
)
stderr = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False, markup=False)

# ------------------------------------------------------------------ shared options

# Options are grouped in help panels so that `attn COMMAND --help` reads well at 80 columns.
def _input(*names, **kwargs):
    return typer.Option(*names, rich_help_panel="Input", **kwargs)


def _model(*names, **kwargs):
    return typer.Option(*names, rich_help_panel="Model", **kwargs)


def _view(*names, **kwargs):
    return typer.Option(*names, rich_help_panel="View", **kwargs)


def _output(*names, **kwargs):
    return typer.Option(*names, rich_help_panel="Output", **kwargs)


Text = Annotated[Optional[str], typer.Argument(
    help="The text to look at; '-' reads standard input. Default: piped input; with none (a "
         "terminal, /dev/null), a sample sentence.", show_default=False)]
File = Annotated[Optional[Path], _input("--file", help="Read the text from this file (UTF-8).")]
Errors = Annotated[str, _input("--errors", help="Invalid UTF-8: 'strict' (an error) or "
                               "'replace' (U+FFFD).")]
Encoding = Annotated[Optional[str], _model(
    "--encoding", help="tiktoken encoding [default: o200k_base]; gpt2, r50k_base, cl100k_base "
                       "and o200k_base work offline.", show_default=False)]
AllowSpecial = Annotated[bool, _input(
    "--allow-special", help="Encode special-token text such as <|endoftext|> as the special token.")]
Layers = Annotated[Optional[int], _model("--layers", help="Transformer blocks [default: 2].",
                                         show_default=False)]
Heads = Annotated[Optional[int], _model("--heads", help="Heads per block [default: 4].",
                                        show_default=False)]
DModel = Annotated[Optional[int], _model(
    "--d-model", help="Residual width; must divide by --heads [default: 64].", show_default=False)]
DFF = Annotated[Optional[int], _model("--d-ff", help="MLP width [default: 4 × d_model].",
                                      show_default=False)]
Seed = Annotated[Optional[int], _model(
    "--seed", help="Every weight of the seeded model follows from it [default: 0].",
    show_default=False)]
Causal = Annotated[Optional[bool], _model(
    "--causal/--bidirectional", help="Mask future keys (GPT-style) or not (BERT-style) "
                                     "[default: causal].", show_default=False)]
ModelPath = Annotated[Optional[str], _model(
    "--model", help="Real weights: a checkpoint folder (config.json, model.safetensors, the "
                    "tokenizer files) of gpt2, gpt_neo, gpt_neox, llama, mistral, qwen2, bert or "
                    "roberta, or a NAME[@REV] in the local Hugging Face cache (attn pull NAME "
                    "puts it there). Never downloads.")]
Truncate = Annotated[bool, _input(
    "--truncate", help="Cut input longer than the model's positions (with a warning).")]
Device = Annotated[str, _model("--device", help="cpu, cuda or auto.")]
Dtype = Annotated[Optional[str], _model(
    "--dtype", help="float32, bfloat16 or float16: the precision the weights are held and "
                    "computed in (every softmax is float32) [default: float32 on the CPU; on a "
                    "GPU the checkpoint's own].", show_default=False)]
LayerList = Annotated[Optional[list[int]], _view(
    "--layer", help="Layer to show (repeatable) [default: all].", show_default=False)]
HeadList = Annotated[Optional[list[int]], _view(
    "--head", help="Head to show (repeatable) [default: all].", show_default=False)]
TopK = Annotated[int, _view("--top-k", help="Attended keys listed per query.", min=1)]
Precision = Annotated[int, _view("--precision", help="Decimals in tables.", min=0, max=8)]
Dims = Annotated[str, _view("--dims", help="Embedding dimensions shown: a number or 'all'.")]
Json = Annotated[bool, _output("--json", help="One JSON document on stdout.")]
NDJson = Annotated[bool, _output(
    "--ndjson", help="JSON lines: the header fields, then one record per line.")]
NoColor = Annotated[bool, _view("--no-color", help="No colours (NO_COLOR is honoured too).")]
Full = Annotated[bool, _view(
    "--full", help="Numeric tables even when wider than the terminal.")]
Svg = Annotated[Optional[Path], _output("--svg", help="Also save what is printed as SVG.")]
Html = Annotated[Optional[Path], _output("--html", help="Also save what is printed as HTML.")]
SaveTo = Annotated[Optional[Path], _output(
    "--save", help="Also save the numbers as arrays: FILE.safetensors or FILE.npz (layout in the "
                   "README).", show_default=False)]
Predict = Annotated[Optional[int], _view(
    "--predict", help="Also each position's K most likely next tokens, with probabilities (the "
                      "model's LM head).", show_default=False)]


# ------------------------------------------------------------------ errors

def _say(line: str, style: str | None = None) -> None:
    """One line on stderr: whatever it quotes (paths, option values, text) escaped, so that it
    stays one line and nothing in it reaches the terminal raw."""
    stderr.print(safe.terminal(line), style=style)


def _fail(message: str, code: int) -> None:
    _say(f"error: {message}")
    raise typer.Exit(code)


def handle_errors(command):
    """Core raises, the CLI decides: AttnError -> one line and exit 2; a bug -> exit 1."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except AttnError as exc:
            _fail(str(exc), exc.exit_code)
        except BrokenPipeError:
            _quiet_stdout()
            raise typer.Exit(0)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except (typer.Exit, click_exceptions.ClickException):
            raise
        except Exception as exc:
            if _debug():
                raise
            _fail(f"unexpected {type(exc).__name__}: {exc} (a bug in attn; run again with "
                  f"--debug for the traceback)", 1)

    return wrapper


def _debug() -> bool:
    return os.environ.get("ATTN_DEBUG", "") not in ("", "0")


def _quiet_stdout() -> None:
    """stdout was closed (attn ... | head): point it at /dev/null so nothing more complains."""
    from attn_cli.output import quiet_stdout

    quiet_stdout()


def note(message: str) -> None:
    _say(f"note: {message}", style="dim")


# ------------------------------------------------------------------ building blocks

@dataclass
class ModelOptions:
    layers: int | None
    heads: int | None
    d_model: int | None
    d_ff: int | None
    seed: int | None
    causal: bool | None
    encoding: str | None
    model: str | None
    device: str
    truncate: bool
    dtype: str | None = None  # None: float32, or a checkpoint's own dtype on a GPU


def _resolve_device(name: str):
    import torch

    if name == "cpu":
        return torch.device("cpu")
    if name in ("cuda", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if name == "auto":
            return torch.device("cpu")
        raise DeviceError(
            f"--device cuda: torch {torch.__version__} sees no CUDA GPU on this machine; use "
            f"--device cpu (or auto, which falls back to the CPU)"
        )
    raise DeviceError(f"--device must be cpu, cuda or auto, got {name!r}")


def build(opts: ModelOptions, streamed: bool = True):
    """(model, tiktoken encoding, encoding name) for the options given. streamed: a
    checkpoint's blocks are read as they run (checkpoint.load), for a command that runs the
    model once; generate, which runs it for every new token, holds them all."""
    import gc

    # Importing torch and building the model make ~170,000 objects that live as long as the
    # process; the cyclic collector would walk them all at three full collections on the
    # way (0.2-0.4 s of a command's start). They are not garbage: collect nothing meanwhile.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _build(opts, streamed)
    finally:
        if collecting:
            gc.enable()


def _build(opts: ModelOptions, streamed: bool):
    from attn_cli import models as model_lib
    from attn_cli.models.config import ModelConfig, check_dtype
    from attn_cli.tokenize import get_encoding

    if opts.dtype is not None:
        check_dtype(opts.dtype)  # before a folder is read
    device = _resolve_device(opts.device)
    if opts.model is not None:
        given = [flag for flag, value in (
            ("--layers", opts.layers), ("--heads", opts.heads), ("--d-model", opts.d_model),
            ("--d-ff", opts.d_ff), ("--seed", opts.seed), ("--encoding", opts.encoding))
            if value is not None]
        if opts.causal is False:
            given.append("--bidirectional")
        if given:
            raise ConfigError(
                f"{', '.join(given)} cannot be combined with --model: the checkpoint fixes its "
                f"own sizes, weights and tokenizer; drop {given[0]}"
            )
        from attn_cli.models import checkpoint

        model, encoding = checkpoint.load(opts.model, device=str(device), dtype=opts.dtype,
                                          streamed=streamed)
        return model, encoding, encoding.name
    cfg = ModelConfig(
        n_layers=2 if opts.layers is None else opts.layers,
        n_heads=4 if opts.heads is None else opts.heads,
        d_model=64 if opts.d_model is None else opts.d_model,
        d_ff=opts.d_ff,
        causal=True if opts.causal is None else opts.causal,
        seed=0 if opts.seed is None else opts.seed,
        # drawn in float32 (the same bits everywhere), then rounded to --dtype if one is given
        dtype=opts.dtype or "float32",
    )
    name = "o200k_base" if opts.encoding is None else opts.encoding
    encoding = get_encoding(name)
    from attn_cli import budget

    budget.check_weights(cfg, str(device))
    import torch

    return model_lib.seeded(cfg).to(device, getattr(torch, cfg.dtype)), encoding, name


def _tokens(text: str, encoding, allow_special: bool, limit: int | None, truncate: bool):
    from attn_cli.tokenize import tokenize

    tokens = tokenize(text, encoding, allow_special)
    unknown = encoding.unknown(tokens) if hasattr(encoding, "unknown") else []
    if unknown:  # a model trained by `attn train` knows only its own few tokens
        shown = ", ".join(dict.fromkeys(t.display for t in unknown[:8]))
        note(f"{len(unknown)} of the {len(tokens)} tokens are not in this model's vocabulary "
             f"of {encoding.n_vocab} and read as <unk>: {shown}")
    if limit is not None and len(tokens) > limit and truncate:
        note(f"the input has {len(tokens)} tokens; keeping the first {limit} (the model's "
             f"positions)")
        tokens = tokens[:limit]
    return tokens


def _read(text, file, errors):
    from attn_cli.inputs import read_text

    result, message = read_text(text, file, errors)
    if message:
        note(message)
    return result


def _dims(value: str) -> int | None:
    if value == "all":
        return None
    try:
        n = int(value)
    except ValueError:
        raise ConfigError(f"--dims must be a number or 'all', got {value!r}") from None
    if n < 1:
        raise ConfigError(f"--dims must be at least 1, got {n}")
    return n


def _check_formats(json: bool, ndjson: bool, svg, html, save=None) -> None:
    """Options that cannot go together, and files that cannot be written: before any work."""
    if json and ndjson:
        raise ConfigError("--json and --ndjson are two formats: pick one")
    if (json or ndjson) and (svg or html):
        raise ConfigError("--svg and --html save the terminal view; they do not go with --json")
    from attn_cli.output import check_writable

    for path in (svg, html):
        if path is not None:
            check_writable(path)
    if save is not None:
        from attn_cli import save as saving

        saving.check(save)


def _capture(opts: ModelOptions, text, file, errors, allow_special, layers, heads,
             stages=False, repeat: int | None = None, streamed: bool = False):
    """The forward pass's capture; `streamed`: its heads still to come, layer by layer, as
    the forward pass runs on (capture.stream), for a view that writes them as they come."""
    from attn_cli import capture

    if repeat is None:
        source = _read(text, file, errors)  # before the model: an empty pipe is found at once
        model, encoding, name = build(opts)
        return _run(model, encoding, name, opts, source, allow_special, layers, heads, stages,
                    streamed)
    model, encoding, name = build(opts)
    from attn_cli.tokenize import repeated_random

    if repeat < 1 or text is not None or file is not None:
        raise ConfigError("--repeat N takes a number ≥ 1 and no text: it builds its own "
                          "input (N random tokens, twice)")
    keep = capture.select(model.cfg, layers, heads)
    limit = model.cfg.n_positions
    if limit is not None and 2 * repeat > limit:
        raise ConfigError(f"--repeat {repeat} makes {2 * repeat} tokens but this model has only "
                          f"{limit} positions: use --repeat {limit // 2} or less")
    from attn_cli import budget

    budget.check_run(model.cfg, 2 * repeat, sum(len(h) for h in keep.values()), stages)
    tokens = repeated_random(repeat, model.cfg.seed or 0, encoding)
    source = b"".join(t.raw for t in tokens).decode("utf-8", errors="replace")
    return capture.run(model, source, name, tokens, keep, stages=stages)


def _run(model, encoding, name, opts: ModelOptions, source: str, allow_special, layers, heads,
         stages=False, streamed: bool = False):
    from attn_cli import capture

    tokens = _tokens(source, encoding, allow_special, model.cfg.n_positions, opts.truncate)
    keep = capture.select(model.cfg, layers, heads)
    if streamed:
        return capture.stream(model, source, name, tokens, keep, stages=stages)
    return capture.run(model, source, name, tokens, keep, stages=stages)


def _capture_predict(opts: ModelOptions, text, file, errors, allow_special, layers, heads,
                     k: int):
    """_capture, and each position's top-k next tokens from the same forward pass."""
    from attn_cli import generate as gen

    if k < 1:
        raise ConfigError(f"--predict must be at least 1, got {k}")
    model, encoding, name = build(opts)
    head = gen.LMHead(model, encoding)  # an encoder has none: said before the forward pass
    cap = _run(model, encoding, name, opts, _read(text, file, errors), allow_special, layers,
               heads)
    return cap, gen.predict(head, cap.embeddings, k)


def _with_predictions(doc: dict, cap, preds) -> dict:
    if preds is not None:
        from attn_cli.generate_view import predictions_records

        doc["predictions"] = predictions_records(cap.tokens, preds)
    return doc


def _predicted_view(cap, preds):
    from attn_cli import render
    from attn_cli.generate_view import with_predictions

    return lambda view: with_predictions(render.inspect_view(cap, view), cap.tokens, preds, view)


def _terminal(command: str, make, no_color: bool, svg, html, *, precision: int = 2,
              top_k: int = 3, dims: str = "8", full: bool = False, n: int = 0) -> None:
    """Print `make(view)` once to stdout (and save it as SVG/HTML if asked)."""
    from attn_cli import output
    from attn_cli.render import LABEL_WIDTH, View

    import dataclasses

    console = output.make_console(no_color, record=False)
    if full:  # numbers at any width: let the table be as wide as it needs, not the terminal
        console.width = max(console.width, LABEL_WIDTH + 4 + n * (precision + 8))
    view = View(precision=precision, top_k=top_k, dims=_dims(dims),
                color=output.uses_color(console), width=console.width, full=full)
    # a saved picture always has the colours; reuse what was printed when it had them too
    console.record = bool(svg or html) and view.color and not safe.ASCII
    output.show(console, make(view), svg, html, f"attn {command}",
                saved=lambda: make(dataclasses.replace(view, color=True)))


# ------------------------------------------------------------------ commands

def _print_version(value: bool) -> None:
    if value:
        from attn_cli import __version__

        print(f"attn {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of unexpected errors "
                                                        "(also ATTN_DEBUG=1).")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.",
                                          callback=_print_version, is_eager=True)] = False,
) -> None:
    if debug:
        os.environ["ATTN_DEBUG"] = "1"


@app.command()
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
    from attn_cli import output, render
    from attn_cli import save as saving

    if reduce:
        cap.heads = render.reduced_captures(cap, reduce, reduce_layers)
    if save is not None:
        saving.inspect(save, cap)

    if json:
        output.write_json(_with_predictions(render.inspect_doc(cap, top_k), cap, preds))
    elif ndjson:
        records = render.attention_records(cap, top_k)
        # made when its turn comes: a streamed capture has its embeddings only then
        records = _then(records, lambda: {"embeddings": render.embeddings_record(cap)})
        if preds is not None:
            records = _then(records, _with_predictions({}, cap, preds))
        output.write_ndjson(render.inspect_header(cap), records)
    else:
        make = (lambda view: render.inspect_view(cap, view)) if preds is None else \
            _predicted_view(cap, preds)
        _terminal("inspect", make, no_color, svg, html,
                  precision=precision, top_k=top_k, dims=dims, full=full, n=len(cap.tokens))


def _then(records, last):
    """The records, then `last` (called first if it is a callable)."""
    yield from records
    yield last() if callable(last) else last


@app.command()
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
    from attn_cli.render import PATTERN_SCORES

    _check_formats(json, ndjson, svg, html, save)
    if pattern is not None and pattern not in PATTERN_SCORES:
        raise ConfigError(f"--pattern {pattern!r} is not a pattern: choose one of "
                          f"{', '.join(PATTERN_SCORES)}")
    opts = ModelOptions(layers, heads, d_model, d_ff, seed, causal, encoding, model, device,
                        truncate, dtype)
    cap = _capture(opts, text, file, errors, allow_special,
                   None if pattern else [layer], None, repeat=repeat)
    from attn_cli import capture, output, render
    from attn_cli import save as saving

    capture.select(cap.config, [layer], None)  # the layer shown must exist
    if save is not None:
        saving.heads(save, cap, layer)
    if json or ndjson:
        doc = render.heads_doc(cap, layer, pattern)
        if json:
            output.write_json(doc)
        else:
            output.write_ndjson({k: v for k, v in doc.items() if k != "heads"}, doc["heads"])
    else:
        _terminal("heads", lambda view: render.heads_view(cap, layer, view, pattern), no_color,
                  svg, html, precision=precision)


@app.command()
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
    from attn_cli import output, render

    h = cap.head(layer, head)
    if json or ndjson:
        doc = render.steps_doc(cap, h, query)
        if json:
            output.write_json(doc)
        else:
            stages = doc.pop("stages")
            q = doc.pop("query", None)
            records = [{"stage": name, "values": values} for name, values in stages.items()]
            output.write_ndjson(doc, records + ([{"query": q}] if q is not None else []))
    else:
        _terminal("steps", lambda view: render.steps_view(cap, h, view, query), no_color, svg,
                  html, precision=precision, dims=dims, full=full, n=len(cap.tokens))


@app.command()
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
    from attn_cli import analysis, output, render
    from attn_cli import save as saving

    means = render.layer_means(cap)
    rolled = analysis.rollout(means)
    if save is not None:
        saving.rollout(save, cap, means, rolled)
    if json:
        output.write_json(render.rollout_doc(cap, rolled, top_k))
    else:
        _terminal("rollout", lambda view: render.rollout_view(cap, rolled, view), no_color, svg,
                  html, precision=precision, top_k=top_k, full=full, n=len(cap.tokens))


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
    from attn_cli.render import Side

    name = flag[2:].upper()
    opts = side_options(base, flag, spec)
    try:
        model, encoding, enc_name = build(opts)
        cap = _run(model, encoding, enc_name, opts, source, allow_special, layers, heads)
    except AttnError as exc:
        raise type(exc)(f"{name} ({flag} {spec!r}): {exc}") from None
    return Side(name, spec.strip(), cap)


@app.command()
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
    from attn_cli import output, render

    diffs = render.head_diffs(side_a.cap, side_b.cap)
    ca, cb = side_a.cap.config, side_b.cap.config
    if (ca.n_layers, ca.n_heads) != (cb.n_layers, cb.n_heads):
        note(f"A has {ca.n_layers} × {ca.n_heads} heads and B {cb.n_layers} × {cb.n_heads}; "
             f"comparing the {len(diffs)} (layer, head) pairs both have")
    if json:
        output.write_json(render.compare_doc(side_a, side_b, diffs))
    else:
        _terminal("compare", lambda view: render.compare_view(side_a, side_b, diffs, view),
                  no_color, svg, html, precision=precision, full=full, n=len(ta))


@app.command()
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
    from attn_cli.render import plural

    note(f"wrote {output} ({plural(len(cap.heads), 'head')}, "
         f"{plural(len(cap.tokens), 'token')})")


@app.command()
@handle_errors
def tokens(
    text: Text = None, file: File = None, errors: Errors = "strict",
    encoding: Encoding = None, model: ModelPath = None, allow_special: AllowSpecial = False,
    json: Json = False, ndjson: NDJson = False, no_color: NoColor = False,
    svg: Svg = None, html: Html = None,
) -> None:
    """Token index, id, text (whitespace and partial UTF-8 bytes made visible), byte length;
    with --model, the checkpoint's own tokenizer, its special tokens included."""
    from attn_cli import output, tokens_view
    from attn_cli.tokenize import get_encoding, tokenize

    _check_formats(json, ndjson, svg, html)
    if model is not None and encoding is not None:
        raise ConfigError("--encoding cannot be combined with --model: the checkpoint brings its "
                          "own tokenizer; drop --encoding")
    if model is not None:
        from attn_cli.models import folders  # no torch: the tokenizer files only

        tokenizer = folders.load_tokenizer(folders.resolve(model))
        name = tokenizer.name
    else:
        name = "o200k_base" if encoding is None else encoding
        tokenizer = get_encoding(name)
    source = _read(text, file, errors)
    toks = tokenize(source, tokenizer, allow_special)
    if json:
        output.write_json(tokens_view.tokens_doc(source, name, toks))
    elif ndjson:
        doc = tokens_view.tokens_doc(source, name, toks)
        output.write_ndjson({k: v for k, v in doc.items() if k != "tokens"}, doc["tokens"])
    else:
        console = output.make_console(no_color, record=bool(svg or html))
        output.show(console, tokens_view.tokens_table(toks), svg, html, "attn tokens")


@app.command()
@handle_errors
def encodings(json: Json = False, no_color: NoColor = False) -> None:
    """The encodings attn knows and whether each works offline (bundled / cached / needs network)."""
    from attn_cli import output, tokens_view
    from attn_cli.tokenize import availability, known_encodings

    rows = [(name, availability(name)) for name in known_encodings()]
    if json:
        output.write_json({"schema_version": tokens_view.SCHEMA_VERSION, "command": "encodings",
                           "encodings": [{"name": n, "offline": s} for n, s in rows]})
    else:
        console = output.make_console(no_color, record=False)
        output.show(console, tokens_view.encodings_table(rows), None, None, "attn encodings")


@app.command("model")
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
    from attn_cli import output, render
    from attn_cli.models import describe
    from attn_cli.tokens_view import SCHEMA_VERSION

    doc = {"schema_version": SCHEMA_VERSION, "command": "model", "encoding": name,
           **describe(net)}
    if json:
        output.write_json(doc)
    else:
        console = output.make_console(no_color, record=False)
        output.show(console, render.model_view(doc), None, None, "attn model")


@app.command()
@handle_errors
def generate(
    prompt: Text = None, file: File = None, errors: Errors = "strict",
    encoding: Encoding = None, allow_special: AllowSpecial = False,
    layers: Layers = None, heads: Heads = None, d_model: DModel = None, d_ff: DFF = None,
    seed: Annotated[Optional[int], typer.Option(
        "--seed", help="Seeds the sampler, and the weights of the seeded model [default: 0].",
        show_default=False)] = None,
    causal: Causal = None, model: ModelPath = None,
    truncate: Truncate = False, device: Device = "cpu", dtype: Dtype = None,
    new: Annotated[int, typer.Option("-n", "--new-tokens", help="Tokens to generate.")] = 10,
    temperature: Annotated[Optional[float], typer.Option(
        "--temperature", help="Sample from softmax(logits / T) instead of greedy (0: greedy).",
        show_default=False)] = None,
    sample_top_k: Annotated[Optional[int], typer.Option(
        "--top-k", help="Sample among the K most likely tokens only (temperature 1 unless "
                        "given).", show_default=False)] = None,
    sample_seed: Annotated[Optional[int], typer.Option(
        "--sample-seed", help="Seed of the sampler alone [default: --seed].",
        show_default=False)] = None,
    candidates: Annotated[int, typer.Option(
        "--candidates", help="Most likely tokens listed per step (the chosen one and its "
                             "runners-up).")] = 5,
    layer: LayerList = None,
    head: Annotated[Optional[list[int]], typer.Option(
        "--head", help="Heads whose attention to show (repeatable) [default: the mean over "
                       "every head of each layer].", show_default=False)] = None,
    precision: Annotated[int, typer.Option("--precision", help="Decimals in tables.", min=0,
                                           max=8)] = 3,
    json: Json = False, ndjson: NDJson = False, no_color: NoColor = False,
) -> None:
    """Continue the prompt token by token (greedy, or sampled), printing each token as it is
    made, then its probability, the runners-up and what it attended to."""
    from attn_cli import generate as gen

    _check_formats(json, ndjson, None, None)
    if new < 1:
        raise ConfigError(f"-n must be at least 1, got {new}")
    if candidates < 1:
        raise ConfigError(f"--candidates must be at least 1, got {candidates}")
    from attn_cli.models.config import MAX_SEED

    for flag, value in (("--seed", seed), ("--sample-seed", sample_seed)):
        if value is not None and not 0 <= value <= MAX_SEED:
            raise ConfigError(f"{flag} must be between 0 and {MAX_SEED}, got {value}")
    sampling = gen.Sampling(temperature, sample_top_k,
                            sample_seed if sample_seed is not None else seed or 0)
    sampling.check()
    # with --model, --seed seeds only the sampler: the checkpoint fixes its own weights
    opts = ModelOptions(layers, heads, d_model, d_ff, seed if model is None else None, causal,
                        encoding, model, device, truncate, dtype)
    net, enc, name = build(opts, streamed=False)
    lm_head = gen.LMHead(net, enc)
    watch = gen.watch_list(net.cfg, layer, head)
    source = _read(prompt, file, errors)
    limit = net.cfg.n_positions
    tokens = _tokens(source, enc, allow_special, None if limit is None else limit - 1, truncate)
    gen.check_budget(net.cfg, len(tokens), new, len(watch))
    run = gen.Generation(net, lm_head, [t.id for t in tokens], new, sampling=sampling,
                         shown=candidates, watch=watch, stops=gen.stop_ids(net, enc))
    from attn_cli import generate_view as gv
    from attn_cli import output

    if json:
        steps = list(run)
        output.write_json(gv.generate_doc(source, name, net.cfg, tokens, sampling, steps,
                                          run.stop))
    elif ndjson:
        _stream_ndjson(gv.generate_header(source, name, net.cfg, tokens, sampling),
                       _then((gv.step_record(s) for s in run),
                             lambda: gv.generate_tail(source, run.steps, run.stop)))
    else:
        from attn_cli.render import View

        console = output.make_console(no_color, record=False)
        view = View(precision=precision, color=output.uses_color(console), width=console.width)
        console.print(gv.generate_title(net.cfg, name, len(tokens), sampling))
        live = gv.LiveText(console, console.is_terminal, precision)
        live.start(tokens)
        try:
            for step in run:
                live.add(step)
        finally:  # Ctrl-C or an error mid-line: end the line before anything else is said
            live.end()
        console.print()
        console.print(gv.summary(tokens, run.steps, run.stop, sampling, view))
    if run.stop == "end_of_text":
        note(f"stopped at the end-of-text token after {len(run.steps)} of {new} tokens")
    elif run.stop == "positions":
        note(f"stopped after {len(run.steps)} of {new} tokens: this model reads at most "
             f"{limit} positions")


def _stream_ndjson(header: dict, records) -> None:
    """NDJSON written and flushed line by line, as each record is made."""
    from attn_cli import output

    out = sys.stdout.buffer
    out.write(output.dumps(header))
    out.flush()
    for record in records:
        out.write(output.dumps(record))
        out.flush()


@app.command("pull")
@handle_errors
def pull_command(
    name: Annotated[str, typer.Argument(
        help="A Hugging Face model repo, e.g. EleutherAI/pythia-70m or gpt2 (NAME@REV also "
             "picks a revision).", metavar="NAME", show_default=False)],
    revision: Annotated[Optional[str], typer.Option(
        "--revision", help="Branch, tag or commit to download [default: main]; --model "
                           "NAME@REV then uses it.", show_default=False)] = None,
) -> None:
    """Download what --model NAME needs (config, tokenizer, safetensors weights) into the
    Hugging Face cache: the one command that uses the network; needs the optional extra: pip
    install 'attn-cli[hub]'."""
    from attn_cli import pull as pull_lib

    result = pull_lib.pull(name, revision)
    use = result.name if result.revision == "main" else f"{result.name}@{result.revision}"
    what = f"{result.name} at {result.revision} (commit {result.commit[:12]})"
    n = len(result.fetched)
    if n:
        kept = f", {len(result.cached)} already in the cache" if result.cached else ""
        note(f"{what}: {n} file{'s' if n != 1 else ''} downloaded ({result.nbytes / 1e6:,.1f} "
             f"MB){kept}; now `attn inspect --model {use}` works offline")
    else:
        note(f"{what} is already in the cache ({len(result.cached)} files); `attn inspect "
             f"--model {use}` works offline")
    print(result.folder)


# ------------------------------------------------------------------ entry point

def _given(args: list[str], exc) -> str:
    """', got 'abc'' for a bad option value, when click's message does not quote it."""
    param = getattr(exc, "param", None)
    if not isinstance(exc, click_exceptions.BadParameter) or param is None:
        return ""
    value = None
    for n, arg in enumerate(args):
        name, eq, rest = arg.partition("=")
        if name in getattr(param, "opts", ()):
            value = rest if eq else (args[n + 1] if n + 1 < len(args) else None)
    if value is None or repr(value) in exc.format_message():
        return ""
    return f", got {value!r}"


def _sane_environment() -> None:
    """COLUMNS or LINES that is 0, negative or not a number is ignored (rich would print
    nothing at width 0): the terminal's own size is used, or 80 columns."""
    for name in ("COLUMNS", "LINES"):
        value = os.environ.get(name)
        if value is not None and not (value.strip().isdigit() and int(value) > 0):
            del os.environ[name]


def _standard_streams() -> None:
    """A closed stdout (`attn … >&-`) fails as a write; an ASCII-only one gets stand-ins."""
    from attn_cli.output import ClosedStream

    if sys.stdout is None:
        sys.stdout = ClosedStream()
    # rich ends a closed pipe with exit 1 (--help | head); attn ends it quietly with 0
    Console.on_broken_pipe = _on_broken_pipe
    if not safe.can_show(sys.stdout):
        safe.ASCII = True
        sys.stdout = safe.AsciiStream(sys.stdout)
    if sys.stderr is not None and not safe.can_show(sys.stderr):
        sys.stderr = safe.AsciiStream(sys.stderr)


def _on_broken_pipe(console: Console) -> None:
    console.quiet = True
    raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))


def _write_failed(exc: OSError) -> int:
    """Help, version or the last flush could not be written to stdout: say so, once."""
    from attn_cli.errors import WriteError
    from attn_cli.output import STDOUT, quiet_stdout

    quiet_stdout()
    error = WriteError.from_os(STDOUT, exc)
    _say(f"error: {error}")
    return error.exit_code


def main() -> None:
    """The console script: like app(), but every usage error is one line and exit 2."""
    args = sys.argv[1:]
    if "--debug" in args:  # accepted anywhere on the line, not only before the command
        args = [a for a in args if a != "--debug"]
        os.environ["ATTN_DEBUG"] = "1"
    _sane_environment()
    _standard_streams()
    command = typer.main.get_command(app)
    try:
        code = command.main(args=args, prog_name="attn", standalone_mode=False)
    except click_exceptions.NoArgsIsHelpError:  # the help was printed already
        code = 0
    except click_exceptions.UsageError as exc:
        hint = f" (see 'attn {exc.ctx.info_name} --help')" if exc.ctx and \
            exc.ctx.info_name != "attn" else " (see 'attn --help')"
        given = _given(args, exc)
        _say(f"error: {exc.format_message()}{given}{hint}")
        code = 2
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        _say("error: interrupted")
        code = 130
    except KeyboardInterrupt:
        _say("error: interrupted")
        code = 130
    except BrokenPipeError:
        _quiet_stdout()
        code = 0
    except OSError as exc:  # the help or the version could not be written (a command
        code = _write_failed(exc)  # reports its own write errors)
    except SystemExit:  # typer ends a closed pipe during --help with exit 1
        if type(sys.stdout).__name__ != "PacifyFlushWrapper":
            raise
        _quiet_stdout()
        code = 0
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        _quiet_stdout()
    except OSError as exc:
        failed = _write_failed(exc)
        code = code or failed
    sys.exit(code if isinstance(code, int) else 0)


# `attn cross` (SPEC §6) lives in its own module and registers itself on `app` (no torch import).
from attn_cli import cross_command  # noqa: E402,F401
from attn_cli import train_command  # noqa: E402,F401  (attn train, attn history: SPEC §8)
