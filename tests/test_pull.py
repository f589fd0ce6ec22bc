"""`attn pull` against a fake hub on 127.0.0.1 (tests/fake_hub.py), and the promise that no
other command touches the network.

The fake hub holds a tiny GPT-2 checkpoint built with transformers (GPT2Model +
save_pretrained, with the real GPT-2 vocab.json and merges.txt from ../shared/fixtures) beside
files a pull must leave alone: tf_model.h5, flax_model.msgpack, onnx/model.onnx, a
pytorch_model.bin beside model.safetensors, a README. The console script runs in subprocesses
for the end-to-end cases (its own environment, a socket guard, Ctrl-C); the many error cases
run in this process through CliRunner, with huggingface_hub's import-time offline switch
reset, since another test module sets HF_HUB_OFFLINE for the whole session.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
huggingface_hub = pytest.importorskip("huggingface_hub")

from fake_hub import FakeHub, Repo  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from attn_cli import pull as pull_lib  # noqa: E402
from attn_cli.cli import app  # noqa: E402
from attn_cli.errors import ModelLoadError  # noqa: E402
from attn_cli.models import checkpoint  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "gpt2-tokenizer"
TIMEOUT = 120
NAME = "someone/tiny-gpt2"
MAIN = "a" * 40
V1 = "b" * 40
NEEDED = ["config.json", "vocab.json", "merges.txt", "model.safetensors"]
NOT_NEEDED = {"tf_model.h5": b"tf", "flax_model.msgpack": b"flax", "onnx/model.onnx": b"onnx",
              "pytorch_model.bin": b"not read: safetensors are there", "README.md": b"# tiny",
              ".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"}
HF_VARS = ("HF_ENDPOINT", "HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_TOKEN",
           "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "XDG_CACHE_HOME", "ATTN_DEBUG")


# --- the checkpoint and the hub --------------------------------------------------------------

def _save(folder: Path, **kwargs) -> dict[str, bytes]:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        config = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=16, n_positions=64)
        transformers.GPT2Model(config).save_pretrained(folder, **kwargs)
    files = {p.name: p.read_bytes() for p in folder.iterdir()}
    for name in ("vocab.json", "merges.txt"):
        files[name] = (FIXTURES / name).read_bytes()
    return files


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, bytes]:
    return _save(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def sharded(tmp_path_factory) -> dict[str, bytes]:
    files = _save(tmp_path_factory.mktemp("sharded"), max_shard_size="1MB")
    assert "model.safetensors.index.json" in files and "model.safetensors" not in files
    return files


@pytest.fixture
def hub(tiny, sharded):
    repos = {
        NAME: Repo({MAIN: {**tiny, **NOT_NEEDED}, V1: dict(tiny)}, {"main": MAIN, "v1": V1}),
        "someone/sharded": Repo({MAIN: {**sharded, "pytorch_model.bin": b"no"}},
                                {"main": MAIN}),
        "someone/private": Repo({MAIN: dict(tiny)}, {"main": MAIN}, private=True),
        "someone/gated": Repo({MAIN: dict(tiny)}, {"main": MAIN}, gated=True),
        "someone/tf-only": Repo({MAIN: {"config.json": tiny["config.json"],
                                        "tf_model.h5": b"tf"}}, {"main": MAIN}),
        "someone/t5": Repo({MAIN: {"config.json": b'{"model_type": "t5"}',
                                   "model.safetensors": tiny["model.safetensors"]}},
                           {"main": MAIN}),
    }
    server = FakeHub(repos)
    server.url = server.start()
    yield server
    server.stop()


@pytest.fixture
def env(hub, tmp_path, monkeypatch):
    """This process set up for an in-process pull from the fake hub: the environment, and
    huggingface_hub's switches that it reads once, at import."""
    for var in HF_VARS:
        monkeypatch.delenv(var, raising=False)
    values = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "home"),
              "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_DISABLE_TELEMETRY": "1",
              "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    for var, value in values.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_TELEMETRY", True)
    return values


def repo_dir(cache: Path, name: str = NAME) -> Path:
    return cache / ("models--" + name.replace("/", "--"))


runner = CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1"})


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"attn {' '.join(map(str, args))} raised {result.exception!r}\n{result.output}")
    return result


def one_line_error(result, *needles) -> str:
    assert result.exit_code == 2, (result.exit_code, result.stderr, result.stdout)
    assert result.stdout == "", result.stdout
    err = result.stderr
    assert err.startswith("error: ") and err.strip().count("\n") == 0, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


