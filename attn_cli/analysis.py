"""Pure functions on attention matrices: entropy, top-k, head pattern scores and labels.

Every function takes NumPy arrays (rows are queries, columns keys) and returns plain values;
nothing here knows about torch or the terminal. Definitions are in the README.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LABEL_THRESHOLD = 0.5  # a score this high names the head
LOCAL_DISTANCE = 1.5  # mean |i - j| at or below this, with no dominant score: "local"
DIFFUSE_ENTROPY = 0.85  # mean normalised entropy at or above this: "diffuse"


def allowed(T: int, causal: bool, window: int | None = None) -> np.ndarray:
    """(T, T) bool: which keys each query may see (j ≤ i when causal; i − j < window)."""
    seen = np.tril(np.ones((T, T), dtype=bool)) if causal else np.ones((T, T), dtype=bool)
    if window is not None:
        seen &= np.triu(np.ones((T, T), dtype=bool), k=-(window - 1))
    return seen


def entropy(weights: np.ndarray) -> np.ndarray:
    """Each row's entropy in nats, -Σ p ln p with 0·ln 0 = 0; float32 of a float64 sum.

    weights: (..., T, C), e.g. every head of a layer at once; returns (..., T)."""
    flat = weights.reshape(-1, weights.shape[-1])
    out = np.empty(flat.shape[0], dtype=np.float32)
    for start in range(0, flat.shape[0], _BLOCK):  # row blocks: no T×T float64 temporaries
        p = flat[start:start + _BLOCK].astype(np.float64)
        terms = np.zeros_like(p)
        np.log(p, out=terms, where=p > 0)  # ln p where p > 0, else 0: 0·ln 0 = 0
        terms *= p
        out[start:start + _BLOCK] = 0.0 - terms.sum(axis=-1)
    return (out + np.float32(0.0)).reshape(weights.shape[:-1])  # + 0: no −0.0


_BLOCK = 256
_ARGMAX_UP_TO = 8  # top_k: k argmax passes up to this k, one stable sort per row above it


@dataclass(frozen=True)
class Attended:
    index: int
    weight: float


def top_k_arrays(weights: np.ndarray, k: int, causal: bool, window: int | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """For each query of (..., T, C) weights (e.g. every head of a layer at once), the k keys
    with the largest weights, largest first, ties to the lower index: (keys, values), each
    (..., T, min(k, C)); keys is -1 (and its value 0) past the last visible key, so early
    queries of a causal head list fewer than k. Masked keys are never listed.

    Vectorised over row blocks: for small k, k passes of argmax (which returns the first of
    equal maxima: the lower index), each taking the chosen key out; else a stable sort of the
    negated weights (equal weights keep index order)."""
    T, C = weights.shape[-2], weights.shape[-1]
    k = min(k, C)
    flat = weights.reshape(-1, C)
    dtype = np.promote_types(weights.dtype, np.float32)
    keys = np.full((flat.shape[0], k), -1, dtype=np.int64)
    values = np.zeros((flat.shape[0], k), dtype=dtype)
    j = np.arange(C)[None, :]
    for start in range(0, flat.shape[0], _BLOCK):
        w = flat[start:start + _BLOCK].astype(dtype)  # a copy: keys are overwritten below
        n = w.shape[0]
        if causal or window is not None:  # masked keys rank below every visible one
            i = (np.arange(start, start + n) % T)[:, None]
            hidden = (i < j) if causal else np.zeros((n, C), dtype=bool)
            if window is not None:
                hidden |= i - j >= window
            w[hidden] = -1.0
        rows = np.arange(n)
        if k <= _ARGMAX_UP_TO:
            for r in range(k):
                best = w.argmax(axis=1)
                got = w[rows, best]
                keys[start:start + n, r] = np.where(got >= 0, best, -1)
                values[start:start + n, r] = np.where(got >= 0, got, 0)
                w[rows, best] = -2.0
        else:
            best = np.argsort(-w, axis=1, kind="stable")[:, :k]
            got = np.take_along_axis(w, best, axis=1)
            keys[start:start + n] = np.where(got >= 0, best, -1)
            values[start:start + n] = np.where(got >= 0, got, 0)
    return keys.reshape(*weights.shape[:-1], k), values.reshape(*weights.shape[:-1], k)


def top_k(weights: np.ndarray, k: int, causal: bool, window: int | None = None
          ) -> list[list[Attended]]:
    """top_k_arrays of one (T, C) matrix as lists of Attended, one list per query."""
    keys, values = top_k_arrays(weights, k, causal, window)
    return [[Attended(c, v) for c, v in zip(row_k, row_v) if c >= 0]
            for row_k, row_v in zip(keys.tolist(), values.tolist())]


@dataclass(frozen=True)
class HeadScores:
    previous_token: float  # mean over queries i >= 1 of A[i, i-1]
    self: float  # mean over queries i >= 1 of A[i, i]
    first_token: float  # mean over queries i >= 1 of A[i, 0]
    mean_distance: float  # mean over all queries of Σ_j A[i, j]·|i - j|
    duplicate_token: float | None = None  # see duplicate_token_score
    induction: float | None = None  # see induction_score

    def to_dict(self) -> dict:
        return {"previous_token": self.previous_token, "self": self.self,
                "first_token": self.first_token, "mean_distance": self.mean_distance,
                "duplicate_token": self.duplicate_token, "induction": self.induction}


def head_scores(weights: np.ndarray, ids: list[int] | None = None) -> HeadScores:
    """Pattern scores of one head. Query 0 is left out of the first three (in a causal head
    it can only attend to itself, which says nothing about the head); with one token, the
    scores use query 0. With the token ids, also the duplicate-token and induction scores."""
    w = weights.astype(np.float64)
    T = w.shape[0]
    rows = np.arange(1, T) if T > 1 else np.arange(1)
    prev = float(w[rows, rows - 1].mean()) if T > 1 else 0.0
    dist = np.abs(np.arange(T)[:, None] - np.arange(T)[None, :])
    return HeadScores(
        previous_token=prev,
        self=float(w[rows, rows].mean()),
        first_token=float(w[rows, 0].mean()),
        mean_distance=float((w * dist).sum(axis=1).mean()),
        duplicate_token=None if ids is None else duplicate_token_score(w, ids),
        induction=None if ids is None else induction_score(w, ids),
    )


def _targeted_score(weights: np.ndarray, targets: np.ndarray) -> float | None:
    """Mean over queries with at least one target key of the weight on those keys."""
    has = targets.any(axis=1)
    if not has.any():
        return None
    return float((weights * targets).sum(axis=1)[has].mean())


def duplicate_token_score(weights: np.ndarray, ids: list[int]) -> float | None:
    """Attention from a token to earlier copies of itself: over queries i that have an
    earlier j < i with ids[j] == ids[i], the mean of Σ_{such j} A[i, j]. None if no token
    repeats."""
    a = np.asarray(ids)
    T = len(a)
    earlier = np.tril(np.ones((T, T), dtype=bool), k=-1)
    return _targeted_score(weights, (a[:, None] == a[None, :]) & earlier)


def induction_score(weights: np.ndarray, ids: list[int]) -> float | None:
    """Attention to the token *after* an earlier copy of the current token ([A][B] … [A] →
    [B]): over queries i with some key j, 1 <= j <= i, where ids[j-1] == ids[i] and j-1 < i,
    the mean of Σ_{such j} A[i, j]. None if no token repeats."""
    a = np.asarray(ids)
    T = len(a)
    targets = np.zeros((T, T), dtype=bool)
    if T > 1:
        # targets[i, j] for j >= 1: ids[j-1] == ids[i], j-1 < i (an earlier copy), j <= i
        same = a[:, None] == a[None, :-1]  # (T, T-1): query i vs key-1 position p = j-1
        p = np.arange(T - 1)[None, :]
        i = np.arange(T)[:, None]
        targets[:, 1:] = same & (p < i) & (p + 1 <= i)
    return _targeted_score(weights, targets)


def normalised_entropy(weights: np.ndarray, causal: bool, window: int | None = None) -> float:
    """Mean over queries with two or more keys of H(row) / ln(number of keys); 1 is uniform."""
    T = weights.shape[0]
    n_keys = allowed(T, causal, window).sum(axis=1)
    rows = n_keys > 1
    if not rows.any():
        return 0.0
    return float((entropy(weights)[rows] / np.log(n_keys[rows])).mean())


def uniform_distance(T: int, causal: bool, window: int | None = None) -> float:
    """The mean_distance of a head that spreads every row evenly over its visible keys."""
    dist = np.abs(np.arange(T)[:, None] - np.arange(T)[None, :])
    seen = allowed(T, causal, window)
    return float((np.where(seen, dist, 0).sum(axis=1) / seen.sum(axis=1)).mean())


def label(weights: np.ndarray, causal: bool, scores: HeadScores | None = None,
          window: int | None = None) -> str | None:
    """'previous-token', 'self', 'first-token', 'local', 'diffuse' or None (no clear pattern)."""
    s = scores or head_scores(weights)
    named = {"previous-token": s.previous_token, "self": s.self, "first-token": s.first_token,
             "induction": s.induction or 0.0, "duplicate-token": s.duplicate_token or 0.0}
    best = max(named, key=named.get)
    if weights.shape[0] > 1 and named[best] >= LABEL_THRESHOLD:
        return best
    T = weights.shape[0]
    if T >= 4 and s.mean_distance <= min(LOCAL_DISTANCE, 0.5 * uniform_distance(T, causal, window)):
        return "local"
    if normalised_entropy(weights, causal, window) >= DIFFUSE_ENTROPY:
        return "diffuse"
    return None


@dataclass(frozen=True)
class Strongest:
    query: int
    key: int
    weight: float

    def to_dict(self) -> dict:
        return {"query": self.query, "key": self.key, "weight": self.weight}


def strongest(weights: np.ndarray, causal: bool, window: int | None = None) -> Strongest:
    """The largest weight among queries that have a choice (a causal head's query 0 has none)."""
    T = weights.shape[0]
    w = np.where(allowed(T, causal, window), weights, -1.0)
    if causal and T > 1:
        w = w[1:]
        offset = 1
    else:
        offset = 0
    q, k = np.unravel_index(int(np.argmax(w)), w.shape)
    return Strongest(int(q) + offset, int(k), float(weights[q + offset, k]))


def reduce_heads(per_head: list[np.ndarray], how: str) -> np.ndarray:
    """One (T, T) matrix from several heads' weights: their mean or elementwise max."""
    stack = np.stack(per_head).astype(np.float64)
    return (stack.mean(axis=0) if how == "mean" else stack.max(axis=0)).astype(np.float32)


def rollout(per_layer: list[np.ndarray]) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema, 2020). per_layer[l] is layer l's head-averaged
    (T, T) attention. Each layer becomes Â = 0.5·A + 0.5·I with rows renormalised (the
    residual stream), and R = Â_{L-1} ··· Â_1 · Â_0: later layers on the left. R[i, j] is how
    much token i's final representation draws on input token j."""
    T = per_layer[0].shape[0]
    eye = np.eye(T)
    result = eye
    for a in per_layer:
        a_hat = 0.5 * a.astype(np.float64) + 0.5 * eye
        a_hat /= a_hat.sum(axis=1, keepdims=True)
        result = a_hat @ result
    return result.astype(np.float32)


def total_variation(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Per row i: TV_i = ½·Σ_j |p[i, j] − q[i, j]|, the total variation distance between two
    attention distributions of the same query: 0 when they agree, 1 when they share no key."""
    return 0.5 * np.abs(p.astype(np.float64) - q.astype(np.float64)).sum(axis=1)
