"""A checkpoint's weight files, read safely: safetensors (one file or sharded) or the older
pytorch_model.bin, every name and shape known from the headers before a tensor is read, every
tensor checked finite, stored dtypes converted in chunks; `Weights` hands a family's converter
the tensors it asks for, checked against config.json.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from pathlib import Path

import torch

from attn_cli.errors import ModelLoadError
from attn_cli.models.config import DTYPES, ModelConfig
from attn_cli.models.folders import PYTORCH_BIN, SAFETENSORS, SAFETENSORS_INDEX


def describe_sizes(cfg: ModelConfig) -> str:
    kv = f" ({cfg.kv_heads} key/value)" if cfg.kv_heads != cfg.n_heads else ""
    return (f"{cfg.n_layers} layers × {cfg.n_heads} heads{kv}, d_model {cfg.d_model}, "
            f"d_ff {cfg.d_ff}, vocabulary {cfg.vocab_size}")


def _corrupt(path: Path, exc: BaseException) -> ModelLoadError:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ModelLoadError(
        f"could not read {path}: the file is corrupt or truncated ({detail[:200]}); "
        f"download or save the checkpoint again"
    )


# safetensors' names of the floating dtypes (the other dtypes are not weights attn can use)
_FLOATS = {"F64": torch.float64, "F32": torch.float32, "BF16": torch.bfloat16,
           "F16": torch.float16}


_DTYPE_NAMES = {"F64": "float64", "F32": "float32", "BF16": "bfloat16", "F16": "float16",
                "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
                "BOOL": "bool"}


CHUNK = 16 * 2**20  # bytes read at a time where the stored dtype is converted


class WeightFiles:
    """The folder's weights: names, shapes and dtypes from the headers; a tensor only when
    asked, either mapped from its file (`tensor`: no copy, the file's pages are the weight) or
    read into memory the caller owns (`read_into`: for a conversion or a concatenation, where
    the file is read, not mapped, so its bytes never sit in this process beside the result)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.dtypes: dict[str, str] = {}
        self.used: set[str] = set()  # the tensors a family's convert reads (the rest: task heads…)
        self._where: dict[str, Path] = {}  # tensor name -> safetensors file
        self._span: dict[str, tuple[int, int]] = {}  # tensor name -> its bytes in that file
        self._open: dict[Path, object] = {}  # safe_open handles, kept while loading
        self._state: dict[str, torch.Tensor] | None = None  # pytorch_model.bin, mapped whole
        for name in (SAFETENSORS, SAFETENSORS_INDEX, PYTORCH_BIN):
            if (folder / name).is_file():
                self.path = folder / name
                break
        else:
            others = sorted(p.name for p in folder.glob("*")
                            if p.suffix in (".h5", ".msgpack", ".ckpt", ".onnx", ".gguf"))
            found = f" (found only {', '.join(others)}, which attn does not read)" \
                if others else ""
            raise ModelLoadError(
                f"no weights in {folder}{found}: put model.safetensors (or pytorch_model.bin) "
                f"there, e.g. with transformers' save_pretrained"
            )
        if self.path.name == PYTORCH_BIN:
            self._read_bin()
        elif self.path.name == SAFETENSORS_INDEX:
            for shard in self._shards():
                self._read_header(shard)
        else:
            self._read_header(self.path)

    def _shards(self) -> list[Path]:
        path = self.path
        try:
            index = json.loads(path.read_text(encoding="utf-8"))
            names = sorted(set(index["weight_map"].values()))
        except Exception as exc:
            raise _corrupt(path, exc) from None
        # By name, not by where a link leads: the hub cache links every file to ../../blobs/.
        inside = Path(os.path.abspath(self.folder))
        shards = []
        for name in names:
            shard = (self.folder / str(name))
            if not isinstance(name, str) or Path(name).is_absolute() or \
                    not Path(os.path.abspath(shard)).is_relative_to(inside):
                raise ModelLoadError(
                    f"{path} names the shard {name!r}, which is outside {self.folder}: attn "
                    f"reads only files inside the checkpoint folder")
            if not shard.is_file():
                raise ModelLoadError(
                    f"{path} names the shard {name}, which is not in {self.folder}: "
                    f"download the whole checkpoint")
            shards.append(shard)
        return shards

    def _read_header(self, path: Path) -> None:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                for key in f.keys():
                    piece = f.get_slice(key)
                    self.shapes[key] = tuple(piece.get_shape())
                    self.dtypes[key] = str(piece.get_dtype())
                    self._where[key] = path
            # safe_open checked the header; its byte ranges count from the header's end
            with open(path, "rb") as f:
                n = int.from_bytes(f.read(8), "little")
                header = json.loads(f.read(n))
            for key in self.shapes.keys() & header.keys():
                begin, end = header[key]["data_offsets"]
                self._span[key] = (8 + n + begin, 8 + n + end)
        except Exception as exc:  # SafetensorError, OSError, ...: the file cannot be read
            raise _corrupt(path, exc) from None

    def _read_bin(self) -> None:
        import pickle

        path = self.path
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
                except RuntimeError as exc:
                    if "mmap" not in str(exc):
                        raise
                    state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            if "weights_only" in str(exc) or "Weights only" in str(exc):
                raise ModelLoadError(
                    f"{path} holds Python code as well as tensors, and attn never runs code "
                    f"from a checkpoint: convert it to model.safetensors where you trust its "
                    f"source, or use the model's safetensors release") from None
            raise _corrupt(path, exc) from None
        except Exception as exc:  # zip and torch errors alike mean an unreadable file
            raise _corrupt(path, exc) from None
        if not isinstance(state, dict) or not all(
                isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
            raise ModelLoadError(
                f"{path} does not hold a state dict of named tensors: save the model with "
                f"transformers' save_pretrained"
            )
        self._state = state
        for key, tensor in state.items():
            self.shapes[key] = tuple(tensor.shape)
            self.dtypes[key] = str(tensor.dtype)

    def listing(self) -> list[dict]:
        """Every tensor under the checkpoint's own name: shape, stored dtype, and whether attn
        reads it (a task head's classifier, a pooler or a sentence-transformers head is not)."""
        return [{"name": key, "shape": list(shape),
                 "dtype": _DTYPE_NAMES.get(self.dtypes[key], self.dtypes[key].replace("torch.", "")),
                 "used": key in self.used}
                for key, shape in self.shapes.items()]

    def stored(self, key: str) -> torch.dtype | None:
        """The dtype a tensor is stored in; None if it is not floating point."""
        if self._state is not None:
            dtype = self._state[key].dtype
            return dtype if dtype.is_floating_point else None
        return _FLOATS.get(self.dtypes[key])

    def tensor(self, key: str) -> torch.Tensor:
        """The tensor as stored, mapped from its file (copy-on-write): no byte is copied."""
        if self._state is not None:
            return self._state[key]
        from safetensors import safe_open

        path = self._where[key]
        try:
            if path not in self._open:
                self._open[path] = safe_open(str(path), framework="pt", device="cpu")
            return self._open[path].get_tensor(key)
        except Exception as exc:
            raise _corrupt(path, exc) from None

    def read_into(self, key: str, out: torch.Tensor) -> None:
        """Fill `out` (contiguous, the tensor's size, a floating dtype) with the tensor,
        converted CHUNK bytes at a time where `out` has another dtype. A safetensors file is
        read, not mapped: `out` is the only copy this process holds."""
        if self._state is not None:
            out.copy_(self._state[key].reshape(out.shape))
            return
        stored, flat = self.stored(key), out.view(-1)
        path = self._where[key]
        try:
            with open(path, "rb", buffering=0) as f:
                f.seek(self._span[key][0])
                if stored == out.dtype:
                    _read_exactly(f, flat)
                    return
                step = max(1, CHUNK // stored.itemsize)
                buffer = torch.empty(min(step, flat.numel()), dtype=stored)
                for start in range(0, flat.numel(), step):
                    piece = buffer[:min(step, flat.numel() - start)]
                    _read_exactly(f, piece)
                    flat[start:start + piece.numel()].copy_(piece)
        except OSError as exc:
            raise _corrupt(path, exc) from None

    def finite(self, key: str, dtype: torch.dtype) -> bool:
        """No NaN or ±inf in the tensor once it is in `dtype`, read from its file CHUNK bytes
        at a time: a mapped tensor is checked without bringing its pages into this process
        (of a 200,000-row token table, only the rows of the tokens read ever are)."""
        if self._state is not None:
            return _finite(self._state[key].to(dtype))
        stored, n = self.stored(key), math.prod(self.shapes[key])
        step = max(1, CHUNK // stored.itemsize)
        buffer = torch.empty(min(step, n), dtype=stored)
        path = self._where[key]
        try:
            with open(path, "rb", buffering=0) as f:
                f.seek(self._span[key][0])
                for start in range(0, n, step):
                    piece = buffer[:min(step, n - start)]
                    _read_exactly(f, piece)
                    if not _finite(piece.to(dtype)):
                        return False
        except OSError as exc:
            raise _corrupt(path, exc) from None
        return True

    def close(self) -> None:
        """Let go of the open files (tensors mapped from them keep their own mapping)."""
        self._open.clear()


def _read_exactly(f, dest: torch.Tensor) -> None:
    """Read dest's bytes (a contiguous 1-D tensor) from the file's current position."""
    view = memoryview(dest.view(torch.uint8).numpy()).cast("B")
    done = 0
    while done < len(view):
        n = f.readinto(view[done:])
        if not n:
            raise OSError("the file ends before the tensor does")
        done += n


def default_dtype(files: WeightFiles, device: str) -> str:
    """--dtype when none is given: float32 on the CPU; on a GPU the dtype that most of the
    checkpoint's bytes are stored in (float32 where that is none attn computes in)."""
    if torch.device(device).type == "cpu":
        return "float32"
    held: dict[torch.dtype, int] = {}
    for key, shape in files.shapes.items():
        dtype = files.stored(key)
        if dtype is not None:
            held[dtype] = held.get(dtype, 0) + math.prod(shape) * dtype.itemsize
    most = max(held, key=held.get) if held else torch.float32
    name = str(most).removeprefix("torch.")
    return name if name in DTYPES else "float32"


def _check_layers(files: WeightFiles, family, cfg: ModelConfig) -> None:
    """The blocks the weights hold must be the blocks config.json declares: checked from the
    names alone, before a module is made (a config that claims 10⁶ layers stops here)."""
    pattern = re.compile(family.LAYER_KEY)
    blocks = set()
    for key in files.shapes:
        bare = _strip(key, family.PREFIXES)
        m = pattern.match(bare)
        if m:
            blocks.add(int(m.group(1)))
    n = max(blocks) + 1 if blocks else 0
    if n != cfg.n_layers:
        field = family.LAYERS_FIELD
        raise ModelLoadError(
            f"the checkpoint in {cfg.source} has {n} block{'s' if n != 1 else ''} but "
            f"config.json says {field} "
            f"{cfg.n_layers}: the weights and config.json do not belong together"
        )


def _strip(key: str, prefixes: tuple[str, ...]) -> str:
    for prefix in prefixes:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


class _Stop(Exception):
    """A dry run cannot go on: the shapes are too wrong to build even on the meta device."""


def _meta(shape: tuple[int, ...]) -> torch.Tensor:
    try:
        return torch.empty(shape, device="meta")
    except RuntimeError:  # sizes whose product overflows
        raise _Stop from None


class Weights:
    """What a family's `convert` reads: `get(name, shape)` and `cat(parts)` check each name and
    shape (as stored) and return tensors in cfg.dtype, finite. A dry run checks every name and
    shape from the headers alone and reports the first problem, with how many more there are.

    No weight is held twice: a tensor stored in cfg.dtype is mapped from its file and used as
    it is; one that is converted, or concatenated with others (Q, K and V into one projection),
    is read from the file straight into the memory of the result."""

    def __init__(self, files: WeightFiles, family, cfg: ModelConfig, dry: bool = False,
                 only=None, mapped: bool = True, checked: bool = False):
        """only(key): which of the checkpoint's tensors to read (the others come back on the
        meta device; every one, if None). mapped: False reads even the tensors stored in
        cfg.dtype into memory of their own (which is let go of with them). checked: their
        values were checked already (see check)."""
        self.files, self.cfg, self.dry = files, cfg, dry
        self.only, self.mapped, self.checked = only, mapped, checked
        self.dtype = getattr(torch, cfg.dtype)
        self.prefixes = family.PREFIXES
        self.names = {_strip(k, family.PREFIXES): k for k in files.shapes}
        self.missing: list[str] = []
        self.bad: list[tuple[str, tuple, tuple]] = []

    @classmethod
    def dry_run(cls, files: WeightFiles, family, cfg: ModelConfig) -> dict:
        """What convert will return, as meta tensors (shapes, no data)."""
        w = cls(files, family, cfg, dry=True)
        try:
            shapes = family.convert(w, cfg)
        except (_Stop, RuntimeError):  # shapes too wrong to go on: report what was found
            if not (w.missing or w.bad):
                raise
        where = cfg.source
        if w.missing:
            more = f" (and {len(w.missing) - 1} more)" if len(w.missing) > 1 else ""
            raise ModelLoadError(
                f"the checkpoint in {where} has no tensor {w.missing[0]}{more}: the weights do "
                f"not match config.json ({describe_sizes(cfg)}); save the model again with "
                f"save_pretrained"
            )
        if w.bad:
            name, found, want = w.bad[0]
            raise ModelLoadError(
                f"tensor {name} in {where} has shape {found} but config.json "
                f"({describe_sizes(cfg)}) needs {want}: the weights and config.json do not "
                f"belong together"
            )
        return shapes

    def has(self, name: str) -> bool:
        return name in self.names

    def _key(self, name: str, shape: tuple[int, ...], alias: str | None = None) -> str | None:
        """The checkpoint's key for `name` (or `alias`) after checking its shape; None (noted
        as missing) if it has neither."""
        if name not in self.names and alias is not None and alias in self.names:
            name = alias
        if name not in self.names:
            self.missing.append(name)
            return None
        key = self.names[name]
        self.files.used.add(key)
        found = self.files.shapes[key]
        if found != tuple(shape):
            self.bad.append((name, found, tuple(shape)))
            raise _Stop
        if not self.dry and self.files.stored(key) is None:
            raise ModelLoadError(
                f"tensor {name} in {self.cfg.source} is {self.files.dtypes[key]}, not floating "
                f"point: the weights file is not a {self.cfg.family} checkpoint"
            )
        return key

    def get(self, name: str, shape: tuple[int, ...], alias: str | None = None,
            own: bool = False) -> torch.Tensor:
        """The tensor `name` (or, if absent, `alias`: the same matrix under another name, such
        as a tied LM head or an old checkpoint's LayerNorm.gamma). Mapped from the file where
        it is stored in cfg.dtype; read into memory of its own where it is converted, or where
        `own` says the converter rearranges it (its copy is then the only one)."""
        key = self._key(name, shape, alias)
        if key is None or self.dry or not self._reads(key):
            return _meta(shape)
        if own or not self.mapped or self.files.stored(key) != self.dtype:
            tensor = self._empty(shape)
            self.files.read_into(key, tensor)
            self._check(name, key, tensor)
        else:
            tensor = self.files.tensor(key)
            self._check(name, key, None)  # from the file: the mapping's pages stay unread
        return tensor

    def _empty(self, shape: tuple[int, ...]) -> torch.Tensor:
        """Memory for a tensor that is read: a streamed block's is given back when it goes."""
        return torch.empty(shape, dtype=self.dtype) if self.mapped else \
            _anonymous(shape, self.dtype)

    def _reads(self, key: str) -> bool:
        return self.only is None or self.only(key)

    def check(self, key: str) -> None:
        """Check the values of a tensor that is read later (from the file, in pieces)."""
        self._check(_strip(key, self.prefixes), key, None)

    def cat(self, parts: list[tuple[str, tuple[int, ...]]]) -> torch.Tensor:
        """torch.cat of the tensors that `parts` names ((name, shape) each) along the first
        dimension, each read from its file straight into its rows of the result."""
        keys = [self._key(name, shape) for name, shape in parts]
        shape = (sum(s[0] for _, s in parts), *parts[0][1][1:])
        if self.dry or None in keys or not all(map(self._reads, keys)):
            return _meta(shape)
        out = self._empty(shape)
        row = 0
        for (name, (rows, *_)), key in zip(parts, keys):
            self.files.read_into(key, out[row:row + rows])
            self._check(name, key, out[row:row + rows])
            row += rows
        return out

    def _check(self, name: str, key: str, tensor: torch.Tensor | None) -> None:
        """The tensor (None: the tensor as the file holds it, once in cfg.dtype) must be
        finite; where only the conversion to cfg.dtype made it infinite, say so."""
        if self.checked:
            return
        if _finite(tensor) if tensor is not None else self.files.finite(key, self.dtype):
            return
        stored = self.files.stored(key)
        if self.dtype != stored and self.files.finite(key, stored):
            limit = torch.finfo(tensor.dtype).max
            raise ModelLoadError(
                f"tensor {name} in {self.cfg.source} holds values beyond {self.cfg.dtype}'s "
                f"range (±{limit:,.0f}): load it with --dtype bfloat16 or --dtype float32")
        raise ModelLoadError(
            f"tensor {name} in {self.cfg.source} holds NaN or infinite values: the "
            f"checkpoint is corrupt (or was trained into a broken state); download or save "
            f"it again"
        )


def _finite(tensor: torch.Tensor) -> bool:
    """No NaN or ±inf. One float32 sum first: NaN and ±inf carry through a sum, so a finite sum
    means finite values; only a sum that is not finite (or finite values that overflow it)
    needs the extremes (max and min propagate NaN: two reductions, no tensor-sized
    temporary)."""
    if not tensor.numel() or bool(torch.isfinite(tensor.sum(dtype=torch.float32))):
        return True
    return all(torch.isfinite(x) for x in (tensor.amax(), tensor.amin()))


def _anonymous(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An empty tensor in memory of its own, mapped from the kernel (not from malloc) and
    given back to it when the tensor is freed.

    For a streamed block's weights: from malloc, blocks freed between the forward pass's own
    allocations leave holes that glibc keeps (measured on a GPT-2-small-shaped checkpoint:
    ~14 MB left behind per block, +170 MB over 12 blocks). glibc can be told to map every
    large allocation instead (mallopt), but that makes the forward pass's activations fault
    their pages in afresh every time (+4 s of system time on 1,000 tokens)."""
    import mmap

    n = math.prod(shape)
    if n == 0:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(mmap.mmap(-1, n * dtype.itemsize), dtype=dtype, count=n).view(shape)
