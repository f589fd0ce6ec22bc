"""The documents of the capture commands: inspect (whole, or as NDJSON header and records),
heads, steps, rollout and compare (schemas of the same names).

JSON keeps every float32 as it is (shortest repr that round-trips), with masked (−∞) scores as
null; inspect's attention list is made as it is written (output.Stream).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import groupby

import numpy as np

from attn_cli import analysis, output
from attn_cli.capture import Capture, HeadCapture
from attn_cli.documents import SCHEMA_VERSION
from attn_cli.headmap import FromTo, MapCell
from attn_cli.summary import HeadDiff, Side, most_different, patterns, ranking, summarise
from attn_cli.tokenizers.base import Token


def f32(x: float) -> np.float32:
    return np.float32(x)


def _head_doc(cap: Capture, command: str) -> dict:
    """The fields every model command's JSON starts with, in the documented order."""
    return {
        "schema_version": SCHEMA_VERSION,
        "command": command,
        "text": cap.text,
        "encoding": cap.encoding,
        "model": cap.config.to_dict(),
        "tokens": [t.to_dict() for t in cap.tokens],
    }


def attention_records(cap: Capture, top_k: int) -> Iterator[dict]:
    """inspect's attention records, one per head in cap.heads order (or, from capture.stream,
    in the order cap.pending makes each layer's heads), made as they are asked for:
    entropy and top-k for all the heads of a layer at once, each head's top list already JSON
    (orjson.Fragment). The next layer's entropy, top-k and top lists (NumPy, which releases
    the GIL) are made on a second thread while this layer's records are written."""
    from concurrent.futures import Future, ThreadPoolExecutor

    prefixes = _key_prefixes(cap.tokens)
    layers = cap.pending if cap.pending is not None else \
        [list(g) for _, g in groupby(cap.heads, key=lambda h: (h.layer, h.reduced))]

    def analyse(group: list[HeadCapture]):
        # head by head (each row's figures are its own: the same bits as for a stack of the
        # heads, without copying the layer's matrices into one)
        window = cap.window(group[0].layer)
        ent = None if group[0].reduced == "max" else [analysis.entropy(h.weights) for h in group]
        tops = [analysis.top_k_arrays(h.weights, top_k, cap.config.causal, window)
                for h in group]
        keys, values = (np.stack(arrays) for arrays in zip(*tops))
        return ent, _top_json(prefixes, keys, values)

    pool: list[ThreadPoolExecutor] = []

    def start(group: list[HeadCapture]) -> Future:
        if not pool:  # the first layer: there is nothing to write while it is analysed
            pool.append(ThreadPoolExecutor(max_workers=1))
            done = Future()
            done.set_result(analyse(group))
            return done
        return pool[0].submit(analyse, group)

    try:
        for group, pending in _one_ahead(layers, start):
            ent, tops = pending.result()
            for i, h in enumerate(group):
                yield {"layer": h.layer, "head": h.head, "weights": output.Rows(h.weights),
                       "entropy": None if ent is None else ent[i], "top": tops[i]}
    finally:
        for executor in pool:
            executor.shutdown(wait=True)


def _one_ahead(items: Iterable, start) -> Iterator[tuple]:
    """(item, start(item)) for each item, start(next item) called before this one is handed
    on: the work on the next item runs while the caller uses this one."""
    previous = None
    for item in items:
        current = (item, start(item))
        if previous is not None:
            yield previous
        previous = current
    if previous is not None:
        yield previous


def _key_prefixes(tokens: list[Token]) -> output.Texts:
    """Per key index j, the JSON of a top entry up to its weight: {"index":j,"token":…,"weight":"""
    return output.Texts.of([b'{"index":%d,"token":%b,"weight":' % (j, output.dumps(t.text)[:-1])
                            for j, t in enumerate(tokens)])


_TOP_ENDS = (b"}", b"},", b"]},", b"]}]")  # an entry (last in its row or not), a row (last or not)


def _top_json(prefixes: output.Texts, keys: np.ndarray, values: np.ndarray) -> list:
    """keys, values (..., T, k) from analysis.top_k_arrays -> per leading index the `top`
    list [{query, keys: [{index, token, weight}]}] as an orjson.Fragment: every weight
    formatted in one call, the pieces put together by NumPy (output.joined).

    Row i of a head is the pieces  {"query":i,"keys":[  then per entry  <prefix of its key>
    <weight> }  (or }, before the next entry), then ]}, (or ]}] after the head's last row;
    its first row starts with [ )."""
    import orjson

    T, k = keys.shape[-2:]
    keys = keys.reshape(-1, T, k)
    valid = keys >= 0  # a row's entries come first, then -1s
    n = valid.sum(axis=-1).ravel()  # entries per row, rows of every head in order
    rows, entries = len(n), int(n.sum())
    queries = [b'{"query":%d,"keys":[' % i for i in range(T)]
    table, (ends_at, prefix_at, query_at, weight_at) = output.Texts.concat(
        output.Texts.of(list(_TOP_ENDS)), prefixes, output.Texts.of(queries + [b"[" + queries[0]]),
        output.float_texts(values.reshape(keys.shape)[valid].astype(np.float32)))
    pieces = 2 + 3 * n  # per row
    first = np.cumsum(pieces) - pieces  # each row's first piece
    ids = np.empty(int(pieces.sum()), dtype=np.int64)
    query = query_at + np.tile(np.arange(T), len(keys))
    query[::T] = query_at + T  # a head's first row opens its list
    ids[first] = query
    closing = first + 1 + 3 * n
    row_end = np.full(rows, ends_at + 2)
    row_end[T - 1::T] = ends_at + 3
    ids[closing] = row_end
    row = np.repeat(np.arange(rows), n)  # each entry's row
    nth = np.arange(entries) - np.repeat(np.cumsum(n) - n, n)  # its place in the row
    at = first[row] + 1 + 3 * nth
    ids[at] = prefix_at + keys[valid]
    ids[at + 1] = weight_at + np.arange(entries)
    ids[at + 2] = ends_at + (nth < n[row] - 1)
    text, ends = output.joined(table, ids)
    data, bounds = text.tobytes(), [0, *ends[closing[T - 1::T]].tolist()]
    return [orjson.Fragment(data[a:b]) for a, b in zip(bounds, bounds[1:])]


