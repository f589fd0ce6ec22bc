"""Where the text comes from: an argument, standard input, a file, or the default sentence."""

from __future__ import annotations

import sys
from pathlib import Path

from attn_cli.errors import InputError

# Also in sample_texts/default.txt (a test keeps the two equal).
DEFAULT_TEXT = "The cat sat on the mat because it was tired."


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
        try:
            data = Path(file).read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read --file {file}: {exc.strerror or exc}") from None
        result = _decode(data, f"--file {file}", errors)
    elif text == "-" or (text is None and stdin is not None and not _isatty(stdin)):
        data = _read_stdin(stdin)
        if text is None and not data:  # nothing piped in: same as no input at all
            result, note = DEFAULT_TEXT, f'no text given; using the default sentence "{DEFAULT_TEXT}"'
        else:
            result = _decode(data, "standard input", errors)
    elif text is None:
        result, note = DEFAULT_TEXT, f'no text given; using the default sentence "{DEFAULT_TEXT}"'
    else:
        try:  # arguments that were not UTF-8 arrive with surrogate escapes
            text.encode("utf-8")
            result = text
        except UnicodeEncodeError:
            result = _decode(text.encode("utf-8", "surrogateescape"), "the TEXT argument", errors)
    if not result.strip():
        raise InputError(
            'the input is empty or only whitespace: give some text, e.g. attn inspect "The cat '
            'sat on the mat"'
        )
    return result, note


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _read_stdin(stream) -> bytes:
    buffer = getattr(stream, "buffer", None)
    data = buffer.read() if buffer is not None else stream.read()
    return data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
