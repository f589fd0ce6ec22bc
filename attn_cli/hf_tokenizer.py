"""A Hugging Face checkpoint's own tokenizer, behind `tokenize.Tokenizer` (SPEC §2).

    load(folder) -> Tokenizer

Token ids equal transformers' `AutoTokenizer.from_pretrained(folder)(text)["input_ids"]`, the
special tokens its post-processor adds (BOS, [CLS] … [SEP], <s> … </s>) included and marked
`special`. Special-token text in the input is ordinary text unless `allow_special`
(transformers' `split_special_tokens=True`); added tokens that are not special (GPT-NeoX's
runs of spaces) are always matched, as in transformers.

Two engines, one interface:

* Byte-level BPE (GPT-2, GPT-Neo, Pythia/GPT-NeoX, Llama 3, Qwen2, RoBERTa, BART) runs in
  tiktoken. Only the loading is ours: tokenizer.json (or vocab.json + merges.txt) gives the
  ranks, the pre-tokenizer's split pattern, an NFC normaliser, the added tokens and the
  post-processor's template; tiktoken does every merge.
* What tiktoken cannot express — WordPiece (BERT), Unigram and Metaspace BPE (SentencePiece),
  any normaliser but NFC, other pre-tokenizers, a byte-level BPE whose merges no rank table can
  order — is read with the `tokenizers` library, the optional extra `attn-cli[hf]`. Without it,
  one line says so.

Ranks. HF's BPE merges the adjacent pair that comes first in `merges`; tiktoken merges the
adjacent pair whose concatenation has the lowest rank. So a token's rank is the position of the
merge that makes it (the vocabulary's ids when they follow that order, as a trainer writes
them; otherwise ranks of our own, mapped back to ids, as RoBERTa's reordered vocabulary needs).
A token made by several merges in one run (converters write every split of a tiktoken token,
as Llama 3's file has) keeps one rank; made by merges far apart, it cannot, and the library
reads the file. Tokens no merge can reach stay out of the rank table (tiktoken could otherwise
build them where HF never does) but keep their bytes for display.

transformers 5 takes tokenizer.json whole for PreTrainedTokenizerFast; its other classes
(GPT2Tokenizer, GPTNeoXTokenizer, Qwen2Tokenizer, RobertaTokenizer, BertTokenizer…) rebuild the
normaliser and pre-tokenizer in Python, which for real checkpoints says what the file says.
This module follows the file, plus what transformers reads from tokenizer_config.json on top:
the special tokens it names, an explicit `add_prefix_space`, and — only without a
tokenizer.json — `add_bos_token` / `add_eos_token` (with one, transformers 5 drops them).

Files are read here, byte for byte, on every load: nothing is cached on disk, tiktoken's file
loaders and shared cache are never used, so another folder or an edited file is always read
afresh. This module never imports torch; `tokenizers` only when a checkpoint needs it.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import orjson
import regex
import tiktoken

from attn_cli.errors import EncodingError
from attn_cli.tokenize import Token, Tokenizer, get_encoding

EXTRA = "pip install 'attn-cli[hf]' (installed with pipx: pipx inject attn-cli tokenizers)"

# The sha256 that tiktoken pins for GPT-2's encoder.json / vocab.bpe: a Hugging Face GPT-2
# folder's vocab.json and merges.txt are byte-identical to them, and then the bundled gpt2 ranks
# are the very same table, read faster than the JSON and merges.
GPT2_VOCAB_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
GPT2_MERGES_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"

# HF's ByteLevel pre-tokenizer pattern (tokenizers/src/pre_tokenizers/byte_level.rs): GPT-2's.
BYTE_LEVEL_PAT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

_NAMED = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
          "mask_token")


def _byte_chars() -> list[str]:
    """GPT-2's `bytes_to_unicode`: byte b is written as the printable character _BYTE_CHARS[b]."""
    printable = {*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)}
    chars, extra = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


_BYTE_CHARS = _byte_chars()
# str.translate table: a byte-level character -> the latin-1 character of its byte. Characters
# below 256 that are not in the alphabet go to U+FFFF, which latin-1 cannot encode.
_UNBYTE = {**{code: 0xFFFF for code in range(256)},
           **{ord(c): b for b, c in enumerate(_BYTE_CHARS)}}


def _unbyte(token: str) -> bytes:
    """'Ġcat' -> b' cat'. UnicodeEncodeError when `token` is not written in the byte alphabet."""
    return token.translate(_UNBYTE).encode("latin-1")


def _unbyte_or_none(token: str) -> bytes | None:
    try:
        return _unbyte(token)
    except UnicodeEncodeError:
        return None


