"""Real weights from disk: a Hugging Face folder, or a name in the local Hugging Face cache.

    load("path/to/folder")  or  load("gpt2")  ->  (Transformer, tokenizer)

A folder holds config.json, the weights (model.safetensors, a sharded model.safetensors.index.json,
or the older pytorch_model.bin, read only with torch's `weights_only` loader) and the tokenizer
files. config.json's model_type picks the family (`families/`), which maps the config onto the
one ModelConfig and the checkpoint's tensor names onto the one Transformer's. A name such as
`gpt2` or `EleutherAI/pythia-70m` is looked up in the Hugging Face cache; nothing is ever
downloaded here.

Nothing in the folder is trusted: config.json is read with a size and depth limit and every
value checked; the tensors' names and shapes are checked against config.json from the files'
headers before a weight is read; every tensor must be finite; every shard an index names stays
inside the folder. Each problem is one `ModelLoadError` line that says what is wrong and what
to do.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import warnings
from pathlib import Path

import torch

from attn_cli.errors import AttnError, ModelLoadError
from attn_cli.models import transformer
from attn_cli.models.config import ModelConfig
from attn_cli.models.families import HFConfig, families, supported

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PYTORCH_BIN = "pytorch_model.bin"
CONFIG_LIMIT = 4 * 2**20  # bytes: real config.json files are a few kB
CONFIG_DEPTH = 64  # nesting: real config.json files are 3 or 4 deep


def load(spec: str, device: str = "cpu"):
    """The model and tokenizer of a checkpoint folder or cached hub name.

    Returns (Transformer in eval mode on `device`, tokenizer).
    """
    folder = resolve(spec)
    cfg, family = model_config(folder)
    source = WeightFiles(folder)
    _check_layers(source, family, cfg)
    tokenizer = load_tokenizer(folder)
    Weights.dry_run(source, family, cfg)  # every name and shape, from the headers alone
    from attn_cli import budget

    budget.check_weights(cfg, source.nbytes(), device)
    tensors = family.convert(Weights(source, family, cfg), cfg)
    model = build(cfg, tensors)
    vocab = cfg.vocab_size
    if tokenizer.max_token_value >= vocab:
        raise ModelLoadError(
            f"the tokenizer in {folder} has {tokenizer.max_token_value + 1} tokens but the "
            f"model's embedding table has only {vocab} rows: the tokenizer files do not belong "
            f"to these weights"
        )
    return model.to(device).eval(), tokenizer


# Hub names that moved under an organisation; the cache may hold either spelling.
_ALIASES = {
    "gpt2": "openai-community/gpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-large": "openai-community/gpt2-large",
    "gpt2-xl": "openai-community/gpt2-xl",
    "distilgpt2": "distilbert/distilgpt2",
}
_REPO_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


# --- where the checkpoint is ------------------------------------------------------------------

def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, as huggingface_hub finds it."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def _repo_ids(name: str) -> list[str]:
    """The hub repo ids a name may be cached under: `gpt2` is also `openai-community/gpt2`."""
    ids = [name]
    if name in _ALIASES:
        ids.append(_ALIASES[name])
    ids += [bare for bare, full in _ALIASES.items() if full == name]
    return ids


def _snapshot(repo: Path) -> Path | None:
    """The snapshot refs/main points at, else the newest one under snapshots/."""
    snapshots = repo / "snapshots"
    ref = repo / "refs" / "main"
    if ref.is_file():
        commit = ref.read_text(encoding="utf-8", errors="replace").strip()
        if commit and (snapshots / commit).is_dir():
            return snapshots / commit
    if not snapshots.is_dir():
        return None
    found = [p for p in snapshots.iterdir() if p.is_dir()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def resolve(spec: str) -> Path:
    """A folder path as given, or a hub name found in the local Hugging Face cache."""
    if not spec.strip():
        raise ModelLoadError("--model is empty: pass a checkpoint folder or a name such as gpt2")
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ModelLoadError(
            f"--model {spec} is a file, not a folder: pass the checkpoint folder that holds "
            f"config.json, the weights, vocab.json and merges.txt ({path.parent})"
        )
    if not _REPO_NAME.match(spec):
        raise ModelLoadError(
            f"model folder {spec} does not exist: pass a folder with config.json, "
            f"model.safetensors, vocab.json and merges.txt, or a name such as gpt2 that is "
            f"in the local Hugging Face cache"
        )
    cache = hub_cache_dir()
    looked = []
    for repo_id in _repo_ids(spec):
        repo = cache / ("models--" + repo_id.replace("/", "--"))
        looked.append(str(repo))
        snapshot = _snapshot(repo)
        if snapshot is not None:
            return snapshot
    download = _ALIASES.get(spec, spec)
    raise ModelLoadError(
        f"model {spec!r} is neither a folder nor in the local Hugging Face cache (looked in "
        f"{', '.join(looked)}): on a machine with network run `huggingface-cli download "
        f"{download}` and copy its cache here (or set HF_HUB_CACHE to it), or pass a folder path"
    )




# --- config.json --------------------------------------------------------------------------------

def read_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise ModelLoadError(
            f"no config.json in {folder}: a checkpoint folder needs config.json, the weights "
            f"(model.safetensors) and the tokenizer files (save_pretrained writes them)"
        )
    if path.stat().st_size > CONFIG_LIMIT:
        raise ModelLoadError(f"{path} is {path.stat().st_size:,} bytes, far more than any "
                             f"model's config.json: restore it from the checkpoint's source")
    try:
        text = path.read_text(encoding="utf-8")
        _check_depth(text, path)
        hf = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        detail = "nested too deep" if isinstance(exc, RecursionError) else exc
        raise ModelLoadError(
            f"{path} is not valid JSON ({detail}): restore it from the checkpoint's source"
        ) from None
    if not isinstance(hf, dict):
        raise ModelLoadError(
            f"{path} is not a JSON object: restore it from the checkpoint's source")
    return hf


def _check_depth(text: str, path: Path) -> None:
    """Refuse nesting deeper than CONFIG_DEPTH before the parser recurses into it."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > CONFIG_DEPTH:
                raise ModelLoadError(f"{path} nests more than {CONFIG_DEPTH} levels deep, which "
                                     f"no model config does: restore it from the checkpoint's "
                                     f"source")
        elif ch in "]}":
            depth -= 1


