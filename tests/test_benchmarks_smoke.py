"""The benchmark suite runs end to end (`benchmarks/run.py --quick`). No timing is asserted:
speed is measured in benchmarks/, never in a unit test (SPEC §5).

The run is a few minutes of whole processes sharing nothing with the other tests: conftest.py
starts it when collection ends (background.py) and runs this test last, which waits for it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from background import Job

ROOT = Path(__file__).resolve().parents[1]

# The first word of the line each target prints (--quick cuts the long input to 256 tokens).
TARGET_LINES = ("tokens --json", "no torch", "inspect --json", "256 tok wall", "256 tok memory",
                "render 64 tok",
                # real-size targets at tiny sizes: every head of 64 tokens, load + one token
                *(f"{family} {case} {what}" for family in ("gpt2", "smollm2")
                  for case in ("all", "1 tok") for what in ("wall", "memory")),
                "train defaults")


def quick_benchmark(tmp: Path) -> Job:
    return Job([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick"],
               dict(text=True, cwd=ROOT, env=dict(os.environ)), timeout=600)


def background_jobs(items, tmp: Path) -> dict[str, Job]:
    return {"quick benchmark": quick_benchmark(tmp)}


def test_quick_benchmark_runs_and_reports_every_target(background):
    done = background.result("quick benchmark", quick_benchmark)
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
