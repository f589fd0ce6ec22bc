"""tiktoken's encodings, bundled: the rank files of o200k_base, cl100k_base and r50k_base (which
gpt2 shares) ship inside the package, gzipped, and are checked against the sha256 that tiktoken
itself pins, so `attn` tokenizes with no network. Any other tiktoken encoding goes through
tiktoken's cache and download, and fails with a clear error when that cannot work. Tokenization
is tiktoken's own; only the loading is ours (a faster parse of the same rank file).

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

import tiktoken

from attn_cli.errors import EncodingError
from attn_cli.tokenizers.base import ENDOFPROMPT, ENDOFTEXT, TiktokenTokenizer, Tokenizer


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
    `tokenizers.hf.load(folder)` is the full reader (tokenizer.json, specials, templates).
    """
    from attn_cli.tokenizers.ranks import gpt2_ranks

    ranks = gpt2_ranks(vocab_json, merges_txt)
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
