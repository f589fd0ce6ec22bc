"""Where a checkpoint is, without torch: a folder, a sentence-transformers folder's model, or a
name in the local Hugging Face cache; its config.json, read with limits; its tokenizer.

`attn tokens --model M` runs on this module alone, so it never imports torch; checkpoint.py
builds the model from what it finds.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from attn_cli.errors import AttnError, ModelLoadError
from attn_cli.models.families import HFConfig

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PYTORCH_BIN = "pytorch_model.bin"
CONFIG_LIMIT = 4 * 2**20  # bytes: real config.json files are a few kB
CONFIG_DEPTH = 64  # nesting: real config.json files are 3 or 4 deep
MODULES_LIMIT = 2**20  # bytes: a sentence-transformers modules.json is a few hundred

# Hub names that moved under an organisation; the cache may hold either spelling.
_ALIASES = {
    "gpt2": "openai-community/gpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-large": "openai-community/gpt2-large",
    "gpt2-xl": "openai-community/gpt2-xl",
    "distilgpt2": "distilbert/distilgpt2",
}
_REPO_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_REVISION = re.compile(r"^[\w.-]+(/[\w.-]+)*$")  # a branch, tag or commit: main, v1.0, refs/pr/1
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


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


def _snapshot(repo: Path, revision: str | None = None) -> tuple[Path | None, tuple | None]:
    """(the snapshot to use, None), or (None, (an incomplete snapshot, what it lacks) or None).

    With a revision: the snapshot of that commit, or the one refs/REVISION points at. Without:
    the one refs/main points at, else the newest. A snapshot that lacks config.json or its
    weights (a download that stopped half-way) is never used.
    """
    snapshots = repo / "snapshots"
    candidates = []
    if revision is not None and _COMMIT.match(revision):
        candidates.append(snapshots / revision)
    else:
        ref = repo / "refs" / (revision or "main")
        if ref.is_file():
            commit = ref.read_text(encoding="utf-8", errors="replace").strip()
            if commit:
                candidates.append(snapshots / commit)
        if revision is None and snapshots.is_dir():
            found = [p for p in snapshots.iterdir() if p.is_dir()]
            candidates += sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)
    incomplete = None
    for snapshot in candidates:
        if not snapshot.is_dir():
            continue
        missing = _missing(snapshot)
        if missing is None:
            return snapshot, None
        incomplete = incomplete or (snapshot, missing)
    return None, incomplete


def _missing(folder: Path) -> str | None:
    """What a cached snapshot lacks before it can be loaded: config.json, the weights, or a
    shard its index names (None if nothing). `attn pull` fetches config.json first and the
    weights last, so a pull that stopped half-way leaves a snapshot that this refuses."""
    if not (folder / "config.json").is_file():
        return "config.json"
    if (folder / SAFETENSORS).is_file() or (folder / PYTORCH_BIN).is_file():
        return None
    index = folder / SAFETENSORS_INDEX
    if not index.is_file():
        return f"{SAFETENSORS} or {PYTORCH_BIN}"
    try:
        shards = json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()
    except Exception:  # WeightFiles says what is wrong with the index
        return None
    for shard in sorted({s for s in shards if isinstance(s, str)}):
        if not (folder / shard).is_file():
            return shard
    return None


def split_revision(spec: str) -> tuple[str, str | None]:
    """`NAME@REVISION` -> (NAME, REVISION); `NAME` -> (NAME, None)."""
    name, at, revision = spec.partition("@")
    if not at:
        return spec, None
    if not _REVISION.match(revision) or any(p in (".", "..") for p in revision.split("/")):
        raise ModelLoadError(
            f"{spec!r} names the revision {revision!r}, which is not a branch, tag or commit: "
            f"use NAME@main, NAME@v1.0 or NAME@<40-hex commit>")
    return name, revision


def resolve(spec: str) -> Path:
    """A folder path as given, or a hub name (`NAME` or `NAME@REVISION`) found in the local
    Hugging Face cache."""
    if not spec.strip():
        raise ModelLoadError("--model is empty: pass a checkpoint folder or a name such as gpt2")
    path = Path(spec).expanduser()
    if path.is_dir():
        return model_folder(path)
    if path.exists():
        raise ModelLoadError(
            f"--model {spec} is a file, not a folder: pass the checkpoint folder that holds "
            f"config.json, the weights, vocab.json and merges.txt ({path.parent})"
        )
    name, revision = spec, None
    if _REPO_NAME.match(spec.partition("@")[0]):
        name, revision = split_revision(spec)
    if not _REPO_NAME.match(name):
        raise ModelLoadError(
            f"model folder {spec} does not exist: pass a folder with config.json, "
            f"model.safetensors, vocab.json and merges.txt, or a name such as gpt2 that is "
            f"in the local Hugging Face cache"
        )
    cache = hub_cache_dir()
    looked, incomplete = [], None
    for repo_id in _repo_ids(name):
        repo = cache / ("models--" + repo_id.replace("/", "--"))
        looked.append(str(repo))
        snapshot, partial = _snapshot(repo, revision)
        if snapshot is not None:
            return snapshot
        incomplete = incomplete or partial
    pull = f"attn pull {name}" + (f" --revision {revision}" if revision else "")
    if incomplete is not None:
        folder, missing = incomplete
        raise ModelLoadError(
            f"the cached copy of {spec} in {folder} is incomplete (no {missing}): a download "
            f"stopped half-way; run `{pull}` to finish it")
    download = _ALIASES.get(name, name)
    what = f"revision {revision} of {name!r}" if revision else f"model {spec!r}"
    raise ModelLoadError(
        f"{what} is neither a folder nor in the local Hugging Face cache (looked in "
        f"{', '.join(looked)}): run `{pull}` (or, with no network here, `huggingface-cli "
        f"download {download}` on a machine that has it and copy its cache here or set "
        f"HF_HUB_CACHE to it), or pass a folder path"
    )

def model_folder(folder: Path) -> Path:
    """The folder that holds the model's config.json. A sentence-transformers folder names its
    modules in modules.json; the Transformer module is at the root (path "") or, in the older
    layout, in a subfolder such as 0_Transformer/, beside 1_Pooling/."""
    modules = folder / "modules.json"
    if (folder / "config.json").is_file() or not modules.is_file():
        return folder
    try:
        if modules.stat().st_size > MODULES_LIMIT:
            return folder
        entries = json.loads(modules.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return folder  # read_config says what is missing
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or not str(entry.get("type", "")).endswith(".Transformer"):
            continue
        path = entry.get("path")
        if not isinstance(path, str):
            continue
        inner = (folder / path).resolve()
        if inner.is_relative_to(folder.resolve()) and (inner / "config.json").is_file():
            return folder / path
    return folder


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
    depth = 0
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


# --- tokenizer ----------------------------------------------------------------------------------

TOKENIZER_FILES = ("vocab.json", "merges.txt")  # the GPT-2-style pair (or tokenizer.json)


def load_tokenizer(folder: Path, family=None):
    """The folder's own tokenizer (tokenizer.json, or vocab.json + merges.txt): see
    tokenizers/hf.py; or the family's own (a model trained by attn train names an encoding and its
    vocabulary in config.json). Its problems are the checkpoint's problems."""
    from attn_cli.tokenizers import hf as hf_tokenizer

    if hasattr(family, "tokenizer"):
        return family.tokenizer(HFConfig(read_config(folder), folder / "config.json"))
    if family is None and read_config(folder).get("model_type") == "attn":
        from attn_cli.models.families import attn  # attn train's folders: the family says

        return attn.tokenizer(HFConfig(read_config(folder), folder / "config.json"))
    try:
        return hf_tokenizer.load(folder)
    except ModelLoadError:
        raise
    except AttnError as exc:
        raise ModelLoadError(str(exc)) from None
