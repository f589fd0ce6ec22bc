"""Writing results: one JSON document, NDJSON records, or one rich renderable; and saved files.
Light: no torch, no NumPy import (orjson serialises NumPy arrays it is handed without importing
NumPy here).

Every write that fails is the user's to hear about in one line (SPEC §4): standard output that
is full or closed, a saved file whose folder is missing or whose disk is full, all become
`WriteError` (`cannot write PATH: REASON`). A closed pipe (`attn … | head`) is not a failure:
BrokenPipeError passes through for the CLI to end quietly. Saved files are written to a
temporary file in the same folder and renamed over the target, so a failed write leaves no
half file (and an old file stays as it was).
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
from rich.console import Console, RenderableType

from attn_cli import safe
from attn_cli.errors import WriteError

_JSON_OPTS = orjson.OPT_SERIALIZE_NUMPY
STDOUT = "standard output"


def _dumps(obj) -> bytes:
    return orjson.dumps(obj, default=_contiguous, option=_JSON_OPTS)


class Stream:
    """A list in a JSON document that is made item by item as it is written: write_json
    writes each item as soon as it is made (the whole document never sits in memory); dumps
    gives the same bytes in one piece. Its items can be iterated once."""

    def __init__(self, items: Iterable) -> None:
        self.items = items


class Later:
    """A value in a JSON document that is made only when it is written, after the fields
    before it (a Stream's items may be what makes it)."""

    def __init__(self, make: Callable[[], object]) -> None:
        self.make = make


class Rows:
    """A 2-D NumPy array in a JSON document (the same bytes as the array itself), which
    write_json and write_ndjson write a block of rows at a time where it is a field of a
    Stream item or record: its whole text (130 MB for a 4,096-token matrix) is never made at
    once, and the GIL is let go between blocks."""

    def __init__(self, array) -> None:
        self.array = array


_BLOCK_VALUES = 1 << 16  # values per block of rows (about 0.8 MB of text)


def _contiguous(obj):
    """orjson's fallback: Rows, NumPy views that are not C-contiguous, and NumPy scalars."""
    import numpy as np

    if isinstance(obj, Rows):
        return np.ascontiguousarray(obj.array)
    if isinstance(obj, np.ndarray):
        return np.ascontiguousarray(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def _rows(array) -> Iterator[bytes]:
    """The text of a 2-D array, a block of rows at a time."""
    step = max(1, _BLOCK_VALUES // max(1, array.shape[-1]))
    opening = b"["
    for start in range(0, len(array), step):
        yield opening
        yield memoryview(_dumps(array[start:start + step]))[1:-1]  # "[r],[r]" of "[[r],[r]]"
        opening = b","
    yield b"[]" if opening == b"[" else b"]"


def _pieces(value) -> Iterator[bytes]:
    """The bytes of _dumps(value) in pieces. A dict with a Stream, Later or Rows field is
    written field by field: a Stream item by item (each in pieces: a record can be
    megabytes), a Later when its turn comes, a Rows a block of rows at a time. Anything else
    is one piece."""
    if not isinstance(value, dict) or not any(isinstance(v, (Stream, Later, Rows))
                                              for v in value.values()):
        yield _dumps(value)
        return
    sep = b"{"
    for key, field in value.items():
        yield sep + _dumps(key) + b":"
        sep = b","
        if isinstance(field, Stream):
            opening = b"["
            for item in field.items:
                yield opening
                yield from _pieces(item)
                opening = b","
            yield b"[]" if opening == b"[" else b"]"
        elif isinstance(field, Later):
            yield _dumps(field.make())
        elif isinstance(field, Rows):
            yield from _rows(field.array)
        else:
            yield _dumps(field)
    yield b"}"


def _chunks(doc) -> Iterator[bytes]:
    """The bytes of dumps(doc), in pieces (_pieces), then the newline."""
    yield from _pieces(doc)
    yield b"\n"


def dumps(doc) -> bytes:
    """Compact JSON; float32 values keep float32 precision; −∞ and NaN become null."""
    return b"".join(_chunks(doc))


class Texts:
    """Byte strings laid end to end in one NumPy uint8 buffer: item i is
    buf[start[i]:start[i] + length[i]]. What `joined` picks from, in any order, without a
    Python loop over the items."""

    def __init__(self, buf, start, length) -> None:
        self.buf, self.start, self.length = buf, start, length

    def __len__(self) -> int:
        return len(self.start)

    @classmethod
    def of(cls, items: list[bytes]) -> "Texts":
        import numpy as np

        length = np.fromiter(map(len, items), dtype=np.int64, count=len(items))
        return cls(np.frombuffer(b"".join(items), dtype=np.uint8),
                   np.cumsum(length) - length, length)

    @classmethod
    def concat(cls, *parts: "Texts") -> tuple["Texts", list[int]]:
        """One table of all the parts' items, and where each part's items begin in it."""
        import numpy as np

        firsts = np.cumsum([0] + [len(p) for p in parts])[:-1].tolist()
        at = np.cumsum([0] + [len(p.buf) for p in parts])[:-1]
        return cls(np.concatenate([p.buf for p in parts]),
                   np.concatenate([p.start + a for p, a in zip(parts, at)]),
                   np.concatenate([p.length for p in parts])), firsts


def float_texts(values) -> Texts:
    """Each value of a 1-D float32 NumPy array as dumps writes it (one orjson call for them
    all; a value's text never holds a comma, so the commas split them)."""
    import numpy as np

    if not len(values):
        return Texts(np.zeros(0, np.uint8), np.zeros(0, np.int64), np.zeros(0, np.int64))
    buf = np.frombuffer(_dumps(values), dtype=np.uint8)[1:-1]  # without [ and ]
    commas = np.flatnonzero(buf == ord(","))
    start = np.concatenate(([0], commas + 1))
    return Texts(buf, start, np.concatenate((commas, [len(buf)])) - start)


def joined(table: Texts, ids):
    """The items ids[0], ids[1], … of `table` laid end to end: (uint8 array, the end of each
    one in it). Made with NumPy (no Python loop, and without the GIL most of the time)."""
    import numpy as np

    length = table.length[ids]
    ends = np.cumsum(length)
    source = np.repeat(table.start[ids] - (ends - length), length)
    source += np.arange(len(source))
    return table.buf[source], ends


# ---------------------------------------------------------------- standard output

@contextmanager
def writing_stdout():
    """Turn a failed write to standard output into WriteError (a closed pipe passes through)."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as exc:
        quiet_stdout()  # what is still buffered must not fail again when Python exits
        raise WriteError.from_os(STDOUT, exc) from None


def quiet_stdout() -> None:
    """Point file descriptor 1 at /dev/null: after a closed pipe or a failed write, whatever is
    still buffered goes nowhere instead of failing again (with a traceback) at exit."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except OSError:
        pass


class ClosedStream:
    """Stands in for sys.stdout when file descriptor 1 was closed (`attn … >&-`, where Python
    sets sys.stdout to None): every write fails as writing to a closed descriptor does."""

    encoding = "utf-8"
    errors = "strict"
    closed = False

    def write(self, data) -> int:
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))

    def flush(self) -> None:  # nothing is ever buffered
        pass

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))

    @property
    def buffer(self):
        return self