def _unbyte_many(tokens: list[str]) -> list[bytes | None]:
    """_unbyte for many tokens at once (one character is one byte); None where it fails."""
    try:
        data = "".join(tokens).translate(_UNBYTE).encode("latin-1")
    except UnicodeEncodeError:
        return [_unbyte_or_none(t) for t in tokens]
    out, at = [], 0
    for token in tokens:
        end = at + len(token)
        out.append(data[at:end])
        at = end
    return out


class _Unsupported(Exception):
    """tiktoken cannot express this tokenizer; the `tokenizers` library has to read it."""

    def __init__(self, kind: str, why: str = ""):
        super().__init__(why or kind)
        self.kind, self.why = kind, why


@dataclass(frozen=True)
class AddedToken:
    """An entry of tokenizer.json's `added_tokens`, with HF's matching options."""

    id: int
    content: str
    special: bool = True
    single_word: bool = False
    lstrip: bool = False
    rstrip: bool = False
    normalized: bool = False

    @classmethod
    def from_json(cls, entry: dict, id: int | None = None) -> AddedToken:
        special = bool(entry.get("special", False))
        return cls(int(entry["id"] if id is None else id), str(entry["content"]), special,
                   bool(entry.get("single_word", False)), bool(entry.get("lstrip", False)),
                   bool(entry.get("rstrip", False)), bool(entry.get("normalized", not special)))

    def to_json(self) -> dict:
        return {"id": self.id, "content": self.content, "single_word": self.single_word,
                "lstrip": self.lstrip, "rstrip": self.rstrip, "normalized": self.normalized,
                "special": self.special}


# --- reading the folder -----------------------------------------------------------------------

def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise EncodingError(f"could not read {path}: {exc.strerror or type(exc).__name__}") from None


def _read_json(path: Path, data: bytes | None = None):
    data = _read_bytes(path) if data is None else data
    try:
        return orjson.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        detail = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise EncodingError(
            f"{path} is not valid JSON ({detail}): download or save the tokenizer again"
        ) from None


def _content(value) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or {"content": …}."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


@dataclass
class _Config:
    """What tokenizer_config.json, special_tokens_map.json and config.json add to the files."""

    family: str = ""                      # tokenizer class or model type, lower case
    named: dict = field(default_factory=dict)   # "bos_token" -> "<s>" or {"content": "<s>"…}
    extra: list = field(default_factory=list)   # additional / extra special tokens
    added: list = field(default_factory=list)   # added_tokens_decoder entries, as AddedToken
    add_bos: bool | None = None
    add_eos: bool | None = None
    add_prefix_space: bool | None = None

    @classmethod
    def read(cls, folder: Path) -> _Config:
        files = {}
        for name in ("config.json", "special_tokens_map.json", "tokenizer_config.json"):
            path = folder / name
            if path.is_file():
                doc = _read_json(path)
                files[name] = doc if isinstance(doc, dict) else {}
        tc, stm = files.get("tokenizer_config.json", {}), files.get("special_tokens_map.json", {})
        named = {key: stm[key] for key in _NAMED if stm.get(key) is not None}
        named.update({key: tc[key] for key in _NAMED if tc.get(key) is not None})
        extra = []
        for doc in (stm, tc):
            for key in ("additional_special_tokens", "extra_special_tokens"):
                value = doc.get(key)
                extra += list(value.values()) if isinstance(value, dict) else list(value or [])
        added = []
        for key, entry in (tc.get("added_tokens_decoder") or {}).items():
            try:
                added.append(AddedToken.from_json(entry, int(key)))
            except (KeyError, TypeError, ValueError):
                raise EncodingError(
                    f"{folder / 'tokenizer_config.json'} has a malformed added_tokens_decoder "
                    f"entry {key!r}: download or save the tokenizer again"
                ) from None
        family = tc.get("tokenizer_class") or files.get("config.json", {}).get("model_type") or ""

        def flag(key):
            return bool(tc[key]) if tc.get(key) is not None else None

        return cls(str(family).lower(), named, extra, added, flag("add_bos_token"),
                   flag("add_eos_token"), flag("add_prefix_space"))

    def token(self, key: str) -> str | None:
        return _content(self.named.get(key))


