"""SPEC §1/§5: `attn --help`, `attn COMMAND --help` and `attn tokens` never import torch
(and `attn tokens` not NumPy either). Each case runs the console script's `main()` in a fresh
interpreter and reports, at exit, which heavy modules had been imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PROBE = r"""
import atexit, json, sys
report, argv = sys.argv[1], sys.argv[2:]

def _report():
    heavy = sorted(m for m in sys.modules
                   if m.split(".")[0] in ("torch", "numpy", "safetensors", "transformers",
                                         "matplotlib"))
    with open(report, "w") as f:
        json.dump({"heavy": heavy, "roots": sorted({m.split(".")[0] for m in heavy})}, f)

atexit.register(_report)
sys.argv = ["attn", *argv]
from attn_cli.cli import main
main()
"""


def run_probe(tmp_path, *args):
    report = tmp_path / "modules.json"
    env = {k: v for k, v in os.environ.items() if k != "ATTN_DEBUG"}
    env.update(COLUMNS="120", NO_COLOR="1", PYTHONIOENCODING="utf-8")
    proc = subprocess.run([sys.executable, "-c", PROBE, str(report), *args],
                          capture_output=True, timeout=60, cwd=ROOT, env=env,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"Traceback" not in proc.stderr
    return proc, json.loads(report.read_text())


@pytest.mark.parametrize("args", [
    ["--help"],
    ["inspect", "--help"],
    ["heads", "--help"],
    ["steps", "--help"],
    ["model", "--help"],
    ["rollout", "--help"],
    ["compare", "--help"],
    ["plot", "--help"],
    ["tokens", "--help"],
])
def test_help_does_not_import_torch(tmp_path, args):
    proc, modules = run_probe(tmp_path, *args)
    assert b"Usage" in proc.stdout
    assert "torch" not in modules["roots"], modules["heavy"][:10]
    assert "matplotlib" not in modules["roots"], modules["heavy"][:10]


@pytest.mark.parametrize("args", [
    ["tokens", "hi"],
    ["tokens", "hi", "--json"],
    ["tokens", "hi", "--ndjson"],
    ["tokens", "hi 🐱", "--encoding", "gpt2"],
    ["encodings"],
])
def test_tokens_imports_neither_torch_nor_numpy(tmp_path, args):
    proc, modules = run_probe(tmp_path, *args)
    assert proc.stdout
    assert "torch" not in modules["roots"], modules["heavy"][:10]
    assert "numpy" not in modules["roots"], modules["heavy"][:10]


def test_the_probe_sees_torch_when_it_is_imported(tmp_path):
    """The probe itself works: `attn inspect` does import torch."""
    _, modules = run_probe(tmp_path, "inspect", "hi", "--json", "--layers", "1", "--heads", "1",
                           "--d-model", "8")
    assert "torch" in modules["roots"]


def test_cli_module_imports_light():
    code = ("import sys, attn_cli.cli; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'numpy'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60,
                         cwd=ROOT, check=True).stdout.decode().strip()
    assert out == "[]"
