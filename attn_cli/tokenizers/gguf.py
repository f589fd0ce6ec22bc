"""A GGUF file's own tokenizer (`tokenizer.ggml.*`), behind `tokenizers.Tokenizer` (SPEC §9).

    load(f) -> Tokenizer      f: a models/gguf_file.GGUFFile (its metadata: get, str, has)

A GGUF holds no tokenizer.json: it stores the vocabulary (`tokens`, `token_type`, `scores`),
the BPE `merges`, the pre-tokenizer's name (`pre`) and the special ids as metadata. From them
this module builds the tokenizer.json-shaped spec that `hf.py` reads for a folder, so the
same two engines run it (byte_level.py, library.py):

* `model: gpt2` (byte-level BPE: GPT-2, Llama 3, Qwen2, SmolLM …) runs in tiktoken, with the
  split pattern llama.cpp uses for `tokenizer.ggml.pre` (its `llama-vocab.cpp`): llama.cpp
  splits with a list of patterns, one after another, each on the pieces of the one before;
  where a list has more than one, the pattern here is the single regex that cuts text into the
  same pieces (tests/test_gguf.py checks it against that piece-by-piece split).
* `model: llama` (SentencePiece BPE: Llama 2, TinyLlama, Mistral) runs in the `tokenizers`
  library, built as transformers' LlamaTokenizer builds it (Metaspace, byte fallback, merges
  recovered from the scores).

Control tokens (token_type 3) are special added tokens, user-defined ones (4) plain added
tokens, as transformers reads the file; BOS and EOS are added as `add_bos_token` /
`add_eos_token` say (SentencePiece files add BOS unless they say not to, as llama.cpp does).
Never imports torch.
"""

from __future__ import annotations

from attn_cli.errors import EncodingError, ModelLoadError
from attn_cli.tokenizers.byte_level import BYTE_LEVEL_PAT
from attn_cli.tokenizers.hf import from_spec
from attn_cli.tokenizers.ranks import _BYTE_CHARS

# llama.cpp's split patterns (src/llama-vocab.cpp, llm_tokenizer_bpe), by the `pre` names that
# select them (llama_vocab::impl::load).
_GPT2 = BYTE_LEVEL_PAT
_LLAMA3 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+"
           r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+"
          r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# SmolLM, StarCoder …: `\p{N}`, then GPT-2's pattern on the pieces. One regex: every digit
# alone, and a digit ends a piece as the end of the text would (the lookahead of `\s+(?!\S)`).
_DIGITS = r"\p{N}|'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?[^\s\p{L}\p{N}]+|\s+(?![^\s\p{N}])|\s+"
# llama.cpp's default (no `pre`, or "default"): runs of punctuation and $+<=>^~| first, then
# GPT-2's pattern, then `\p{N}+`, then `[0-9]{3}`. One regex: a punctuation run ends a piece;
# a space never joins a digit; a run of digits is cut into ASCII triples from the left.
_PUNCT = r"\p{P}$+<=>^~|"
_DEFAULT = (rf"[{_PUNCT}]+| ?\p{{L}}+|[0-9]{{3}}|(?:(?![0-9]{{3}})\p{{N}})+"
            rf"| ?[^\s\p{{L}}\p{{N}}{_PUNCT}]+|\s+(?![^\s{_PUNCT}])|\s+")

PRE_PATTERNS = {
    **dict.fromkeys(("default",), _DEFAULT),
    **dict.fromkeys(("gpt-2", "phi-2", "roberta-bpe", "mpt", "olmo", "jais"), _GPT2),
    **dict.fromkeys(("llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral", "dbrx",
                     "smaug-bpe"), _LLAMA3),
    **dict.fromkeys(("qwen2", "deepseek-r1-qwen", "stablelm2", "megrez"), _QWEN2),
    **dict.fromkeys(("smollm", "starcoder", "refact", "command-r", "codeshell", "exaone",
                     "minerva-7b"), _DIGITS),
}

CONTROL, USER_DEFINED = 3, 4  # llama.cpp's token types


def load(f) -> object:
    """The tokenizer of the GGUF file `f` (a models/gguf_file.GGUFFile)."""
    kind = f.str("tokenizer.ggml.model", "")
    if not kind:
        raise ModelLoadError(f"{f.path} holds no tokenizer (no tokenizer.ggml.model): attn "
                             f"needs the vocabulary to turn text into tokens; convert the model "
                             f"again with llama.cpp's convert_hf_to_gguf.py")
    tokens = _strings(f, "tokenizer.ggml.tokens")
    types = f.get("tokenizer.ggml.token_type") or []
    if types and len(types) != len(tokens):
        raise _bad(f, f"tokenizer.ggml.token_type has {len(types)} entries for {len(tokens)} "
                      f"tokens")
    named = {}
    for name, key in (("bos_token", "bos_token_id"), ("eos_token", "eos_token_id"),
                      ("pad_token", "padding_token_id")):
        id = f.get(f"tokenizer.ggml.{key}")
        if id is not None:
            if isinstance(id, bool) or not isinstance(id, int) or not 0 <= id < len(tokens):
                raise _bad(f, f"tokenizer.ggml.{key} is {str(id)[:20]}, not a token id")
            named[name] = id
    if kind == "gpt2":
        spec, name = _byte_level(f, tokens, types), "byte-level BPE"
        add_bos = f.get("tokenizer.ggml.add_bos_token", False)
    elif kind == "llama":
        spec, name = _sentencepiece(f, tokens, types), "SentencePiece"
        add_bos = f.get("tokenizer.ggml.add_bos_token", True)
    else:
        raise ModelLoadError(f"{f.path} has a {kind[:40]!r} tokenizer; attn reads GGUF "
                             f"vocabularies of byte-level BPE (gpt2) and SentencePiece (llama)")
    add_eos = f.get("tokenizer.ggml.add_eos_token", False)
    ends = [("bos_token", add_bos), ("eos_token", add_eos)]
    for which, wanted in ends:
        if wanted and which not in named:
            raise _bad(f, f"it asks for a {which[:3].upper()} token but names none")
    spec["post_processor"] = _template(tokens, named.get("bos_token") if add_bos else None,
                                       named.get("eos_token") if add_eos else None)
    try:
        tokenizer = from_spec(spec, f.path, {k: tokens[v] for k, v in named.items()})
    except ModelLoadError:
        raise
    except EncodingError as exc:
        raise ModelLoadError(str(exc)) from None
    pre = f.get("tokenizer.ggml.pre", "default") if kind == "gpt2" else None
    tokenizer.name = f"GGUF {name}" + (f", {pre}" if pre else "")
    return tokenizer