def model_config(folder: Path):
    """(ModelConfig, family module) for the folder's config.json."""
    where = folder / "config.json"
    hf = read_config(folder)
    model_type = hf.get("model_type", "gpt2")  # old GPT-2 configs carry no model_type
    family = families().get(model_type)
    if family is None:
        shown = repr(model_type)[:80]
        raise ModelLoadError(
            f"{where} says model_type {shown}; attn reads GPT-2 and these other families: "
            f"{', '.join(supported())}"
        )
    try:
        cfg = family.config(HFConfig(hf, where))
        return dataclasses.replace(cfg, source=str(folder), seed=None), family
    except ModelLoadError:
        raise
    except AttnError as exc:
        raise ModelLoadError(f"{where} describes a model attn cannot build: {exc}") from None


def describe_sizes(cfg: ModelConfig) -> str:
    kv = f" ({cfg.kv_heads} key/value)" if cfg.kv_heads != cfg.n_heads else ""
    return (f"{cfg.n_layers} layers × {cfg.n_heads} heads{kv}, d_model {cfg.d_model}, "
            f"d_ff {cfg.d_ff}, vocabulary {cfg.vocab_size}")


# --- weight files ----------------------------------------------------------------------------------

def _corrupt(path: Path, exc: BaseException) -> ModelLoadError:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ModelLoadError(
        f"could not read {path}: the file is corrupt or truncated ({detail[:200]}); "
        f"download or save the checkpoint again"
    )


