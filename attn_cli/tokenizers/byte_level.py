"""Byte-level BPE (GPT-2, GPT-Neo, Pythia/GPT-NeoX, Llama 3, Qwen2, RoBERTa, BART) in tiktoken:
tokenizer.json's ranks, split pattern, NFC normaliser, added tokens and template around
tiktoken's merging. What tiktoken cannot express raises `_Unsupported` for the library path.

This module never imports torch.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Callable, Sequence

import regex
import tiktoken

from attn_cli.errors import EncodingError
from attn_cli.tokenizers.base import Token, Tokenizer
from attn_cli.tokenizers.hf_files import AddedToken, _Config, _named_ids, _template, _types
from attn_cli.tokenizers.ranks import _Unsupported, _ranks, _unbyte_many


# HF's ByteLevel pre-tokenizer pattern (tokenizers/src/pre_tokenizers/byte_level.rs): GPT-2's.
BYTE_LEVEL_PAT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def _byte_level(spec: dict, config: _Config, source: str, fast: tiktoken.Encoding | None,
                folder: Path) -> Tokenizer:
    model = spec["model"]
    model_type = model.get("type") or ("BPE" if "merges" in model else "")
    if model_type != "BPE":
        raise _Unsupported(model_type or "an untyped model")
    pattern, prefix_space = _pattern(spec.get("pre_tokenizer"))
    nfc = _nfc(spec.get("normalizer"))
    if model.get("dropout") not in (None, 0, 0.0):
        raise _Unsupported("byte-level BPE with dropout", "BPE dropout is random")
    if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        raise _Unsupported("byte-level BPE with subword affixes")
    vocab = model.get("vocab")
    if not isinstance(vocab, dict):
        raise EncodingError(f"{folder / 'tokenizer.json'} has no BPE vocabulary: download or "
                            f"save the tokenizer again")
    path = folder / ("tokenizer.json" if source == "tokenizer.json" else "merges.txt")
    try:
        added = [AddedToken.from_json(entry) for entry in spec.get("added_tokens") or []]
    except (KeyError, TypeError, ValueError):
        raise EncodingError(f"{path} has a malformed added token: download or save the "
                            f"tokenizer again") from None
    by_id = {token.id: token for token in added}
    written = dict(zip(vocab, _unbyte_many(list(vocab))))
    id_bytes: dict[int, bytes] = {}
    for token, raw in written.items():
        id = vocab[token]
        if raw is not None:
            id_bytes[id] = raw
        elif id not in by_id:
            raise _Unsupported("BPE", f"vocabulary entry {token!r} is not byte-level")
    for token in added:
        id_bytes[token.id] = token.content.encode("utf-8")
    try:
        prefix, suffix, template_ids = _template(spec.get("post_processor"))
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        raise EncodingError(f"{path} has a malformed post_processor: download or save the "
                            f"tokenizer again") from None

    if fast is not None:
        encoding, rank_to_id, name = fast, None, "gpt2"
    else:
        ranks, rank_to_id = _ranks(vocab, _merge_pairs(model.get("merges"), path),
                                   bool(model.get("ignore_merges")), path, written)
        try:
            encoding = tiktoken.Encoding(name=source, pat_str=pattern, mergeable_ranks=ranks,
                                         special_tokens={})
        except ValueError as exc:  # a split pattern fancy-regex cannot compile
            raise _Unsupported("byte-level BPE", f"its split pattern: {exc}") from None
        name = f"{source} (byte-level BPE)"
    return ByteLevelBPE(name, encoding, rank_to_id, id_bytes, added, nfc, prefix_space,
                        prefix, suffix, template_ids, _named_ids(spec, config))


def _merge_pairs(merges, path: Path) -> list[tuple[str, str]]:
    """tokenizer.json writes merges as "a b" (older) or ["a", "b"] (tokenizers ≥ 0.20)."""
    if not isinstance(merges, list):
        raise EncodingError(f"{path} has no list of merges: download or save the tokenizer again")
    try:
        if merges and isinstance(merges[0], str):
            pairs = [tuple(merge.split(" ")) for merge in merges]
        else:
            pairs = [tuple(merge) for merge in merges]
        if not all(len(pair) == 2 and type(pair[0]) is str and type(pair[1]) is str
                   and pair[0] and pair[1] for pair in pairs):
            raise ValueError
    except (AttributeError, TypeError, ValueError):
        bad = next((n for n, m in enumerate(merges) if not _is_pair(m)), 0)
        raise EncodingError(f"{path} merge {bad} is not a pair of tokens: {merges[bad]!r}; "
                            f"download or save the tokenizer again") from None
    return pairs


def _is_pair(merge) -> bool:
    if isinstance(merge, str):
        merge = merge.split(" ")
    return (isinstance(merge, list) and len(merge) == 2
            and all(isinstance(part, str) and part for part in merge))


def _pattern(pre) -> tuple[str, bool]:
    """tiktoken's split pattern and add_prefix_space, from the pre-tokenizer."""
    if not isinstance(pre, dict):
        raise _Unsupported("BPE without a byte-level pre-tokenizer")
    steps = pre.get("pretokenizers") if pre.get("type") == "Sequence" else [pre]
    steps = [step if isinstance(step, dict) else {} for step in steps or []]
    types = [step.get("type") for step in steps]
    if types == ["ByteLevel"] and steps[0].get("use_regex", True):
        return BYTE_LEVEL_PAT, bool(steps[0].get("add_prefix_space", True))
    if types == ["Split", "ByteLevel"]:
        split, byte_level = steps
        if (byte_level.get("use_regex", True) or byte_level.get("add_prefix_space", True)
                or split.get("behavior") != "Isolated" or split.get("invert")):
            raise _Unsupported("byte-level BPE", "its Split / ByteLevel options")
        pattern = split.get("pattern") or {}
        if "Regex" in pattern:
            return _covering(str(pattern["Regex"])), False
        if "String" in pattern:
            return _covering(regex.escape(str(pattern["String"]))), False
    if "ByteLevel" in types:
        raise _Unsupported("byte-level BPE", f"its pre-tokenizer {' + '.join(map(str, types))}")
    raise _Unsupported(" + ".join(map(str, types)) or "BPE")


