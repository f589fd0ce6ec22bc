"""`attn pull NAME`: download what `--model NAME` needs into the Hugging Face cache.

The one part of attn that uses the network, through `huggingface_hub` (the optional extra
`attn-cli[hub]`); nothing else in attn imports it. One API call lists the repo's files at a
revision and gives its commit; then `hf_hub_download` fetches, pinned to that commit, only
what `checkpoint.load` reads:

    config.json                 first, so an unsupported family stops before the weights
    tokenizer files             tokenizer.json, tokenizer_config.json, special_tokens_map.json,
                                vocab.json, merges.txt, vocab.txt, *.model (SentencePiece)
    the weights, last           model.safetensors; or model.safetensors.index.json and the
                                shards it names; pytorch_model.bin only when the repo has no
                                safetensors. Never TF, Flax, ONNX or a .bin beside safetensors.

Files land as huggingface_hub lays them out (blobs/, snapshots/COMMIT/, refs/), in the cache
`folders.hub_cache_dir()` reads, so the two always agree. A file is moved into place only
when complete; refs/REVISION is written only when every file is; and `checkpoint.resolve`
never uses a snapshot without config.json, its weights and every shard its index names. A pull that stops half-way thus
leaves nothing `--model NAME` would trust, and the next pull fetches only what is missing.

HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE and HF_HOME / HF_HUB_CACHE are read when `pull` is
called (not when huggingface_hub is imported), so they behave the same in a test process.
"""

from __future__ import annotations

import errno
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from attn_cli.errors import AttnError

DEFAULT_ENDPOINT = "https://huggingface.co"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "vocab.json", "merges.txt", "vocab.txt")
SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PYTORCH_BIN = "pytorch_model.bin"
INDEX_LIMIT = 16 * 2**20  # bytes: a real shard index is well under 1 MB
API_TIMEOUT = 30.0  # seconds for the repo listing; file downloads use huggingface_hub's own
_OTHER_WEIGHTS = (".h5", ".msgpack", ".onnx", ".ckpt", ".gguf", ".bin", ".pt", ".pth")


class PullError(AttnError):
    """A pull that cannot be done: no extra, bad name, no network, no access, no space."""


@dataclass
class Result:
    name: str
    revision: str
    commit: str
    folder: Path
    fetched: list[str] = field(default_factory=list)  # downloaded by this pull
    cached: list[str] = field(default_factory=list)  # already in the cache
    nbytes: int = 0  # bytes of the fetched files


def require() -> None:
    """Raise PullError if huggingface_hub cannot be imported."""
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        raise PullError("attn pull needs huggingface_hub, an optional extra: "
                        "pip install 'attn-cli[hub]'") from None


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def offline() -> str | None:
    """The variable that switches huggingface_hub's network off, if one is set."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().upper() in ("1", "ON", "YES", "TRUE"):
            return var
    return None


# --- which files -----------------------------------------------------------------------------

def plan(files: list[str], name: str) -> tuple[list[str], str]:
    """(config.json and the tokenizer files, the weight file) to fetch, from the repo's list of
    files. A sharded index's shards are added once the index is read (`shards`)."""
    top = {f for f in files if "/" not in f}
    if "config.json" not in top:
        raise PullError(f"{name} has no config.json, so it is not a checkpoint attn can read "
                        f"(a transformers model repo has one at its top level)")
    tokenizer = [f for f in TOKENIZER_FILES if f in top]
    tokenizer += sorted(f for f in top if f.endswith(".model"))
    for weights in (SAFETENSORS, SAFETENSORS_INDEX, PYTORCH_BIN):
        if weights in top:
            return ["config.json", *tokenizer], weights
    others = sorted(f for f in files if f.endswith(_OTHER_WEIGHTS))
    found = f" (it has {', '.join(others[:4])}{', …' if len(others) > 4 else ''})" \
        if others else ""
    raise PullError(f"{name} has no {SAFETENSORS}, {SAFETENSORS_INDEX} or {PYTORCH_BIN}"
                    f"{found}: attn reads PyTorch weights only")


def shards(index: Path, files: list[str], name: str) -> list[str]:
    """The shard files a downloaded model.safetensors.index.json names, each one the repo has."""
    try:
        if index.stat().st_size > INDEX_LIMIT:
            raise ValueError(f"{index.stat().st_size:,} bytes")
        names = json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()
        names = sorted(set(names))
        if not all(isinstance(n, str) for n in names):
            raise ValueError("a shard name that is not a string")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PullError(f"{SAFETENSORS_INDEX} of {name} is not a shard index ({exc}): the "
                        f"repo is broken; tell its owner") from None
    listed = set(files)
    for shard in names:
        if shard not in listed:
            raise PullError(f"{SAFETENSORS_INDEX} of {name} names the shard {shard[:100]!r}, "
                            f"which the repo does not have: the repo is broken")
    return names


