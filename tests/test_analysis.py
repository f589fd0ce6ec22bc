"""Head scores, labels, entropy, top-k and rollout on hand-made matrices whose answers are known."""

import math

import numpy as np
import pytest

from attn_cli import analysis


def causal_uniform(T):
    return np.tril(np.ones((T, T))) / np.arange(1, T + 1)[:, None]


def shifted(T, k):
    """Every query i >= k puts all weight on i - k; earlier queries on key 0."""
    w = np.zeros((T, T))
    for i in range(T):
        w[i, max(i - k, 0)] = 1.0
    return w


def test_previous_token_head_is_found():
    w = shifted(6, 1)
    s = analysis.head_scores(w)
    assert s.previous_token == 1.0
    assert s.self == 0.0
    assert s.first_token == pytest.approx(1 / 5)  # only query 1's previous token is key 0
    assert s.mean_distance == pytest.approx(5 / 6)
    assert analysis.label(w, causal=True) == "previous-token"


def test_self_and_first_token_heads():
    assert analysis.label(np.eye(5), causal=True) == "self"
    sink = np.zeros((5, 5))
    sink[:, 0] = 1.0
    assert analysis.head_scores(sink).first_token == 1.0
    assert analysis.label(sink, causal=True) == "first-token"


def test_uniform_causal_head_is_diffuse():
    w = causal_uniform(8)
    assert analysis.normalised_entropy(w, causal=True) == pytest.approx(1.0)
    assert analysis.label(w, causal=True) == "diffuse"


def test_uniform_attention_is_not_local_in_a_short_causal_sentence():
    # 6 tokens: uniform causal attention has mean distance 1.25 <= 1.5, yet it is not local
    w = causal_uniform(6)
    assert analysis.head_scores(w).mean_distance == pytest.approx(1.25)
    assert analysis.uniform_distance(6, causal=True) == pytest.approx(1.25)
    assert analysis.uniform_distance(3, causal=False) == pytest.approx((1 + 2 / 3 + 1) / 3)
    assert analysis.label(w, causal=True) == "diffuse"


def test_local_head():
    # half on self, half on previous: no score reaches 0.5 strictly above the others... both
    # are 0.5 so the label is the first of the tie; spread it over three neighbours instead
    T = 10
    w = np.zeros((T, T))
    for i in range(T):
        keys = [j for j in (i - 2, i - 1, i) if j >= 0]
        w[i, keys] = 1.0 / len(keys)
    assert analysis.head_scores(w).mean_distance <= analysis.LOCAL_DISTANCE
    assert analysis.label(w, causal=True) == "local"


def test_entropy_matches_a_plain_loop():
    rng = np.random.default_rng(0)
    w = rng.random((7, 7)).astype(np.float32)
    w = np.tril(w)
    w /= w.sum(axis=1, keepdims=True)
    expected = [-sum(p * math.log(p) for p in row if p > 0) for row in w.astype(np.float64)]
    np.testing.assert_allclose(analysis.entropy(w), expected, rtol=1e-6)
    assert analysis.entropy(np.eye(3, dtype=np.float32)).tolist() == [0.0, 0.0, 0.0]
    assert not np.signbit(analysis.entropy(np.eye(3, dtype=np.float32))).any()


def test_top_k_orders_by_weight_then_index_and_skips_masked_keys():
    w = np.array([[1.0, 0, 0], [0.5, 0.5, 0], [0.2, 0.2, 0.6]], dtype=np.float32)
    tops = analysis.top_k(w, 2, causal=True)
    assert [[a.index for a in row] for row in tops] == [[0], [0, 1], [2, 0]]
    bidir = analysis.top_k(np.full((2, 2), 0.5, dtype=np.float32), 5, causal=False)
    assert [[a.index for a in row] for row in bidir] == [[0, 1], [0, 1]]


def test_strongest_skips_the_trivial_first_row_of_a_causal_head():
    w = causal_uniform(4)
    w[2] = [0.1, 0.85, 0.05, 0]
    s = analysis.strongest(w.astype(np.float32), causal=True)
    assert (s.query, s.key) == (2, 1)
    assert s.weight == pytest.approx(0.85)


def test_duplicate_token_head():
    ids = [5, 6, 7, 5, 6, 7]
    w = np.zeros((6, 6))
    w[0, 0] = w[1, 1] = w[2, 2] = 1.0
    for i in (3, 4, 5):
        w[i, i - 3] = 1.0  # to its earlier copy
    s = analysis.head_scores(w, ids)
    assert s.duplicate_token == 1.0
    assert s.induction == 0.0
    assert analysis.label(w, causal=True, scores=s) == "duplicate-token"


def test_induction_head():
    ids = [5, 6, 7, 5, 6, 7]
    w = np.zeros((6, 6))
    w[0, 0] = w[1, 1] = w[2, 2] = 1.0
    for i in (3, 4, 5):
        w[i, i - 2] = 1.0  # to the token after its earlier copy
    s = analysis.head_scores(w, ids)
    assert s.induction == 1.0
    assert s.duplicate_token == 0.0
    assert analysis.label(w, causal=True, scores=s) == "induction"