# --- the console script in a subprocess ---------------------------------------------------------

GUARDED = r"""
import atexit, json, socket, sys
report, argv = sys.argv[1], sys.argv[2:]
attempts = []

def refuse(name, real):
    def guard(*args, **kwargs):
        attempts.append(f"{name}{args[1:] if name.startswith('socket.') else args}"[:200])
        raise OSError("attn test: this command must not use the network")
    return guard

socket.socket.connect = refuse("socket.connect", socket.socket.connect)
socket.socket.connect_ex = refuse("socket.connect_ex", socket.socket.connect_ex)
socket.create_connection = refuse("create_connection", socket.create_connection)
socket.getaddrinfo = refuse("getaddrinfo", socket.getaddrinfo)

def _report():
    hub = sorted(m for m in sys.modules if m.split(".")[0] in ("huggingface_hub", "httpx2",
                                                               "httpx", "requests", "urllib3"))
    with open(report, "w") as f:
        json.dump({"attempts": attempts, "network_modules": hub}, f)

atexit.register(_report)
sys.argv = ["attn", *argv]
from attn_cli.cli import main
main()
"""


def subprocess_env(**values) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in HF_VARS}
    env.update(COLUMNS="120", NO_COLOR="1", PYTHONIOENCODING="utf-8",
               HF_HUB_DISABLE_TELEMETRY="1")
    env.update(values)
    return env


def attn(*args, env, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "attn_cli", *map(str, args)], env=env,
                          capture_output=True, timeout=TIMEOUT, cwd=ROOT,
                          stdin=subprocess.DEVNULL, **kwargs)


def guarded(tmp_path, *args, env) -> tuple[subprocess.CompletedProcess, dict]:
    report = tmp_path / "guard.json"
    proc = subprocess.run([sys.executable, "-c", GUARDED, str(report), *map(str, args)],
                          env=env, capture_output=True, timeout=TIMEOUT, cwd=ROOT,
                          stdin=subprocess.DEVNULL)
    return proc, json.loads(report.read_text())


def test_pull_fetches_what_model_needs_and_inspect_then_works_offline(hub, tmp_path):
    cache = tmp_path / "hub"
    env = subprocess_env(HF_ENDPOINT=hub.url, HF_HUB_CACHE=str(cache),
                         HF_HOME=str(tmp_path / "home"))
    proc = attn("pull", NAME, env=env)
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    snapshot = repo_dir(cache) / "snapshots" / MAIN
    assert proc.stdout.decode().strip() == str(snapshot)
    assert f"{NAME} at main (commit {MAIN[:12]}): 4 files downloaded (" in err
    assert f"attn inspect --model {NAME}" in err and "Traceback" not in err

    # Exactly: the repo listing, then each needed file once, and nothing else.
    requests = [(r.method, r.path) for r in hub.log]
    assert requests[0] == ("GET", f"/api/models/{NAME}/revision/main")
    assert sorted(hub.files_fetched("GET")) == sorted(NEEDED)
    assert sorted(hub.files_fetched("HEAD")) == sorted(NEEDED)
    assert len(requests) == 1 + 2 * len(NEEDED), requests
    assert hub.files_fetched("GET")[0] == "config.json"  # the family is checked first
    assert hub.files_fetched("GET")[-1] == "model.safetensors"  # the weights come last
    assert all("/resolve/" + MAIN + "/" in r.path for r in hub.log[1:])  # pinned to the commit

    # huggingface_hub's own cache layout: blobs, snapshot links, refs/main.
    assert sorted(p.name for p in snapshot.iterdir()) == sorted(NEEDED)
    assert all((snapshot / f).is_symlink() for f in NEEDED)
    assert (repo_dir(cache) / "refs" / "main").read_text() == MAIN
    assert not list(repo_dir(cache).rglob("*.incomplete"))

    # Offline, with the hub gone and every socket refused: --model NAME works.
    hub.stop()
    offline = dict(env, HF_HUB_OFFLINE="1")
    proc, report = guarded(tmp_path, "inspect", "The cat sat", "--model", NAME, "--json",
                           env=offline)
    assert proc.returncode == 0, proc.stderr.decode()
    doc = json.loads(proc.stdout)
    assert doc["model"]["source"] == str(snapshot)
    assert [t["id"] for t in doc["tokens"]] == [464, 3797, 3332]  # GPT-2's own ids
    assert report == {"attempts": [], "network_modules": []}


