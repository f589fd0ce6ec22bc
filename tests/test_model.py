"""The seeded model: reproducible, seed-sensitive, vocabulary-free, worth looking at, validated."""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from attn_cli import capture
from attn_cli import models as M
from attn_cli import tokenizers as tk
from attn_cli.models.config import ModelConfig
from attn_cli.errors import AttnError, ConfigError

ROOT = Path(__file__).resolve().parents[1]
IDS = [976, 9059, 10139, 402, 290, 2450, 2236, 480, 673, 23060, 13, 199_999, 5, 100_000]


def all_heads(cfg):
    return {layer: tuple(range(cfg.n_heads)) for layer in range(cfg.n_layers)}


# ---------------------------------------------------------------------------------------------
# Determinism

# Run both here and in a fresh interpreter: a digest of every weight and every captured tensor.
DIGEST_SRC = textwrap.dedent("""
    import hashlib
    import torch
    from attn_cli import models as M
    from attn_cli.models.config import ModelConfig

    def digest(cfg_kwargs, ids):
        cfg = ModelConfig(**cfg_kwargs)
        m = M.seeded(cfg)
        h = hashlib.sha256()
        for name, p in sorted(m.state_dict().items()):
            h.update(name.encode())
            h.update(p.detach().contiguous().numpy().tobytes())
        keep = {layer: tuple(range(cfg.n_heads)) for layer in range(cfg.n_layers)}
        fwd = m(ids, keep=keep, keep_stages=True)
        for t in fwd.hidden + [fwd.embeddings]:
            h.update(t.contiguous().numpy().tobytes())
        for key in sorted(fwd.heads):
            for name in sorted(fwd.heads[key]):
                h.update(name.encode())
                h.update(fwd.heads[key][name].contiguous().numpy().tobytes())
        return h.hexdigest()
""")

DIGEST_CASES = [
    dict(),
    dict(n_layers=3, n_heads=2, d_model=32, causal=False, seed=12345),
]


def _digest_fn():
    namespace: dict = {}
    exec(DIGEST_SRC, namespace)
    return namespace["digest"]


@pytest.mark.parametrize("kwargs", DIGEST_CASES, ids=["default", "other"])
def test_two_models_with_the_same_config_are_bit_identical(kwargs):
    cfg = ModelConfig(**kwargs)
    torch.manual_seed(1)
    a = M.seeded(cfg)
    torch.manual_seed(2)  # the global RNG must not matter
    b = M.seeded(cfg)
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name
    fa = a(IDS, keep=all_heads(cfg), keep_stages=True)
    fb = b(IDS, keep=all_heads(cfg), keep_stages=True)
    for x, y in zip(fa.hidden, fb.hidden):
        assert torch.equal(x, y)
    assert torch.equal(fa.embeddings, fb.embeddings)
    assert set(fa.heads) == set(fb.heads) == set(itertools.product(
        range(cfg.n_layers), range(cfg.n_heads)))
    for key in fa.heads:
        for name in M.STAGES:
            assert torch.equal(fa.heads[key][name], fb.heads[key][name]), (key, name)


def test_a_fresh_interpreter_builds_the_same_bits():
    digest = _digest_fn()
    torch.manual_seed(4321)
    np.random.seed(4321)
    here = [digest(kwargs, IDS) for kwargs in DIGEST_CASES]
    script = DIGEST_SRC + textwrap.dedent(f"""
        import numpy, random
        torch.manual_seed(987654321)   # a different global state in the child
        numpy.random.seed(7)
        random.seed(7)
        torch.rand(1000)
        for kwargs in {DIGEST_CASES!r}:
            print(digest(kwargs, {IDS!r}))
    """)
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == here


def test_the_digest_sees_a_change():
    """The digest above is not blind: another seed gives another digest."""
    digest = _digest_fn()
    assert digest(dict(seed=0), IDS) != digest(dict(seed=1), IDS)
    assert digest(dict(seed=0), IDS) != digest(dict(seed=0), IDS[:-1])


def test_building_a_model_leaves_the_global_torch_rng_alone():
    torch.manual_seed(2024)
    before = torch.random.get_rng_state()
    M.seeded(ModelConfig())
    assert torch.equal(torch.random.get_rng_state(), before)


