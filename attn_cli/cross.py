"""One encoder–decoder forward pass -> a `CrossCapture` of plain data (NumPy arrays).

The three kinds of attention of *Attention Is All You Need*, figure 1:
    encoder   source tokens read source tokens (bidirectional: no mask)
    decoder   target tokens read the target so far (causal: a key after the query is masked)
    cross     target tokens (queries) read the encoder's output (keys and values), no mask
The decoder reads the model's decoder start token first (BART: config.json's
decoder_start_token_id; the seeded model: the encoding's end-of-text token), then the target's
ids as the tokenizer encodes it. Heads that were not asked for are never copied out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from attn_cli.errors import ConfigError, InputError
from attn_cli.models.config import ModelConfig
from attn_cli.tokenizers import Token

KINDS = ("encoder", "decoder", "cross")


@dataclass
class CrossHead:
    kind: str  # "encoder", "decoder" or "cross"
    layer: int
    head: int
    weights: np.ndarray  # (T_q, T_k) float32: rows are queries, columns keys
    stages: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def causal(self) -> bool:
        return self.kind == "decoder"


@dataclass
class CrossCapture:
    source: str
    target: str
    encoding: str
    source_tokens: list[Token]
    target_tokens: list[Token]  # the decoder start token first
    encoder: ModelConfig
    decoder: ModelConfig
    start_id: int
    heads: list[CrossHead]  # ordered by kind (encoder, decoder, cross), layer, head
    encoder_hidden: list[np.ndarray]
    decoder_hidden: list[np.ndarray]
    encoder_embeddings: np.ndarray  # the encoder's output: what cross-attention's K, V read
    decoder_embeddings: np.ndarray  # the decoder's final hidden state

    def config(self, kind: str) -> ModelConfig:
        return self.encoder if kind == "encoder" else self.decoder

    def rows(self, kind: str) -> list[Token]:
        """The query tokens of a kind."""
        return self.source_tokens if kind == "encoder" else self.target_tokens

    def cols(self, kind: str) -> list[Token]:
        """The key tokens of a kind."""
        return self.target_tokens if kind == "decoder" else self.source_tokens

    def masked(self, kind: str) -> np.ndarray:
        """(T_q, T_k) bool: keys a query cannot see (only the decoder's future)."""
        n_q, n_k = len(self.rows(kind)), len(self.cols(kind))
        if kind == "decoder":
            return np.triu(np.ones((n_q, n_k), dtype=bool), k=1)
        return np.zeros((n_q, n_k), dtype=bool)

    def head(self, kind: str, layer: int, head: int) -> CrossHead:
        for h in self.heads:
            if (h.kind, h.layer, h.head) == (kind, layer, head):
                return h
        raise KeyError((kind, layer, head))


def kinds(values: list[str] | None) -> list[str]:
    """--kind (repeatable) in the canonical order; default: all three."""
    if not values:
        return list(KINDS)
    for v in values:
        if v not in KINDS:
            raise ConfigError(f"--kind {v!r} is not a kind of attention: choose encoder, "
                              f"decoder or cross")
    return [k for k in KINDS if k in values]


def select(enc: ModelConfig, dec: ModelConfig, chosen: list[str], layers: list[int] | None,
           heads: list[int] | None) -> dict[str, dict[int, tuple[int, ...]]]:
    """kind -> layer -> heads to keep; --layer/--head checked against the stacks they index."""
    out = {}
    for kind in chosen:
        cfg = enc if kind == "encoder" else dec
        ls = sorted(set(range(cfg.n_layers) if not layers else layers))
        hs = sorted(set(range(cfg.n_heads) if not heads else heads))
        where = "the encoder" if kind == "encoder" else "the decoder"
        for flag, values, n, what in (("--layer", ls, cfg.n_layers, "layers"),
                                      ("--head", hs, cfg.n_heads, "heads")):
            bad = [v for v in values if not 0 <= v < n]
            if bad:
                span = "0" if n == 1 else f"0-{n - 1}"
                raise ConfigError(f"{flag} {bad[0]} is out of range: {where} has {what} {span}")
        out[kind] = {layer: tuple(hs) for layer in ls}
    return out


def start_token(model, encoding) -> int:
    """The decoder start token: the checkpoint's, else the encoding's end-of-text token."""
    if model.start_id is not None:
        return model.start_id
    if encoding.eos_id is None:
        raise ConfigError(f"the encoding {encoding.name} has no end-of-text token to start the "
                          f"decoder with: pick another --encoding")
    return encoding.eos_id


def target_tokens(start: int, tokens: list[Token], encoding) -> list[Token]:
    """The start token, then the target's tokens, renumbered from 0."""
    first = Token(0, start, encoding.token_bytes(start), start in encoding.special_ids)
    return [first] + [Token(i + 1, t.id, t.raw, t.special) for i, t in enumerate(tokens)]


def run(model, source: str, target: str, encoding_name: str, source_tokens: list[Token],
        target_toks: list[Token], keep: dict[str, dict[int, tuple[int, ...]]],
        stages: bool = False) -> CrossCapture:
    """Run encoder and decoder once and copy out what `keep` names."""
    if not source_tokens:
        raise InputError("the source produced no tokens")
    enc, dec = model.encoder.cfg, model.decoder.cfg
    for what, toks, cfg in (("source", source_tokens, enc), ("target", target_toks, dec)):
        if cfg.n_positions is not None and len(toks) > cfg.n_positions:
            raise InputError(f"the {what} has {len(toks)} tokens but this model has only "
                             f"{cfg.n_positions} positions: shorten it or pass --truncate")
    from attn_cli import budget

    n_src, n_tgt = len(source_tokens), len(target_toks)
    count = {k: sum(len(h) for h in keep.get(k, {}).values()) for k in KINDS}
    budget.check_run(enc, n_src, count["encoder"], stages)
    budget.check_run(dec, max(n_tgt, n_src), count["decoder"] + count["cross"], stages)
    fwd = model([t.id for t in source_tokens], [t.id for t in target_toks],
                keep_encoder=keep.get("encoder"), keep_decoder=keep.get("decoder"),
                keep_cross=keep.get("cross"), keep_stages=stages)

    def np32(t) -> np.ndarray:
        return t.detach().float().cpu().numpy()

    heads = []
    for kind, part in (("encoder", fwd.encoder), ("decoder", fwd.decoder),
                       ("cross", fwd.cross)):
        if kind not in keep:
            continue
        for (layer, head), tensors in sorted(part.heads.items()):
            arrays = {name: np32(t) for name, t in tensors.items()}
            weights = arrays.pop("weights")
            heads.append(CrossHead(kind, layer, head, weights, arrays if stages else {}))
    return CrossCapture(
        source=source, target=target, encoding=encoding_name,
        source_tokens=source_tokens, target_tokens=target_toks, encoder=enc, decoder=dec,
        start_id=target_toks[0].id, heads=heads,
        encoder_hidden=[np32(h) for h in fwd.encoder.hidden],
        decoder_hidden=[np32(h) for h in fwd.decoder.hidden],
        encoder_embeddings=np32(fwd.encoder.embeddings),
        decoder_embeddings=np32(fwd.decoder.embeddings))
