"""attn: look at attention, one command at a time."""

__version__ = "0.1.0"
