"""A checkpoint's own tokenizer (SPEC §2) and the Tokenizer interface (attn_cli/tokenizers/).

Checkpoint folders of six tokenizer styles are built here, once per session, with the
`tokenizers` library from GPT-2's real vocab.json + merges.txt (../shared/fixtures) — GPT-2,
GPT-NeoX/Pythia, Llama 3 (through transformers' own tiktoken converter), Qwen2, RoBERTa (ids
reordered, as RoBERTa's are) and BERT (a small WordPiece trained here) — each with the
tokenizer_config.json and config.json that real checkpoints carry. `hf_tokenizer.load` must give
exactly the ids of transformers' `AutoTokenizer` on a hostile corpus: special-token text as
ordinary text (`split_special_tokens=True`) by default, as special tokens under
`allow_special`, and the post-processor's BOS / [CLS] … [SEP] / <s> … </s> included.

Issue 10: nothing is cached, so a second folder with the same relative name, or an edited
merges.txt, is read afresh, and tiktoken's shared cache directory is never written.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

tokenizers = pytest.importorskip("tokenizers")
transformers = pytest.importorskip("transformers")

from tokenizers import AddedToken, Regex, decoders, models, normalizers  # noqa: E402
from tokenizers import pre_tokenizers, processors, trainers  # noqa: E402

from attn_cli import tokenizers as tokenize  # noqa: E402
from attn_cli.tokenizers import hf as hf_tokenizer  # noqa: E402
from attn_cli.errors import EncodingError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "gpt2-tokenizer"

LLAMA3_PAT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
              r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PAT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
             r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

_ACCENTED = "café naïve résumé Ångström Ελληνικά"
CORPUS = {
    "plain": "The cat sat on the mat because it was tired.",
    "nfc": _ACCENTED,
    "nfd": unicodedata.normalize("NFD", _ACCENTED),
    "combining": "e\u0301\u0301 o\u0308 \u0915\u094d\u0937 Z\u0351\u0354",
    "cjk": "日本語のテキスト、中文字符和한국어です。",
    "emoji": "I ❤️ 🦀 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 and 🐍!",
    "digits": "1234567 3.14159 2024-01-01 ٣٤٥ ½ 000 10,000,000",
    "contractions": "DON'T I'LL WE'RE they've She'S it’s Y'ALL'D",
    "spaces": "a  b   c    d\n\n\ne\t\tf \n g      h",
    "edges": "   leading and trailing   ",
    "newlines": "\n\nstart\r\nend\n",
    "special_text": "a<|endoftext|>b <s>x</s> [CLS] [SEP] <mask> <|begin_of_text|><|im_end|> <pad>",
    "unicode_spaces": "a\u00a0b\u2003c\u3000d\u2028e\u0085f\u200bg\ufeffh\u180ei",
    "code": "def f(x):\n    return x**2  # comment\n\t}\n",
    "punctuation": "Hello,World!!!...???  ---  __init__ ÀÉÎÕÜ «quoted» — dash",
    "one_char": "x",
}


# --- building the folders ------------------------------------------------------------------------

def gpt2_vocab() -> dict[str, int]:
    return json.loads((FIXTURES / "vocab.json").read_text(encoding="utf-8"))


def gpt2_merges() -> list[tuple[str, str]]:
    lines = (FIXTURES / "merges.txt").read_text(encoding="utf-8").split("\n")
    return [tuple(line.split(" ")) for line in lines[1:] if line]


def save(folder: Path, tok: tokenizers.Tokenizer, tokenizer_config: dict, model_type: str):
    folder.mkdir(parents=True)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config), encoding="utf-8")
    (folder / "config.json").write_text(json.dumps({"model_type": model_type}), encoding="utf-8")
    return folder


def build_gpt2(root: Path, name="gpt2", add_prefix_space=False) -> Path:
    tok = tokenizers.Tokenizer(models.BPE(gpt2_vocab(), gpt2_merges()))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)])
    config = {"tokenizer_class": "GPT2Tokenizer", "bos_token": "<|endoftext|>",
              "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
              "add_prefix_space": add_prefix_space, "model_max_length": 1024}
    return save(root / name, tok, config, "gpt2")


def build_neox(root: Path) -> Path:
    """Pythia / GPT-NeoX: two specials first (ids shift by 2), NFC, runs of spaces as added
    tokens that are not special (matched in the normalised text), no BOS."""
    vocab = {"<|endoftext|>": 0, "<|padding|>": 1}
    vocab.update({token: id + 2 for token, id in gpt2_vocab().items() if token != "<|endoftext|>"})
    tok = tokenizers.Tokenizer(models.BPE(vocab, gpt2_merges()))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(single="$A:0", pair="$A:0 $B:1",
                                                       special_tokens=[])
    tok.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False),
                            AddedToken("<|padding|>", special=True, normalized=False)])
    tok.add_tokens([AddedToken(" " * n, special=False, normalized=True) for n in (24, 8, 4, 2)])
    config = {"tokenizer_class": "GPTNeoXTokenizer", "add_bos_token": False,
              "add_eos_token": False, "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
              "unk_token": "<|endoftext|>", "pad_token": "<|padding|>"}
    return save(root / "neox", tok, config, "gpt_neox")


def build_neox_bos(root: Path, neox: Path) -> Path:
    """The same files with add_bos_token in tokenizer_config.json, which transformers 5 drops
    when there is a tokenizer.json (tokenization_utils_base: `init_kwargs.pop("add_bos_token")`):
    the file's template holds, no BOS. (Without tokenizer.json it counts: see pair_bos.)"""
    folder = root / "neox_bos"
    shutil.copytree(neox, folder)
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    config["add_bos_token"] = True
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


