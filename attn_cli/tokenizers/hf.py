"""A Hugging Face checkpoint's own tokenizer, behind `tokenizers.Tokenizer` (SPEC §2).

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

from pathlib import Path

from attn_cli.errors import EncodingError
from attn_cli.tokenizers.base import Tokenizer
from attn_cli.tokenizers.byte_level import ByteLevelBPE, _byte_level
from attn_cli.tokenizers.hf_files import AddedToken, _apply_config, _Config, _spec_from_pair
from attn_cli.tokenizers.library import EXTRA, LibraryTokenizer, _library
from attn_cli.tokenizers.ranks import _read_json, _Unsupported, gpt2_ranks

# the reader's API: load, and what a caller may check a result against
__all__ = ["load", "ByteLevelBPE", "LibraryTokenizer", "AddedToken", "EXTRA", "gpt2_ranks"]


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