def _covering(pattern: str) -> str:
    """HF's Split (Isolated) keeps the text between matches as pieces; tiktoken encodes only the
    matches. So the pattern gets one more alternative: a run of text where it does not match."""
    if _has_anchor(pattern):  # Oniguruma's ^ and $ are per line; fancy-regex's are not
        raise _Unsupported("byte-level BPE", "a split pattern with ^ or $")
    try:
        if regex.compile(pattern).fullmatch(""):
            raise _Unsupported("byte-level BPE", "a split pattern that matches the empty string")
    except regex.error:
        pass  # tiktoken's compiler decides
    return f"(?:{pattern})|(?:(?!(?:{pattern}))[\\s\\S])+"


def _has_anchor(pattern: str) -> bool:
    """Whether `pattern` has ^ or $ outside a character class (and not escaped)."""
    depth, i = 0, 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "[":
            depth += 1
            if pattern.startswith("^", i + 1):
                i += 1  # [^…] negates; it is no anchor
        elif ch == "]" and depth:
            depth -= 1
        elif ch in "^$" and not depth:
            return True
        i += 1
    return False


def _nfc(normalizer) -> bool:
    if normalizer is None:
        return False
    types = _types(normalizer)
    steps = [t for t in types if t != "Sequence"]
    if all(t == "NFC" for t in steps):
        return bool(steps)
    raise _Unsupported("BPE with a " + " + ".join(steps) + " normaliser")


_WORD = r"[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]"  # Rust regex's Unicode \w


_ENDS_WITH_WORD = regex.compile(_WORD + r"\Z")


_STARTS_WITH_WORD = regex.compile(_WORD)


_SPACES_AT_END = regex.compile(r"\p{White_Space}*\Z")


_SPACES_AT_START = regex.compile(r"\p{White_Space}*")


