"""The bytes of `attn inspect --json` and `--ndjson` (issue 24): however the document is made
(streamed layer by layer, top lists put together by NumPy, entropy and top-k on a second
thread), it is byte for byte one orjson.dumps of the same capture, written the plain way: the
weights and embeddings as NumPy arrays, each top list from a Python loop over the visible
keys (largest weight first, the lower index on ties), every weight a float32 orjson formats.

The captures are made here in-process with capture.run (the whole pass, not streamed); the
documents come from the command line, in a process of their own."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import orjson
import pytest

from attn_cli import analysis, capture
from attn_cli.documents.attention import inspect_header
from attn_cli.models import ModelConfig, checkpoint, seeded
from attn_cli.summary import reduced_captures
from attn_cli.tokenizers import get_encoding, tokenize

from test_subprocess import attn

transformers = pytest.importorskip("transformers")

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "gpt2-tokenizer"
TEXT = 'The cat sat on the mat, and "the cat" sat again: é, the mat.\n'
OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE

CHECKPOINTS = {
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", dict(n_layer=2, n_head=3, n_embd=24,
                                                   n_positions=64)),
    "llama": ("LlamaConfig", "LlamaForCausalLM", dict(
        hidden_size=24, num_hidden_layers=2, num_attention_heads=3, num_key_value_heads=1,
        intermediate_size=40, max_position_embeddings=64, tie_word_embeddings=True)),
    "mistral-window": ("MistralConfig", "MistralForCausalLM", dict(
        hidden_size=24, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
        intermediate_size=40, max_position_embeddings=64, sliding_window=4)),
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    import torch

    root = tmp_path_factory.mktemp("bytes")
    out = {}
    for name, (config, model, kwargs) in CHECKPOINTS.items():
        torch.manual_seed(len(name))
        cfg = getattr(transformers, config)(vocab_size=50257, **kwargs)
        folder = root / name
        getattr(transformers, model)(cfg).save_pretrained(folder)
        for file in ("vocab.json", "merges.txt"):
            shutil.copy(FIXTURES / file, folder / file)
        out[name] = folder
    return out


def plain_top(cap: capture.Capture, w: np.ndarray, layer: int, k: int) -> list[dict]:
    """The top list by a plain loop: each query's visible keys, largest weight first."""
    seen = analysis.allowed(len(cap.tokens), cap.config.causal, cap.window(layer))
    out = []
    for i, row in enumerate(w):
        keys = sorted((j for j in range(len(row)) if seen[i, j]), key=lambda j: (-row[j], j))
        out.append({"query": i, "keys": [{"index": j, "token": cap.tokens[j].text,
                                          "weight": row[j]} for j in keys[:k]]})
    return out


def plain_records(cap: capture.Capture, k: int) -> list[dict]:
    return [{"layer": h.layer, "head": h.head, "weights": h.weights,
             "entropy": None if h.reduced == "max" else analysis.entropy(h.weights),
             "top": plain_top(cap, h.weights, h.layer, k)} for h in cap.heads]


def plain_json(cap: capture.Capture, k: int) -> bytes:
    doc = {**inspect_header(cap), "attention": plain_records(cap, k),
           "embeddings": {"layer": "final", "vectors": cap.embeddings}}
    return orjson.dumps(doc, option=OPTS)


def plain_ndjson(cap: capture.Capture, k: int) -> bytes:
    lines = [inspect_header(cap), *plain_records(cap, k),
             {"embeddings": {"layer": "final", "vectors": cap.embeddings}}]
    return b"".join(orjson.dumps(line, option=OPTS) for line in lines)


def capture_of(model, tokenizer, name: str, layers=None, heads=None) -> capture.Capture:
    tokens = tokenize(TEXT, tokenizer, False)
    keep = capture.select(model.cfg, layers, heads)
    return capture.run(model, TEXT, name, tokens, keep)


def check(args: list[str], cap: capture.Capture, k: int = 3) -> None:
    top = [] if k == 3 else ["--top-k", str(k)]
    for flag, want in (("--json", plain_json(cap, k)), ("--ndjson", plain_ndjson(cap, k))):
        proc = attn("inspect", TEXT, *args, *top, flag)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == want, (flag, _first_difference(proc.stdout, want))


def _first_difference(got: bytes, want: bytes) -> str:
    at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    return f"at byte {at} of {len(got)}/{len(want)}: {got[at - 60:at + 60]!r} / " \
           f"{want[at - 60:at + 60]!r}"


@pytest.mark.parametrize("causal, k", [(True, 3), (False, 3), (True, 12)])
def test_seeded_model_bytes(causal, k):
    cfg = ModelConfig(n_layers=2, n_heads=4, d_model=64, causal=causal, seed=0)
    cap = capture_of(seeded(cfg), get_encoding("o200k_base"), "o200k_base")
    check([] if causal else ["--bidirectional"], cap, k)


def test_seeded_model_bytes_of_a_selection():
    cfg = ModelConfig(n_layers=2, n_heads=4, d_model=64, causal=True, seed=0)
    cap = capture_of(seeded(cfg), get_encoding("o200k_base"), "o200k_base", [1], [0, 2])
    check(["--layer", "1", "--head", "0", "--head", "2"], cap)


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_checkpoint_bytes(folders, name):
    model, tokenizer = checkpoint.load(str(folders[name]))
    cap = capture_of(model, tokenizer, tokenizer.name)
    check(["--model", str(folders[name])], cap)


@pytest.mark.parametrize("how", ["mean", "max"])
def test_reduced_bytes(how):
    """--reduce: one matrix per layer (head -1), and no entropy for a max of heads."""
    cfg = ModelConfig(n_layers=2, n_heads=4, d_model=64, causal=True, seed=0)
    cap = capture_of(seeded(cfg), get_encoding("o200k_base"), "o200k_base")
    cap.heads = reduced_captures(cap, how, False)
    check(["--reduce", how], cap)