def test_building_and_running_a_model_leaves_numpy_and_python_rng_alone():
    import random

    np.random.seed(3)
    random.seed(3)
    np_before, py_before = np.random.get_state(), random.getstate()
    cfg = ModelConfig()
    M.seeded(cfg)(IDS, keep=all_heads(cfg), keep_stages=True)
    np_after = np.random.get_state()
    assert np_before[0] == np_after[0] and np.array_equal(np_before[1], np_after[1])
    assert np_before[2:] == np_after[2:]
    assert random.getstate() == py_before


# ---------------------------------------------------------------------------------------------
# Seed sensitivity

def _assert_models_differ(seeds):
    cfgs = [ModelConfig(seed=s) for s in seeds]
    a, b = (M.seeded(c) for c in cfgs)
    sa, sb = a.state_dict(), b.state_dict()
    random_params = [n for n in sa if "c_attn" in n or "c_fc" in n or n.endswith(
        "attn.c_proj.weight") or n.endswith("mlp.c_proj.weight") or ".ln_" in n]
    assert len(random_params) >= 10 * cfgs[0].n_layers
    for name in random_params:
        assert not torch.equal(sa[name], sb[name]), name
    ea, eb = (M.seeded_token_embeddings(IDS, s, 64) for s in seeds)
    assert not np.any(np.all(ea == eb, axis=1))  # every token's row changes
    fa = a(IDS, keep=all_heads(cfgs[0]))
    fb = b(IDS, keep=all_heads(cfgs[1]))
    for key in fa.heads:
        diff = (fa.heads[key]["weights"] - fb.heads[key]["weights"]).abs().max().item()
        assert diff > 1e-2, key


@pytest.mark.parametrize("seeds", [(0, 1), (1, 2), (12345, 2**31 + 12345)])
def test_a_different_seed_gives_different_weights_and_attention(seeds):
    _assert_models_differ(seeds)


def test_seeds_beyond_32_bits_are_refused_rather_than_aliased():
    # torch's CPU generator keeps 32 bits of a seed: 0 and 2**32 would give the same weights
    with pytest.raises(ConfigError, match="--seed"):
        ModelConfig(seed=2**32)
    _assert_models_differ((0, 2**32 - 1))


# ---------------------------------------------------------------------------------------------
# Token embeddings without a table

@pytest.mark.parametrize("seed", [0, 1, 2**63 - 1])
@pytest.mark.parametrize("d", [1, 16, 64])
def test_token_rows_do_not_depend_on_the_other_ids(seed, d):
    pair = M.seeded_token_embeddings([5, 199_999], seed, d)
    assert pair.shape == (2, d) and pair.dtype == np.float32
    alone5 = M.seeded_token_embeddings([5], seed, d)
    alone_top = M.seeded_token_embeddings([199_999], seed, d)
    mixed = M.seeded_token_embeddings([100_000, 199_999, 7, 5, 5, 200_018], seed, d)
    assert np.array_equal(pair[0], alone5[0]) and np.array_equal(pair[0], mixed[3])
    assert np.array_equal(mixed[3], mixed[4])
    assert np.array_equal(pair[1], alone_top[0]) and np.array_equal(pair[1], mixed[1])
    if d > 1:
        assert not np.array_equal(pair[0], pair[1])
    # every entry lies in the support of the uniform with variance 1
    assert np.all(np.abs(mixed) <= math.sqrt(3.0))


def test_token_embeddings_are_mean_zero_variance_one():
    ids = list(range(0, 201_088, 7))
    e = M.seeded_token_embeddings(ids, 0, 64).astype(np.float64)
    assert e.shape == (len(ids), 64)
    assert np.isfinite(e).all()
    assert abs(e.mean()) < 0.01
    assert abs(e.var() - 1.0) < 0.01
    # per dimension too, and the dimensions are not correlated with each other
    assert np.all(np.abs(e.mean(axis=0)) < 0.05)
    assert np.all(np.abs(e.var(axis=0) - 1.0) < 0.06)
    corr = np.corrcoef(e, rowvar=False)
    assert np.max(np.abs(corr - np.eye(64))) < 0.06
    # neighbouring ids are not correlated either
    assert abs(np.corrcoef(e[:-1].ravel(), e[1:].ravel())[0, 1]) < 0.01
    # nearly all rows are distinct
    assert len({row.tobytes() for row in e}) == len(ids)