def load(folder: Path) -> Tokenizer:
    """The tokenizer of a Hugging Face checkpoint folder: tokenizer.json, else vocab.json +
    merges.txt (GPT-2 / RoBERTa style), with tokenizer_config.json's special tokens."""
    folder = Path(folder)
    config = _Config.read(folder)
    fast = None
    if (folder / "tokenizer.json").is_file():
        source = "tokenizer.json"
        spec = _read_json(folder / source)
        if not isinstance(spec, dict) or not isinstance(spec.get("model"), dict):
            raise EncodingError(f"{folder / source} has no tokenizer model: download or save "
                                f"the tokenizer again")
        # A saved padding or truncation setting (sentence-transformers files carry Fixed 128)
        # is ignored, as AutoTokenizer ignores it: attn never pads, and never cuts text
        # silently (too long for the positions is an error, or --truncate).
        spec["padding"] = spec["truncation"] = None
    elif (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        source = "vocab.json + merges.txt"
        spec, fast = _spec_from_pair(folder, config)
    else:
        others = [n for n in ("tokenizer.model", "vocab.txt", "vocab.json", "merges.txt")
                  if (folder / n).is_file()]
        found = f" (found only {', '.join(others)})" if others else ""
        raise EncodingError(
            f"no tokenizer.json (or vocab.json + merges.txt) in {folder}{found}: save the "
            f"tokenizer there with transformers (AutoTokenizer…save_pretrained) or copy it from "
            f"the model it was trained with"
        )
    _apply_config(spec, config, folder / source.split(" ")[0])
    try:
        return _byte_level(spec, config, source, fast, folder)
    except _Unsupported as why:
        return _library(spec, config, source, why, folder)


def gpt2_ranks(vocab_json: Path, merges_txt: Path) -> dict[bytes, int]:
    """tiktoken ranks from GPT-2-style vocab.json + merges.txt, whose ids are the ranks."""
    vocab = _vocab_json(vocab_json)
    merges = _merges_txt(merges_txt)
    try:
        ranks, rank_to_id = _ranks(vocab, merges, ignore_merges=False, where=merges_txt)
    except _Unsupported as why:
        ranks, rank_to_id = None, why
    if ranks is None or rank_to_id is not None:
        raise EncodingError(
            f"could not build a tokenizer from {vocab_json.name} and {merges_txt.name} in "
            f"{vocab_json.parent}: their ids do not follow the merges (they must be GPT-2 BPE "
            f"files)"
        )
    return ranks


def _vocab_json(path: Path, data: bytes | None = None) -> dict[str, int]:
    vocab = _read_json(path, data)
    if not isinstance(vocab, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in vocab.values()):
        raise EncodingError(f"{path} is not a vocabulary (a JSON object of token -> id): "
                            f"download or save the tokenizer again")
    return vocab


def _merges_txt(path: Path, data: bytes | None = None) -> list[tuple[str, str]]:
    try:
        text = (_read_bytes(path) if data is None else data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EncodingError(f"{path} is not UTF-8 (byte {exc.start}): download or save the "
                            f"tokenizer again") from None
    merges = []
    for n, line in enumerate(text.split("\n"), 1):
        line = line.removesuffix("\r")
        if not line or (n == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not all(parts):
            raise EncodingError(f"{path} line {n} is not a merge (two tokens and one space): "
                                f"{line[:60]!r}; download or save the tokenizer again")
        merges.append((parts[0], parts[1]))
    return merges


def _spec_from_pair(folder: Path, config: _Config) -> tuple[dict, tiktoken.Encoding | None]:
    """vocab.json + merges.txt as the tokenizer.json that transformers would build from them."""
    vocab_path, merges_path = folder / "vocab.json", folder / "merges.txt"
    vocab_bytes, merges_bytes = _read_bytes(vocab_path), _read_bytes(merges_path)
    fast = (hashlib.sha256(vocab_bytes).hexdigest() == GPT2_VOCAB_SHA256
            and hashlib.sha256(merges_bytes).hexdigest() == GPT2_MERGES_SHA256)
    vocab = _vocab_json(vocab_path, vocab_bytes)
    merges = None if fast else _merges_txt(merges_path, merges_bytes)
    roberta = any(name in config.family for name in ("roberta", "bart", "longformer"))
    defaults = ({"bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
                 "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>"} if roberta
                else {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
                      "unk_token": "<|endoftext|>"})
    for key, value in defaults.items():  # the tokenizer class's defaults (transformers 5)
        config.named.setdefault(key, value)
    if roberta:
        cls, sep = config.token("cls_token"), config.token("sep_token")
        post = {"type": "RobertaProcessing", "sep": [sep, vocab.get(sep, 0)],
                "cls": [cls, vocab.get(cls, 0)], "trim_offsets": True,
                "add_prefix_space": bool(config.add_prefix_space)}
    else:  # transformers' update_post_processor: [bos] $A [eos] as the flags say
        bos = config.token("bos_token") if config.add_bos else None
        eos = config.token("eos_token") if config.add_eos else None
        post = _bos_eos_template(bos, vocab.get(bos), eos, vocab.get(eos))
    spec = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": bool(config.add_prefix_space),
                          "trim_offsets": True, "use_regex": True},
        "post_processor": post,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": "", "end_of_word_suffix": "", "fuse_unk": False,
                  "byte_fallback": False, "ignore_merges": False, "vocab": vocab,
                  "merges": merges},
    }
    return spec, (get_encoding("gpt2") if fast else None)


