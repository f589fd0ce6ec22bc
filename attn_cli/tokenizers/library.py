"""Every tokenizer tiktoken cannot run (WordPiece, Unigram and Metaspace BPE, other
normalisers and pre-tokenizers), read with the `tokenizers` library: the optional extra
`attn-cli[hf]`. Without it, one line says so.

This module never imports torch; `tokenizers` only when a checkpoint needs it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import regex

from attn_cli.errors import EncodingError
from attn_cli.tokenizers.base import Token, Tokenizer
from attn_cli.tokenizers.hf_files import _Config, _named_ids, _steps, _template, _types
from attn_cli.tokenizers.ranks import _Unsupported, _merges_txt, _unbyte


EXTRA = "pip install 'attn-cli[hf]' (installed with pipx: pipx inject attn-cli tokenizers)"


def _library(spec: dict, config: _Config, source: str, why: _Unsupported,
             folder: Path) -> Tokenizer:
    kind = why.kind
    if why.why:
        kind = f"{why.kind} that tiktoken cannot run: {why.why}"
    elif spec["model"].get("type") == "Unigram":
        kind = "Unigram (SentencePiece)"
    elif "Metaspace" in _types(spec.get("pre_tokenizer")) or spec["model"].get("byte_fallback"):
        kind = "SentencePiece BPE"
    try:
        import tokenizers
    except ImportError:
        raise EncodingError(
            f"the tokenizer in {folder} ({kind}) needs the optional extra: {EXTRA}"
        ) from None
    model = spec["model"]
    if source != "tokenizer.json":  # merges as "a b", which every version of the library reads
        merges = model.get("merges") or _merges_txt(folder / "merges.txt")
        model["merges"] = [f"{a} {b}" for a, b in merges]
    try:
        backend = tokenizers.Tokenizer.from_str(json.dumps(spec))
    except Exception as exc:  # the library's own parse errors
        detail = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise EncodingError(
            f"the tokenizers library could not read {folder / source.split(' ')[0]} "
            f"({detail}): download or save the tokenizer again"
        ) from None
    name = f"{source} ({spec['model'].get('type') or 'tokenizers'})"
    return LibraryTokenizer(name, backend, spec, _named_ids(spec, config))


_BYTE_TOKEN = regex.compile(r"<0x([0-9A-Fa-f]{2})>")


class LibraryTokenizer(Tokenizer):
    """A tokenizer the `tokenizers` library runs (WordPiece, SentencePiece, …)."""

    def __init__(self, name: str, backend, spec: dict, named: tuple):
        self.name = name
        self._backend = backend
        vocab = backend.get_vocab(with_added_tokens=True)
        added = backend.get_added_tokens_decoder()
        self._added = {id: token.content.encode("utf-8") for id, token in added.items()}
        try:
            template = _template(spec.get("post_processor"))[2]
        except (_Unsupported, KeyError, TypeError, ValueError):
            template = frozenset()
        self.special_ids = frozenset(id for id, token in added.items() if token.special) | template
        self.n_vocab = max(vocab.values()) + 1
        self.bos_id, self.eos_id, self.pad_id = named
        self._all_ids = sorted(set(vocab.values()))
        self._ordinary = None
        types = _types(spec.get("pre_tokenizer")) + _types(spec.get("decoder"))
        self._byte_level = "ByteLevel" in types
        self._metaspace = "Metaspace" in types or any(
            step.get("type") == "Replace" and "▁" in json.dumps(step)
            for step in _steps(spec.get("normalizer")) + _steps(spec.get("decoder")))
        self._cache: dict[int, bytes] = {}

    def encode(self, text: str, allow_special: bool = False) -> list[Token]:
        self._backend.encode_special_tokens = not allow_special
        encoded = self._backend.encode(text, add_special_tokens=True)
        special = self.special_ids
        return [Token(i, t, self.token_bytes(t), bool(mask) or t in special)
                for i, (t, mask) in enumerate(zip(encoded.ids, encoded.special_tokens_mask))]

    def token_bytes(self, id: int) -> bytes:
        raw = self._cache.get(id)
        if raw is None:
            raw = self._cache[id] = self._bytes(id)
        return raw

    def _bytes(self, id: int) -> bytes:
        if id in self._added:
            return self._added[id]
        piece = self._backend.id_to_token(id)
        if piece is None:
            raise EncodingError(f"token id {id} is not in the vocabulary of {self.name}")
        if self._byte_level:
            try:
                return _unbyte(piece)
            except UnicodeEncodeError:
                pass
        if self._metaspace:
            byte = _BYTE_TOKEN.fullmatch(piece)
            if byte:
                return bytes([int(byte.group(1), 16)])
            piece = piece.replace("▁", " ")
        return piece.encode("utf-8")

    def ordinary_ids(self) -> Sequence[int]:
        if self._ordinary is None:
            self._ordinary = [id for id in self._all_ids if id not in self.special_ids]
        return self._ordinary