def build_llama3(root: Path) -> Path:
    """Llama 3: transformers' own TikTokenConverter (every split of a token is a merge,
    ignore_merges), its Split pattern + ByteLevel, <|begin_of_text|> as BOS in the template."""
    from transformers.convert_slow_tokenizer import TikTokenConverter

    ranks = tokenize.get_encoding("r50k_base")._mergeable_ranks
    converter = TikTokenConverter(vocab_file="unused", pattern=LLAMA3_PAT,
                                  extra_special_tokens=["<|begin_of_text|>", "<|end_of_text|>",
                                                        "<|eot_id|>"])
    converter.load_tiktoken_bpe = lambda url: ranks  # never tiktoken's cached loader
    tok = converter.converted()
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                      pair="<|begin_of_text|> $A <|begin_of_text|>:1 $B:1",
                                      special_tokens=[("<|begin_of_text|>", bos)]),
    ])
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>",
              "eos_token": "<|end_of_text|>", "model_max_length": 131072}
    return save(root / "llama3", tok, config, "llama")


def build_qwen2(root: Path) -> Path:
    vocab = {token: id for token, id in gpt2_vocab().items() if token != "<|endoftext|>"}
    tok = tokenizers.Tokenizer(models.BPE(vocab, gpt2_merges(), byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PAT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")])
    config = {"tokenizer_class": "Qwen2Tokenizer", "bos_token": None, "eos_token": "<|im_end|>",
              "pad_token": "<|endoftext|>", "unk_token": None, "add_prefix_space": False,
              "errors": "replace"}
    return save(root / "qwen2", tok, config, "qwen2")


def build_roberta(root: Path) -> Path:
    """RoBERTa: <s>=0 <pad>=1 </s>=2 <unk>=3 first, then GPT-2's tokens under ids shuffled
    (RoBERTa's are ordered by frequency, not by merge), <mask> last with lstrip."""
    tokens = [t for t in gpt2_vocab() if t != "<|endoftext|>"]
    ids = list(range(4, 4 + len(tokens)))
    random.Random(0).shuffle(ids)
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, **dict(zip(tokens, ids))}
    vocab["<mask>"] = len(vocab)
    tok = tokenizers.Tokenizer(models.BPE(vocab, gpt2_merges()))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0),
                                                      trim_offsets=True, add_prefix_space=False)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in ("<s>", "<pad>", "</s>", "<unk>")])
    tok.add_special_tokens([AddedToken("<mask>", special=True, lstrip=True, normalized=False)])
    config = {"tokenizer_class": "RobertaTokenizer", "bos_token": "<s>", "eos_token": "</s>",
              "sep_token": "</s>", "cls_token": "<s>", "unk_token": "<unk>",
              "pad_token": "<pad>", "mask_token": {"__type": "AddedToken", "content": "<mask>", "lstrip": True,
                                                   "rstrip": False, "normalized": False,
                                                   "single_word": False, "special": True},
              "add_prefix_space": False, "trim_offsets": True}
    return save(root / "roberta", tok, config, "roberta")


