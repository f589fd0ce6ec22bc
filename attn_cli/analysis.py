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


def allowed(T: int, causal: bool) -> np.ndarray:
    """(T, T) bool: which keys each query may see."""
    if causal:
        return np.tril(np.ones((T, T), dtype=bool))
    return np.ones((T, T), dtype=bool)


def entropy(weights: np.ndarray) -> np.ndarray:
    """Each row's entropy in nats, -Σ p ln p with 0·ln 0 = 0; float32 of a float64 sum."""
    p = weights.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return (0.0 - terms.sum(axis=-1)).astype(np.float32) + np.float32(0.0)


@dataclass(frozen=True)
class Attended:
    index: int
    weight: float


def top_k(weights: np.ndarray, k: int, causal: bool) -> list[list[Attended]]:
    """For each query, the k keys with the largest weights (ties: lower index first).

    Masked keys are never listed, so early queries of a causal head list fewer than k.
    """
    T = weights.shape[0]
    mask = allowed(T, causal)
    out = []
    for i in range(T):
        keys = np.flatnonzero(mask[i])
        order = keys[np.argsort(-weights[i, keys], kind="stable")][:k]
        out.append([Attended(int(j), float(weights[i, j])) for j in order])
    return out


@dataclass(frozen=True)
class HeadScores:
    previous_token: float  # mean over queries i >= 1 of A[i, i-1]
    self: float  # mean over queries i >= 1 of A[i, i]
    first_token: float  # mean over queries i >= 1 of A[i, 0]
    mean_distance: float  # mean over all queries of Σ_j A[i, j]·|i - j|

    def to_dict(self) -> dict:
        return {"previous_token": self.previous_token, "self": self.self,
                "first_token": self.first_token, "mean_distance": self.mean_distance}


def head_scores(weights: np.ndarray) -> HeadScores:
    """Pattern scores of one head. Query 0 is left out of the first three (in a causal head
    it can only attend to itself, which says nothing about the head); with one token, the
    scores use query 0."""
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
    )


def normalised_entropy(weights: np.ndarray, causal: bool) -> float:
    """Mean over queries with two or more keys of H(row) / ln(number of keys); 1 is uniform."""
    T = weights.shape[0]
    n_keys = allowed(T, causal).sum(axis=1)
    rows = n_keys > 1
    if not rows.any():
        return 0.0
    return float((entropy(weights)[rows] / np.log(n_keys[rows])).mean())


def label(weights: np.ndarray, causal: bool, scores: HeadScores | None = None) -> str | None:
    """'previous-token', 'self', 'first-token', 'local', 'diffuse' or None (no clear pattern)."""
    s = scores or head_scores(weights)
    named = {"previous-token": s.previous_token, "self": s.self, "first-token": s.first_token}
    best = max(named, key=named.get)
    if weights.shape[0] > 1 and named[best] >= LABEL_THRESHOLD:
        return best
    if weights.shape[0] >= 4 and s.mean_distance <= LOCAL_DISTANCE:
        return "local"
    if normalised_entropy(weights, causal) >= DIFFUSE_ENTROPY:
        return "diffuse"
    return None


@dataclass(frozen=True)
class Strongest:
    query: int
    key: int
    weight: float

    def to_dict(self) -> dict:
        return {"query": self.query, "key": self.key, "weight": self.weight}


def strongest(weights: np.ndarray, causal: bool) -> Strongest:
    """The largest weight among queries that have a choice (a causal head's query 0 has none)."""
    T = weights.shape[0]
    w = np.where(allowed(T, causal), weights, -1.0)
    if causal and T > 1:
        w = w[1:]
        offset = 1
    else:
        offset = 0
    q, k = np.unravel_index(int(np.argmax(w)), w.shape)
    return Strongest(int(q) + offset, int(k), float(weights[q + offset, k]))