def check_family(config: Path, name: str) -> None:
    """Stop before the weights if config.json names a family attn cannot read."""
    from attn_cli.errors import ModelLoadError
    from attn_cli.models import folders
    from attn_cli.models.families import families, supported

    try:
        hf = folders.read_config(config.parent)
    except ModelLoadError as exc:
        raise PullError(f"{name}: {exc}") from None
    model_type = hf.get("model_type", "gpt2")
    if model_type not in families():
        raise PullError(f"{name} is a {repr(model_type)[:60]} model (config.json model_type); "
                        f"attn reads {', '.join(supported())}: the weights were not downloaded")


# --- the download ---------------------------------------------------------------------------

def pull(spec: str, revision: str | None = None) -> Result:
    """Download what `--model spec` needs. `spec` is NAME or NAME@REVISION."""
    from attn_cli.models import folders

    name, revision = _name_and_revision(spec, revision)
    if offline():
        raise PullError(f"{offline()} is set, which forbids the network, and attn pull "
                        f"downloads: unset it for this command (no other attn command uses "
                        f"the network)")
    require()
    cache = folders.hub_cache_dir()
    try:
        return _download(name, revision, cache)
    except AttnError:
        raise
    except Exception as exc:
        explained = _explain(exc, name, revision, cache)
        if explained is None:
            raise  # not a failure we know: handle_errors reports it as a bug in attn
        raise explained from None


def _name_and_revision(spec: str, revision: str | None) -> tuple[str, str]:
    from attn_cli.errors import ModelLoadError
    from attn_cli.models import folders

    if not spec.strip():
        raise PullError("attn pull needs a model name, such as EleutherAI/pythia-70m")
    if Path(spec).expanduser().is_dir():
        raise PullError(f"{spec} is a folder on this machine: nothing to pull; use it as it is "
                        f"with --model {spec}")
    try:
        name, at = folders.split_revision(spec)
        if revision is not None:
            folders.split_revision(f"{name}@{revision}")
    except ModelLoadError as exc:
        raise PullError(str(exc)) from None
    if at is not None and revision is not None and at != revision:
        raise PullError(f"{spec} and --revision {revision} name two revisions: give one")
    if not folders._REPO_NAME.match(name) or name.endswith((".", "-")) or ".." in name \
            or "--" in name or len(name) > 96:
        raise PullError(f"{spec[:100]!r} is not a Hugging Face model name: use OWNER/NAME as on "
                        f"its page, e.g. EleutherAI/pythia-70m (or gpt2)")
    return name, at or revision or "main"


def _download(name: str, revision: str, cache: Path) -> Result:
    import huggingface_hub
    from huggingface_hub import HfApi
    from huggingface_hub import errors as hub_errors

    from attn_cli.models import folders

    url, token = endpoint(), os.environ.get("HF_TOKEN") or None
    try:
        info = HfApi(endpoint=url, token=token).model_info(name, revision=revision,
                                                           timeout=API_TIMEOUT)
    except (ValueError, KeyError, TypeError) as exc:  # not JSON, or not a repo's
        if isinstance(exc, (hub_errors.HFValidationError, hub_errors.HfHubHTTPError)):
            raise
        raise PullError(f"{url} did not answer like a Hugging Face hub (its repo listing is "
                        f"not the hub's JSON): check HF_ENDPOINT and any proxy") from None
    commit = info.sha or ""
    if not folders._COMMIT.match(commit):
        raise PullError(f"{url} answered for {name} without a commit id: HF_ENDPOINT does not "
                        f"look like a Hugging Face hub")
    files = [s.rfilename for s in (info.siblings or [])]
    first, weights = plan(files, name)
    repo = cache / ("models--" + name.replace("/", "--"))
    result = Result(name, revision, commit, repo / "snapshots" / commit)

    def fetch(filename: str) -> Path:
        if (result.folder / filename).is_file():
            result.cached.append(filename)
        else:
            result.fetched.append(filename)
        path = Path(huggingface_hub.hf_hub_download(
            name, filename, revision=commit, cache_dir=cache, endpoint=url, token=token,
            tqdm_class=_bar(filename)))
        if filename in result.fetched:
            result.nbytes += path.stat().st_size
        return path

    config = fetch(first[0])
    check_family(config, name)
    for filename in first[1:]:
        fetch(filename)
    if weights == SAFETENSORS_INDEX:  # checkpoint.resolve checks that every shard is there
        for shard in shards(fetch(weights), files, name):
            fetch(shard)
    else:
        fetch(weights)
    if revision != commit:
        _write_ref(repo, revision, commit)
    return result


