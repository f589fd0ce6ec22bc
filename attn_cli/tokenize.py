"""Text to tokens: one `Tokenizer` interface over tiktoken encodings and checkpoint tokenizers.

The rank files of o200k_base, cl100k_base and r50k_base (which gpt2 shares) ship inside the
package, gzipped, and are checked against the sha256 that tiktoken itself pins, so `attn`
tokenizes with no network. Any other tiktoken encoding goes through tiktoken's cache and
download, and fails with a clear error when that cannot work. Tokenization is tiktoken's own;
only the loading is ours (a faster parse of the same rank file).

`get_tokenizer(name)` wraps a tiktoken encoding in the `Tokenizer` interface; a checkpoint's
own tokenizer (tokenizer.json, or vocab.json + merges.txt) comes from `hf_tokenizer.load`
behind the same interface, special tokens (BOS, [CLS]/[SEP], <s>/</s>) included. `tokenize`
and `from_ids` take either a `Tokenizer` or a bare `tiktoken.Encoding` (the older API).

This module never imports torch.
"""

from __future__ import annotations

import binascii
import gzip
import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

import tiktoken

from attn_cli.errors import EncodingError

ENDOFTEXT = "<|endoftext|>"
ENDOFPROMPT = "<|endofprompt|>"

# Pattern strings as tiktoken_ext/openai_public.py defines them (tiktoken 0.7 - 0.14).
R50K_PAT = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
CL100K_PAT = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
O200K_PAT = "|".join([
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""",
    r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
    r"""\s*[\r\n]+""",
    r"""\s+(?!\S)""",
    r"""\s+""",
])


@dataclass(frozen=True)
class _Bundled:
    file: str
    sha256: str
    pat_str: str
    special_tokens: dict


BUNDLED: dict[str, _Bundled] = {
    "o200k_base": _Bundled(
        "o200k_base.tiktoken.gz",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        O200K_PAT,
        {ENDOFTEXT: 199999, ENDOFPROMPT: 200018},
    ),
    "cl100k_base": _Bundled(
        "cl100k_base.tiktoken.gz",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        CL100K_PAT,
        {ENDOFTEXT: 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259,
         "<|fim_suffix|>": 100260, ENDOFPROMPT: 100276},
    ),
    "r50k_base": _Bundled(
        "r50k_base.tiktoken.gz",
        "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930",
        R50K_PAT,
        {ENDOFTEXT: 50256},
    ),
}
BUNDLED["gpt2"] = BUNDLED["r50k_base"]  # same ranks, same pattern, same special token

# Where tiktoken downloads the encodings we do not bundle (for `attn encodings`).
_REMOTE = {
    "p50k_base": "https://openaipublic.blob.core.windows.net/encodings/p50k_base.tiktoken",
    "p50k_edit": "https://openaipublic.blob.core.windows.net/encodings/p50k_base.tiktoken",
    "o200k_harmony": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
}


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


def _parse_ranks(contents: bytes) -> dict[bytes, int]:
    """The same result as tiktoken.load.load_tiktoken_bpe, about twice as fast."""
    fields = contents.split()
    return dict(zip(map(binascii.a2b_base64, fields[0::2]), map(int, fields[1::2])))


def _bundled_ranks(spec: _Bundled) -> dict[bytes, int]:
    packed = resources.files("attn_cli").joinpath("encodings", spec.file).read_bytes()
    contents = gzip.decompress(packed)
    if hashlib.sha256(contents).hexdigest() != spec.sha256:
        raise EncodingError(
            f"the bundled rank file {spec.file} is corrupt (sha256 mismatch): reinstall attn"
        )
    return _parse_ranks(contents)


def known_encodings() -> list[str]:
    return sorted(set(tiktoken.list_encoding_names()) | set(BUNDLED))


@lru_cache(maxsize=None)
def get_encoding(name: str) -> tiktoken.Encoding:
    if name in BUNDLED:
        spec = BUNDLED[name]
        return tiktoken.Encoding(
            name=name,
            pat_str=spec.pat_str,
            mergeable_ranks=_bundled_ranks(spec),
            special_tokens=spec.special_tokens,
        )
    if name not in known_encodings():
        raise EncodingError(
            f"unknown encoding {name!r}: choose one of {', '.join(known_encodings())}"
        )
    try:
        return tiktoken.get_encoding(name)
    except Exception as exc:  # tiktoken raises requests' errors, ValueError, OSError...
        raise EncodingError(
            f"encoding {name!r} is not bundled and could not be fetched "
            f"({type(exc).__name__}); use one that works offline "
            f"({', '.join(sorted(BUNDLED))}) or connect once so tiktoken can cache it"
        ) from None


@lru_cache(maxsize=None)
def get_tokenizer(name: str) -> Tokenizer:
    """The tiktoken encoding `name` behind the Tokenizer interface (cached, like get_encoding)."""
    return TiktokenTokenizer(get_encoding(name))


def encoding_from_files(vocab_json: Path, merges_txt: Path) -> tiktoken.Encoding:
    """The gpt2 encoding built from a checkpoint's own vocab.json and merges.txt.

    The files are read here, byte for byte, every call: nothing goes through tiktoken's file
    loaders or its shared cache (whose key is the path as typed, so a second folder with the
    same relative path, or an edited merges.txt, would get the first file's ranks back).
    `hf_tokenizer.load(folder)` is the full reader (tokenizer.json, specials, templates).
    """
    from attn_cli import hf_tokenizer

    ranks = hf_tokenizer.gpt2_ranks(vocab_json, merges_txt)
    return tiktoken.Encoding(
        name="gpt2", pat_str=R50K_PAT, mergeable_ranks=ranks, special_tokens={ENDOFTEXT: len(ranks)}
    )


def availability(name: str) -> str:
    """'bundled', 'cached' (in tiktoken's download cache) or 'needs network'."""
    if name in BUNDLED:
        return "bundled"
    url = _REMOTE.get(name)
    if url is None:
        return "needs network"
    cache_dir = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
    if cache_dir is None:
        import tempfile

        cache_dir = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    key = hashlib.sha1(url.encode()).hexdigest()
    return "cached" if os.path.exists(os.path.join(cache_dir, key)) else "needs network"


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
