"""Invariants for any text and any valid model, and tokenization equal to tiktoken's own.

The tokenization reference is built from the shared rank files with tiktoken's own loader and
the pattern strings and special tokens of `tiktoken_ext.openai_public` (its download functions
are pointed at the local files), independently of attn_cli's bundled copies and fast parser.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import tiktoken
import tiktoken.load
import tiktoken_ext.openai_public as op
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attn_cli import capture
from attn_cli import models as M
from attn_cli import tokenizers as tk
from attn_cli.models.config import ModelConfig

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
ENCODINGS_DIR = SHARED / "encodings"
GPT2_DIR = SHARED / "fixtures" / "gpt2-tokenizer"
OFFLINE = ["o200k_base", "cl100k_base", "r50k_base", "gpt2"]

FAST = settings(max_examples=30, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

# Any unicode (emoji, combining marks, CJK, control characters; st.text never makes lone
# surrogates), but not only whitespace: the CLI rejects that before any of this runs.
texts = st.text(min_size=1, max_size=40).filter(lambda s: s.strip() != "")

# Text built to poke at the pre-tokenizer patterns: contractions, digit runs, newlines, mixed
# case, spaces before punctuation, special-token look-alikes.
PIECES = ["'s", "'T", "'ll", "'VE", " ", "  ", "\n", "\r\n", "\t", "123", "4567890", "a", "Ab",
          "ABC", "é", "ß", "日本", "😀", "👩‍💻", "é", "!", "?!", "...", "/", "<|endoftext|>",
          "<|endofprompt|>", "<|fim_prefix|>", "hello", " world", "\u00a0", "\u200b", "Ǆ"]
tricky_texts = st.lists(st.sampled_from(PIECES), min_size=1, max_size=12).map("".join)
any_text = st.one_of(st.text(max_size=60), tricky_texts)


@st.composite
def configs(draw):
    heads = draw(st.integers(1, 4))
    return ModelConfig(
        n_layers=draw(st.integers(1, 3)),
        n_heads=heads,
        d_model=heads * draw(st.integers(1, 8)),
        causal=draw(st.booleans()),
        seed=draw(st.integers(0, 2**31)),
    )


# ---------------------------------------------------------------------------------------------
# The attention invariants through capture.run

@FAST
@given(cfg=configs(), text=texts)
def test_capture_invariants_for_any_text_and_config(cfg, text):
    enc = tk.get_encoding("o200k_base")
    tokens = tk.tokenize(text, enc)
    T = len(tokens)
    assert T >= 1

    # Tokens cover the text exactly, byte for byte.
    assert [t.index for t in tokens] == list(range(T))
    assert b"".join(t.raw for t in tokens) == text.encode("utf-8")
    assert enc.decode([t.id for t in tokens]) == text
    assert all(enc.decode_single_token_bytes(t.id) == t.raw for t in tokens)

    model = M.seeded(cfg)
    keep = capture.select(cfg, None, None)
    cap = capture.run(model, text, "o200k_base", tokens, keep, stages=True)

    assert [(h.layer, h.head) for h in cap.heads] == [
        (layer, head) for layer in range(cfg.n_layers) for head in range(cfg.n_heads)]
    upper = np.triu(np.ones((T, T), dtype=bool), 1)
    for h in cap.heads:
        w = h.weights
        assert w.shape == (T, T) and w.dtype == np.float32
        assert np.isfinite(w).all()
        assert (w >= 0).all()
        np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=0, atol=1e-5)
        masked = h.stages["masked"]
        if cfg.causal:
            assert (w[upper] == 0.0).all()
            assert np.array_equal(np.isneginf(masked), upper)
        else:
            assert not np.isinf(masked).any()
        for name in ("q", "k", "v", "output"):
            assert h.stages[name].shape == (T, cfg.d_head), name
            assert np.isfinite(h.stages[name]).all(), name
        for name in ("scores", "scaled"):
            assert h.stages[name].shape == (T, T) and np.isfinite(h.stages[name]).all(), name
    assert len(cap.hidden) == cfg.n_layers
    for x in cap.hidden + [cap.embeddings]:
        assert x.shape == (T, cfg.d_model) and np.isfinite(x).all()


@FAST
@given(cfg=configs(), text=texts, data=st.data())
def test_what_is_kept_does_not_change_the_result(cfg, text, data):
    layers = data.draw(st.lists(st.integers(0, cfg.n_layers - 1), max_size=3))
    heads = data.draw(st.lists(st.integers(0, cfg.n_heads - 1), max_size=3))
    enc = tk.get_encoding("o200k_base")
    tokens = tk.tokenize(text, enc)
    model = M.seeded(cfg)
    full = capture.run(model, text, "o200k_base", tokens, capture.select(cfg, None, None))
    keep = capture.select(cfg, layers, heads)
    part = capture.run(model, text, "o200k_base", tokens, keep)
    assert {(h.layer, h.head) for h in part.heads} == {
        (layer, head) for layer, hs in keep.items() for head in hs}
    for h in part.heads:
        np.testing.assert_allclose(h.weights, full.head(h.layer, h.head).weights,
                                   rtol=1.3e-6, atol=1e-5)
    for a, b in zip(part.hidden + [part.embeddings], full.hidden + [full.embeddings]):
        np.testing.assert_allclose(a, b, rtol=1.3e-6, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Tokenization equals tiktoken's own, built independently from the shared files

def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def reference(tmp_path_factory):
    """name -> tiktoken.Encoding(**tiktoken_ext.openai_public.<name>()), read from local files."""
    real_load = tiktoken.load.load_tiktoken_bpe
    real_data_gym = tiktoken.load.data_gym_to_mergeable_bpe_ranks

    def local_load(url, expected_hash=None):
        return real_load(str(ENCODINGS_DIR / url.rsplit("/", 1)[-1]), expected_hash)

    def local_data_gym(vocab_bpe_file, encoder_json_file, vocab_bpe_hash=None,
                       encoder_json_hash=None, **kwargs):
        assert vocab_bpe_file.endswith("vocab.bpe") and encoder_json_file.endswith(".json")
        return real_data_gym(str(GPT2_DIR / "merges.txt"), str(GPT2_DIR / "vocab.json"),
                             vocab_bpe_hash, encoder_json_hash, **kwargs)

    encodings = {}
    with pytest.MonkeyPatch.context() as mp:
        # A private cache folder: tiktoken then checks each file's sha256 as it reads it.
        mp.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path_factory.mktemp("tiktoken-cache")))
        mp.delenv("DATA_GYM_CACHE_DIR", raising=False)
        mp.setattr(op, "load_tiktoken_bpe", local_load)
        mp.setattr(op, "data_gym_to_mergeable_bpe_ranks", local_data_gym)
        for name in OFFLINE:
            encodings[name] = tiktoken.Encoding(**op.ENCODING_CONSTRUCTORS[name]())
    return encodings


def test_shared_files_are_the_ones_tiktoken_pins():
    sums = dict(line.split()[::-1] for line in
                (ENCODINGS_DIR / "SHA256SUMS").read_text().splitlines() if line.strip())
    for file, digest in sums.items():
        assert _sha256(ENCODINGS_DIR / file) == digest, file


@pytest.mark.parametrize("name", OFFLINE)
def test_bundled_encodings_equal_the_reference(name, reference):
    ours, ref = tk.get_encoding(name), reference[name]
    assert ours.name == name
    assert ours._pat_str == ref._pat_str
    assert ours._special_tokens == ref._special_tokens
    assert ours.n_vocab == ref.n_vocab
    assert ours._mergeable_ranks == ref._mergeable_ranks  # the fast parser loses nothing
    sample = "The cat sat on the mat because it was tired. <|endoftext|> 1234567 😀 don't\n\n"
    assert ours.encode_ordinary(sample) == ref.encode_ordinary(sample)
    assert ours.encode(sample, allowed_special="all") == ref.encode(sample, allowed_special="all")


def test_gpt2_encoding_from_checkpoint_files_equals_the_reference(reference):
    enc = tk.encoding_from_files(GPT2_DIR / "vocab.json", GPT2_DIR / "merges.txt")
    ref = reference["gpt2"]
    assert enc._mergeable_ranks == ref._mergeable_ranks
    assert enc._special_tokens == ref._special_tokens
    sample = "Hello, world! It's 2024 — naïve café 😀<|endoftext|>"
    assert enc.encode(sample, allowed_special="all") == ref.encode(sample, allowed_special="all")


@pytest.mark.parametrize("name", OFFLINE)
@settings(max_examples=40, deadline=None)
@given(text=any_text)
def test_tokenization_equals_tiktoken_for_any_text(name, reference, text):
    ours, ref = tk.get_encoding(name), reference[name]
    ids = ours.encode_ordinary(text)
    assert ids == ref.encode_ordinary(text)
    assert ours.decode(ids) == text
    assert ours.encode(text, allowed_special="all") == ref.encode(text, allowed_special="all")
    tokens = tk.tokenize(text, ours)
    assert [t.id for t in tokens] == ids
    assert b"".join(t.raw for t in tokens) == text.encode("utf-8")
    special = tk.tokenize(text, ours, allow_special=True)
    assert [t.id for t in special] == ref.encode(text, allowed_special="all")