def _bos_eos_template(bos: str | None, bos_id: int | None, eos: str | None,
                      eos_id: int | None) -> dict | None:
    before = [(bos, bos_id)] if bos is not None and bos_id is not None else []
    after = [(eos, eos_id)] if eos is not None and eos_id is not None else []
    if not before and not after:
        return None

    def items(type_id, sequence):
        return ([{"SpecialToken": {"id": t, "type_id": type_id}} for t, _ in before]
                + [{"Sequence": {"id": sequence, "type_id": type_id}}]
                + [{"SpecialToken": {"id": t, "type_id": type_id}} for t, _ in after])

    return {"type": "TemplateProcessing", "single": items(0, "A"),
            "pair": items(0, "A") + items(1, "B"),
            "special_tokens": {t: {"id": t, "ids": [i], "tokens": [t]} for t, i in before + after}}


def _model_id(spec: dict, content: str) -> int | None:
    """The id of `content` among the added tokens, else in the model's vocabulary."""
    for entry in spec.get("added_tokens") or []:
        if entry.get("content") == content:
            return int(entry["id"])
    vocab = spec["model"].get("vocab")
    if isinstance(vocab, dict):
        if content in vocab:
            return vocab[content]
        written = "".join(_BYTE_CHARS[b] for b in content.encode("utf-8"))
        return vocab.get(written) if _is_byte_level(spec) else None
    if isinstance(vocab, list):  # Unigram: [[piece, score], …]
        for i, entry in enumerate(vocab):
            if entry and entry[0] == content:
                return i
    return None


def _is_byte_level(spec: dict) -> bool:
    return "ByteLevel" in _types(spec.get("pre_tokenizer"))


def _types(component) -> list[str]:
    """The types in a tokenizer.json component, Sequences unrolled."""
    if not isinstance(component, dict):
        return []
    inner = [c for key in ("pretokenizers", "normalizers", "processors", "decoders")
             for c in component.get(key) or []]
    return [component.get("type", "")] + [t for c in inner for t in _types(c)]


# tokenizer classes that take tokenizer.json whole; the others rebuild the pre-tokenizer
_WHOLE_FILE = ("pretrainedtokenizerfast", "tokenizersbackend", "")


def _apply_config(spec: dict, config: _Config, path: Path) -> None:
    """What transformers adds on top of tokenizer.json: the special tokens tokenizer_config.json
    names (when the vocabulary has them), and an explicit add_prefix_space for the classes that
    build their ByteLevel pre-tokenizer from it. (With a tokenizer.json, transformers 5 drops
    tokenizer_config.json's add_bos_token / add_eos_token: the file's template holds.)"""
    added = spec.setdefault("added_tokens", [])
    if not isinstance(added, list):
        raise EncodingError(f"{path} has a malformed added_tokens list: download or save the "
                            f"tokenizer again")
    present = {entry.get("content") for entry in added}
    for token in config.added:
        if token.content not in present:
            added.append(token.to_json())
            present.add(token.content)
    for value in [*config.named.values(), *config.extra]:
        content = _content(value)
        if not content or content in present:
            continue
        id = _model_id(spec, content)
        if id is None:
            continue
        entry = {"id": id, "content": content, "single_word": False, "lstrip": False,
                 "rstrip": False, "normalized": False, "special": True}
        if isinstance(value, dict):
            entry.update({k: bool(value[k]) for k in ("single_word", "lstrip", "rstrip",
                                                      "normalized", "special") if k in value})
        added.append(entry)
        present.add(content)

    pre = spec.get("pre_tokenizer")
    if (config.add_prefix_space is not None and isinstance(pre, dict)
            and pre.get("type") == "ByteLevel" and config.family not in _WHOLE_FILE):
        pre["add_prefix_space"] = config.add_prefix_space  # GPT2Tokenizer & co. build it so


# --- byte-level BPE in tiktoken -----------------------------------------------------------------

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


