"""What a checkpoint folder's tokenizer files say: tokenizer_config.json's special tokens and
flags, vocab.json + merges.txt as the tokenizer.json transformers would build, and the parts of
a tokenizer.json (added tokens, post-processor template, named ids) both engines read.

This module never imports torch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import tiktoken

from attn_cli.errors import EncodingError
from attn_cli.tokenizers.encodings import get_encoding
from attn_cli.tokenizers.ranks import (_BYTE_CHARS, _Unsupported, _merges_txt, _read_bytes,
                                       _read_json, _vocab_json)


# The sha256 that tiktoken pins for GPT-2's encoder.json / vocab.bpe: a Hugging Face GPT-2
# folder's vocab.json and merges.txt are byte-identical to them, and then the bundled gpt2 ranks
# are the very same table, read faster than the JSON and merges.
GPT2_VOCAB_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"


GPT2_MERGES_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"


_NAMED = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
          "mask_token")


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


def _steps(component) -> list[dict]:
    if not isinstance(component, dict):
        return []
    inner = [c for key in ("normalizers", "decoders") for c in component.get(key) or []]
    return [component] + [s for c in inner for s in _steps(c)]
