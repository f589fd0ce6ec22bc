"""The benchmark suite runs end to end (`benchmarks/run.py --quick`). No timing is asserted:
speed is measured in benchmarks/, never in a unit test (SPEC §5)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The first word of the line each target prints (--quick cuts the long input to 256 tokens).
TARGET_LINES = ("tokens --json", "no torch", "inspect --json", "256 tok wall", "256 tok memory",
                "render 64 tok",
                # real-size targets at tiny sizes: every head of 64 tokens, load + one token
                *(f"{family} {case} {what}" for family in ("gpt2", "llama")
                  for case in ("all", "1 tok") for what in ("wall", "memory")),
                "train defaults")


def test_quick_benchmark_runs_and_reports_every_target():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    for label in TARGET_LINES:
        hits = [ln for ln in lines if ln.startswith(label)]
        assert hits, f"no line for {label!r} in:\n{done.stdout}"
        assert any(word in hits[0] for word in ("PASS", "FAIL")), hits[0]
    growth = lines.index(next(ln for ln in lines if ln.startswith("growth:")))
    rows = [ln.split() for ln in lines[growth + 2: growth + 5]]
    assert [r[0] for r in rows] == ["16", "64", "128"], done.stdout
    assert "ERROR" not in done.stdout
