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


class WriteError(AttnError):
    """A file or standard output that cannot be written: `cannot write PATH: REASON`, REASON
    being the system's words (strerror). Exit 2 when the path is what is wrong and the user can
    fix it (a missing folder, a folder given as a file, no permission); 1 when the system
    refused a write that should have worked (a full disk, an I/O error, a closed stdout)."""

    # errno values that name a problem with the path the user gave
    USER_FIXABLE = frozenset({"ENOENT", "ENOTDIR", "EISDIR", "EACCES", "EPERM", "EROFS",
                              "ENAMETOOLONG", "ELOOP", "EEXIST"})

    def __init__(self, path: str, reason: str, exit_code: int = 1, hint: str = "") -> None:
        self.path = path
        self.exit_code = exit_code
        super().__init__(f"cannot write {path}: {reason}" + (f" ({hint})" if hint else ""))

    @classmethod
    def from_os(cls, path, exc: OSError, hint: str = "") -> "WriteError":
        import errno

        name = errno.errorcode.get(exc.errno or 0, "")
        return cls(str(path), exc.strerror or str(exc),
                   2 if name in cls.USER_FIXABLE else 1, hint)

    @classmethod
    def of(cls, path, errno_name: str, hint: str = "") -> "WriteError":
        """One for a check made before writing: errno_name such as 'ENOENT'."""
        import errno
        import os

        number = getattr(errno, errno_name)
        return cls.from_os(path, OSError(number, os.strerror(number)), hint)