def write_json(doc) -> None:
    """One document; its Stream lists are written item by item as they are made."""
    with writing_stdout():
        out = sys.stdout.buffer
        for chunk in _chunks(doc):
            out.write(chunk)
        out.flush()


def write_ndjson(header: dict, records: Iterable[dict]) -> None:
    """The header fields on the first line, then one record per line, written as made."""
    with writing_stdout():
        out = sys.stdout.buffer
        out.write(dumps(header))
        for record in records:
            for piece in _pieces(record):
                out.write(piece)
            out.write(b"\n")
        out.flush()


def terminal_width() -> int | None:
    """COLUMNS when it is a positive number; else None if it is unset (rich then asks the
    terminal), else the terminal's own width or 80 (COLUMNS=0, -5 or 'wide' is ignored)."""
    value = os.environ.get("COLUMNS")
    if value is None:
        return None
    if value.strip().isdigit() and int(value) > 0:
        return int(value)
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80
    except (AttributeError, OSError, ValueError):
        return 80


def make_console(no_color: bool, record: bool) -> Console:
    no_color = no_color or "NO_COLOR" in os.environ
    return Console(file=sys.stdout, no_color=no_color, highlight=False, record=record,
                   soft_wrap=False, emoji=False, markup=False, width=terminal_width())