def build_bert(root: Path) -> Path:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = tokenizers.Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=None, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    corpus = [text for text in CORPUS.values()] * 3 + [
        "the quick brown fox jumps over the lazy dog", "attention is all you need",
        "queries ask, keys answer, values carry", "tokenizers split words into pieces"]
    tok.train_from_iterator(corpus, trainers.WordPieceTrainer(vocab_size=400,
                                                              special_tokens=specials))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    config = {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "unk_token": "[UNK]",
              "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
              "mask_token": "[MASK]", "tokenize_chinese_chars": True, "strip_accents": None}
    return save(root / "bert", tok, config, "bert")


def build_unigram(root: Path) -> Path:
    """SentencePiece Unigram (T5 style): NFKC, Metaspace, </s> appended by the template."""
    specials = ["<pad>", "</s>", "<unk>"]
    tok = tokenizers.Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    corpus = list(CORPUS.values()) * 3 + ["the quick brown fox jumps over the lazy dog"]
    tok.train_from_iterator(corpus, trainers.UnigramTrainer(vocab_size=300, unk_token="<unk>",
                                                            special_tokens=specials))
    eos = tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", eos)])
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "</s>",
              "unk_token": "<unk>", "pad_token": "<pad>"}
    return save(root / "unigram", tok, config, "t5")


def build_pair(root: Path, name: str, tokenizer_config: dict | None, pretty=False) -> Path:
    """The older layout: vocab.json + merges.txt, no tokenizer.json."""
    folder = root / name
    folder.mkdir(parents=True)
    if pretty:  # same vocabulary, other bytes: not the bundled fast path
        (folder / "vocab.json").write_text(json.dumps(gpt2_vocab(), indent=1), encoding="utf-8")
    else:
        shutil.copy(FIXTURES / "vocab.json", folder)
    shutil.copy(FIXTURES / "merges.txt", folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2"}), encoding="utf-8")
    if tokenizer_config is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config),
                                                      encoding="utf-8")
    return folder


BYTE_LEVEL = ["gpt2", "gpt2_prefix", "neox", "neox_bos", "llama3", "qwen2", "roberta", "pair_gpt2",
              "pair_bos"]
STYLES = BYTE_LEVEL + ["bert", "unigram"]


@pytest.fixture(scope="session")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tokenizers")
    neox = build_neox(root)
    return {
        "gpt2": build_gpt2(root),
        "gpt2_prefix": build_gpt2(root, "gpt2_prefix", add_prefix_space=True),
        "neox": neox,
        "neox_bos": build_neox_bos(root, neox),
        "llama3": build_llama3(root),
        "qwen2": build_qwen2(root),
        "roberta": build_roberta(root),
        "bert": build_bert(root),
        "unigram": build_unigram(root),
        "pair_gpt2": build_pair(root, "pair_gpt2", None),
        "pair_bos": build_pair(root, "pair_bos", {"tokenizer_class": "GPT2Tokenizer",
                                                  "add_bos_token": True,
                                                  "bos_token": "<|endoftext|>"}, pretty=True),
    }


