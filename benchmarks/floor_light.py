"""The LIGHT FLOOR of SPEC §5: what `attn tokens TEXT --json` cannot go below.

A minimal Typer program that imports typer, rich and tiktoken, builds the o200k_base
`tiktoken.Encoding` from the same rank file attn bundles, and prints the ids of its argument as
JSON. The rank file is parsed with tiktoken's own loader (`tiktoken.load.load_tiktoken_bpe`);
run.py gunzips attn's bundled `o200k_base.tiktoken.gz` to a temporary file once, before any
timing, and passes its path with --ranks. Nothing is verified (no sha256) and nothing is cached.

It deliberately does not import attn_cli: the pattern string and the special tokens are copied
from tiktoken_ext/openai_public.py (o200k_base), the same values attn_cli.tokenizers uses.

    python benchmarks/floor_light.py --ranks /tmp/o200k_base.tiktoken "some text"
"""

from __future__ import annotations

import json
import os
import sys

import rich.console  # noqa: F401  (the floor pays for rich, as attn does)
import tiktoken
import tiktoken.load
import typer

O200K_PAT = "|".join([
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""",
    r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
    r"""\s*[\r\n]+""",
    r"""\s+(?!\S)""",
    r"""\s+""",
])
O200K_SPECIAL = {"<|endoftext|>": 199999, "<|endofprompt|>": 200018}

app = typer.Typer(add_completion=False)


def o200k(ranks_path: str) -> tiktoken.Encoding:
    # An empty TIKTOKEN_CACHE_DIR makes tiktoken read the file as it is, without copying it
    # into its download cache first (tiktoken.load.read_file_cached).
    saved = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = ""
    try:
        ranks = tiktoken.load.load_tiktoken_bpe(ranks_path)
    finally:
        if saved is None:
            del os.environ["TIKTOKEN_CACHE_DIR"]
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = saved
    return tiktoken.Encoding(name="o200k_base", pat_str=O200K_PAT, mergeable_ranks=ranks,
                             special_tokens=O200K_SPECIAL)


@app.command()
def main(
    text: str = typer.Argument(..., help="The text to tokenize."),
    ranks: str = typer.Option(..., "--ranks", help="The decompressed o200k_base rank file."),
) -> None:
    """Print the o200k_base token ids of TEXT as a JSON list."""
    ids = o200k(ranks).encode_ordinary(text)
    sys.stdout.write(json.dumps(ids) + "\n")


if __name__ == "__main__":
    app()
