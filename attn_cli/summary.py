"""Per-head summaries of a Capture: scores, pattern labels, rankings, layer means, --reduce,
and the head-by-head differences of two captures (`attn compare`). What analysis.py computes,
gathered per head for the views and the documents alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from attn_cli import analysis
from attn_cli.capture import Capture, HeadCapture


@dataclass(frozen=True)
class HeadSummary:
    head: HeadCapture
    mean_entropy: float
    strongest: analysis.Strongest
    scores: analysis.HeadScores
    pattern: str | None


PATTERN_SCORES = {"previous-token": "previous_token", "self": "self",
                  "first-token": "first_token", "duplicate-token": "duplicate_token",
                  "induction": "induction"}


def summarise(cap: Capture, layer: int | None = None) -> list[HeadSummary]:
    out = []
    for h in cap.heads:
        if layer is not None and h.layer != layer:
            continue
        scores = analysis.head_scores(h.weights, [t.id for t in cap.tokens])
        out.append(HeadSummary(
            head=h,
            mean_entropy=float(analysis.entropy(h.weights).mean()),
            strongest=analysis.strongest(h.weights, cap.config.causal, cap.window(h.layer)),
            scores=scores,
            pattern=analysis.label(h.weights, cap.config.causal, scores, cap.window(h.layer)),
        ))
    return out


def ranking(cap: Capture, pattern: str) -> list[tuple[int, int, float | None]]:
    """(layer, head, score) of every captured head, best first; None scores last."""
    key = PATTERN_SCORES[pattern]
    return best_first([(s.head.layer, s.head.head, s.scores.to_dict()[key])
                       for s in summarise(cap)])


def best_first(rows: list[tuple[int, int, float | None]]) -> list[tuple[int, int, float | None]]:
    """(layer, head, score) rows, highest score first, equal scores in (layer, head) order,
    heads that cannot be scored (None) last."""
    return sorted(rows, key=lambda r: (r[2] is None, -(r[2] or 0.0), r[0], r[1]))


def layer_means(cap: Capture) -> list[np.ndarray]:
    layers = sorted({h.layer for h in cap.heads})
    return [analysis.reduce_heads([h.weights for h in cap.heads if h.layer == la], "mean")
            for la in layers]


def reduced_captures(cap: Capture, how: str, whole_model: bool) -> list[HeadCapture]:
    """--reduce: one matrix per layer (head = -1), or one for the whole model (both -1)."""
    if whole_model:
        return [HeadCapture(-1, -1, analysis.reduce_heads([h.weights for h in cap.heads], how),
                            reduced=how)]
    layers = sorted({h.layer for h in cap.heads})
    return [HeadCapture(la, -1, analysis.reduce_heads(
        [h.weights for h in cap.heads if h.layer == la], how), reduced=how) for la in layers]


@dataclass(frozen=True)
class Side:
    """One side of `attn compare`: its name, the options that made it, its capture."""

    name: str
    options: str
    cap: Capture

    @property
    def masked(self) -> np.ndarray:
        return ~analysis.allowed(len(self.cap.tokens), self.cap.config.causal)


@dataclass(frozen=True)
class HeadDiff:
    a: HeadCapture
    b: HeadCapture
    rows: np.ndarray  # (T,) float64: total variation distance of each query's row

    @property
    def mean(self) -> float:
        return float(self.rows.mean())

    @property
    def worst_query(self) -> int:
        return int(np.argmax(self.rows))


def head_diffs(a: Capture, b: Capture) -> list[HeadDiff]:
    """Every (layer, head) that both captures hold, in order, with its per-row distance."""
    b_heads = {(h.layer, h.head): h for h in b.heads}
    return [HeadDiff(h, b_heads[h.layer, h.head],
                     analysis.total_variation(h.weights, b_heads[h.layer, h.head].weights))
            for h in a.heads if (h.layer, h.head) in b_heads]


def most_different(diffs: list[HeadDiff]) -> HeadDiff:
    """The head with the largest mean distance (the first such in (layer, head) order)."""
    return max(diffs, key=lambda d: d.mean)  # max keeps the first of equals


def patterns(side: Side) -> dict[tuple[int, int], str | None]:
    """(layer, head) -> the pattern label of each head of one side of a comparison."""
    return {(s.head.layer, s.head.head): s.pattern for s in summarise(side.cap)}