@pytest.fixture(scope="session")
def reference(folders):
    from transformers import AutoTokenizer

    return {name: AutoTokenizer.from_pretrained(str(folder)) for name, folder in folders.items()}


@pytest.fixture(scope="session")
def ours(folders):
    return {name: hf_tokenizer.load(folder) for name, folder in folders.items()}


def ids(tokenizer, text, allow_special=False):
    return [t.id for t in tokenizer.encode(text, allow_special)]


def hf_ids(reference, text, allow_special=False):
    return reference(text, split_special_tokens=not allow_special)["input_ids"]


# --- parity with transformers -------------------------------------------------------------------

@pytest.mark.parametrize("style", STYLES)
def test_ids_equal_autotokenizer_on_the_hostile_corpus(ours, reference, style):
    mine, theirs = ours[style], reference[style]
    for label, text in CORPUS.items():
        for allow in (False, True):
            assert ids(mine, text, allow) == hf_ids(theirs, text, allow), (style, label, allow)


@pytest.mark.parametrize("style", BYTE_LEVEL)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(st.characters(codec="utf-8"), min_size=1, max_size=40)
       | st.text(alphabet=" \t\n\r'aAé1😀<>|s", min_size=1, max_size=25))
def test_byte_level_ids_equal_autotokenizer_for_any_text(ours, reference, style, text):
    assert ids(ours[style], text) == hf_ids(reference[style], text)


SPECIAL_MIX = st.lists(st.sampled_from([
    "<|endoftext|>", "<s>", "</s>", "<mask>", " <mask>", "<|im_end|>", "<|begin_of_text|>",
    "[CLS]", "<|padding|>", " ", "  ", "    ", "\n", "\t", "a", "B", "é", "e\u0301", "1", "'s",
    "<", "|", "😀"]), min_size=1, max_size=12).map("".join)


@pytest.mark.parametrize("style", STYLES)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=SPECIAL_MIX, allow=st.booleans())
def test_ids_equal_autotokenizer_around_added_tokens(ours, reference, style, text, allow):
    assert ids(ours[style], text, allow) == hf_ids(reference[style], text, allow)


def test_each_style_runs_where_it_should(ours):
    for style in BYTE_LEVEL:
        assert isinstance(ours[style], hf_tokenizer.ByteLevelBPE), style
    assert isinstance(ours["bert"], hf_tokenizer.LibraryTokenizer)
    assert isinstance(ours["unigram"], hf_tokenizer.LibraryTokenizer)
    assert ours["pair_gpt2"].name == "gpt2"  # byte-identical to GPT-2's: the bundled ranks
    assert ours["gpt2"].name == "tokenizer.json (byte-level BPE)"
    assert ours["pair_bos"].name == "vocab.json + merges.txt (byte-level BPE)"
    assert ours["bert"].name == "tokenizer.json (WordPiece)"
    assert ours["unigram"].name == "tokenizer.json (Unigram)"
    assert ours["roberta"]._rank_to_id is not None  # shuffled ids: ranks of our own, mapped
    assert ours["gpt2"]._rank_to_id is None and ours["neox"]._rank_to_id is None