def uses_color(console: Console) -> bool:
    return console.color_system is not None and not console.no_color


def show(console: Console, renderable: RenderableType, svg: Path | None, html: Path | None,
         title: str, saved: Callable[[], RenderableType] | None = None) -> None:
    """Print `renderable` once; save it as SVG/HTML if asked. The saved picture always has the
    heat colours, also when stdout is a pipe or --no-color: `saved()` makes the coloured
    renderable when the printed one is not (by default the same one is drawn again)."""
    with writing_stdout():
        console.print(renderable)
    if svg is None and html is None:
        return
    if console.record:  # it was printed in colour: save exactly that
        recorder = console
    else:
        recorder = Console(file=_Discard(), record=True, force_terminal=True,
                           color_system="truecolor", width=console.width, highlight=False,
                           soft_wrap=False, emoji=False, markup=False)
        ascii_mode, safe.ASCII = safe.ASCII, False  # the file is UTF-8 whatever stdout is
        try:
            recorder.print(saved() if saved is not None else renderable)
        finally:
            safe.ASCII = ascii_mode
    if svg is not None:
        write_file(svg, recorder.export_svg(title=title, clear=False))
    if html is not None:
        write_file(html, recorder.export_html(clear=False))


class _Discard:
    """A text file that keeps nothing (the recorder's output is only exported)."""

    encoding = "utf-8"

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True


# ---------------------------------------------------------------- saved files

def check_writable(path: Path) -> None:
    """Raise WriteError now, before any work, if `path` can clearly not be written: its
    folder is missing or not a folder, it is a folder itself, or it may not be written."""
    p = Path(path)
    if p.is_dir():
        raise WriteError.of(p, "EISDIR", "give a file name inside the folder")
    folder = p.parent
    if not folder.exists():
        raise WriteError.of(p, "ENOENT", f"the folder {folder} does not exist")
    if not folder.is_dir():
        raise WriteError.of(p, "ENOTDIR", f"{folder} is not a folder")
    if p.exists():
        if not os.access(p, os.W_OK):
            raise WriteError.of(p, "EACCES")
    elif not os.access(folder, os.W_OK | os.X_OK):
        raise WriteError.of(p, "EACCES", f"the folder {folder} is not writable")


def write_file(path: Path, data: str | bytes) -> None:
    """Write `data` to `path` atomically: a temporary file in the same folder, then renamed
    over it. A device, FIFO or socket (/dev/stdout, a named pipe) is written as it is."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    target = os.path.realpath(path)  # a link is followed, not replaced by a file
    try:
        info = os.stat(target)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise WriteError.from_os(path, exc) from None
    try:
        if info is not None and stat.S_ISDIR(info.st_mode):
            raise OSError(errno.EISDIR, os.strerror(errno.EISDIR))
        if info is not None and not stat.S_ISREG(info.st_mode):
            with open(target, "wb") as f:
                f.write(data)
            return
        _replace(target, data, None if info is None else stat.S_IMODE(info.st_mode))
    except OSError as exc:
        raise WriteError.from_os(path, exc) from None


def _replace(target: str, data: bytes, mode: int | None) -> None:
    folder, name = os.path.split(target)
    fd, tmp = tempfile.mkstemp(dir=folder or ".", prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode is None:  # a new file gets the usual permissions, not mkstemp's 0600
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
