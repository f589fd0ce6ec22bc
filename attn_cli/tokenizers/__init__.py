"""Text to tokens: one `Tokenizer` interface over tiktoken encodings and checkpoint tokenizers.

    base.py        Token, the Tokenizer interface, tokenize / from_ids / repeated_random
    encodings.py   tiktoken's encodings, bundled and checked (get_encoding, get_tokenizer)
    ranks.py       rank tables from vocab.json + merges.txt (GPT-2's byte alphabet)
    hf.py          a checkpoint's own tokenizer: load(folder) -> Tokenizer, with
    hf_files.py      what its tokenizer files say,
    byte_level.py    byte-level BPE run in tiktoken,
    library.py       everything else, run by the `tokenizers` library (attn-cli[hf])

`get_tokenizer(name)` wraps a tiktoken encoding in the `Tokenizer` interface; a checkpoint's
own tokenizer (tokenizer.json, or vocab.json + merges.txt) comes from `hf.load` behind the same
interface, special tokens (BOS, [CLS]/[SEP], <s>/</s>) included. `tokenize` and `from_ids`
take either a `Tokenizer` or a bare `tiktoken.Encoding` (the older API).

Importing this package never imports torch, nor the checkpoint reader (hf.py).
"""

from attn_cli.tokenizers.base import (ENDOFPROMPT, ENDOFTEXT, TiktokenTokenizer, Token,
                                      Tokenizer, VocabTokenizer, from_ids, repeated_random,
                                      tokenize, visible)
from attn_cli.tokenizers.encodings import (BUNDLED, R50K_PAT, availability, encoding_from_files,
                                           get_encoding, get_tokenizer, known_encodings)

__all__ = ["ENDOFPROMPT", "ENDOFTEXT", "TiktokenTokenizer", "Token", "Tokenizer",
           "VocabTokenizer", "from_ids", "repeated_random", "tokenize", "visible", "BUNDLED",
           "R50K_PAT", "availability", "encoding_from_files", "get_encoding", "get_tokenizer",
           "known_encodings"]
