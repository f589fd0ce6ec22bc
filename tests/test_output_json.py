"""JSON writing: a streamed document (output.Stream) gives exactly the bytes of one orjson.dumps
of the whole document, items written as made; texts put together by NumPy (output.joined)
are the texts orjson writes."""

from __future__ import annotations

import sys

import numpy as np
import orjson
import pytest

from attn_cli import output


def plain(doc) -> bytes:
    """What attn wrote before streaming: the whole document in one orjson call."""
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE)


def matrices():
    rng = np.random.default_rng(0)
    causal = np.tril(rng.random((6, 6))).astype(np.float32)
    causal[2, 1] = 0.0  # a visible zero
    causal[3, 2] = 1e-8  # printed in exponent form
    return causal


@pytest.mark.parametrize("items", [0, 1, 3])
def test_a_streamed_document_is_the_plain_document(items):
    w = matrices()
    records = [{"layer": i, "weights": w, "entropy": w[i], "top": [{"query": 0, "t": "é\"\n"}]}
               for i in range(items)]
    doc = {"schema_version": 1, "text": "a \"b\" \u202e", "attention": records, "end": None}
    streamed = dict(doc, attention=output.Stream(iter(records)))
    assert output.dumps(streamed) == plain(doc)
    assert output.dumps(doc) == plain(doc)


def test_write_json_writes_each_item_before_making_the_next(capsysbinary):
    seen = []

    def records():
        for i in range(3):
            sys.stdout.buffer.flush()
            seen.append(capsysbinary.readouterr().out)
            yield {"i": i}

    output.write_json({"a": 1, "items": output.Stream(records()), "b": [2]})
    rest = capsysbinary.readouterr().out
    assert seen[1].endswith(b'[{"i":0}') and seen[2] == b',{"i":1}'
    assert b"".join(seen) + rest == b'{"a":1,"items":[{"i":0},{"i":1},{"i":2}],"b":[2]}\n'


def texts_of(t: output.Texts) -> list[bytes]:
    return [t.buf[a:a + n].tobytes() for a, n in zip(t.start, t.length)]


def test_float_texts_are_orjson_s_float32_texts():
    values = np.array([1.0, 0.1, 1e-8, 3.4028235e38, 0.0, 0.33333334, 1e-45, 123456789.0],
                      dtype=np.float32)
    assert texts_of(output.float_texts(values)) == [
        orjson.dumps(v, option=orjson.OPT_SERIALIZE_NUMPY) for v in values]
    assert texts_of(output.float_texts(values[:0])) == []


def test_joined_lays_the_chosen_texts_end_to_end():
    a = output.Texts.of([b"", b"ab", b"c", b'"\xc3\xa9"'])
    b = output.Texts.of([b"xyz", b","])
    table, (at_a, at_b) = output.Texts.concat(a, b)
    assert (at_a, at_b) == (0, 4)
    ids = np.array([at_b + 0, 1, at_b + 1, 3, 0, 2, 2, 1])
    text, ends = output.joined(table, ids)
    pieces = [(texts_of(a) + texts_of(b))[i] for i in ids]
    assert text.tobytes() == b"".join(pieces)
    assert ends.tolist() == np.cumsum([len(p) for p in pieces]).tolist()
    assert output.joined(table, ids[:0])[0].tobytes() == b""