def test_no_repeats_means_no_duplicate_or_induction_score():
    s = analysis.head_scores(causal_uniform(4), [1, 2, 3, 4])
    assert s.duplicate_token is None and s.induction is None


def test_reduce_heads():
    a, b = np.eye(3), causal_uniform(3)
    np.testing.assert_allclose(analysis.reduce_heads([a, b], "mean"), (a + b) / 2, rtol=1e-6)
    np.testing.assert_allclose(analysis.reduce_heads([a, b], "max"), np.maximum(a, b))


def test_rollout_matches_a_direct_computation():
    rng = np.random.default_rng(1)
    T, L = 5, 3
    layers = []
    for _ in range(L):
        w = np.tril(rng.random((T, T)))
        layers.append(w / w.sum(axis=1, keepdims=True))
    # directly from the paper: Â_l = 0.5 A_l + 0.5 I, rows renormalised; R = Â_L ... Â_1
    hats = []
    for a in layers:
        h = 0.5 * a + 0.5 * np.eye(T)
        hats.append(h / h.sum(axis=1, keepdims=True))
    expected = hats[2] @ hats[1] @ hats[0]
    got = analysis.rollout([x.astype(np.float32) for x in layers])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)
    # order matters: later layers on the left
    assert not np.allclose(got, hats[0] @ hats[1] @ hats[2], atol=1e-4)


@pytest.mark.parametrize("seed", range(6))
def test_vectorised_top_k_equals_a_plain_sort(seed):
    """top_k against the definition, row by row: visible keys sorted by (−weight, index), the
    first k — on matrices with many exact ties, windows and more rows than one block."""
    rng = np.random.default_rng(seed)
    T = [3, 17, 300, 600, 5, 40][seed]
    w = rng.integers(0, 4, size=(T, T)).astype(np.float32) / 4  # ties everywhere
    causal = seed % 2 == 0
    window = [None, 3, 7, None, 2, 1][seed]
    k = [1, 3, 5, 2, 8, 4][seed]
    seen = analysis.allowed(T, causal, window)
    got = analysis.top_k(w, k, causal, window)
    for i in range(T):
        keys = sorted((j for j in range(T) if seen[i, j]), key=lambda j: (-w[i, j], j))[:k]
        assert [a.index for a in got[i]] == keys, (i, got[i], keys)
        assert [a.weight for a in got[i]] == [float(w[i, j]) for j in keys]


def plain_top(w, k, causal, window):
    """The definition: each query's visible keys sorted by (−weight, index), the first k."""
    seen = analysis.allowed(w.shape[0], causal, window)
    return [sorted((j for j in range(w.shape[1]) if seen[i, j]),
                   key=lambda j: (-w[i, j], j))[:k] for i in range(w.shape[0])]


@pytest.mark.parametrize("k", [1, 3, 8, 9, 12, 40])  # both paths: argmax passes (k <= 8), sort
@pytest.mark.parametrize("causal,window", [(True, None), (False, None), (True, 4), (False, 3)])
def test_top_k_arrays_of_stacked_heads_equal_the_definition(k, causal, window):
    """Several heads at once, (heads, T, T), with more rows than one block and many exact
    ties: every head's keys and values are those of the plain sort, padded with -1 / 0."""
    rng = np.random.default_rng(k)
    heads, T = 3, 130
    w = rng.integers(0, 5, size=(heads, T, T)).astype(np.float32) / 8
    keys, values = analysis.top_k_arrays(w, k, causal, window)
    assert keys.shape == values.shape == (heads, T, min(k, T))
    for h in range(heads):
        want = plain_top(w[h], k, causal, window)
        for i in range(T):
            n = len(want[i])
            assert keys[h, i, :n].tolist() == want[i], (h, i)
            assert (keys[h, i, n:] == -1).all() and (values[h, i, n:] == 0).all()
            assert values[h, i, :n].tolist() == [float(w[h, i, j]) for j in want[i]]
        # one head on its own gives the same lists
        assert [[a.index for a in row] for row in analysis.top_k(w[h], k, causal, window)] \
            == want


def test_top_k_keeps_float64_weights_exact():
    w = np.array([[1.0, 0.0], [0.1 + 1e-12, 0.1]])  # equal in float32, not in float64
    assert [a.index for a in analysis.top_k(w, 2, causal=False)[1]] == [0, 1]
    assert analysis.top_k(w, 1, causal=False)[1][0].weight == 0.1 + 1e-12


def test_entropy_of_stacked_heads_is_each_head_s_entropy_bit_for_bit():
    rng = np.random.default_rng(3)
    w = np.tril(rng.random((4, 300, 300))).astype(np.float32)
    w /= w.sum(axis=-1, keepdims=True)
    stacked = analysis.entropy(w)
    assert stacked.shape == (4, 300) and stacked.dtype == np.float32
    for h in range(4):
        one = analysis.entropy(w[h])
        assert one.view(np.uint32).tolist() == stacked[h].view(np.uint32).tolist()
        expected = [-sum(p * math.log(p) for p in row if p > 0) for row in w[h].astype(float)]
        np.testing.assert_allclose(one, expected, rtol=1e-6)