class _AddedMatcher:
    """HF's AddedVocabulary: finds added tokens in text, leftmost-longest, with their options."""

    def __init__(self, tokens: list[AddedToken], normalize: Callable[[str], str] | None):
        self.by_content: dict[str, AddedToken] = {}
        for token in tokens:
            content = normalize(token.content) if normalize else token.content
            if content:
                self.by_content.setdefault(content, token)
        alternatives = sorted(self.by_content, key=len, reverse=True)  # longest first
        self.pattern = regex.compile("|".join(map(regex.escape, alternatives))) \
            if alternatives else None
        self.all_special = all(token.special for token in self.by_content.values())

    def split(self, text: str, allow_special: bool) -> list[tuple[str, AddedToken | None]]:
        if self.pattern is None or (self.all_special and not allow_special):
            return [(text, None)] if text else []  # every match would be passed over
        out, offset = [], 0
        for match in self.pattern.finditer(text):
            token = self.by_content[match.group()]
            if token.special and not allow_special:
                continue  # special-token text is ordinary text
            start, stop = match.span()
            if token.single_word and (
                    (start > 0 and _ENDS_WITH_WORD.search(text, 0, start))
                    or (stop < len(text) and _STARTS_WITH_WORD.match(text, stop))):
                continue
            if token.lstrip:
                start = max(_SPACES_AT_END.search(text, 0, start).start(), offset)
            if token.rstrip:
                stop = _SPACES_AT_START.match(text, stop).end()
            if offset < start:
                out.append((text[offset:start], None))
            out.append((text[start:stop], token))
            offset = stop
        if offset < len(text):
            out.append((text[offset:], None))
        return out


def _to_nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


class ByteLevelBPE(Tokenizer):
    """A checkpoint's byte-level BPE: HF's pipeline around tiktoken's merging.

    added tokens (not normalised) -> NFC -> added tokens (normalised) -> prefix space ->
    split pattern + BPE (tiktoken) -> ids -> the post-processor's template.
    """

    def __init__(self, name: str, encoding: tiktoken.Encoding, rank_to_id: list[int] | None,
                 id_bytes: dict[int, bytes], added: list[AddedToken], nfc: bool,
                 prefix_space: bool, before: list[int], after: list[int],
                 template_ids: frozenset[int], named: tuple):
        self.name = name
        self._encoding = encoding
        self._rank_to_id = rank_to_id
        self._bytes = id_bytes
        self._nfc = _to_nfc if nfc else None
        self._raw = _AddedMatcher([t for t in added if not t.normalized], None)
        self._normalized = _AddedMatcher([t for t in added if t.normalized], self._nfc)
        self._prefix_space = prefix_space
        self._before, self._after = before, after
        self.special_ids = frozenset(t.id for t in added if t.special) | template_ids
        self.n_vocab = max(id_bytes) + 1
        self.bos_id, self.eos_id, self.pad_id = named
        self._ordinary = None

    def encode(self, text: str, allow_special: bool = False) -> list[Token]:
        ids = list(self._before)
        for piece, token in self._raw.split(text, allow_special):
            if token is not None:
                ids.append(token.id)
                continue
            if self._nfc is not None:
                piece = self._nfc(piece)
            for part, added in self._normalized.split(piece, allow_special):
                if added is not None:
                    ids.append(added.id)
                    continue
                if self._prefix_space and not part.startswith(" "):
                    part = " " + part
                ranks = self._encoding.encode_ordinary(part)
                ids.extend(ranks if self._rank_to_id is None
                           else [self._rank_to_id[r] for r in ranks])
        ids.extend(self._after)
        return self.tokens(ids)

    def token_bytes(self, id: int) -> bytes:
        try:
            return self._bytes[id]
        except KeyError:
            raise EncodingError(f"token id {id} is not in the vocabulary of {self.name}") from None

    def ordinary_ids(self) -> Sequence[int]:
        if self._ordinary is None:
            self._ordinary = sorted(set(self._bytes) - self.special_ids)
        return self._ordinary
