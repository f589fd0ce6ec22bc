"""The one `Tokenizer` interface, the `Token` it yields, and text -> tokens with either.

`tokenize` and `from_ids` take a `Tokenizer` or a bare `tiktoken.Encoding` (the older API);
`visible` is how a token's bytes are shown. This module never imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import tiktoken

from attn_cli.errors import EncodingError


ENDOFTEXT = "<|endoftext|>"


ENDOFPROMPT = "<|endofprompt|>"


@dataclass(frozen=True)
class Token:
    index: int
    id: int
    raw: bytes
    special: bool = False  # a special token (BOS, [CLS], <|endoftext|> under --allow-special…)

    @property
    def text(self) -> str:
        """The token's text; bytes that are not whole UTF-8 characters become U+FFFD."""
        return self.raw.decode("utf-8", errors="replace")

    @property
    def display(self) -> str:
        return visible(self.raw)

    def to_dict(self) -> dict:
        doc = {"index": self.index, "id": self.id, "text": self.text, "bytes": self.raw.hex()}
        if self.special:
            doc["special"] = True
        return doc


class Tokenizer:
    """What every command needs from a tokenizer, whatever reads it.

    `encode` returns the tokens a model sees, the special tokens its post-processor adds (BOS,
    [CLS] … [SEP], <s> … </s>) included and marked `special`. Special-token text in the input
    is ordinary text unless `allow_special`. Subclasses set the attributes and implement
    `encode`, `token_bytes` and `ordinary_ids`.
    """

    name: str                       # what the header shows as the encoding
    n_vocab: int                    # the number of ids: the largest id + 1
    special_ids: frozenset = frozenset()
    bos_id: int | None = None
    eos_id: int | None = None
    pad_id: int | None = None

    def encode(self, text: str, allow_special: bool = False) -> list[Token]:
        raise NotImplementedError

    def token_bytes(self, id: int) -> bytes:
        raise NotImplementedError

    def ordinary_ids(self) -> Sequence[int]:
        """Every id that is not a special token, ascending (for random probe tokens)."""
        raise NotImplementedError

    @property
    def max_token_value(self) -> int:
        return self.n_vocab - 1

    def decode(self, ids: Iterable[int]) -> str:
        """The text of these ids; bytes that are not whole UTF-8 characters become U+FFFD."""
        return b"".join(self.token_bytes(i) for i in ids).decode("utf-8", errors="replace")

    def tokens(self, ids: Iterable[int]) -> list[Token]:
        special = self.special_ids
        return [Token(i, t, self.token_bytes(t), t in special) for i, t in enumerate(ids)]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}, {self.n_vocab} ids>"


class TiktokenTokenizer(Tokenizer):
    """A tiktoken encoding behind the Tokenizer interface: no BOS, tiktoken's ids unchanged."""

    def __init__(self, encoding: tiktoken.Encoding):
        self.encoding = encoding
        self.name = encoding.name
        self.n_vocab = encoding.n_vocab
        specials = encoding._special_tokens
        self.special_ids = frozenset(specials.values())
        self.eos_id = specials.get(ENDOFTEXT)
        self._ordinary = None

    def encode(self, text: str, allow_special: bool = False) -> list[Token]:
        return tokenize(text, self.encoding, allow_special)

    def token_bytes(self, id: int) -> bytes:
        try:
            return self.encoding.decode_single_token_bytes(id)
        except KeyError:
            raise EncodingError(f"token id {id} is not in the {self.name} encoding") from None

    def ordinary_ids(self) -> Sequence[int]:
        if self._ordinary is None:
            self._ordinary = sorted(self.encoding._mergeable_ranks.values())
        return self._ordinary


class VocabTokenizer(Tokenizer):
    """A tiktoken encoding cut down to a small vocabulary: what `attn train` models use.

    Id r is row r of the model's embedding table: row 0 is `<unk>`, rows 1 … n−1 are the
    encoding's tokens `vocab[r]`. Text is split by the encoding as usual; a token the model
    never saw keeps its text but reads as `<unk>` (`unknown` counts them, so the CLI can say).
    """

    UNKNOWN = b"<unk>"

    def __init__(self, encoding: tiktoken.Encoding, vocab: Sequence[int]):
        self.encoding = encoding
        self.vocab = list(vocab)  # row -> encoding id, for rows 1 … n−1
        self.rows = {token: row for row, token in enumerate(self.vocab, start=1)}
        self.name = f"{encoding.name}, {len(self.vocab)} of its tokens"
        self.n_vocab = len(self.vocab) + 1
        self.unknown_id = 0
        self.special_ids = frozenset({0})

    def encode(self, text: str, allow_special: bool = False) -> list[Token]:
        pieces = tokenize(text, self.encoding, allow_special)
        return [Token(t.index, self.rows.get(t.id, 0), t.raw, False) for t in pieces]

    def token_bytes(self, id: int) -> bytes:
        if id == 0:
            return self.UNKNOWN
        if not 0 < id < self.n_vocab:
            raise EncodingError(f"token id {id} is not in this model's vocabulary of "
                                f"{self.n_vocab} tokens")
        return self.encoding.decode_single_token_bytes(self.vocab[id - 1])

    def ordinary_ids(self) -> Sequence[int]:
        return range(1, self.n_vocab)

    def unknown(self, tokens: list[Token]) -> list[Token]:
        """The tokens of `encode`'s output that the model reads as <unk>."""
        return [t for t in tokens if t.id == 0 and t.raw != self.UNKNOWN]


_VISIBLE = {" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍"}


def visible(raw: bytes) -> str:
    """Make whitespace and partial UTF-8 visible: ' cat' -> '␣cat', b'\\xf0\\x9f' -> '<F0><9F>'."""
    out = []
    for ch in raw.decode("utf-8", errors="surrogateescape"):
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that is not (yet) a whole character
            out.append(f"<{code - 0xDC00:02X}>")
        elif ch in _VISIBLE:
            out.append(_VISIBLE[ch])
        elif code < 0x20 or code == 0x7F:
            out.append(f"<{code:02X}>")
        else:
            out.append(ch)
    return "".join(out)


def tokenize(text: str, encoding: tiktoken.Encoding | Tokenizer,
             allow_special: bool = False) -> list[Token]:
    """Text to tokens with a Tokenizer, or with a bare tiktoken encoding (tiktoken's ids)."""
    if isinstance(encoding, Tokenizer):
        return encoding.encode(text, allow_special)
    ids = encoding.encode(text, allowed_special="all") if allow_special \
        else encoding.encode_ordinary(text)
    return from_ids(ids, encoding)


def from_ids(ids: list[int], encoding: tiktoken.Encoding | Tokenizer) -> list[Token]:
    if isinstance(encoding, Tokenizer):
        return encoding.tokens(ids)
    special = frozenset(encoding._special_tokens.values())
    return [Token(i, t, encoding.decode_single_token_bytes(t), t in special)
            for i, t in enumerate(ids)]


def repeated_random(n: int, seed: int, encoding: tiktoken.Encoding | Tokenizer) -> list[Token]:
    """The usual induction-head probe: n random ordinary tokens, then the same n again.

    Only ordinary ids are drawn: never a special token, never a gap in the id space.
    """
    import random

    tokenizer = encoding if isinstance(encoding, Tokenizer) else TiktokenTokenizer(encoding)
    ordinary = tokenizer.ordinary_ids()
    rng = random.Random(seed)  # a local generator: no global state is touched
    ids = [ordinary[rng.randrange(len(ordinary))] for _ in range(n)]
    return tokenizer.tokens(ids + ids)