def _ranks(vocab: dict[str, int], merges: list[tuple[str, str]], ignore_merges: bool,
           where: Path, written: dict[str, bytes | None] | None = None,
           ) -> tuple[dict[bytes, int], list[int] | None]:
    """tiktoken's mergeable ranks for HF's (vocab, merges), and rank -> id when they differ.

    A token's rank is where its run of merges starts; the 256 single bytes come first.
    Tokens no merge can build from bytes stay out (HF never makes them; tiktoken would)."""
    singles = _BYTE_CHARS
    missing = [c for c in singles if c not in vocab]
    if missing:
        raise _Unsupported("byte-level BPE", f"the vocabulary lacks {len(missing)} of the 256 "
                                             f"byte tokens")
    made: dict[str, int] = {}   # token -> index of its run of merges
    order: list[str] = []
    reachable = set(singles)    # what merges can build from bytes (a merge needs both parts)
    pending = []                # merges whose parts were not (yet) buildable when they came
    last = None
    for a, b in merges:
        token = a + b
        if a not in vocab or b not in vocab or token not in vocab:
            absent = next(t for t in (a, b, token) if t not in vocab)
            raise EncodingError(f"{where} merges {a!r} + {b!r}, but {absent!r} is not in the "
                                f"vocabulary: the tokenizer files do not belong together")
        if a in reachable and b in reachable:
            reachable.add(token)
        else:
            pending.append((a, b))
        if token == last:
            continue  # another split of the token just made: the same run, the same rank
        if token in made:
            raise _Unsupported("byte-level BPE", f"merges make {token!r} twice, far apart")
        made[token] = len(order)
        order.append(token)
        last = token
    grew = bool(pending)
    while grew:  # merges may name parts that later merges make
        grew, still = False, []
        for a, b in pending:
            if a in reachable and b in reachable:
                reachable.add(a + b)
                grew = True
            else:
                still.append((a, b))
        pending = still
    order = [token for token in order if token in reachable]
    if ignore_merges:  # HF then takes a whole word found in the vocabulary as it is
        stray = [t for t in vocab if len(t) > 1 and t not in reachable and _unbyte_or_none(t) is not None]
        if stray:
            raise _Unsupported("byte-level BPE", f"ignore_merges with {len(stray)} tokens no "
                                                 f"merge makes")
    if written is None:
        written = dict(zip(order, _unbyte_many(order)))
    ids = [vocab[token] for token in order]
    if all(x < y for x, y in zip(ids, ids[1:])):  # ids follow the merges: they are the ranks
        ranks = {_unbyte(c): vocab[c] for c in singles}
        ranks.update(zip([written[t] for t in order], ids))
        return ranks, None
    rank_to_id = [vocab[c] for c in singles] + ids
    ranks = {_unbyte(c): rank for rank, c in enumerate(singles)}
    ranks.update((written[t], rank) for rank, t in enumerate(order, start=len(singles)))
    return ranks, rank_to_id


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


def _template(post) -> tuple[list[int], list[int], frozenset[int]]:
    """The ids the post-processor puts before and after a single sequence."""
    if post is None:
        return [], [], frozenset()
    kind = post.get("type")
    if kind == "ByteLevel":
        return [], [], frozenset()
    if kind in ("RobertaProcessing", "BertProcessing"):
        cls, sep = int(post["cls"][1]), int(post["sep"][1])
        return [cls], [sep], frozenset((cls, sep))
    if kind == "TemplateProcessing":
        before, after, seen = [], [], 0
        for item in post.get("single") or []:
            if "Sequence" in item:
                if item["Sequence"].get("id") != "A" or seen:
                    raise _Unsupported("a post-processor template", "not one sequence A")
                seen = 1
            elif "SpecialToken" in item:
                ids = post["special_tokens"][item["SpecialToken"]["id"]]["ids"]
                (after if seen else before).extend(int(i) for i in ids)
        return before, after, frozenset(before + after)
    if kind == "Sequence":
        before, after, ids = [], [], frozenset()
        for step in post.get("processors") or []:
            b, a, i = _template(step)
            before, after, ids = b + before, after + a, ids | i
        return before, after, ids
    raise _Unsupported(f"a {kind} post-processor")


def _named_ids(spec: dict, config: _Config) -> tuple[int | None, int | None, int | None]:
    out = []
    for key in ("bos_token", "eos_token", "pad_token"):
        content = config.token(key)
        out.append(_model_id(spec, content) if content else None)
    return tuple(out)


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


# --- everything else: the `tokenizers` library ---------------------------------------------------

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


def _steps(component) -> list[dict]:
    if not isinstance(component, dict):
        return []
    inner = [c for key in ("normalizers", "decoders") for c in component.get(key) or []]
    return [component] + [s for c in inner for s in _steps(c)]
