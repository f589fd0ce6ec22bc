"""Where the text comes from: an argument, standard input, a file, or the default sentence.

- TEXT, or `--file PATH`, or `-` (standard input, a terminal included).
- No TEXT and no file: standard input when something is connected to it (a pipe, a file); the
  default sentence when it is a terminal or absent (closed, or /dev/null: what a job started
  with no input gets). An empty pipe or an empty file is empty input, an error: the user sent
  nothing where they meant to send text.
- Files and standard input are read with a cap (MAX_INPUT_BYTES), so `--file /dev/zero` is an
  error and not a hang that fills the memory.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from attn_cli.errors import InputError

# Also in sample_texts/default.txt (a test keeps the two equal).
DEFAULT_TEXT = "The cat sat on the mat because it was tired."
DEFAULT_NOTE = f'no text given; using the default sentence "{DEFAULT_TEXT}"'

# 16 MiB is about 4 million tokens of English: hundreds of times the longest input whose
# attention a terminal (or the memory for T × T weights) can hold, and still room for
# `attn tokens` on a whole book.
MAX_INPUT_BYTES = 16 * 2**20

_EXAMPLE = 'e.g. attn inspect "The cat sat on the mat"'


def _decode(data: bytes, where: str, errors: str) -> str:
    try:
        return data.decode("utf-8", errors="strict" if errors == "strict" else "replace")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{where} is not valid UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start}; "
            f"fix the text or pass --errors replace to decode it with U+FFFD"
        ) from None


def read_text(text: str | None, file: Path | None, errors: str = "strict",
              stdin=None) -> tuple[str, str | None]:
    """Return (text, note for stderr or None). Empty or whitespace-only text is an error."""
    if errors not in ("strict", "replace"):
        raise InputError(f"--errors must be 'strict' or 'replace', got {errors!r}")
    stdin = stdin if stdin is not None else sys.stdin
    note = None
    if text is not None and file is not None:
        raise InputError("give the text as an argument or with --file, not both")
    if file is not None:
        where = f"--file {file}"
        data = _read_file(Path(file), where)
        if not data:
            raise InputError(f"{where} is empty: give a file with some text, or the text "
                             f"itself, {_EXAMPLE}")
        result = _decode(data, where, errors)
    elif text == "-" or (text is None and _connected(stdin)):
        data = _read_capped(stdin, "standard input")
        if not data:
            raise InputError(f"standard input is empty: pipe some text in, or give it as an "
                             f"argument, {_EXAMPLE}")
        result = _decode(data, "standard input", errors)
    elif text is None:
        result, note = DEFAULT_TEXT, DEFAULT_NOTE
    else:
        try:  # arguments that were not UTF-8 arrive with surrogate escapes
            text.encode("utf-8")
            result = text
        except UnicodeEncodeError:
            result = _decode(text.encode("utf-8", "surrogateescape"), "the TEXT argument", errors)
    if not result.strip():
        raise InputError(f"the input is empty or only whitespace: give some text, {_EXAMPLE}")
    return result, note


def _connected(stream) -> bool:
    """Whether standard input has something to read: not absent, not a terminal, not
    /dev/null. (A stream without a file descriptor, as in tests, counts as connected.)"""
    if stream is None or _isatty(stream):
        return False
    try:
        info = os.fstat(stream.fileno())
    except (AttributeError, ValueError, OSError):  # no descriptor (io.UnsupportedOperation)
        return not getattr(stream, "closed", False)
    return not _is_devnull(info)


def _is_devnull(info: os.stat_result) -> bool:
    if not stat.S_ISCHR(info.st_mode):
        return False
    try:
        null = os.stat(os.devnull)
    except OSError:
        return False
    return stat.S_ISCHR(null.st_mode) and info.st_rdev == null.st_rdev


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _too_long(where: str) -> InputError:
    return InputError(f"{where} holds more than {MAX_INPUT_BYTES // 2**20} MiB of text, more "
                      f"than attn can show; give a shorter text (e.g. head -c 100000 FILE)")


def _read_file(path: Path, where: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        raise InputError(f"cannot read {where}: {exc.strerror or exc}") from None
    if len(data) > MAX_INPUT_BYTES:
        raise _too_long(where)
    return data


def _read_capped(stream, where: str) -> bytes:
    buffer = getattr(stream, "buffer", None)
    try:
        data = buffer.read(MAX_INPUT_BYTES + 1) if buffer is not None \
            else stream.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        raise InputError(f"cannot read {where}: {exc.strerror or exc}") from None
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    if len(data) > MAX_INPUT_BYTES:
        raise _too_long(where)
    return data
