"""The errors `attn` raises. Core code raises them; only `cli.py` prints them and exits.

Every `AttnError` is a mistake the user can fix (exit status 2). Anything else that escapes
is a bug and exits 1 (see SPEC §4).
"""


class AttnError(Exception):
    """A user mistake: one line, said plainly, with what to do about it."""

    exit_code = 2


class InputError(AttnError):
    """The text to look at is missing, empty or not decodable."""


class ConfigError(AttnError):
    """Model sizes or view options that cannot work together."""


class EncodingError(AttnError):
    """An unknown encoding, or one that cannot be had offline."""


class ModelLoadError(AttnError):
    """A `--model` folder or name that is missing, corrupt or not GPT-2-family."""


class DeviceError(AttnError):
    """A `--device` that this machine does not have."""