def test_special_tokens_are_tokens_marked_special(ours):
    text = "Hi there"
    llama = ours["llama3"].encode(text)
    assert llama[0].special and llama[0].id == ours["llama3"].bos_id
    assert llama[0].raw == b"<|begin_of_text|>" and not any(t.special for t in llama[1:])
    assert [t.index for t in llama] == list(range(len(llama)))
    roberta = ours["roberta"].encode(text)
    assert (roberta[0].raw, roberta[-1].raw) == (b"<s>", b"</s>")
    assert roberta[0].special and roberta[-1].special and (roberta[0].id, roberta[-1].id) == (0, 2)
    bert = ours["bert"].encode(text)
    assert (bert[0].text, bert[-1].text) == ("[CLS]", "[SEP]") and bert[0].special
    assert ours["pair_bos"].encode(text)[0].raw == b"<|endoftext|>"
    assert not ours["neox_bos"].encode(text)[0].special
    assert not any(t.special for t in ours["gpt2"].encode(text))
    # special-token text: ordinary text unless allow_special
    assert not any(t.special for t in ours["qwen2"].encode("<|im_end|>"))
    marked = ours["qwen2"].encode("<|im_end|>", allow_special=True)
    assert len(marked) == 1 and marked[0].special and marked[0].id == ours["qwen2"].eos_id
    assert marked[0].to_dict() == {"index": 0, "id": marked[0].id, "text": "<|im_end|>",
                                   "bytes": b"<|im_end|>".hex(), "special": True}
    # NeoX's runs of spaces are added tokens, not special ones: always matched
    spaces = ours["neox"].encode("a    b")
    assert any(t.raw == b"    " and not t.special for t in spaces)


def test_tokens_carry_their_bytes(ours):
    for style in BYTE_LEVEL:
        tokens = ours[style].encode(CORPUS["emoji"])
        plain = b"".join(t.raw for t in tokens if not t.special)
        assert plain == (b" " if style == "gpt2_prefix" else b"") + CORPUS["emoji"].encode()
    pieces = [t.text for t in ours["bert"].encode("tokenizers split")]
    assert pieces[0] == "[CLS]" and any(p.startswith("##") for p in pieces)
    unigram = ours["unigram"].encode("the cat")  # SentencePiece's ▁ shown as the space it is
    assert unigram[0].raw.startswith(b" ") and unigram[-1].raw == b"</s>" and unigram[-1].special


def test_the_interface(ours):
    for style, tok in ours.items():
        assert tok.max_token_value == tok.n_vocab - 1
        ordinary = tok.ordinary_ids()
        assert ordinary == sorted(ordinary) and not set(ordinary) & tok.special_ids, style
        assert all(tok.token_bytes(i) for i in ordinary[:50])
    assert ours["llama3"].n_vocab == 50256 + 3 and ours["neox"].pad_id == 1
    assert (ours["roberta"].bos_id, ours["roberta"].eos_id, ours["roberta"].pad_id) == (0, 2, 1)
    assert ours["qwen2"].bos_id is None
    with pytest.raises(EncodingError, match="not in the vocabulary"):
        ours["gpt2"].token_bytes(10**6)


def test_repeated_random_draws_only_ordinary_ids(ours):
    for style in ("llama3", "roberta", "bert", "unigram"):
        tok = ours[style]
        probe = tokenize.repeated_random(200, 3, tok)
        assert [t.id for t in probe[:200]] == [t.id for t in probe[200:]]
        assert not any(t.special or t.id in tok.special_ids for t in probe)
        assert [t.index for t in probe] == list(range(400))
    assert tokenize.repeated_random(5, 1, ours["gpt2"]) == tokenize.repeated_random(5, 1,
                                                                                     ours["gpt2"])