def test_commands_other_than_pull_never_touch_the_network(hub, tmp_path, env, monkeypatch):
    """inspect, heads, steps, model, tokens and encodings with --model NAME (where it applies),
    the fake hub up and HF_ENDPOINT pointing at it, HF_HUB_OFFLINE unset: no socket is opened
    and the hub hears nothing."""
    assert invoke("pull", NAME).exit_code == 0
    before = len(hub.log)
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("attn test: this command must not use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    for args in (["inspect", "hi there", "--model", NAME, "--json"],
                 ["heads", "hi there", "--layer", "1", "--model", NAME, "--json"],
                 ["steps", "hi there", "--model", NAME, "--json"],
                 ["model", "--model", NAME, "--json"],
                 ["rollout", "hi there", "--model", NAME, "--json"],
                 ["inspect", "hi", "--model", f"{NAME}@main", "--json"],
                 ["tokens", "hi", "--json"], ["encodings", "--json"]):
        result = invoke(*args)
        assert result.exit_code == 0, (args, result.stderr)
        json.loads(result.stdout)
    assert attempts == [] and len(hub.log) == before


def test_the_console_script_imports_no_network_library(tmp_path):
    """`attn --help`, `attn pull --help` and a --model NAME that is not cached: neither torch
    (for help) nor huggingface_hub or an HTTP client is imported."""
    env = subprocess_env(HF_HUB_CACHE=str(tmp_path / "empty"), HF_ENDPOINT="http://127.0.0.1:9")
    for args in (["--help"], ["pull", "--help"]):
        proc, report = guarded(tmp_path, *args, env=env)
        assert proc.returncode == 0 and b"pull" in proc.stdout
        assert report == {"attempts": [], "network_modules": []}
    proc, report = guarded(tmp_path, "inspect", "hi", "--model", NAME, env=env)
    assert proc.returncode == 2
    assert f"run `attn pull {NAME}`" in proc.stderr.decode()
    assert report == {"attempts": [], "network_modules": []}


# --- interrupted, resumed, full disk --------------------------------------------------------------

def test_a_dropped_connection_resumes_with_a_range_request(hub, env, monkeypatch):
    # huggingface_hub writes what it received in chunks of DOWNLOAD_CHUNK_SIZE (10 MB); smaller
    # chunks let a 3 MB file show the resume.
    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)
    hub.drop["model.safetensors"] = 1  # half the file, then the connection goes
    result = invoke("pull", NAME)
    assert result.exit_code == 0, result.stderr
    weights = hub.repos[NAME].commits[MAIN]["model.safetensors"]
    gets = [r for r in hub.log if r.method == "GET" and r.file == "model.safetensors"]
    assert len(gets) == 2 and "range" not in gets[0].headers
    start = int(gets[1].headers["range"].removeprefix("bytes=").removesuffix("-"))
    assert 0 < start <= len(weights) // 2  # it asked only for the rest
    snapshot = repo_dir(Path(env["HF_HUB_CACHE"])) / "snapshots" / MAIN
    assert (snapshot / "model.safetensors").read_bytes() == weights
    checkpoint.load(NAME)


