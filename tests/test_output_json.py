"""JSON writing: a streamed document (output.Stream) and pre-serialised causal matrices give
exactly the bytes of one orjson.dumps of the whole document; items are written as made."""

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


@pytest.mark.parametrize("T", [2, 3, 50])
def test_causal_matrix_has_the_bytes_orjson_writes(T):
    rng = np.random.default_rng(T)
    w = np.tril(rng.random((T, T)) ** 8).astype(np.float32)  # tiny values too
    fragment = output.causal_matrix(w)
    assert isinstance(fragment, orjson.Fragment)
    assert output.dumps({"w": fragment}) == plain({"w": w})


def test_a_matrix_that_is_not_causal_is_left_to_orjson():
    w = matrices()
    minus = w.copy()
    minus[1, 4] = -0.0  # equal to 0, but printed as -0.0: not a copied ",0.0"
    full = np.ones((3, 3), dtype=np.float32)
    for m in (minus, full, w.astype(np.float64), w[:, :4], w[:1, :1]):
        assert output.causal_matrix(m) is m
    assert b"-0.0" in output.dumps({"w": output.causal_matrix(minus)})


def test_float_texts_are_orjson_s_float32_texts():
    values = np.array([1.0, 0.1, 1e-8, 3.4028235e38, 0.0, 0.33333334], dtype=np.float32)
    assert output.float_texts(values) == [orjson.dumps(v, option=orjson.OPT_SERIALIZE_NUMPY)
                                          for v in values]
    assert output.float_texts(values[:0]) == []