def test_merges_written_as_strings_read_the_same(folders, ours, tmp_path):
    """tokenizer.json from tokenizers < 0.20 (most hub files) writes each merge as "a b"."""
    folder = tmp_path / "old"
    shutil.copytree(folders["gpt2"], folder)
    spec = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    spec["model"]["merges"] = [" ".join(pair) for pair in spec["model"]["merges"]]
    (folder / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
    old = hf_tokenizer.load(folder)
    for text in CORPUS.values():
        assert ids(old, text) == ids(ours["gpt2"], text)


# --- the Tokenizer interface over tiktoken encodings --------------------------------------------

def test_tiktoken_encodings_behind_the_interface():
    tok = tokenize.get_tokenizer("o200k_base")
    assert tok is tokenize.get_tokenizer("o200k_base")  # cached
    enc = tokenize.get_encoding("o200k_base")
    text = CORPUS["special_text"] + CORPUS["emoji"]
    for allow in (False, True):
        expected = enc.encode(text, allowed_special="all") if allow else enc.encode_ordinary(text)
        assert ids(tok, text, allow) == expected
        assert tokenize.tokenize(text, tok, allow) == tokenize.tokenize(text, enc, allow)
    assert (tok.name, tok.n_vocab, tok.max_token_value) == ("o200k_base", enc.n_vocab,
                                                           enc.max_token_value)
    assert tok.special_ids == {199999, 200018} and tok.eos_id == 199999 and tok.bos_id is None
    marked = tokenize.tokenize("a<|endoftext|>", enc, allow_special=True)
    assert [t.special for t in marked] == [False, True]
    assert "special" not in marked[0].to_dict() and marked[1].to_dict()["special"] is True
    assert tokenize.from_ids([976, 199999], tok)[1].special


def test_repeated_random_never_draws_a_special_or_a_gap():
    for name in ("o200k_base", "cl100k_base", "gpt2"):
        enc = tokenize.get_encoding(name)
        probe = tokenize.repeated_random(3000, 7, enc)
        valid = set(enc._mergeable_ranks.values())
        assert all(t.id in valid for t in probe), name
        assert probe == tokenize.repeated_random(3000, 7, tokenize.get_tokenizer(name))


# --- loading problems: one line each -------------------------------------------------------------

def test_a_folder_without_a_tokenizer(tmp_path):
    (tmp_path / "tokenizer.model").write_bytes(b"\x00")
    with pytest.raises(EncodingError, match=r"no tokenizer.json .*found only tokenizer.model"):
        hf_tokenizer.load(tmp_path)


@pytest.mark.parametrize("file, content, message", [
    ("tokenizer.json", "{not json", "tokenizer.json is not valid JSON"),
    ("tokenizer.json", "[1, 2]", "has no tokenizer model"),
    ("tokenizer_config.json", "{", "tokenizer_config.json is not valid JSON"),
    ("vocab.json", "[]", "vocab.json is not a vocabulary"),
    ("merges.txt", "#version: 0.2\nĠ t\nthree parts here\n", "merges.txt line 3 is not a merge"),
    ("merges.txt", "#version: 0.2\nĠ zzzz\n", "'zzzz' is not in the vocabulary"),
])
def test_corrupt_files_are_one_line_errors(folders, tmp_path, file, content, message):
    source = folders["gpt2"] if file.startswith("tokenizer") else folders["pair_bos"]
    folder = tmp_path / "m"
    shutil.copytree(source, folder)
    (folder / file).write_text(content, encoding="utf-8")
    with pytest.raises(EncodingError, match=message) as info:
        hf_tokenizer.load(folder)
    assert "\n" not in str(info.value) and str(folder) in str(info.value)


def test_an_unknown_model_type_is_one_line(folders, tmp_path):
    folder = tmp_path / "odd"
    shutil.copytree(folders["gpt2"], folder)
    spec = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    spec["model"]["type"] = "Mystery"
    (folder / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
    with pytest.raises(EncodingError, match="the tokenizers library could not read") as info:
        hf_tokenizer.load(folder)
    assert "\n" not in str(info.value)


MISSING_EXTRA = r"""
import sys
sys.modules["tokenizers"] = None  # as if the optional extra were not installed
from pathlib import Path
from attn_cli.tokenizers import hf as hf_tokenizer
from attn_cli.errors import EncodingError
gpt2 = hf_tokenizer.load(Path(sys.argv[2]))  # byte-level BPE needs no extra
assert [t.id for t in gpt2.encode("Hello world")] == [15496, 995]
try:
    hf_tokenizer.load(Path(sys.argv[1]))
except EncodingError as exc:
    print(exc)
"""


def test_without_the_extra_one_line_names_it(folders):
    proc = subprocess.run([sys.executable, "-c", MISSING_EXTRA, str(folders["bert"]),
                           str(folders["gpt2"])], capture_output=True, text=True, timeout=60,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (f"the tokenizer in {folders['bert']} (WordPiece) needs the optional "
                           f"extra: pip install 'attn-cli[hf]' (installed with pipx: pipx inject "
                           f"attn-cli tokenizers)\n")


def test_what_tiktoken_cannot_order_goes_to_the_library(folders, reference, tmp_path):
    """A token made by two merges far apart has no single rank: the library reads it."""
    folder = tmp_path / "dup"
    shutil.copytree(folders["gpt2"], folder)
    spec = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    spec["model"]["merges"].append(["Ġt", "he"])  # makes "Ġthe" again, last of all
    spec["model"]["merges"].insert(10, ["Ġth", "e"])  # … and early
    (folder / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
    tok = hf_tokenizer.load(folder)
    assert isinstance(tok, hf_tokenizer.LibraryTokenizer)
    from transformers import AutoTokenizer

    ref = AutoTokenizer.from_pretrained(str(folder))
    for text in CORPUS.values():
        assert ids(tok, text) == hf_ids(ref, text)
        assert b"".join(t.raw for t in tok.encode(text)) == text.encode()


# --- issue 10: nothing outlives its source ---------------------------------------------------------

@pytest.fixture
def tiktoken_cache(tmp_path, monkeypatch):
    cache = tmp_path / "tiktoken-cache"
    cache.mkdir()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    monkeypatch.setenv("DATA_GYM_CACHE_DIR", str(cache))
    return cache


def write_pair(folder: Path, merges: list[tuple[str, str]]):
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURES / "vocab.json", folder)
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2"}), encoding="utf-8")


def test_two_folders_named_m_and_an_edited_merges_file(tmp_path, monkeypatch, tiktoken_cache):
    from transformers import AutoTokenizer

    merges = gpt2_merges()
    write_pair(tmp_path / "a" / "m", merges)         # GPT-2's own files
    write_pair(tmp_path / "b" / "m", merges[:300])   # the same vocabulary, few merges
    text = "The cat sat on the mat because it was tired."
    seen = {}
    for where in ("a", "b", "a"):
        monkeypatch.chdir(tmp_path / where)
        expected = AutoTokenizer.from_pretrained("m")(text)["input_ids"]
        got = ids(hf_tokenizer.load(Path("m")), text)
        enc = tokenize.encoding_from_files(Path("m/vocab.json"), Path("m/merges.txt"))
        assert got == expected == enc.encode_ordinary(text), where
        seen[where] = got
    assert seen["a"] != seen["b"] and len(seen["b"]) > len(seen["a"])

    monkeypatch.chdir(tmp_path / "a")
    write_pair(Path("m"), merges[:1000])  # edit merges.txt in place
    expected = AutoTokenizer.from_pretrained("m")(text)["input_ids"]
    assert ids(hf_tokenizer.load(Path("m")), text) == expected != seen["a"]
    enc = tokenize.encoding_from_files(Path("m/vocab.json"), Path("m/merges.txt"))
    assert enc.encode_ordinary(text) == expected
    assert list(tiktoken_cache.iterdir()) == []  # tiktoken's shared cache was never written


def test_loading_writes_nothing_anywhere(folders, tmp_path, tiktoken_cache):
    folder = tmp_path / "copy"
    shutil.copytree(folders["llama3"], folder)
    before = sorted(p.name for p in folder.iterdir())
    hf_tokenizer.load(folder).encode("hello")
    assert sorted(p.name for p in folder.iterdir()) == before
    assert list(tiktoken_cache.iterdir()) == []


def test_hf_tokenizer_imports_neither_torch_nor_tokenizers(folders):
    code = ("import sys; from pathlib import Path; from attn_cli.tokenizers import hf as hf_tokenizer; "
            f"hf_tokenizer.load(Path({str(folders['qwen2'])!r})).encode('hi'); "
            "print(sorted(m for m in ('torch', 'tokenizers', 'transformers', 'numpy') "
            "if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
