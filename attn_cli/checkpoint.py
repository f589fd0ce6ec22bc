"""Real GPT-2-family weights from disk: a Hugging Face folder, or a name in the local HF cache.

    load("path/to/folder")  or  load("gpt2")  ->  (model.Transformer, tiktoken.Encoding)

A folder holds config.json, model.safetensors (or the older pytorch_model.bin, read with
`weights_only=True`), vocab.json and merges.txt. A name such as `gpt2`, `distilgpt2` or
`openai-community/gpt2` is looked up in the Hugging Face cache that `huggingface-cli download`
fills; nothing is ever downloaded. Every problem is one `ModelLoadError` line that says what is
wrong and what to do.

GPT-2 stores its projections as `Conv1D` weights of shape (in, out); `model.Transformer` uses
`nn.Linear`, (out, in), so those four weights per block are transposed on the way in. Module
names are GPT-2's own, so the rest is a plain copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import torch
from torch import nn

from attn_cli import model as model_lib
from attn_cli.config import ModelConfig
from attn_cli.errors import AttnError, ModelLoadError
from attn_cli.tokenize import encoding_from_files, get_encoding

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PYTORCH_BIN = "pytorch_model.bin"
TOKENIZER_FILES = ("vocab.json", "merges.txt")

# GPT2Config's defaults: what transformers assumes when config.json leaves a key out.
_DEFAULTS = {"n_layer": 12, "n_head": 12, "n_embd": 768, "n_positions": 1024,
             "vocab_size": 50257, "layer_norm_epsilon": 1e-5, "n_inner": None,
             "activation_function": "gelu_new"}
# GPT-2's own GELU is the tanh approximation, which is what model.MLP computes.
_TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh")
# Checkpoint keys that are not weights of the model: old causal-mask buffers, the LM head
# (tied to wte in GPT-2, and `attn` stops at the contextual embeddings).
_IGNORED = re.compile(r"(^|\.)attn\.(bias|masked_bias)$|^lm_head\.")

# The sha256 that tiktoken pins for GPT-2's encoder.json / vocab.bpe: HF's vocab.json and
# merges.txt are byte-identical to them, and then the bundled gpt2 ranks are the same table,
# four times faster to load than parsing the JSON and merges.
_GPT2_VOCAB_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
_GPT2_MERGES_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"

# Hub names that moved under an organisation; the cache may hold either spelling.
_ALIASES = {
    "gpt2": "openai-community/gpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-large": "openai-community/gpt2-large",
    "gpt2-xl": "openai-community/gpt2-xl",
    "distilgpt2": "distilbert/distilgpt2",
}
_REPO_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def load(spec: str, device: str = "cpu"):
    """The model and encoding of a GPT-2-family checkpoint folder or cached hub name.

    Returns (model.Transformer in eval mode on `device`, tiktoken.Encoding).
    """
    folder = resolve(spec)
    hf = read_config(folder)
    cfg = model_config(hf, folder)
    weights = _weights_file(folder)
    vocab, merges = _tokenizer_files(folder)
    model = build(cfg, _read_state_dict(weights))
    encoding = _encoding(vocab, merges)
    if encoding.max_token_value >= cfg.vocab_size:
        raise ModelLoadError(
            f"the tokenizer in {folder} has {encoding.max_token_value + 1} tokens but the "
            f"model's embedding table has only {cfg.vocab_size} rows: vocab.json and "
            f"merges.txt do not belong to these weights"
        )
    return model.to(device).eval(), encoding


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
            f"no config.json in {folder}: a GPT-2 checkpoint folder needs config.json, "
            f"model.safetensors, vocab.json and merges.txt (save_pretrained writes the first two)"
        )
    try:
        hf = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelLoadError(
            f"{path} is not valid JSON ({exc}): restore it from the checkpoint's source"
        ) from None
    if not isinstance(hf, dict):
        raise ModelLoadError(
            f"{path} is not a JSON object: restore it from the checkpoint's source")
    return hf


def model_config(hf: dict, folder: Path) -> ModelConfig:
    """The ModelConfig a GPT-2 config.json describes, or a ModelLoadError saying why not."""
    where = folder / "config.json"
    model_type = hf.get("model_type", "gpt2")
    if model_type != "gpt2":
        raise ModelLoadError(
            f"{where} says model_type {model_type!r}; attn loads GPT-2-family checkpoints "
            f"(model_type 'gpt2', such as gpt2, distilgpt2, gpt2-medium)"
        )
    act = hf.get("activation_function", _DEFAULTS["activation_function"])
    if act not in _TANH_GELUS:
        raise ModelLoadError(
            f"{where} says activation_function {act!r}; attn's GPT-2 MLP uses the tanh GELU "
            f"({' or '.join(_TANH_GELUS)}), so this checkpoint's outputs would be wrong"
        )
    if not hf.get("scale_attn_weights", True):
        raise ModelLoadError(
            f"{where} sets scale_attn_weights false (no ÷√d_k); attn supports only GPT-2's "
            f"scaled attention"
        )
    if hf.get("scale_attn_by_inverse_layer_idx", False):
        raise ModelLoadError(
            f"{where} sets scale_attn_by_inverse_layer_idx; attn supports only GPT-2's "
            f"plain ÷√d_k scaling, not an extra 1/(layer+1)"
        )
    # reorder_and_upcast_attn only changes the order of float operations in half precision;
    # attn computes in float32, where it is the same attention (the tests hold it equal).

    values = {key: hf.get(key, default) for key, default in _DEFAULTS.items()}
    sizes = ("n_layer", "n_head", "n_embd", "n_positions", "vocab_size")
    for key in sizes + (("n_inner",) if values["n_inner"] is not None else ()):
        value = values[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ModelLoadError(
                f"{where} has {key} {value!r}; it must be a positive whole number"
            )
    if values["n_embd"] % values["n_head"]:
        raise ModelLoadError(
            f"{where} has n_embd {values['n_embd']}, which n_head {values['n_head']} "
            f"does not divide: the config is broken"
        )
    eps = values["layer_norm_epsilon"]
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ModelLoadError(
            f"{where} has layer_norm_epsilon {eps!r}; it must be a positive number")
    try:
        return ModelConfig(
            n_layers=values["n_layer"], n_heads=values["n_head"], d_model=values["n_embd"],
            d_ff=values["n_inner"] or 4 * values["n_embd"], causal=True, seed=None,
            positions="learned", n_positions=values["n_positions"],
            vocab_size=values["vocab_size"], layer_norm_eps=float(eps), source=str(folder),
        )
    except AttnError as exc:
        raise ModelLoadError(f"{where} describes a model attn cannot build: {exc}") from None


# --- files ---------------------------------------------------------------------------------------

def _weights_file(folder: Path) -> Path:
    for name in (SAFETENSORS, SAFETENSORS_INDEX, PYTORCH_BIN):
        if (folder / name).is_file():
            return folder / name
    others = sorted(p.name for p in folder.glob("*") if p.suffix in (".h5", ".msgpack", ".ckpt"))
    found = f" (found only {', '.join(others)}, which attn does not read)" if others else ""
    raise ModelLoadError(
        f"no weights in {folder}{found}: put model.safetensors (or pytorch_model.bin) there, "
        f"e.g. with transformers' save_pretrained"
    )


def _tokenizer_files(folder: Path) -> tuple[Path, Path]:
    missing = [name for name in TOKENIZER_FILES if not (folder / name).is_file()]
    if missing:
        raise ModelLoadError(
            f"no {' or '.join(missing)} in {folder}: the checkpoint's GPT-2 tokenizer files "
            f"(vocab.json and merges.txt) must sit beside config.json; copy them from the "
            f"model it was trained with"
        )
    return folder / "vocab.json", folder / "merges.txt"


def _encoding(vocab: Path, merges: Path):
    if (_sha256(vocab) == _GPT2_VOCAB_SHA256 and _sha256(merges) == _GPT2_MERGES_SHA256):
        return get_encoding("gpt2")  # the very same ranks, from the bundled file
    try:
        return encoding_from_files(vocab, merges)
    except AttnError as exc:
        raise ModelLoadError(str(exc)) from None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _corrupt(path: Path, exc: BaseException) -> ModelLoadError:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ModelLoadError(
        f"could not read {path}: the file is corrupt or truncated ({detail[:200]}); "
        f"download or save the checkpoint again"
    )


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor in the weights file(s), by name, on the CPU."""
    if path.name == PYTORCH_BIN:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle, zip and torch errors alike mean an unreadable file
            raise _corrupt(path, exc) from None
        if not isinstance(state, dict) or not all(
                isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
            raise ModelLoadError(
                f"{path} does not hold a state dict of named tensors: save the model with "
                f"transformers' save_pretrained"
            )
        return state
    if path.name == SAFETENSORS_INDEX:
        try:
            index = json.loads(path.read_text(encoding="utf-8"))
            shards = sorted(set(index["weight_map"].values()))
        except Exception as exc:
            raise _corrupt(path, exc) from None
        state = {}
        for shard in shards:
            if not (path.parent / shard).is_file():
                raise ModelLoadError(
                    f"{path} names the shard {shard}, which is not in {path.parent}: "
                    f"download the whole checkpoint"
                )
            state.update(_read_safetensors(path.parent / shard))
        return state
    return _read_safetensors(path)


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {key: f.get_tensor(key) for key in f.keys()}
    except Exception as exc:  # SafetensorError, OSError, ...: the file cannot be read
        raise _corrupt(path, exc) from None


# --- weights into the model -------------------------------------------------------------------

def build(cfg: ModelConfig, checkpoint: dict[str, torch.Tensor]) -> model_lib.Transformer:
    """A Transformer for cfg holding the checkpoint's weights (float32, on the CPU).

    The module is made on the meta device, so no random init is spent on weights that are
    about to be replaced; every parameter is then assigned from the checkpoint.
    """
    with torch.device("meta"):
        model = model_lib.Transformer(cfg)
    linear = {f"{name}.weight" for name, m in model.named_modules() if isinstance(m, nn.Linear)}

    tensors = {}
    prefixed = any(k.startswith("transformer.") for k in checkpoint)
    for key, tensor in checkpoint.items():
        if prefixed and key.startswith("transformer."):
            key = key[len("transformer."):]
        if not _IGNORED.search(key):
            tensors[key] = tensor
    if "wte.weight" not in tensors and "lm_head.weight" in checkpoint:
        tensors["wte.weight"] = checkpoint["lm_head.weight"]  # tied: the same matrix

    expected = {name: tuple(p.shape) for name, p in model.state_dict().items()}
    blocks = {int(m.group(1)) for k in tensors if (m := re.match(r"h\.(\d+)\.", k))}
    if blocks and max(blocks) >= cfg.n_layers:
        raise ModelLoadError(
            f"the checkpoint in {cfg.source} has {max(blocks) + 1} blocks but config.json says "
            f"n_layer {cfg.n_layers}: the weights and config.json do not belong together"
        )
    missing = [name for name in expected if name not in tensors]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ModelLoadError(
            f"the checkpoint in {cfg.source} has no tensor {missing[0]}{more}: the weights do "
            f"not match config.json ({_describe(cfg)}); save the model again with save_pretrained"
        )

    state = {}
    for name, shape in expected.items():
        tensor = tensors[name]
        want = shape[::-1] if name in linear else shape  # GPT-2's Conv1D stores (in, out)
        if tuple(tensor.shape) != want:
            raise ModelLoadError(
                f"tensor {name} in {cfg.source} has shape {tuple(tensor.shape)} but config.json "
                f"({_describe(cfg)}) needs {want}: the weights and config.json do not belong "
                f"together"
            )
        if not tensor.is_floating_point():
            raise ModelLoadError(
                f"tensor {name} in {cfg.source} is {tensor.dtype}, not floating point: "
                f"the weights file is not a GPT-2 checkpoint"
            )
        # A transposed view, not a copy: nn.Linear then runs the very matmul GPT-2's Conv1D
        # runs on the same memory (addmm(b, x, W_in_out)), so the projections agree bit for bit.
        tensor = tensor.t() if name in linear else tensor
        state[name] = tensor.to(torch.float32)
    model.load_state_dict(state, strict=True, assign=True)
    return model


def _describe(cfg: ModelConfig) -> str:
    return (f"n_layer {cfg.n_layers}, n_head {cfg.n_heads}, n_embd {cfg.d_model}, "
            f"n_inner {cfg.d_ff}, n_positions {cfg.n_positions}, vocab_size {cfg.vocab_size}")
