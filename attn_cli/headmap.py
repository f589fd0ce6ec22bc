"""The map of every head (its label and pattern scores), and which heads send one token to
another (`--from A --to B`): plain data from a Capture, no printing.

The scores and labels are summary.summarise's, the same ones `attn heads --layer L` prints for
each head, so every figure in the map is one the per-layer table shows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from attn_cli import analysis
from attn_cli.capture import Capture, HeadCapture
from attn_cli.errors import ConfigError
from attn_cli.summary import PATTERN_SCORES, best_first, summarise
from attn_cli.tokenizers.base import Token

# each label's letter on the map; diffuse and no clear pattern are both "·"
LETTERS = {"previous-token": "P", "self": "S", "first-token": "F", "induction": "I",
           "duplicate-token": "D", "local": "L"}
NONE_LETTER = "·"
REPEATS_NEEDED = ("duplicate-token", "induction")  # scored only where a token repeats


@dataclass(frozen=True)
class MapCell:
    """One head on the map: its label (analysis.label) and its pattern scores."""

    layer: int
    head: int
    pattern: str | None  # the label; None when no pattern is clear
    scores: analysis.HeadScores

    @property
    def letter(self) -> str:
        return LETTERS.get(self.pattern, NONE_LETTER)

    def score(self, pattern: str | None = None) -> float | None:
        """The score of `pattern`, or (None) of the head's own label; a head labelled local,
        diffuse or nothing has its best pattern score (how close it comes to a label)."""
        values = self.scores.to_dict()
        if pattern is not None:
            return values[PATTERN_SCORES[pattern]]
        if self.pattern in PATTERN_SCORES:
            return values[PATTERN_SCORES[self.pattern]]
        return max((values[key] for key in PATTERN_SCORES.values()
                    if values[key] is not None), default=None)


def head_map(cap: Capture) -> list[MapCell]:
    """Every captured head's cell, in (layer, head) order."""
    return [MapCell(s.head.layer, s.head.head, s.pattern, s.scores) for s in summarise(cap)]


def rank(cells: list[MapCell], pattern: str) -> list[tuple[int, int, float | None]]:
    """(layer, head, score) of every cell, best first (summary.best_first)."""
    return best_first([(c.layer, c.head, c.score(pattern)) for c in cells])


def best_heads(cells: list[MapCell], k: int) -> dict[str, list[tuple[int, int, float]]]:
    """For each pattern, the k heads with the highest score (scored heads only)."""
    return {p: [r for r in rank(cells, p) if r[2] is not None][:k] for p in PATTERN_SCORES}


def cannot_occur(cap: Capture, pattern: str | None) -> bool:
    """True when `pattern` needs a repeated token and no token of the input repeats."""
    ids = [t.id for t in cap.tokens]
    return pattern in REPEATS_NEEDED and len(set(ids)) == len(ids)


# ---------------------------------------------------------------- --from A --to B

_AT = re.compile(r"^(?P<text>.+?)@(?P<n>[0-9]+)$", re.S)


def _forms(token: Token) -> tuple[str, str]:
    """A token's exact text and its shown text (␣ for a space)."""
    return token.text, token.display


@dataclass(frozen=True)
class Found:
    """The token a --from/--to names, and every token its text matches (in order)."""

    index: int
    matches: tuple[int, ...]


def find_token(tokens: list[Token], spec: str, flag: str) -> Found:
    """The token `spec` names: an index ('8'), a token's text as shown or as it is ('␣it',
    ' it'), or its text without the leading space ('it'); the first match, or TEXT@N for the
    N-th. Exact matches come before those without the space. Raises ConfigError listing the
    tokens when nothing (or no N-th) matches."""
    if spec.strip().isdigit():
        index = int(spec)
        if index < len(tokens):
            return Found(index, (index,))
        raise ConfigError(f"{flag} {spec}: there is no token {index}; {_listing(tokens)}")
    text, nth = spec, 1
    at = _AT.match(spec)
    if at and spec not in {f for t in tokens for f in _forms(t)}:  # 'a@b' may be a token
        text, nth = at["text"], int(at["n"])
    exact = [t.index for t in tokens if text in _forms(t)]
    bare = text.replace("␣", " ").strip()
    seen = set(exact)
    loose = [t.index for t in tokens if t.index not in seen and bare
             and t.text.strip() == bare]
    matches = exact + loose
    if nth < 1 or nth > len(matches):
        found = "no token is" if not matches else \
            f"only {len(matches)} token{'s are' if len(matches) > 1 else ' is'}"
        raise ConfigError(f"{flag} {spec!r}: {found} {text!r}; {_listing(tokens)}")
    return Found(matches[nth - 1], tuple(matches))


def _listing(tokens: list[Token], limit: int = 40) -> str:
    shown = "  ".join(f"{t.index} {t.display}" for t in tokens[:limit])
    more = f"  … ({len(tokens) - limit} more)" if len(tokens) > limit else ""
    return (f"the tokens are: {shown}{more} (a token's text, TEXT@N for its N-th occurrence, "
            f"or an index)")


@dataclass(frozen=True)
class FromTo:
    """Every captured head ranked by the weight query `query` puts on key `key`."""

    query: int
    key: int
    heads: list[tuple[int, int, float]]  # (layer, head, weights[query, key]), best first


def from_to(cap: Capture, query: int, key: int) -> FromTo:
    """Rank the captured heads by weights[query, key]; equal weights in (layer, head) order.
    A key a causal model hides from the query (a later one) is an error: every head would
    give it 0."""
    tokens = cap.tokens
    if cap.config.causal and key > query:
        raise ConfigError(
            f"--to {key} '{tokens[key].display}' comes after --from {query} "
            f"'{tokens[query].display}': this model is causal, so every head masks that key "
            f"for that query (weight 0); ask the other way round (--from {key} --to {query})")
    rows = [(h.layer, h.head, float(h.weights[query, key])) for h in cap.heads]
    rows.sort(key=lambda r: (-r[2], r[0], r[1]))
    return FromTo(query, key, rows)


def masked_layers(cap: Capture, query: int, key: int) -> list[int]:
    """The captured layers whose attention window hides `key` from `query`."""
    layers = sorted({h.layer for h in cap.heads})
    return [la for la in layers if not cap.allowed(la)[query, key]]


def top_heads(cap: Capture, ranked: FromTo, n: int) -> list[tuple[HeadCapture, np.ndarray]]:
    """The first n heads of the ranking with their row for the query (weights over keys)."""
    out = []
    for layer, head, _ in ranked.heads[:n]:
        h = cap.head(layer, head)
        out.append((h, h.weights[ranked.query]))
    return out
