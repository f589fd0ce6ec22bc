"""A GGUF file found and opened: `--model PATH.gguf` or `--model ollama:NAME[:TAG]` (SPEC §9).

    locate(spec) -> Path | None      the file a GGUF spec names; None for a folder or hub name
    GGUFFile(path)                   its header parsed: metadata (one clear error per bad
                                     value) and tensor records; bytes read on demand

Ollama keeps models in `$OLLAMA_MODELS` (default `~/.ollama/models`): a manifest under
`manifests/registry.ollama.ai/library/NAME/TAG` (or `…/USER/NAME/TAG`, or `manifests/hf.co/
USER/REPO/TAG` for models pulled from Hugging Face) lists layers; the one whose mediaType is
`application/vnd.ollama.image.model` names the GGUF blob, `blobs/sha256-<hex>`.

Nothing here imports torch or the `gguf` library: `attn tokens --model X.gguf` reads the
vocabulary through it.
"""

from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path

from attn_cli.errors import ModelLoadError

OLLAMA = "ollama:"
MAGIC = b"GGUF"
EXTRA = "pip install 'attn-cli[gguf]' (installed with pipx: pipx inject attn-cli gguf)"
MODEL_LAYER = "application/vnd.ollama.image.model"
MANIFEST_LIMIT = 2**20  # bytes: a manifest is a few hundred
_PART = re.compile(r"^[A-Za-z0-9][\w.-]*$")
_DIGEST = re.compile(r"^sha256[:-]([0-9a-f]{64})$")


def locate(spec: str) -> Path | None:
    """The GGUF file `spec` names (a path to one, or `ollama:NAME[:TAG]`), or None when spec
    is something else (a folder, a hub name)."""
    if spec.startswith(OLLAMA):
        return ollama(spec[len(OLLAMA):])
    path = Path(spec).expanduser()
    if path.is_file():
        return path if path.suffix.lower() == ".gguf" or _magic(path) else None
    if path.suffix.lower() == ".gguf":
        raise ModelLoadError(f"GGUF file {spec} does not exist: check the path")
    return None


