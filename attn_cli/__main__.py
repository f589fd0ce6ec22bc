"""`python -m attn_cli`: the same entry point as the `attn` console script."""

from attn_cli.cli import main

main()
