"""`--save FILE.safetensors` or `FILE.npz`: the numbers a command shows, as arrays, for NumPy
or PyTorch users (issue 12).

Layout, the same in both formats (float32 unless said):
- `layer.{l}.head.{h}.weights` (T, T): one head's attention, rows are queries, columns keys;
  only the heads the command captured (`--layer`/`--head`). A masked key has weight 0.
- `layer.{l}.{mean|max}.weights` (T, T): `inspect --reduce` per layer, and `rollout`'s per-layer
  head means; `{mean|max}.weights` for `inspect --reduce --reduce-layers`.
- `embeddings` (T, d_model): `inspect`'s contextual embeddings.
- `rollout` (T, T): `rollout`'s matrix.
- `ids` (T,) int64: the token ids.
Metadata: `format` ("attn.save"), then the `--json` document's header fields with the same
values: `schema_version`, `command`, `text`, `encoding`, `model`, `tokens`. safetensors holds
str -> str, so there the numbers, `model` and `tokens` are JSON text; in .npz it is the entry
`__metadata__`, a 0-d string array holding one JSON object, so that `numpy.load(f)` reads it
without pickles.

The file's bytes follow from the capture alone (no dates; metadata in sorted order), and are
written atomically through `output.write_file`.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

from attn_cli import output
from attn_cli.capture import Capture, HeadCapture
from attn_cli.errors import ConfigError

FORMATS = (".safetensors", ".npz")
FORMAT_NAME = "attn.save"
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip file can hold


def check(path: Path) -> None:
    """Raise before any work if `path` has neither suffix or cannot be written."""
    if Path(path).suffix.lower() not in FORMATS:
        raise ConfigError(f"--save {path}: the file name must end in .safetensors or .npz "
                          f"(the two formats --save writes)")
    output.check_writable(path)


def inspect(path: Path, cap: Capture) -> None:
    """The heads shown (or their --reduce matrices) and the contextual embeddings."""
    _write(path, cap, "inspect", {**_heads(cap.heads), "embeddings": cap.embeddings})


def heads(path: Path, cap: Capture, layer: int | None) -> None:
    """The heads of the layer shown (with --pattern every layer is captured, one is shown);
    layer None (the map): every head."""
    _write(path, cap, "heads", _heads([h for h in cap.heads if layer in (None, h.layer)]))


def rollout(path: Path, cap: Capture, means: list[np.ndarray], rolled: np.ndarray) -> None:
    """The rollout and what it is made of: each layer's mean over its heads."""
    layers = sorted({h.layer for h in cap.heads})
    arrays = {f"layer.{la}.mean.weights": m for la, m in zip(layers, means)}
    _write(path, cap, "rollout", {**arrays, "rollout": rolled})


def _heads(heads: list[HeadCapture]) -> dict[str, np.ndarray]:
    def name(h: HeadCapture) -> str:
        if h.reduced is None:
            return f"layer.{h.layer}.head.{h.head}.weights"
        return f"layer.{h.layer}.{h.reduced}.weights" if h.layer >= 0 else f"{h.reduced}.weights"

    return {name(h): h.weights for h in heads}


def _write(path: Path, cap: Capture, command: str, arrays: dict[str, np.ndarray]) -> None:
    """Write `arrays` and the ids, with the capture's metadata, to `path` (its suffix picks
    the format; `check(path)` was called before the work)."""
    from attn_cli.documents.attention import inspect_header

    metadata = {"format": FORMAT_NAME, **inspect_header(cap), "command": command}
    tensors = {name: np.ascontiguousarray(a, dtype=np.float32) for name, a in arrays.items()}
    tensors["ids"] = np.array([t.id for t in cap.tokens], dtype=np.int64)
    if Path(path).suffix.lower() == ".npz":
        data = _npz(tensors, metadata)
    else:
        data = _safetensors(tensors, metadata)
    output.write_file(path, data)


def _json(value) -> str:
    return output.dumps(value).decode("utf-8").rstrip("\n")


def _safetensors(tensors: dict[str, np.ndarray], metadata: dict) -> bytes:
    from safetensors.numpy import save

    data = save(tensors, metadata={k: v if isinstance(v, str) else _json(v)
                                   for k, v in metadata.items()})
    # safetensors writes the metadata in hash order: rewrite the header with it sorted, so the
    # same capture gives the same bytes (8-byte length, JSON header padded with spaces, data)
    n = int.from_bytes(data[:8], "little")
    head = json.loads(data[8:8 + n])
    head["__metadata__"] = dict(sorted(head["__metadata__"].items()))
    text = json.dumps(head, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + n:]


def _npz(tensors: dict[str, np.ndarray], metadata: dict) -> bytes:
    """What numpy.savez writes (a zip of .npy files, not compressed), with no dates in it."""
    entries = {**tensors, "__metadata__": np.array(_json(metadata))}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
        for name, array in entries.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            with z.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, array, allow_pickle=False)
    return buf.getvalue()