class WeightFiles:
    """The folder's weights: names and shapes from the headers; a tensor only when asked."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.dtypes: dict[str, str] = {}
        self._where: dict[str, Path] = {}  # tensor name -> safetensors file
        self._state: dict[str, torch.Tensor] | None = None  # pytorch_model.bin, read whole
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
        inside = self.folder.resolve()
        shards = []
        for name in names:
            shard = (self.folder / str(name))
            if not isinstance(name, str) or Path(name).is_absolute() or \
                    not shard.resolve().is_relative_to(inside):
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

    def nbytes(self) -> int:
        """Bytes of every tensor, as stored."""
        total = 0
        for key, shape in self.shapes.items():
            n = 1
            for s in shape:
                n *= s
            total += n * _itemsize(self.dtypes[key])
        return total

    def tensor(self, key: str) -> torch.Tensor:
        if self._state is not None:
            return self._state[key]
        from safetensors import safe_open

        path = self._where[key]
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                return f.get_tensor(key)
        except Exception as exc:
            raise _corrupt(path, exc) from None


def _itemsize(dtype: str) -> int:
    digits = "".join(ch for ch in dtype if ch.isdigit())
    return max(1, int(digits) // 8) if digits else 4


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


class Weights:
    """What a family's `convert` reads: `get(name, shape)` checks the name and the shape (as
    stored) and returns the tensor in float32. A dry run checks every name and shape from the
    headers alone and reports the first problem, with how many more there are."""

    def __init__(self, files: WeightFiles, family, cfg: ModelConfig, dry: bool = False):
        self.files, self.cfg, self.dry = files, cfg, dry
        self.names = {_strip(k, family.PREFIXES): k for k in files.shapes}
        self.missing: list[str] = []
        self.bad: list[tuple[str, tuple, tuple]] = []

    @classmethod
    def dry_run(cls, files: WeightFiles, family, cfg: ModelConfig) -> None:
        w = cls(files, family, cfg, dry=True)
        family.convert(w, cfg)
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

    def has(self, name: str) -> bool:
        return name in self.names

    def get(self, name: str, shape: tuple[int, ...], alias: str | None = None) -> torch.Tensor:
        """The tensor `name` (or, if absent, `alias`: the same matrix under another name, such
        as a tied LM head or an old checkpoint's LayerNorm.gamma)."""
        if name not in self.names and alias is not None and alias in self.names:
            name = alias
        if name not in self.names:
            self.missing.append(name)
            return torch.empty(shape, device="meta")
        key = self.names[name]
        found = self.files.shapes[key]
        if found != tuple(shape):
            self.bad.append((name, found, tuple(shape)))
            return torch.empty(shape, device="meta")
        if self.dry:
            return torch.empty(shape, device="meta")
        tensor = self.files.tensor(key)
        if not tensor.is_floating_point():
            raise ModelLoadError(
                f"tensor {name} in {self.cfg.source} is {tensor.dtype}, not floating point: "
                f"the weights file is not a {self.cfg.family} checkpoint"
            )
        tensor = tensor.to(torch.float32)
        # a finite sum means every entry is finite (NaN and ±inf propagate); only a sum that
        # is not (NaN/inf inside, or an overflow) needs the element-wise check: 20× cheaper
        if not torch.isfinite(tensor.sum()) and not torch.isfinite(tensor).all():
            raise ModelLoadError(
                f"tensor {name} in {self.cfg.source} holds NaN or infinite values: the "
                f"checkpoint is corrupt (or was trained into a broken state); download or save "
                f"it again"
            )
        return tensor


# --- tokenizer ------------------------------------------------------------------------------------

# The sha256 that tiktoken pins for GPT-2's encoder.json / vocab.bpe: HF's vocab.json and
# merges.txt are byte-identical to them, and then the bundled gpt2 ranks are the same table.
_GPT2_VOCAB_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
_GPT2_MERGES_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
TOKENIZER_FILES = ("vocab.json", "merges.txt")


def load_tokenizer(folder: Path):
    from attn_cli.tokenize import encoding_from_files, get_encoding

    missing = [name for name in TOKENIZER_FILES if not (folder / name).is_file()]
    if missing:
        raise ModelLoadError(
            f"no {' or '.join(missing)} in {folder}: the checkpoint's GPT-2 tokenizer files "
            f"(vocab.json and merges.txt) must sit beside config.json; copy them from the "
            f"model it was trained with"
        )
    vocab, merges = folder / "vocab.json", folder / "merges.txt"
    if _sha256(vocab) == _GPT2_VOCAB_SHA256 and _sha256(merges) == _GPT2_MERGES_SHA256:
        return get_encoding("gpt2")  # the very same ranks, from the bundled file
    try:
        return encoding_from_files(vocab, merges)
    except AttnError as exc:
        raise ModelLoadError(str(exc)) from None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- weights into the model -------------------------------------------------------------------

@contextlib.contextmanager
def _no_embedding_init():
    """nn.Embedding's random init on the meta device computes nothing, but torch routes its
    normal_ through torch._refs, whose first call imports torch._dynamo (1-4 s): skip it, the
    weights are assigned right after."""
    init = torch.nn.Embedding.reset_parameters
    torch.nn.Embedding.reset_parameters = lambda self: None
    try:
        yield
    finally:
        torch.nn.Embedding.reset_parameters = init


def build(cfg: ModelConfig, tensors: dict[str, torch.Tensor]) -> transformer.Transformer:
    """A Transformer for cfg holding these tensors (our names, our shapes, float32).

    The module is made on the meta device, so no random init is spent on weights that are
    about to be replaced; every parameter is then assigned from the tensors.
    """
    with torch.device("meta"), _no_embedding_init():
        model = transformer.Transformer(cfg)
        if "lm_head.weight" in tensors:  # an untied LM head, where the family found one
            model.lm_head = torch.nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
    model.load_state_dict(tensors, strict=True, assign=True)
    return model
