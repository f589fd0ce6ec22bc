"""The `attn` command line: the Typer app, every command registered on it, the entry point.

The commands live in commands/ (one module each, their shared options in commands/options.py);
this module only builds the app, registers them in the order `attn --help` lists them, and
turns usage errors into one line and exit 2. Heavy modules (torch, the model, NumPy) are
imported inside the commands that need them, so `attn --help` and `attn tokens` never import
torch.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Annotated

import typer
from rich.console import Console

from attn_cli import safe
from attn_cli.commands import (compare, cross, encodings, generate, heads, history, inspect,
                               model, plot, pull, rollout, steps, tokens, train)
from attn_cli.commands.options import _quiet_stdout, _say, click_exceptions

app = typer.Typer(
    name="attn",
    help="Look inside attention: softmax(QKᵀ/√d_k + mask)·V, head by head, from the terminal.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # "rich" would eat "[default: 2]" and "[plot]" as tags
    context_settings={"help_option_names": ["-h", "--help"]},
)


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


# Every command, in the order `attn --help` lists them.
app.command()(inspect.inspect)
app.command()(heads.heads)
app.command()(steps.steps)
app.command()(rollout.rollout)
app.command()(compare.compare)
app.command()(plot.plot)
app.command()(tokens.tokens)
app.command()(encodings.encodings)
app.command("model")(model.model_command)
app.command()(generate.generate)
app.command("pull")(pull.pull_command)
app.command()(cross.cross)  # SPEC §6
app.command()(train.train)  # SPEC §8
app.command()(history.history)


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
