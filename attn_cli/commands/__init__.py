"""The commands, one module each: parse the options, call the core, print once.

Every module is imported by cli.py, which registers its command on the Typer app; none imports
another. Shared options, help panels, the model options and the error handler are options.py's.
Heavy modules (torch, NumPy, the model) are imported inside the command functions, so that
`attn --help` and `attn tokens` never import torch.
"""