def test_high_token_ids_run_through_the_model():
    cfg = ModelConfig()
    model = M.seeded(cfg)
    assert model.wte is None  # no (vocab, d_model) table is built
    ids = [199_999, 200_018, 199_998, 100_257, 100_000, 0]
    fwd = model(ids, keep=all_heads(cfg))
    assert torch.isfinite(fwd.embeddings).all()
    assert all(torch.isfinite(h).all() for h in fwd.hidden)


@pytest.mark.parametrize("cfg", [ModelConfig(), ModelConfig(n_layers=3, n_heads=2, d_model=24,
                                                            d_ff=40)])
def test_parameter_count_has_no_vocabulary_term(cfg):
    d, f, L = cfg.d_model, cfg.d_ff, cfg.n_layers
    per_block = (d * 3 * d + 3 * d) + (d * d + d) + (d * f + f) + (f * d + d) + 2 * (2 * d)
    assert M.parameter_count(M.seeded(cfg)) == L * per_block + 2 * d


# ---------------------------------------------------------------------------------------------
# Worth looking at

SENTENCES = [
    "The cat sat on the mat because it was tired.",
    "She gave the book to her brother, who read it twice before returning it.",
    "In the morning the children walked to school along the river and talked about the weather.",
    "Attention lets every token look at every earlier token and decide what matters.",
    "My grandmother bakes bread every Sunday, and the whole house smells wonderful afterwards.",
]

INTERESTING_CONFIGS = [
    ModelConfig(),
    ModelConfig(seed=1),
    ModelConfig(seed=2),
    ModelConfig(n_layers=3, n_heads=8, d_model=128, seed=7),
    ModelConfig(n_layers=1, n_heads=2, d_model=32, seed=123),
    ModelConfig(causal=False),
]


@pytest.fixture(scope="module")
def sentence_ids():
    enc = tk.get_encoding("o200k_base")
    ids = [[t.id for t in tk.tokenize(s, enc)] for s in SENTENCES]
    assert all(len(i) >= 8 for i in ids)
    return ids


@pytest.mark.parametrize("cfg", INTERESTING_CONFIGS,
                         ids=lambda c: f"L{c.n_layers}H{c.n_heads}D{c.d_model}s{c.seed}"
                                       f"{'c' if c.causal else 'b'}")
def test_seeded_heads_are_worth_looking_at(cfg, sentence_ids):
    model = M.seeded(cfg)
    entropy_ratio: dict = {}
    max_weight: dict = {}
    patterns: dict = {}
    for ids in sentence_ids:
        fwd = model(ids, keep=all_heads(cfg))
        T = len(ids)
        n_keys = np.arange(1, T + 1) if cfg.causal else np.full(T, T)
        rows = n_keys >= 4
        for key, stages in fwd.heads.items():
            w = stages["weights"].double().numpy()
            with np.errstate(divide="ignore", invalid="ignore"):
                ent = -np.where(w > 0, w * np.log(w), 0.0).sum(axis=1)
            entropy_ratio.setdefault(key, []).extend(ent[rows] / np.log(n_keys[rows]))
            max_weight.setdefault(key, []).extend(w.max(axis=1)[rows])
            patterns.setdefault(key, []).append(w)

    assert len(patterns) == cfg.n_layers * cfg.n_heads
    for key in patterns:
        assert np.mean(entropy_ratio[key]) < 0.95, f"{key} is nearly uniform"
        assert np.mean(max_weight[key]) < 0.95, f"{key} is nearly one-hot"
        assert np.mean(entropy_ratio[key]) > 0.25, f"{key} is nearly one-hot"
    for k1, k2 in itertools.combinations(patterns, 2):
        diff = np.mean([np.abs(a - b).mean() for a, b in zip(patterns[k1], patterns[k2])])
        assert diff > 0.01, f"heads {k1} and {k2} attend alike"


# ---------------------------------------------------------------------------------------------
# Configuration