def _bad(f, what: str) -> ModelLoadError:
    return ModelLoadError(f"{f.path} has a broken vocabulary: {what}; convert the model again")


def _strings(f, key: str) -> list[str]:
    values = f.get(key)
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise _bad(f, f"{key} is missing or not a list of strings")
    return values


def _added(tokens: list[str], types: list, allowed=None) -> list[dict]:
    """Control tokens as special added tokens, user-defined ones as plain added tokens (in a
    byte-level vocabulary only those spelled in the byte alphabet, as transformers reads it)."""
    out = []
    for id, (token, kind) in enumerate(zip(tokens, types)):
        if kind in (CONTROL, USER_DEFINED) and (allowed is None or set(token) <= allowed):
            out.append({"id": id, "content": token, "single_word": False, "lstrip": False,
                        "rstrip": False, "normalized": False, "special": kind == CONTROL})
    return out


def _byte_level(f, tokens: list[str], types: list) -> dict:
    pre = f.get("tokenizer.ggml.pre", "default")
    pattern = PRE_PATTERNS.get(pre)
    if pattern is None:
        known = ", ".join(sorted(PRE_PATTERNS))
        raise ModelLoadError(f"{f.path} names the pre-tokenizer {str(pre)[:40]!r}, whose split "
                             f"pattern attn does not know (it knows {known})")
    alphabet = set(_BYTE_CHARS)
    vocab = {}
    for id, token in enumerate(tokens):  # spelled in GPT-2's byte alphabet, as vocab.json is
        if not set(token) <= alphabet:
            token = "".join(_BYTE_CHARS[b] for b in token.encode("utf-8"))
        vocab[token] = id  # a token written twice keeps its last id, as transformers reads it
    merges = _strings(f, "tokenizer.ggml.merges")
    for n, merge in enumerate(merges):
        if len(merge.split(" ")) != 2:
            raise _bad(f, f"merge {n} ({merge[:40]!r}) is not two tokens")
    return {
        "model": {"type": "BPE", "vocab": vocab, "merges": merges, "dropout": None,
                  "ignore_merges": False},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated",
             "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
             "use_regex": False}]},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "added_tokens": _added(tokens, types, alphabet),
    }


def _sentencepiece(f, tokens: list[str], types: list) -> dict:
    vocab = {token: id for id, token in enumerate(tokens)}
    if f.has("tokenizer.ggml.merges"):
        merges = [tuple(m.split(" ")) for m in _strings(f, "tokenizer.ggml.merges")]
    else:
        scores = f.get("tokenizer.ggml.scores")
        if not isinstance(scores, list) or len(scores) != len(tokens):
            raise _bad(f, "tokenizer.ggml.scores is missing or not one score per token")
        merges = _merges_from_scores(vocab, dict(zip(tokens, scores)))
    prefix = "first" if f.get("tokenizer.ggml.add_space_prefix", True) else "never"
    return {
        "normalizer": None,
        "model": {"type": "BPE", "vocab": vocab, "merges": [f"{a} {b}" for a, b in merges],
                  "dropout": None, "fuse_unk": True, "byte_fallback": True,
                  "ignore_merges": False},
        "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": prefix,
                          "split": False},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"}]},
        "added_tokens": _added(tokens, types),
    }


def _merges_from_scores(vocab: dict[str, int], scores: dict[str, float]) -> list[tuple]:
    """A SentencePiece vocabulary's merges: every split of a token into two tokens of the
    vocabulary, best score first (transformers' `generate_merges`, which its GGUF loader uses)."""
    merges = []
    for token, score in scores.items():
        local = [(token[:i], token[i:], score) for i in range(1, len(token))
                 if token[:i] in vocab and token[i:] in vocab]
        merges += sorted(local, key=lambda m: (vocab[m[0]], vocab[m[1]]))
    merges.sort(key=lambda m: (m[2], len(m[0]), len(m[1])), reverse=True)
    return [(a, b) for a, b, _ in merges]


def _template(tokens: list[str], bos: int | None, eos: int | None) -> dict | None:
    if bos is None and eos is None:
        return None
    single, specials = [], {}
    for id, where in ((bos, "before"), (None, "A"), (eos, "after")):
        if where == "A":
            single.append({"Sequence": {"id": "A", "type_id": 0}})
        elif id is not None:
            single.append({"SpecialToken": {"id": tokens[id], "type_id": 0}})
            specials[tokens[id]] = {"id": tokens[id], "ids": [id], "tokens": [tokens[id]]}
    return {"type": "TemplateProcessing", "single": single, "pair": single,
            "special_tokens": specials}
