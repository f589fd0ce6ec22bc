"""The real console script (`python -m attn_cli`, what `attn` runs) in a subprocess: JSON on
stdout, one-line usage errors, --debug / ATTN_DEBUG, a closed stdout, no stdin, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from attn_cli.cli import app
from attn_cli.inputs import DEFAULT_TEXT

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 60


def _env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("ATTN_DEBUG", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")}
    env.update(COLUMNS="120", NO_COLOR="1", PYTHONIOENCODING="utf-8")
    env.update(extra)
    return env


def attn(*args, input: bytes | None = None, stdin=None, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "attn_cli", *map(str, args)], input=input,
                          stdin=stdin, capture_output=True, timeout=TIMEOUT, cwd=ROOT,
                          env=env or _env())


def text(b: bytes) -> str:
    return b.decode("utf-8")


def schema(command: str) -> dict:
    return json.loads(resources.files("attn_cli").joinpath("schemas", f"{command}.schema.json")
                      .read_text(encoding="utf-8"))


def assert_interrupted(proc: subprocess.Popen) -> None:
    """Press Ctrl-C in the running `proc` now: it must end with exit 130 and the one line
    `error: interrupted` (the process is killed if it does not end)."""
    try:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=TIMEOUT)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert err.decode().strip() == "error: interrupted"


def assert_one_line_error(proc, *needles):
    err = text(proc.stderr)
    assert proc.returncode == 2, (proc.returncode, err)
    assert proc.stdout == b"", proc.stdout
    assert err.startswith("error: "), err
    assert err.strip().count("\n") == 0, f"more than one line on stderr:\n{err}"
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)


def test_tokens_json():
    proc = attn("tokens", "hi", "--json")
    assert proc.returncode == 0, text(proc.stderr)
    doc = json.loads(proc.stdout)
    jsonschema.Draft202012Validator(schema("tokens")).validate(doc)
    assert doc["text"] == "hi" and doc["count"] == 1
    assert proc.stderr == b""


def test_inspect_json_matches_in_process_run():
    args = ["inspect", "The cat sat on the mat", "--json"]
    proc = attn(*args)
    assert proc.returncode == 0, text(proc.stderr)
    doc = json.loads(proc.stdout)
    jsonschema.Draft202012Validator(schema("inspect")).validate(doc)
    assert doc["text"] == "The cat sat on the mat"
    assert len(doc["attention"]) == 8  # 2 layers × 4 heads by default
    # bit-identical across processes: the same bytes as an in-process run
    result = CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1"}).invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == proc.stdout


@pytest.mark.parametrize("args,needles", [
    (["inspect", "--nope"], ["--nope"]),
    (["inspect", "hi", "--layers", "abc"], ["--layers", "got 'abc'"]),
    (["inspect", "hi", "--top-k=0"], ["--top-k", "got '0'"]),
    (["plot", "hi"], ["Missing option", "--output", "attn plot --help"]),
    (["compare", "hi", "--a"], ["--a"]),
    (["tokens", "hi", "--encoding"], ["--encoding"]),
    (["nosuchcommand"], ["nosuchcommand"]),
    (["steps", "hi", "--top-k", "0"], ["--top-k"]),
])
def test_usage_errors_are_one_line(args, needles):
    assert_one_line_error(attn(*args), *needles)


def test_user_error_is_one_line():
    assert_one_line_error(attn("tokens", "   "), "empty")


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_flag_is_accepted(where):
    args = ["--debug", "tokens", "hi", "--json"] if where == "before" \
        else ["tokens", "hi", "--json", "--debug"]
    proc = attn(*args)
    assert proc.returncode == 0, text(proc.stderr)
    assert json.loads(proc.stdout)["text"] == "hi"


def test_attn_debug_env_is_accepted():
    proc = attn("tokens", "hi", "--json", env=_env(ATTN_DEBUG="1"))
    assert proc.returncode == 0, text(proc.stderr)
    assert json.loads(proc.stdout)["count"] == 1
    # user mistakes stay one line under --debug: only bugs get a traceback
    assert_one_line_error(attn("--debug", "tokens", ""), "empty")
    assert_one_line_error(attn("tokens", "hi", "--encoding", "nope", env=_env(ATTN_DEBUG="1")),
                          "nope")


def test_version():
    proc = attn("--version")
    assert proc.returncode == 0
    assert text(proc.stdout).startswith("attn ")


def test_closed_stdout_ends_quietly():
    """`attn inspect <long text> --json | head -c 100`"""
    long_text = " ".join(["The cat sat on the mat."] * 150)
    proc = subprocess.Popen(
        [sys.executable, "-m", "attn_cli", "inspect", long_text, "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=ROOT,
        env=_env())
    try:
        head = proc.stdout.read(100)
        proc.stdout.close()
        err = proc.stderr.read()
        proc.wait(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert head.startswith(b'{"schema_version":1')
    assert b"Traceback" not in err, text(err)
    assert b"BrokenPipe" not in err and b"Exception ignored" not in err, text(err)
    assert proc.returncode == 0, (proc.returncode, text(err))


def test_no_text_and_no_stdin_uses_the_default_sentence():
    proc = attn("tokens", "--json", stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, text(proc.stderr)
    assert json.loads(proc.stdout)["text"] == DEFAULT_TEXT
    assert "default sentence" in text(proc.stderr)


def test_heads_layer_0_works_as_typed():
    """SPEC §1: `attn heads --layer 0` works as typed (no text, nothing piped)."""
    proc = attn("heads", "--layer", "0", stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, text(proc.stderr)
    assert "␣cat" in text(proc.stdout)
    assert "default sentence" in text(proc.stderr)
    assert "Traceback" not in text(proc.stderr)


def test_piped_stdin():
    proc = attn("tokens", "--json", input="piped in\n".encode())
    assert proc.returncode == 0, text(proc.stderr)
    assert json.loads(proc.stdout)["text"] == "piped in\n"


def test_invalid_utf8_argument():
    # a command-line argument that is not UTF-8 arrives with surrogate escapes
    proc = subprocess.run([sys.executable, "-m", "attn_cli", "tokens", b"ab\xffcd"],
                          capture_output=True, timeout=TIMEOUT, cwd=ROOT, env=_env())
    assert_one_line_error(proc, "offset 2")


def test_ctrl_c_is_one_line():
    proc = subprocess.Popen([sys.executable, "-m", "attn_cli", "tokens", "-"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT, env=_env())
    try:
        # wait until it blocks reading standard input, then press Ctrl-C
        wchan = Path(f"/proc/{proc.pid}/wchan")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if "pipe" in wchan.read_text():
                    break
            except OSError:
                time.sleep(2)
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert out == b""
    assert b"Traceback" not in err, text(err)
    assert text(err).strip() == "error: interrupted"
    assert proc.returncode == 130
