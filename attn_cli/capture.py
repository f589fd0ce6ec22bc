"""One forward pass -> a `Capture` of plain data (NumPy arrays), ready for analysis and rendering.

This is where the text, the tokenizer and the model meet, and where the view's choice of
layers and heads becomes the model's `keep`: heads that were not asked for are never copied
out of the forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from attn_cli.models.config import ModelConfig
from attn_cli.errors import ConfigError, InputError
from attn_cli.tokenize import Token


@dataclass
class HeadCapture:
    layer: int
    head: int
    weights: np.ndarray  # (T, T) float32; rows are queries, columns keys
    stages: dict[str, np.ndarray] = field(default_factory=dict)  # see model.STAGES
    reduced: str | None = None  # "mean" or "max" for an --reduce matrix (head -1)


@dataclass
class Capture:
    text: str
    encoding: str
    tokens: list[Token]
    config: ModelConfig
    heads: list[HeadCapture]  # ordered by (layer, head)
    hidden: list[np.ndarray]  # residual stream after each block, (T, d_model)
    embeddings: np.ndarray  # LN_f(final hidden state), (T, d_model)

    def window(self, layer: int) -> int | None:
        """Layer `layer`'s attention window (None: none; a reduced matrix over layers has none)."""
        return self.config.window(layer) if layer >= 0 else None

    def allowed(self, layer: int):
        """(T, T) bool: the keys each query of this layer sees."""
        from attn_cli.analysis import allowed

        return allowed(len(self.tokens), self.config.causal, self.window(layer))

    def head(self, layer: int, head: int) -> HeadCapture:
        for h in self.heads:
            if (h.layer, h.head) == (layer, head):
                return h
        raise KeyError((layer, head))


def select(config: ModelConfig, layers: list[int] | None, heads: list[int] | None
           ) -> dict[int, tuple[int, ...]]:
    """Validate --layer/--head against the model and return layer -> heads to keep."""
    layers = sorted(set(range(config.n_layers) if not layers else layers))
    heads = sorted(set(range(config.n_heads) if not heads else heads))
    for flag, values, n, what in (("--layer", layers, config.n_layers, "layers"),
                                  ("--head", heads, config.n_heads, "heads")):
        bad = [v for v in values if not 0 <= v < n]
        if bad:
            span = "0" if n == 1 else f"0-{n - 1}"
            raise ConfigError(f"{flag} {bad[0]} is out of range: this model has {what} {span}")
    return {layer: tuple(heads) for layer in layers}


def run(model, text: str, encoding: str, tokens: list[Token],
        keep: dict[int, tuple[int, ...]], stages: bool = False) -> Capture:
    """Run the model once on the tokens and copy out what `keep` names."""
    if not tokens:
        raise InputError("the text produced no tokens")
    cfg = model.cfg
    if cfg.n_positions is not None and len(tokens) > cfg.n_positions:
        raise InputError(
            f"the input has {len(tokens)} tokens but this model has only {cfg.n_positions} "
            f"positions: shorten the text or pass --truncate"
        )
    from attn_cli import budget

    budget.check_run(cfg, len(tokens), sum(len(h) for h in keep.values()), stages)
    fwd = model([t.id for t in tokens], keep=keep, keep_stages=stages)

    def np32(t) -> np.ndarray:
        return t.detach().float().cpu().numpy()

    heads = []
    for (layer, head), tensors in sorted(fwd.heads.items()):
        arrays = {name: np32(t) for name, t in tensors.items()}
        weights = arrays.pop("weights")
        heads.append(HeadCapture(layer, head, weights, arrays if stages else {}))
    return Capture(
        text=text,
        encoding=encoding,
        tokens=tokens,
        config=cfg,
        heads=heads,
        hidden=[np32(h) for h in fwd.hidden],
        embeddings=np32(fwd.embeddings),
    )