def _bar(filename: str):
    """huggingface_hub's progress bar (on stderr, shown when it is a terminal, off with
    HF_HUB_DISABLE_PROGRESS_BARS=1), labelled with the file's name rather than its URL."""
    from huggingface_hub.utils import tqdm

    class Bar(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["desc"] = filename
            super().__init__(*args, **kwargs)

    return Bar


def _write_ref(repo: Path, revision: str, commit: str) -> None:
    """refs/REVISION -> commit, written whole (a reader never sees half a ref)."""
    ref = repo / "refs" / revision
    ref.parent.mkdir(parents=True, exist_ok=True)
    tmp = ref.with_name(f"{ref.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(commit, encoding="utf-8")
    os.replace(tmp, ref)


# --- errors in attn's words ------------------------------------------------------------------

def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _explain(exc: Exception, name: str, revision: str, cache: Path) -> AttnError | None:
    """One line for whatever huggingface_hub, the network or the disk raised."""
    from huggingface_hub import errors as hub

    url = endpoint()
    page = f"{url}/{name}"
    token = "HF_TOKEN" if os.environ.get("HF_TOKEN") else None
    for err in _chain(exc):
        if isinstance(err, hub.GatedRepoError):
            if token:
                return PullError(f"{name} is gated and the token in HF_TOKEN has not been "
                                 f"granted access: accept its conditions at {page} with that "
                                 f"account")
            return PullError(f"{name} is gated: accept its conditions at {page}, then set "
                             f"HF_TOKEN to a token of that account")
        if isinstance(err, hub.RevisionNotFoundError):
            return PullError(f"{name} has no revision {revision!r} on {url}: give a branch, tag "
                             f"or commit it has (--revision), or leave it out for main")
        if isinstance(err, hub.RepositoryNotFoundError):
            access = ("or the token in HF_TOKEN cannot read it" if token else
                      "or it is private: set HF_TOKEN to a token that can read it")
            return PullError(f"{name} was not found on {url} ({_status(err) or 404}; check the "
                             f"spelling on its page, {access})")
        if isinstance(err, hub.RemoteEntryNotFoundError):
            return PullError(f"{url} lists a file of {name} that it then does not serve "
                             f"({_status(err)}): try again later")
        if isinstance(err, hub.HFValidationError):
            return PullError(f"{name!r} is not a Hugging Face model name ({err})".splitlines()[0])
        if isinstance(err, hub.HfHubHTTPError):
            status = _status(err)
            if status == 401:
                return PullError(f"{url} refused the token in HF_TOKEN (401): set HF_TOKEN to a "
                                 f"valid token, or unset it for public models")
            if status == 403:
                return PullError(f"{url} refused access to {name} (403): your token lacks the "
                                 f"permission to read it")
            if status == 429:
                return PullError(f"{url} is rate-limiting this machine (429): wait a few "
                                 f"minutes and run attn pull again")
            return PullError(f"{url} answered {status} for {name}: try again later; files "
                             f"already downloaded are kept")
        if isinstance(err, hub.FileMetadataError):
            return PullError(f"{url} did not answer like a Hugging Face hub (no commit id or "
                             f"ETag on a file): check HF_ENDPOINT and any proxy")
        if isinstance(err, hub.OfflineModeIsEnabled):
            return PullError("HF_HUB_OFFLINE is set, which forbids the network, and attn pull "
                             "downloads: unset it for this command")
        kind = type(err).__name__
        if kind in ("ConnectError", "ConnectTimeout", "ReadTimeout", "WriteTimeout",
                    "PoolTimeout", "TimeoutException", "RemoteProtocolError", "ReadError",
                    "ProxyError", "ConnectionError", "NetworkError", "ConnectionRefusedError"):
            detail = str(err).splitlines()[0][:120] if str(err).strip() else kind
            return PullError(f"cannot reach {url} ({detail}): check the network, or HF_ENDPOINT; "
                             f"files already downloaded are kept and the next pull resumes")
        if isinstance(err, OSError) and err.errno is not None:
            where = err.filename or cache
            reason = os.strerror(err.errno) if err.errno else str(err)
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                return PullError(f"cannot write {where}: {reason}; free some space or set "
                                 f"HF_HUB_CACHE to a larger disk, then run attn pull again")
            return PullError(f"cannot write {where}: {reason}; set HF_HUB_CACHE (or HF_HOME) "
                             f"to a folder you can write")
    if isinstance(exc, OSError) and "Consistency check failed" in str(exc):
        return PullError(f"a file of {name} arrived truncated from {url}: run attn pull again")
    return None
