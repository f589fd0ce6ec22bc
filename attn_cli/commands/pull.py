"""`attn pull NAME`: download a checkpoint into the Hugging Face cache (the [hub] extra)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from attn_cli.commands.options import (handle_errors, note)


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
