"""Rank tables from a checkpoint's BPE files: GPT-2's byte alphabet, vocab.json and
merges.txt read with one clear error each, and HF's (vocab, merges) as tiktoken's ranks.

Shared by the tiktoken encodings (`encoding_from_files`) and the tokenizer.json reader, so
neither imports the other. This module never imports torch.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from attn_cli.errors import EncodingError


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
