"""Installed as a tool (SPEC §2): a wheel built from the repository holds every module and data
file, and attn runs from it in any directory — what `pip install .`, `pipx install .` and
`uv tool install .` install.

The wheel is built once (`pip wheel --no-deps --no-build-isolation`: the venv's setuptools, no
network), installed with `--target` into a folder of its own, and run from a directory outside
the checkout with only that folder on PYTHONPATH, through the console script pip wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "attn_cli"


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "--no-build-isolation", "--quiet", "-w", str(out), str(ROOT)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (found,) = out.glob("attn_cli-*.whl")
    return found


@pytest.fixture(scope="session")
def installed(wheel, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index",
                           "--quiet", "--target", str(target), str(wheel)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return target


def _shipped_files() -> set[str]:
    """Every file of the package in the checkout that a user's install needs."""
    out = set()
    for path in PACKAGE.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            out.add(path.relative_to(ROOT).as_posix())
    return out


def test_the_wheel_holds_every_module_and_data_file(wheel):
    with zipfile.ZipFile(wheel) as z:
        inside = {name for name in z.namelist() if name.startswith("attn_cli/")}
    wanted = _shipped_files()
    assert any(name.startswith("attn_cli/models/families/") for name in wanted)
    assert any(name.endswith(".schema.json") for name in wanted)
    assert any(name.endswith(".tiktoken.gz") for name in wanted)
    missing = sorted(wanted - inside)
    assert not missing, f"left out of the wheel: {missing}"
    with zipfile.ZipFile(wheel) as z:
        entry = z.read(next(n for n in z.namelist() if n.endswith("entry_points.txt"))).decode()
    assert "attn = attn_cli.cli:main" in entry


def _run(installed: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(PYTHONPATH=str(installed), COLUMNS="100", NO_COLOR="1")
    script = installed / "bin" / "attn"
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                          cwd=cwd, env=env)


def test_the_installed_wheel_runs_from_any_directory(installed, tmp_path):
    where = subprocess.run(
        [sys.executable, "-c", "import attn_cli, sys; print(attn_cli.__file__)"],
        capture_output=True, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(installed)})
    assert Path(where.stdout.strip()).is_relative_to(installed), where  # not the checkout
    proc = _run(installed, tmp_path, "inspect", "The cat sat on the mat", "--json",
                "--layer", "1", "--head", "2")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert [t["text"] for t in doc["tokens"]] == ["The", " cat", " sat", " on", " the", " mat"]
    assert len(doc["attention"]) == 1
    for args in (["heads", "The cat sat", "--layer", "0"],
                 ["steps", "The cat sat", "--layer", "0", "--head", "1"],
                 ["rollout", "The cat sat"], ["model"], ["generate", "The cat sat", "-n", "2"],
                 ["cross", "Le chat", "The cat"], ["compare", "The cat", "--b", "--seed 1"],
                 ["encodings"], ["tokens", "The cat sat", "--encoding", "gpt2"]):
        proc = _run(installed, tmp_path, *args)
        assert proc.returncode == 0, (args, proc.stderr)
        assert proc.stdout.strip(), args


def test_the_installed_wheel_reads_a_checkpoint_folder(installed, tmp_path):
    transformers = pytest.importorskip("transformers")
    import torch

    from test_tokenizers import build_gpt2

    folder = build_gpt2(tmp_path, "gpt2-tiny")
    config = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                     vocab_size=50257)
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    proc = _run(installed, tmp_path, "heads", "The cat sat on the mat", "--model", str(folder),
                "--layer", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["heads"]) == 4
    listing = _run(installed, tmp_path, "model", "--model", str(folder))
    assert listing.returncode == 0 and "transformer.h.0.attn.c_attn.weight" in listing.stdout