@pytest.mark.parametrize("kwargs, flag", [
    (dict(n_layers=0), "--layers"),
    (dict(n_layers=-1), "--layers"),
    (dict(n_heads=0), "--heads"),
    (dict(n_heads=-4), "--heads"),
    (dict(d_model=0), "--d-model"),
    (dict(d_model=-64), "--d-model"),
    (dict(d_ff=0), "--d-ff"),
    (dict(d_ff=-1), "--d-ff"),
    (dict(d_model=64, n_heads=3), "--d-model"),
    (dict(d_model=10, n_heads=4), "--d-model"),
    (dict(d_model=6, n_heads=12), "--d-model"),
    (dict(seed=-1), "--seed"),
    (dict(seed=2**32), "--seed"),
])
def test_bad_configs_raise_config_error(kwargs, flag):
    with pytest.raises(ConfigError) as info:
        ModelConfig(**kwargs)
    message = str(info.value)
    assert flag in message
    assert "\n" not in message
    assert isinstance(info.value, AttnError) and info.value.exit_code == 2


def test_d_model_not_divisible_message_names_both_numbers():
    with pytest.raises(ConfigError, match=r"64.*3|3.*64"):
        ModelConfig(d_model=64, n_heads=3)


@pytest.mark.parametrize("kwargs", [
    dict(n_layers=1, n_heads=1, d_model=1),
    dict(seed=0), dict(seed=2**32 - 1), dict(d_ff=1), dict(causal=False),
    dict(n_heads=64, d_model=64),
])
def test_edge_configs_are_valid(kwargs):
    cfg = ModelConfig(**kwargs)
    assert cfg.d_head * cfg.n_heads == cfg.d_model


def test_d_ff_defaults_to_four_times_d_model():
    assert ModelConfig().d_ff == 256
    assert ModelConfig(d_model=32, n_heads=2).d_ff == 128
    assert ModelConfig(d_model=24, n_heads=3, d_ff=50).d_ff == 50


def test_to_dict_has_the_spec_model_fields():
    cfg = ModelConfig(n_layers=3, n_heads=2, d_model=32, causal=False, seed=9)
    assert cfg.to_dict() == {
        "source": "seeded", "layers": 3, "heads": 2, "d_model": 32, "d_head": 16,
        "d_ff": 128, "causal": False, "seed": 9, "positions": "sinusoidal",
        "family": "seeded", "kv_heads": 2, "window": None, "dtype": "float32",
    }
    default = ModelConfig().to_dict()
    assert default == {"source": "seeded", "layers": 2, "heads": 4, "d_model": 64,
                       "d_head": 16, "d_ff": 256, "causal": True, "seed": 0,
                       "positions": "sinusoidal", "family": "seeded", "kv_heads": 4,
                       "window": None, "dtype": "float32"}


def test_config_is_frozen():
    cfg = ModelConfig()
    with pytest.raises(Exception):
        cfg.n_layers = 5  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# --layer / --head selection

@pytest.mark.parametrize("layers, heads, flag, bad, span", [
    ([2], None, "--layer", 2, "layers 0-1"),
    ([0, 5], None, "--layer", 5, "layers 0-1"),
    ([-1], None, "--layer", -1, "layers 0-1"),
    (None, [4], "--head", 4, "heads 0-3"),
    (None, [0, -2], "--head", -2, "heads 0-3"),
    ([1], [9], "--head", 9, "heads 0-3"),
])
def test_select_rejects_out_of_range_layers_and_heads(layers, heads, flag, bad, span):
    with pytest.raises(ConfigError) as info:
        capture.select(ModelConfig(), layers, heads)
    message = str(info.value)
    assert f"{flag} {bad} " in message
    assert "out of range" in message
    assert span in message


def test_select_on_a_one_layer_one_head_model_names_the_single_index():
    cfg = ModelConfig(n_layers=1, n_heads=1, d_model=8)
    with pytest.raises(ConfigError, match=r"out of range.*layers 0\b"):
        capture.select(cfg, [1], None)
    with pytest.raises(ConfigError, match=r"out of range.*heads 0\b"):
        capture.select(cfg, None, [1])


def test_select_defaults_and_deduplicates():
    cfg = ModelConfig()
    assert capture.select(cfg, None, None) == {0: (0, 1, 2, 3), 1: (0, 1, 2, 3)}
    assert capture.select(cfg, [], []) == {0: (0, 1, 2, 3), 1: (0, 1, 2, 3)}
    assert capture.select(cfg, [1, 1], [3, 0, 3]) == {1: (0, 3)}
    assert capture.select(cfg, [1, 0], [2]) == {0: (2,), 1: (2,)}