def _magic(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == MAGIC
    except OSError:
        return False


def ollama_store() -> Path:
    return Path(os.environ.get("OLLAMA_MODELS") or Path.home() / ".ollama" / "models").expanduser()


def ollama(name: str) -> Path:
    """The model blob of NAME[:TAG] (tag `latest` by default) in the local Ollama store."""
    spec = OLLAMA + name
    base, colon, tag = name.rpartition(":")
    if not colon or "/" in tag:
        base, tag = name, "latest"
    parts = base.split("/")
    if not base or not all(_PART.match(p) for p in parts) or not _PART.match(tag):
        raise ModelLoadError(f"--model {spec} is not an Ollama model name: use ollama:NAME, "
                             f"ollama:NAME:TAG, ollama:USER/NAME:TAG or ollama:hf.co/USER/REPO:TAG")
    if len(parts) == 1:
        parts = ["registry.ollama.ai", "library", *parts]
    elif len(parts) == 2:
        parts = ["registry.ollama.ai", *parts]
    store = ollama_store()
    manifest = store.joinpath("manifests", *parts, tag)
    if not store.is_dir():
        raise ModelLoadError(f"no Ollama store at {store}: set OLLAMA_MODELS to the folder "
                             f"Ollama keeps its models in (or pass the .gguf file itself)")
    if not manifest.is_file():
        raise ModelLoadError(f"{spec} is not in the Ollama store {store} (no {manifest}): "
                             f"run `ollama pull {base}:{tag}` first, or pass the .gguf file")
    try:
        if manifest.stat().st_size > MANIFEST_LIMIT:
            raise ValueError("far larger than any manifest")
        doc = json.loads(manifest.read_text(encoding="utf-8"))
        layers = doc["layers"]
        digests = [layer["digest"] for layer in layers
                   if isinstance(layer, dict) and layer.get("mediaType") == MODEL_LAYER]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        detail = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise ModelLoadError(f"the Ollama manifest {manifest} cannot be read ({detail}): pull "
                             f"the model again with ollama") from None
    if not digests:
        raise ModelLoadError(f"the Ollama manifest {manifest} names no model layer ({MODEL_LAYER}):"
                             f" it is not a language model Ollama can run")
    m = _DIGEST.match(str(digests[0]))
    if m is None:
        raise ModelLoadError(f"the Ollama manifest {manifest} names the model blob "
                             f"{str(digests[0])[:80]!r}, which is not a sha256 digest: pull the "
                             f"model again with ollama")
    blob = store / "blobs" / f"sha256-{m.group(1)}"
    if not blob.is_file():
        raise ModelLoadError(f"{spec}: its model blob {blob} is missing from the Ollama store: "
                             f"pull the model again with ollama")
    return blob


# ggml type -> (name, elements per block, bytes per block, where its float scales lie in a block):
# the types SPEC §9 reads (ggml.h, ggml-common.h). A block's values are its integer codes times
# its scales (plus its minimums), so they are finite exactly when those fp16 fields are.
TYPES = {
    0: ("F32", 1, 4, None), 1: ("F16", 1, 2, None), 30: ("BF16", 1, 2, None),
    2: ("Q4_0", 32, 18, (0, 2)), 3: ("Q4_1", 32, 20, (0, 4)), 6: ("Q5_0", 32, 22, (0, 2)),
    7: ("Q5_1", 32, 24, (0, 4)), 8: ("Q8_0", 32, 34, (0, 2)),
    10: ("Q2_K", 256, 84, (80, 84)), 11: ("Q3_K", 256, 110, (108, 110)),
    12: ("Q4_K", 256, 144, (0, 4)), 13: ("Q5_K", 256, 176, (0, 4)),
    14: ("Q6_K", 256, 210, (208, 210)),
}
SUPPORTED = ", ".join(name for name, *_ in TYPES.values())
HEADER_LIMIT = 1 << 30  # bytes of metadata: a 256k-token vocabulary takes a few MB


class Tensor:
    """One tensor record: name, ggml type, shape (torch order: ggml's ne reversed), and where
    its bytes are in the file."""

    def __init__(self, name: str, ggml_type: int, ne: tuple[int, ...], offset: int):
        self.name, self.ggml_type, self.offset = name, ggml_type, offset
        self.shape = tuple(reversed(ne))
        self.n = 1
        for d in ne:
            self.n *= d
        known = TYPES.get(ggml_type)
        self.type_name = known[0] if known else f"ggml type {ggml_type}"
        self.block, self.block_bytes = (known[1], known[2]) if known else (None, None)
        self.nbytes = self.n // self.block * self.block_bytes if known else None
        self.row_bytes = ne[0] // self.block * self.block_bytes if known and ne else None


class GGUFFile:
    """A GGUF file: its metadata (`get`, `int`, `float`, `str`) and tensor records.

    The header is parsed here, from the file mapped read-only (the `gguf` library's
    GGUFReader makes a NumPy array of every vocabulary string: 5 s for a 49k-token file);
    tensors are dequantised with the `gguf` library (models/gguf.py). A file that is not GGUF,
    is cut short, or holds a tensor that runs past its end is one ModelLoadError line."""

    def __init__(self, path: Path):
        import mmap

        self.path = Path(path)
        self._fd: int | None = None  # for reading tensors, opened when first needed
        try:
            with open(self.path, "rb") as f:
                self.size = os.fstat(f.fileno()).st_size
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) \
                    if self.size else b""
        except (OSError, ValueError) as exc:
            raise self.corrupt(exc) from None
        self.fields: dict[str, object] = {}
        self.tensors: dict[str, Tensor] = {}
        try:
            self._parse()
        except (_Short, struct.error, UnicodeDecodeError, OverflowError, MemoryError) as exc:
            raise self.corrupt(exc) from None

    def corrupt(self, exc: BaseException | str) -> ModelLoadError:
        text = str(exc).strip()
        detail = text.splitlines()[0][:160] if text else type(exc).__name__
        return ModelLoadError(f"could not read {self.path} as a GGUF file: it is corrupt, "
                              f"truncated or not GGUF ({detail}); download it again")

    # --- the header -------------------------------------------------------------------------------

    def _take(self, n: int) -> bytes:
        if n < 0 or self._pos + n > min(self.size, HEADER_LIMIT):
            raise _Short(f"the header runs past the end of the file at byte {self._pos:,}")
        out = self._map[self._pos:self._pos + n]
        self._pos += n
        return out

    def _scalar(self, kind: int):
        fmt = _SCALARS.get(kind)
        if fmt is None:
            raise _Short(f"unknown metadata type {kind}")
        value = struct.unpack("<" + fmt, self._take(struct.calcsize(fmt)))[0]
        return bool(value) if kind == 7 else value

    def _string(self) -> str:
        n = struct.unpack("<Q", self._take(8))[0]
        return self._take(n).decode("utf-8")

    def _value(self, kind: int, depth: int = 0):
        if kind == 8:
            return self._string()
        if kind != 9:
            return self._scalar(kind)
        inner, n = struct.unpack("<IQ", self._take(12))
        if depth > 2:
            raise _Short("arrays nested too deep")
        if inner in _SCALARS and inner != 7:  # numbers: in one piece
            import numpy as np

            width = struct.calcsize(_SCALARS[inner])
            raw = self._take(n * width)
            return np.frombuffer(raw, dtype="<" + _SCALARS[inner]).tolist()
        if n > self.size:
            raise _Short(f"an array claims {n:,} entries")
        if inner == 8:  # strings (a vocabulary: 10⁵ of them), in one tight loop
            m, pos, end, out = self._map, self._pos, min(self.size, HEADER_LIMIT), []
            for _ in range(n):
                if pos + 8 > end:
                    raise _Short("a list of strings runs past the end of the file")
                k = int.from_bytes(m[pos:pos + 8], "little")
                pos += 8
                if pos + k > end:
                    raise _Short("a list of strings runs past the end of the file")
                out.append(m[pos:pos + k].decode("utf-8"))
                pos += k
            self._pos = pos
            return out
        return [self._value(inner, depth + 1) for _ in range(n)]

    def _parse(self) -> None:
        self._pos = 0
        if self._take(4) != MAGIC:
            raise _Short("it does not start with the GGUF magic")
        version, n_tensors, n_fields = struct.unpack("<IQQ", self._take(20))
        if version not in (2, 3):
            endian = " (big-endian)" if version & 0xFFFF == 0 else ""
            raise _Short(f"GGUF version {version}{endian}; attn reads versions 2 and 3")
        if n_tensors > self.size or n_fields > self.size:
            raise _Short("its header counts are larger than the file")
        for _ in range(n_fields):
            key = self._string()
            (kind,) = struct.unpack("<I", self._take(4))
            self.fields[key] = self._value(kind)
        records = []
        for _ in range(n_tensors):
            name = self._string()
            (n_dims,) = struct.unpack("<I", self._take(4))
            if not 1 <= n_dims <= 4:
                raise _Short(f"tensor {name[:60]} has {n_dims} dimensions")
            ne = struct.unpack(f"<{n_dims}Q", self._take(8 * n_dims))
            ggml_type, offset = struct.unpack("<IQ", self._take(12))
            records.append((name, ggml_type, ne, offset))
        align = self.fields.get("general.alignment", 32)
        if not isinstance(align, int) or align < 1 or align & (align - 1):
            raise _Short(f"general.alignment {str(align)[:20]} is not a power of two")
        start = -(-self._pos // align) * align
        for name, ggml_type, ne, offset in records:
            t = Tensor(name, ggml_type, ne, start + offset)
            if t.block is not None and ne[0] % t.block:
                raise _Short(f"tensor {name} has rows of {ne[0]} values, which {t.type_name} "
                             f"blocks of {t.block} do not divide")
            if t.nbytes is not None and t.offset + t.nbytes > self.size:
                raise ModelLoadError(
                    f"{self.path} is truncated: tensor {name} runs past the end of the file "
                    f"(to byte {t.offset + t.nbytes:,} of {self.size:,}); download it again")
            self.tensors[name] = t

    def read(self, offset: int, n: int) -> bytes:
        """n bytes of the file from `offset`, read (not mapped: they do not stay in this
        process)."""
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDONLY)
            out = os.pread(self._fd, n, offset)
        except OSError as exc:
            raise self.corrupt(exc) from None
        if len(out) != n:
            raise ModelLoadError(f"{self.path} is truncated: it ends before byte "
                                 f"{offset + n:,}; download it again")
        return out

    # --- metadata ---------------------------------------------------------------------------------

    def has(self, key: str) -> bool:
        return key in self.fields

    def get(self, key: str, default=None):
        return self.fields.get(key, default)

    def require(self, key: str):
        value = self.get(key)
        if value is None:
            raise ModelLoadError(f"{self.path} has no {key} in its metadata: the file is "
                                 f"incomplete; convert the model again")
        return value

    def int(self, key: str, default=None, minimum: int = 1) -> int:
        value = self.require(key) if default is None else self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ModelLoadError(f"{self.path} says {key} {str(value)[:40]}; it must be a whole "
                                 f"number ≥ {minimum}")
        return value

    def float(self, key: str, default=None) -> float:
        import math

        value = self.require(key) if default is None else self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or value <= 0:
            raise ModelLoadError(f"{self.path} says {key} {str(value)[:40]}; it must be a "
                                 f"positive finite number")
        return float(value)

    def str(self, key: str, default: str | None = None) -> str:
        value = self.require(key) if default is None else self.get(key, default)
        if not isinstance(value, str):
            raise ModelLoadError(f"{self.path} says {key} {str(value)[:40]}; it must be text")
        return value

    @property
    def architecture(self) -> str:
        return self.str("general.architecture")


class _Short(Exception):
    """The header cannot be parsed."""


_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "B", 10: "Q", 11: "q",
            12: "d"}
