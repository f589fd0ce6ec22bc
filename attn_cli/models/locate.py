"""Where a checkpoint is: a folder as given, or a NAME[@REV] in the local Hugging Face cache
(the snapshot of that revision, complete enough to load). Nothing is ever downloaded here.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from attn_cli.errors import ModelLoadError
from attn_cli.models.weights import PYTORCH_BIN, SAFETENSORS, SAFETENSORS_INDEX


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
        return path
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