def test_an_interrupted_pull_leaves_nothing_trusted_and_the_next_pull_finishes(hub, tmp_path,
                                                                              env):
    cache = Path(env["HF_HUB_CACHE"])
    import threading

    hub.stall["model.safetensors"] = threading.Event()
    proc = subprocess.Popen([sys.executable, "-m", "attn_cli", "pull", NAME], cwd=ROOT,
                            env=subprocess_env(**env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert hub.stalled.wait(timeout=TIMEOUT), "the pull never reached the weights"
        proc.send_signal(signal.SIGINT)  # Ctrl-C half-way through the weights
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
        hub.stall.pop("model.safetensors").set()
    assert proc.returncode == 130 and out == b"", err
    assert err.decode().strip().splitlines()[-1] == "error: interrupted"

    # Half a pull: the first files are in the snapshot, the weights are not, no ref was written,
    # no partial file is left, and --model NAME refuses it in one line.
    root = repo_dir(cache)
    snapshot = root / "snapshots" / MAIN
    assert sorted(p.name for p in snapshot.iterdir()) == ["config.json", "merges.txt",
                                                          "vocab.json"]
    assert not (root / "refs").exists()
    assert not list(root.rglob("*.incomplete"))
    result = invoke("inspect", "hi", "--model", NAME)
    one_line_error(result, "incomplete", "no model.safetensors", f"attn pull {NAME}")

    # The next pull asks only for what is missing.
    hub.log.clear()
    result = invoke("pull", NAME)
    assert result.exit_code == 0, result.stderr
    assert hub.files_fetched("GET") == ["model.safetensors"]
    assert "1 file downloaded" in result.stderr and "3 already in the cache" in result.stderr
    assert (root / "refs" / "main").read_text() == MAIN
    assert invoke("inspect", "hi", "--model", NAME, "--json").exit_code == 0

    # And a third pull downloads nothing: one listing call, no file request.
    hub.log.clear()
    result = invoke("pull", NAME)
    assert result.exit_code == 0
    assert [r.method for r in hub.log] == ["GET"] and hub.files_fetched() == []
    assert "is already in the cache (4 files)" in result.stderr


def test_a_full_disk_is_one_line_and_leaves_nothing_trusted(hub, env, monkeypatch):
    from huggingface_hub import file_download

    real = file_download.http_get

    def full(url, temp_file, *args, **kwargs):
        if url.endswith("/model.safetensors"):
            temp_file.write(b"\0" * 1000)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(url, temp_file, *args, **kwargs)

    monkeypatch.setattr(file_download, "http_get", full)
    one_line_error(invoke("pull", NAME), "cannot write", "No space left on device",
                   "HF_HUB_CACHE")
    root = repo_dir(Path(env["HF_HUB_CACHE"]))
    assert not (root / "refs").exists() and not list(root.rglob("*.incomplete"))
    with pytest.raises(ModelLoadError, match="incomplete"):
        checkpoint.resolve(NAME)


# --- what goes wrong, in one line ---------------------------------------------------------------

def test_errors_are_one_line_and_exit_2(hub, env, monkeypatch):
    cache = Path(env["HF_HUB_CACHE"])
    one_line_error(invoke("pull", "someone/missing"), "someone/missing was not found",
                   hub.url, "404", "HF_TOKEN")
    one_line_error(invoke("pull", "someone/private"), "someone/private was not found", "401",
                   "private")
    one_line_error(invoke("pull", "someone/gated"), "someone/gated is gated",
                   f"{hub.url}/someone/gated", "HF_TOKEN")
    one_line_error(invoke("pull", NAME, "--revision", "v9"), f"{NAME} has no revision 'v9'")
    one_line_error(invoke("pull", "someone/tf-only"), "no model.safetensors",
                   "tf_model.h5", "PyTorch weights")
    one_line_error(invoke("pull", "someone/t5"), "'t5'", "gpt2",
                   "the weights were not downloaded")
    assert "model.safetensors" not in hub.files_fetched()  # stopped at config.json
    for bad in ("a b", "../x", "owner/name/extra", "-x", "someone/x@..", f"{NAME}@v1@v2"):
        one_line_error(invoke("pull", "--", bad), "error: ")
    one_line_error(invoke("pull", f"{NAME}@v1", "--revision", "main"), "two revisions")
    one_line_error(invoke("pull", str(cache.parent)), "is a folder on this machine")

    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    one_line_error(invoke("pull", "someone/gated"), "token in HF_TOKEN has not been granted")
    one_line_error(invoke("pull", "someone/private"), "HF_TOKEN cannot read it")
    monkeypatch.setenv("HF_TOKEN", "hf_good")
    assert invoke("pull", "someone/gated").exit_code == 0
    assert all(r.headers.get("authorization") == "Bearer hf_good" for r in hub.log[-9:])

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    one_line_error(invoke("pull", NAME), "HF_HUB_OFFLINE is set", "unset it")
    monkeypatch.delenv("HF_HUB_OFFLINE")

    hub.broken = True
    one_line_error(invoke("pull", NAME), "did not answer like a Hugging Face hub", "HF_ENDPOINT")
    hub.broken = False

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("HF_ENDPOINT", closed)
    one_line_error(invoke("pull", NAME), f"cannot reach {closed}", "HF_ENDPOINT")
    assert not repo_dir(cache).exists()


def test_without_the_extra_one_line_names_it(env, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails
    one_line_error(invoke("pull", NAME), "huggingface_hub", "pip install 'attn-cli[hub]'")


# --- revisions and shards -------------------------------------------------------------------------

def test_revisions(hub, env):
    cache = Path(env["HF_HUB_CACHE"])
    root = repo_dir(cache)
    result = invoke("pull", NAME, "--revision", "v1")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(root / "snapshots" / V1)
    assert f"attn inspect --model {NAME}@v1" in result.stderr
    assert (root / "refs" / "v1").read_text() == V1 and not (root / "refs" / "main").exists()
    assert checkpoint.resolve(f"{NAME}@v1") == root / "snapshots" / V1
    assert checkpoint.resolve(f"{NAME}@{V1}") == root / "snapshots" / V1
    assert checkpoint.resolve(NAME) == root / "snapshots" / V1  # no main: the newest snapshot
    with pytest.raises(ModelLoadError, match=f"attn pull {NAME} --revision main"):
        checkpoint.resolve(f"{NAME}@main")

    assert invoke("pull", f"{NAME}@main").exit_code == 0
    assert checkpoint.resolve(NAME) == root / "snapshots" / MAIN  # refs/main
    assert checkpoint.resolve(f"{NAME}@v1") == root / "snapshots" / V1
    doc = json.loads(invoke("inspect", "hi", "--model", f"{NAME}@v1", "--json").stdout)
    assert doc["model"]["source"] == str(root / "snapshots" / V1)

    hub.log.clear()  # a commit id needs no ref, and is pulled like any revision
    assert invoke("pull", NAME, "--revision", MAIN).exit_code == 0
    assert hub.files_fetched() == [] and sorted(p.name for p in (root / "refs").iterdir()) == \
        ["main", "v1"]


def test_sharded_safetensors(hub, env, sharded):
    cache = Path(env["HF_HUB_CACHE"])
    result = invoke("pull", "someone/sharded")
    assert result.exit_code == 0, result.stderr
    shards = sorted(f for f in sharded if f.startswith("model-"))
    assert len(shards) >= 2
    assert sorted(hub.files_fetched()) == sorted(
        ["config.json", "vocab.json", "merges.txt", "model.safetensors.index.json", *shards])
    model, _ = checkpoint.load("someone/sharded")
    assert model.cfg.n_layers == 2

    # A snapshot whose index names a shard that is not there is never used.
    (repo_dir(cache, "someone/sharded") / "snapshots" / MAIN / shards[-1]).unlink()
    with pytest.raises(ModelLoadError, match=f"incomplete \\(no {shards[-1]}\\)"):
        checkpoint.resolve("someone/sharded")


# --- which files: the plan alone -------------------------------------------------------------------

def test_plan_picks_safetensors_then_bin_and_the_tokenizer_files():
    repo = ["config.json", "model.safetensors", "pytorch_model.bin", "tf_model.h5",
            "flax_model.msgpack", "onnx/model.onnx", "tokenizer.json", "tokenizer_config.json",
            "special_tokens_map.json", "vocab.txt", "spiece.model", "tokenizer.model",
            "sub/tokenizer.model", "README.md", "generation_config.json"]
    assert pull_lib.plan(repo, "x") == (
        ["config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
         "vocab.txt", "spiece.model", "tokenizer.model"], "model.safetensors")
    index = ["config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors",
             "pytorch_model.bin", "pytorch_model.bin.index.json"]
    assert pull_lib.plan(index, "x") == (["config.json"], "model.safetensors.index.json")
    assert pull_lib.plan(["config.json", "pytorch_model.bin", "vocab.json", "merges.txt"],
                         "x") == (["config.json", "vocab.json", "merges.txt"],
                                  "pytorch_model.bin")
    with pytest.raises(pull_lib.PullError, match="no config.json"):
        pull_lib.plan(["model.safetensors"], "x")
    with pytest.raises(pull_lib.PullError, match=r"it has flax_model.msgpack, tf_model.h5"):
        pull_lib.plan(["config.json", "tf_model.h5", "flax_model.msgpack"], "x")


def test_an_index_naming_a_file_the_repo_lacks_is_refused(tmp_path):
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"a": "model-1.safetensors",
                                                "b": "../../etc/passwd"}}))
    with pytest.raises(pull_lib.PullError, match="does not have"):
        pull_lib.shards(index, ["model-1.safetensors"], "x")
    index.write_text("[]")
    with pytest.raises(pull_lib.PullError, match="not a shard index"):
        pull_lib.shards(index, [], "x")


def test_a_local_index_still_may_not_name_a_shard_outside_its_folder(tmp_path, sharded):
    folder = tmp_path / "ck"
    folder.mkdir()
    for name, data in sharded.items():
        (folder / name).write_bytes(data)
    index = json.loads(sharded["model.safetensors.index.json"])
    first = sorted(set(index["weight_map"].values()))[0]
    (tmp_path / first).write_bytes(sharded[first])
    index["weight_map"] = {k: ("../" + v if v == first else v)
                           for k, v in index["weight_map"].items()}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ModelLoadError, match="outside"):
        checkpoint.load(str(folder))
