"""Streaming (issue 12): `attn inspect --json` writes each layer while the next ones are
computed on a thread of its own (capture.stream), and a checkpoint's blocks are read as they
run and let go after (checkpoint.load(streamed=True)). Neither may change a byte of output,
and the thread must never outlive the command (Ctrl-C, a closed pipe, an error in it)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from attn_cli import capture, output
from attn_cli.documents.attention import inspect_doc
from attn_cli.models import ModelConfig, checkpoint, seeded, weights
from attn_cli.tokenizers import get_encoding, tokenize

from test_subprocess import ROOT, _env, assert_interrupted, attn

transformers = pytest.importorskip("transformers")

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "gpt2-tokenizer"
TEXT = "The animal didn't cross the street because it was too tired. " * 4


@pytest.fixture(scope="session")
def wide(tmp_path_factory) -> Path:
    """A GPT-2-shaped checkpoint whose blocks hold most of its weights: 8 blocks of 3.1 M
    weights (100 MB in float32) beside a 50,257-row token table (12.9 MB at d_model 256)."""
    folder = tmp_path_factory.mktemp("streamed") / "wide"
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=8, n_head=4, n_embd=256, n_inner=4096,
                                     n_positions=256, vocab_size=50257)
    transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    for file in ("vocab.json", "merges.txt"):
        shutil.copy(FIXTURES / file, folder / file)
    return folder


def _doc_bytes(cap, top_k: int = 3) -> bytes:
    return b"".join(output._chunks(inspect_doc(cap, top_k)))


def _tokens(model_tokenizer, text: str = TEXT):
    return tokenize(text, model_tokenizer, False)


def test_streamed_json_is_the_json_of_the_whole_capture():
    """The document written layer by layer, as the forward pass goes, is byte for byte the
    document of the capture made first and written after."""
    cfg = ModelConfig(n_layers=3, n_heads=4, d_model=64, causal=True, seed=5)
    model, enc = seeded(cfg), get_encoding("o200k_base")
    tokens = _tokens(enc)
    keep = capture.select(cfg, None, None)
    whole = capture.run(model, TEXT, "o200k_base", tokens, keep)
    streamed = capture.stream(model, TEXT, "o200k_base", tokens, keep)
    assert streamed.heads == [] and streamed.embeddings is None  # nothing made yet
    assert _doc_bytes(streamed) == _doc_bytes(whole)
    np.testing.assert_array_equal(streamed.embeddings, whole.embeddings)
    # a selection skips the layers it does not name without a record for them
    keep = capture.select(cfg, [1], [2])
    doc = _doc_bytes(capture.stream(model, TEXT, "o200k_base", tokens, keep))
    assert doc == _doc_bytes(capture.run(model, TEXT, "o200k_base", tokens, keep))
    assert doc.count(b'"layer":1,"head":2') == 1 and b'"layer":0' not in doc


def test_streamed_blocks_give_the_same_bits_and_are_let_go(wide):
    resident, tok = checkpoint.load(str(wide))
    streamed, _ = checkpoint.load(str(wide), streamed=True)
    # only the blocks are left unread: every block parameter is on the meta device
    for name, p in streamed.named_parameters():
        assert p.is_meta == name.startswith("h."), name
    tokens = _tokens(tok)
    keep = capture.select(resident.cfg, None, None)
    a = capture.run(resident, TEXT, "gpt2", tokens, keep)
    b = capture.run(streamed, TEXT, "gpt2", tokens, keep)
    for x, y in zip(a.heads, b.heads, strict=True):
        assert (x.layer, x.head) == (y.layer, y.head)
        np.testing.assert_array_equal(x.weights, y.weights)
    np.testing.assert_array_equal(a.embeddings, b.embeddings)
    assert all(p.is_meta for p in streamed.h.parameters())  # let go after the pass
    assert _doc_bytes(capture.stream(streamed, TEXT, "gpt2", tokens, keep)) == _doc_bytes(a)


def test_a_nan_in_a_late_block_is_refused_before_anything_is_written(wide, tmp_path):
    """The blocks are read as they run, but their values are checked at load: a corrupt last
    block is one error line with nothing on stdout, not a half-written document."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "bad"
    shutil.copytree(wide, folder)
    tensors = load_file(folder / "model.safetensors")
    tensors["transformer.h.7.mlp.c_proj.weight"][3, 5] = float("nan")
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    proc = attn("inspect", "hi", "--model", folder, "--json")
    assert proc.returncode == 2 and proc.stdout == b""
    assert b"h.7.mlp.c_proj.weight" in proc.stderr and b"NaN" in proc.stderr


