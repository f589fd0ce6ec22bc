"""Every family `--model` reads, against transformers' own model of that family.

Tiny random checkpoints are built with transformers (each family's config class and model,
eager attention) and saved with save_pretrained. Their weights are redrawn so attention is
sharp (Q and K scaled up) and no norm weight is 1 or bias 0: a wrong scale, rotation, window,
head layout or residual order would show. The configurations use more query heads than
key/value heads, windows shorter than the text, partial rotary, parallel and sequential
residuals, llama3 rope scaling, biases where the family has them, and RoBERTa's padding offset
with a pad token inside the input. Every attention matrix must equal transformers' to 1e-5 and
the final hidden state to 1e-4 (SPEC §2).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from attn_cli import capture  # noqa: E402
from attn_cli import tokenizers as tokenize  # noqa: E402
from attn_cli.errors import ModelLoadError  # noqa: E402
from attn_cli.models import checkpoint  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "gpt2-tokenizer"
VOCAB = 50257  # the fixture tokenizer's; every family's table gets as many rows
T = 14  # tokens: longer than every window below
ATTN_ATOL, HIDDEN_ATOL = 1e-5, 1e-4
SEEN = {}  # case -> (largest attention error, largest hidden-state error)

BASE = dict(vocab_size=VOCAB, attn_implementation="eager")
CASES = {
    # name: (config class, model class, config arguments)
    "gpt_neo": ("GPTNeoConfig", "GPTNeoModel", dict(
        hidden_size=32, num_layers=3, num_heads=4, intermediate_size=48, window_size=4,
        max_position_embeddings=64, attention_types=[[["global", "local"], 1], [["local"], 1]])),
    "gpt_neox-parallel": ("GPTNeoXConfig", "GPTNeoXModel", dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        rotary_pct=0.5, rotary_emb_base=100, max_position_embeddings=64,
        use_parallel_residual=True)),
    "gpt_neox-sequential": ("GPTNeoXConfig", "GPTNeoXModel", dict(
        hidden_size=48, num_hidden_layers=2, num_attention_heads=3, intermediate_size=40,
        rotary_pct=0.25, max_position_embeddings=64, use_parallel_residual=False)),
    "llama-gqa": ("LlamaConfig", "LlamaModel", dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=48, rope_theta=500.0, max_position_embeddings=64,
        tie_word_embeddings=False)),
    "llama3-rope-mqa": ("LlamaConfig", "LlamaModel", dict(
        hidden_size=48, num_hidden_layers=2, num_attention_heads=6, num_key_value_heads=1,
        head_dim=16, intermediate_size=40, max_position_embeddings=64,
        rope_scaling={"rope_type": "llama3", "rope_theta": 5000.0, "factor": 8.0,
                      "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 16},
        attention_bias=True, mlp_bias=True)),
    "mistral-window": ("MistralConfig", "MistralModel", dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=48, sliding_window=5, max_position_embeddings=64)),
    "qwen2-window": ("Qwen2Config", "Qwen2Model", dict(
        hidden_size=32, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=48, use_sliding_window=True, sliding_window=4, max_window_layers=1,
        max_position_embeddings=64)),
    "bert": ("BertConfig", "BertModel", dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
        max_position_embeddings=64)),
    "roberta": ("RobertaConfig", "RobertaModel", dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=40,
        max_position_embeddings=66, pad_token_id=1, type_vocab_size=1)),
}
QK = ("q_proj", "k_proj", "query.", "key.", "query_key_value")
OUT = ("o_proj", "out_proj", "attention.dense", "output.dense", "down_proj", "dense_4h_to_h",
       "c_proj")


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Sharp attention (Q and K at 3/√d), small output projections (a residual stream of
    O(1): float32 rounding is relative, the tolerance absolute), norms not 1, biases not 0."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if p.ndim == 1:
                is_norm = "norm" in name.lower() or ".ln_" in name or name.startswith("ln_")
                p.copy_((1.0 if is_norm and name.endswith("weight") else 0.0) + 0.1 * noise)
            elif "embed" in name or name.endswith(("wte.weight", "wpe.weight")):
                p.copy_(0.5 * noise)
            else:
                scale = 3.0 if any(k in name for k in QK) else \
                    0.3 if any(k in name for k in OUT) else 1.0
                p.copy_(noise * scale / math.sqrt(p.shape[1]))


def build(name: str, folder: Path, seed: int):
    config_cls, model_cls, args = CASES[name]
    config = getattr(transformers, config_cls)(**BASE, **args)
    hf = getattr(transformers, model_cls)(config)
    randomize(hf, seed)
    hf.save_pretrained(folder)
    for file in ("vocab.json", "merges.txt"):
        shutil.copy(FIXTURES / file, folder / file)
    assert hf.config._attn_implementation == "eager"
    return hf.eval()


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    out = {}
    for seed, name in enumerate(CASES):
        folder = root / name
        out[name] = (folder, build(name, folder, 100 + seed))
    return out


def input_ids(name: str) -> list[int]:
    g = np.random.default_rng(7)
    ids = [int(i) for i in g.integers(3, VOCAB - 1, size=T)]
    if name == "roberta":
        ids[5] = 1  # a pad token inside the text: it takes position row padding_idx
    return ids


@pytest.mark.parametrize("name", list(CASES))
def test_every_matrix_equals_transformers(built, name):
    folder, hf = built[name]
    model, encoding = checkpoint.load(str(folder))
    ids = input_ids(name)
    tokens = tokenize.from_ids(ids, encoding)
    cfg = model.cfg
    keep = {layer: tuple(range(cfg.n_heads)) for layer in range(cfg.n_layers)}
    cap = capture.run(model, "", "test", tokens, keep)
    with torch.no_grad():
        ref = hf(torch.tensor([ids]), output_attentions=True, output_hidden_states=True)
    worst = 0.0
    for layer in range(cfg.n_layers):
        expected = ref.attentions[layer][0].float()
        for head in range(cfg.n_heads):
            got = torch.from_numpy(cap.head(layer, head).weights)
            worst = max(worst, (got - expected[head]).abs().max().item())
            torch.testing.assert_close(got, expected[head], atol=ATTN_ATOL, rtol=0,
                                       msg=lambda m: f"{name} layer {layer} head {head}: {m}")
    hidden = torch.from_numpy(cap.embeddings)
    torch.testing.assert_close(hidden, ref.last_hidden_state[0], atol=HIDDEN_ATOL, rtol=0)
    SEEN[name] = (worst, (hidden - ref.last_hidden_state[0]).abs().max().item())
    # the configuration really exercises what the case is named for
    if "window" in name or name == "gpt_neo":
        assert any(w is not None and w < T for w in cfg.windows)
    if "gqa" in name or "mqa" in name or name.startswith(("mistral", "qwen2")):
        assert cfg.kv_heads < cfg.n_heads


def test_window_mask_is_exact(built):
    """In a local layer, keys window or more tokens back get exactly 0."""
    folder, _ = built["gpt_neo"]
    model, encoding = checkpoint.load(str(folder))
    cfg = model.cfg
    local = [layer for layer in range(cfg.n_layers) if cfg.window(layer)][0]
    cap = capture.run(model, "", "t", tokenize.from_ids(input_ids("gpt_neo"), encoding),
                      {local: (0,)})
    w = cap.head(local, 0).weights
    i, j = np.indices(w.shape)
    assert (w[(i - j) >= cfg.window(local)] == 0).all()
    assert (w[j > i] == 0).all()
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-6)


def test_model_json_describes_each_family(built):
    from test_cli import ok_json

    expected = {
        "gpt_neo": dict(family="gpt_neo", positions="learned", window=[None, 4, 4], kv_heads=4),
        "gpt_neox-parallel": dict(family="gpt_neox", positions="rotary", rotary_dim=4),
        "llama-gqa": dict(family="llama", positions="rotary", kv_heads=2, window=None),
        "mistral-window": dict(family="mistral", window=5, kv_heads=2),
        "qwen2-window": dict(family="qwen2", window=[None, 4, 4]),
        "bert": dict(family="bert", causal=False, positions="learned"),
        "roberta": dict(family="roberta", causal=False, n_positions=64),
    }
    for name, fields in expected.items():
        doc = ok_json("model", "--model", str(built[name][0]))
        for key, value in fields.items():
            assert doc["model"][key] == value, (name, key, doc["model"])


@pytest.mark.parametrize("name", ["llama3-rope-mqa", "gpt_neo", "qwen2-window"])
def test_steps_recomputed_from_json(built, name):
    """scores = q·kᵀ of the rotated vectors; the family's own scale; −∞ outside a window."""
    from test_cli import ok_json

    folder, _ = built[name]
    layer = 1
    doc = ok_json("steps", "The cat sat on the mat because it was tired.", "--model",
                  str(folder), "--layer", str(layer), "--head", "1")
    s = {k: np.array(v, dtype=object) for k, v in doc["stages"].items()}
    q, k = s["q"].astype(float), s["k"].astype(float)
    scores = s["scores"].astype(float)
    np.testing.assert_allclose(q @ k.T, scores, rtol=1e-4, atol=1e-4)
    scale = 1.0 if name == "gpt_neo" else 1 / math.sqrt(q.shape[1])
    np.testing.assert_allclose(s["scaled"].astype(float), scores * scale, rtol=1e-5, atol=1e-5)
    masked = s["masked"]
    window = doc["model"]["window"]
    window = window[layer] if isinstance(window, list) else window
    n = len(doc["tokens"])
    for i in range(n):
        for j in range(n):
            hidden = j > i or (window is not None and i - j >= window)
            assert (masked[i, j] is None) == hidden, (i, j)
    finite = np.where(masked == None, -np.inf, masked).astype(float)  # noqa: E711
    e = np.exp(finite - finite.max(axis=1, keepdims=True))
    np.testing.assert_allclose(np.array(doc["stages"]["weights"]), e / e.sum(axis=1,
                               keepdims=True), atol=1e-6)


