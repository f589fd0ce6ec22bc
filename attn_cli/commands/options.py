"""What every command shares: the Annotated options and their help panels, the error handler
(core raises, the CLI decides), the model options and the steps from options to a capture and
from a view to stdout.

Heavy modules (torch, the model, NumPy) are imported inside the functions that need them.
"""

from __future__ import annotations

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


stderr = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False, markup=False)


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
                    "puts it there), or a GGUF file (PATH.gguf, or ollama:NAME[:TAG] from the "
                    "Ollama store) of llama, qwen2 or gpt2. Never downloads.")]


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


Page = Annotated[Optional[Path], _output(
    "--page", help="Also write FILE.html: a self-contained page (no network) to explore this "
                   "attention with the mouse and the keyboard.", show_default=False)]


Predict = Annotated[Optional[int], _view(
    "--predict", help="Also each position's K most likely next tokens, with probabilities (the "
                      "model's LM head).", show_default=False)]


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
    from attn_cli.tokenizers import get_encoding

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
    from attn_cli.tokenizers import tokenize

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


def _check_formats(json: bool, ndjson: bool, svg, html, save=None, page=None) -> None:
    """Options that cannot go together, and files that cannot be written: before any work."""
    if json and ndjson:
        raise ConfigError("--json and --ndjson are two formats: pick one")
    if (json or ndjson) and (svg or html):
        raise ConfigError("--svg and --html save the terminal view; they do not go with --json")
    from attn_cli.output import check_writable

    for path in (svg, html, page):
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
    from attn_cli.tokenizers import repeated_random

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


def _terminal(command: str, make, no_color: bool, svg, html, *, precision: int = 2,
              top_k: int = 3, dims: str = "8", full: bool = False, n: int = 0) -> None:
    """Print `make(view)` once to stdout (and save it as SVG/HTML if asked)."""
    from attn_cli import output
    from attn_cli.views.matrix import LABEL_WIDTH, View

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


def _write_page(path: Path | None, make) -> None:
    """--page: write the page of the document `make()` returns (page.py), if one was asked."""
    if path is not None:
        from attn_cli import page

        page.write(path, make())


def _then(records, last):
    """The records, then `last` (called first if it is a callable)."""
    yield from records
    yield last() if callable(last) else last


def _stream_ndjson(header: dict, records) -> None:
    """NDJSON written and flushed line by line, as each record is made."""
    from attn_cli import output

    out = sys.stdout.buffer
    out.write(output.dumps(header))
    out.flush()
    for record in records:
        out.write(output.dumps(record))
        out.flush()