def top_records(cap: Capture, weights: np.ndarray, top_k: int, window: int | None = None):
    """The `top` list of one (T, C) matrix, as JSON (an orjson.Fragment)."""
    keys, values = analysis.top_k_arrays(weights, top_k, cap.config.causal, window)
    return _top_json(_key_prefixes(cap.tokens), keys, values)[0]


def inspect_header(cap: Capture) -> dict:
    return _head_doc(cap, "inspect")


def inspect_doc(cap: Capture, top_k: int) -> dict:
    """The inspect document; its attention list is an output.Stream, made as it is written
    (as the forward pass goes, from capture.stream: the embeddings are known after it)."""
    doc = inspect_header(cap)
    doc["attention"] = output.Stream(attention_records(cap, top_k))
    doc["embeddings"] = output.Later(lambda: embeddings_record(cap))
    return doc


def embeddings_record(cap: Capture) -> dict:
    return {"layer": "final", "vectors": cap.embeddings}


def heads_doc(cap: Capture, layer: int, pattern: str | None = None,
              cells: list[MapCell] | None = None, ranked: FromTo | None = None) -> dict:
    """`attn heads`: the layer's heads in detail; with `cells`, the map of every head; with
    `pattern` or `ranked` (--from/--to), the ranking of every head."""
    out = {**_head_doc(cap, "heads"), "layer": layer, "heads": []}
    if cells is not None:
        out["map"] = [{"layer": c.layer, "head": c.head, "pattern": c.pattern,
                       "scores": _scores(c.scores)} for c in cells]
    if ranked is not None:
        def token(i: int) -> dict:
            return {"index": i, "token": cap.tokens[i].text}

        out["ranking"] = {"pattern": "from-to", "from": token(ranked.query),
                          "to": token(ranked.key),
                          "heads": [{"layer": la, "head": he, "score": f32(w)}
                                    for la, he, w in ranked.heads]}
    if pattern:
        out["ranking"] = {"pattern": pattern, "heads": [
            {"layer": la, "head": he, "score": None if sc is None else f32(sc)}
            for la, he, sc in ranking(cap, pattern)]}
    for s in summarise(cap, layer):
        out["heads"].append({
            "head": s.head.head,
            "kv_group": cap.config.kv_group(s.head.head),
            "weights": s.head.weights,
            "mean_entropy": f32(s.mean_entropy),
            "strongest": {"query": s.strongest.query, "key": s.strongest.key,
                          "weight": f32(s.strongest.weight)},
            "scores": _scores(s.scores),
            "pattern": s.pattern,
        })
    return out


def _scores(scores: analysis.HeadScores) -> dict:
    return {k: None if v is None else f32(v) for k, v in scores.to_dict().items()}


def steps_doc(cap: Capture, h: HeadCapture, query: int | None) -> dict:
    stages = dict(h.stages, weights=h.weights)
    out = {**_head_doc(cap, "steps"), "layer": h.layer, "head": h.head, "d_head": cap.config.d_head,
           "stages": {name: stages[name] for name in ("x", "q", "k", "v", "scores", "scaled",
                                                      "masked", "weights", "output")}}
    if query is not None:
        out["query"] = {"index": query, "weights": h.weights[query],
                        "output": h.stages["output"][query]}
    return out


def steps_ndjson(doc: dict) -> tuple[dict, list[dict]]:
    """A steps document (steps_doc, or cross --steps) as NDJSON: its header fields, then one
    record per stage, then the query's (if any)."""
    stages = doc.pop("stages")
    q = doc.pop("query", None)
    records = [{"stage": name, "values": values} for name, values in stages.items()]
    return doc, records + ([{"query": q}] if q is not None else [])


def rollout_doc(cap: Capture, rolled: np.ndarray, top_k: int) -> dict:
    return {**_head_doc(cap, "rollout"), "rollout": rolled,
            "top": top_records(cap, rolled, top_k)}


def compare_doc(a: Side, b: Side, diffs: list[HeadDiff]) -> dict:
    pa, pb = patterns(a), patterns(b)
    focus = most_different(diffs)

    def side(s: Side) -> dict:
        return {"options": s.options, "encoding": s.cap.encoding,
                "model": s.cap.config.to_dict(), "token_ids": [t.id for t in s.cap.tokens]}

    return {
        "schema_version": SCHEMA_VERSION,
        "command": "compare",
        "text": a.cap.text,
        "tokens": [t.to_dict() for t in a.cap.tokens],
        "a": side(a),
        "b": side(b),
        "metric": "total_variation",
        "mean": f32(np.mean([d.mean for d in diffs])),
        "most_different": {"layer": focus.a.layer, "head": focus.a.head},
        "heads": [{
            "layer": d.a.layer,
            "head": d.a.head,
            "mean": f32(d.mean),
            "max": f32(d.rows[d.worst_query]),
            "max_query": d.worst_query,
            "rows": d.rows.astype(np.float32),
            "a_pattern": pa[d.a.layer, d.a.head],
            "b_pattern": pb[d.a.layer, d.a.head],
        } for d in diffs],
    }