@pytest.fixture(scope="module")
def corrupt(wide, tmp_path_factory) -> Path:
    """The wide checkpoint with a NaN in its last block."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path_factory.mktemp("corrupt") / "bad"
    shutil.copytree(wide, folder)
    tensors = load_file(folder / "model.safetensors")
    tensors["transformer.h.7.mlp.c_proj.weight"][3, 5] = float("nan")
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def test_the_block_check_runs_beside_the_forward_thread_and_stops_it(corrupt):
    """capture.stream takes the block check from the model and makes it while the forward
    thread runs: a NaN is raised by stream() itself, before any layer is handed on, and the
    thread is stopped. Without the thread (capture.run) it is made before the first block;
    and a model run by anything else makes it itself before its first block."""
    import threading

    from attn_cli.errors import ModelLoadError

    model, tok = checkpoint.load(str(corrupt), streamed=True)
    assert model.unchecked is not None
    tokens = _tokens(tok)
    keep = capture.select(model.cfg, None, None)
    with pytest.raises(ModelLoadError, match="h.7.mlp.c_proj.weight"):
        capture.stream(model, TEXT, "gpt2", tokens, keep)
    assert not any(t.name == "attn-forward" for t in threading.enumerate())
    model, _ = checkpoint.load(str(corrupt), streamed=True)
    with pytest.raises(ModelLoadError, match="NaN"):
        capture.run(model, TEXT, "gpt2", tokens, keep)
    assert all(p.is_meta for p in model.h.parameters())  # no block was read
    model, _ = checkpoint.load(str(corrupt), streamed=True)
    with pytest.raises(ModelLoadError, match="NaN"):
        model([t.id for t in tokens])
    assert all(p.is_meta for p in model.h.parameters())


def test_a_nan_is_refused_before_output_without_the_thread_too(corrupt):
    """One layer kept: no forward thread; the check comes before the first block."""
    proc = attn("inspect", "hi", "--model", corrupt, "--json", "--layer", "0")
    assert proc.returncode == 2 and proc.stdout == b""
    assert b"h.7.mlp.c_proj.weight" in proc.stderr and proc.stderr.count(b"\n") == 1


def peak_kb(*args, env=None) -> int:
    """The peak RSS (KB) of `attn ARGS`, run by a bare interpreter (Linux)."""
    script = ("import resource, subprocess, sys; "
              "r = subprocess.run([sys.executable, '-m', 'attn_cli', *sys.argv[1:]], "
              "capture_output=True); assert r.returncode == 0, r.stderr; "
              "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", script, *map(str, args)],
                         capture_output=True, env=env or _env(), timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.decode().split()[-1])


def test_a_streamed_model_holds_one_block_at_a_time(wide):
    """inspect (blocks streamed) against generate (every block held), same checkpoint, one
    token: the blocks are 100 MB in float32; inspect must peak at least 60 MB lower. And a
    memory cap that the whole model does not fit under lets inspect run, not generate."""
    streamed = peak_kb("inspect", "The", "--model", wide, "--json")
    held = peak_kb("generate", "The", "--model", wide, "-n", "1", "--json")
    assert held - streamed > 60_000, (held, streamed)
    cap = _env(ATTN_MEMORY_LIMIT="100M")  # 80 MB of budget: the whole model needs ~131 MB
    assert attn("inspect", "The", "--model", wide, "--json", env=cap).returncode == 0
    refused = attn("generate", "The", "--model", wide, "-n", "1", env=cap)
    assert refused.returncode == 2 and b"needs about" in refused.stderr


def _long_inspect(tmp_path, *view: str, stdout=subprocess.PIPE) -> subprocess.Popen:
    """A streamed inspect that runs for seconds: 4,000 tokens through 12 layers."""
    text = tmp_path / "long.txt"
    text.write_text("the cat sat on the mat and " * 600, encoding="utf-8")
    return subprocess.Popen(
        [sys.executable, "-m", "attn_cli", "inspect", "--file", str(text), "--layers", "12",
         "--heads", "8", "--d-model", "256", "--json", *view], cwd=ROOT, env=_env(),
        stdout=stdout, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


def test_ctrl_c_while_streaming_stops_the_forward_thread_cleanly(tmp_path):
    """A thread still inside torch when Python shuts down aborts the process ("terminate
    called without an active exception", exit -6): the reader stops it first. Only the last
    layer is kept, so once the header is out the reader waits while the thread computes the
    eleven layers before it: that is when Ctrl-C comes."""
    written = tmp_path / "out.json"
    with open(written, "wb") as out:
        proc = _long_inspect(tmp_path, "--layer", "11", "--head", "0", stdout=out)
        deadline = time.monotonic() + 60
        while written.stat().st_size == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)
        assert_interrupted(proc)
    assert b'"layer":11' not in written.read_bytes()  # it stopped before the last layer


def test_a_closed_pipe_while_streaming_ends_quietly(tmp_path):
    proc = _long_inspect(tmp_path)
    try:
        assert proc.stdout.read(1000)[:1] == b"{"
        proc.stdout.close()  # `attn inspect … --json | head -c 1000`
        err = proc.stderr.read()
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert err == b""


def test_an_error_on_the_forward_thread_is_raised_to_the_reader():
    def layers():
        yield [1]
        raise ValueError("block 1 failed")

    got, _ = capture._threaded(layers(), 2)
    assert next(got) == [1]
    with pytest.raises(ValueError, match="block 1 failed"):
        next(got)


@pytest.mark.parametrize("values, finite", [
    ([0.5, -2.0], True), ([3e38, 3e38], True),  # finite values whose sum overflows: still finite
    ([1.0, float("nan")], False), ([float("inf"), 1.0], False),
    ([float("inf"), float("-inf")], False), ([], True)])
def test_the_finite_check(values, finite):
    for dtype in (torch.float32, torch.bfloat16):
        assert weights._finite(torch.tensor(values, dtype=dtype)) is finite