def edit(folder: Path, tmp_path: Path, **changes) -> Path:
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    cfg = json.loads((copy / "config.json").read_text())
    cfg.update(changes)
    (copy / "config.json").write_text(json.dumps(cfg))
    return copy


@pytest.mark.parametrize("name, changes, words", [
    ("llama-gqa", dict(num_key_value_heads=3), ["4 heads cannot share 3"]),
    ("llama-gqa", dict(rope_parameters={"rope_type": "yarn", "rope_theta": 1.0, "factor": 2.0}),
     ["rope_type 'yarn'"]),
    ("gpt_neox-parallel", dict(rotary_pct=0.1, rope_parameters=None), ["even number"]),
    ("gpt_neo", dict(attention_types=[[["global", "sparse"], 1]]), ["attention_types"]),
    ("bert", dict(position_embedding_type="relative_key"), ["relative_key"]),
    ("mistral-window", dict(hidden_act="tanh"), ["hidden_act 'tanh'"]),
    ("llama-gqa", dict(num_hidden_layers=5), ["2 blocks", "num_hidden_layers 5"]),
    ("llama-gqa", dict(intermediate_size=50), ["gate_proj", "(48, 32)", "(50, 32)"]),
])
def test_family_config_errors(built, tmp_path, name, changes, words):
    folder = edit(built[name][0], tmp_path, **changes)
    with pytest.raises(ModelLoadError) as err:
        checkpoint.load(str(folder))
    message = str(err.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


def test_report_parity():
    """Prints the largest differences seen (the closing note quotes them)."""
    for name, (attn, hidden) in sorted(SEEN.items()):
        print(f"\n{name}: attention {attn:.2e}, final hidden state {hidden:.2e}")
        assert attn <= ATTN_ATOL and hidden <= HIDDEN_ATOL
