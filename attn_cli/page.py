"""`--page FILE.html`: one self-contained HTML file to explore a command's attention by hand.

The page is built from the command's JSON document (the same fields `--json` writes, made by
the same document functions), so what it shows is what the JSON says: the tokens, every head
that was captured, each head's pattern scores and label (summary.summarise, as the terminal's
`heads` table), its map letter and score (headmap.MapCell, as the terminal's map), and for
`generate` each new token with its probability and rows. The weights are packed compactly:
fractions k/255 (8 bits) or k/65535 (16 bits), little-endian, deflated (zlib) and base64-coded,
one blob per layer, which the page inflates with the browser's own DecompressionStream when the
layer is first shown. The page says which precision it holds; a hovered weight is shown to
that precision. No network, no server, no library: the page's script and style (assets/page.js,
page.css) are inlined. Light: NumPy and the standard library; torch is never needed here.
"""

from __future__ import annotations

import base64
import html
import re
import zlib
from importlib import resources
from pathlib import Path

import numpy as np

from attn_cli import analysis, output, safe
from attn_cli.headmap import LETTERS, NONE_LETTER, MapCell
from attn_cli.tokenizers.base import visible

# Weights up to this many are stored with 16 bits (±0.0000077), above it with 8 bits (±0.002):
# a 270-head, 500-token model holds 34M weights, 7 MB deflated at 8 bits.
SIXTEEN_BITS_UP_TO = 2_000_000
DECIMALS = {8: 3, 16: 4}  # what a stored weight is shown with
LEVEL = 6  # zlib: 8-bit weights of 500 tokens deflate to ~0.21 of their bytes in ~0.15 s/MB


# ---------------------------------------------------------------- documents

def self_document(cap, command: str, layer: int | None = None,
                  pattern: str | None = None, ranked=None) -> dict:
    """The document of `inspect` or `heads` for the page: the header fields --json writes, and
    every captured head as `heads --json` describes it (weights, scores, label), layer by
    layer (documents.attention.heads_doc for each layer); with `ranked` (headmap.FromTo, heads
    --from A --to B), its ranking as `heads --json` writes it."""
    from attn_cli.documents.attention import heads_doc

    layers = list(dict.fromkeys(h.layer for h in cap.heads))
    per_layer = [heads_doc(cap, la, ranked=ranked if i == 0 else None)
                 for i, la in enumerate(layers)]
    doc = {k: v for k, v in per_layer[0].items() if k not in ("layer", "heads")}
    doc["command"] = command
    doc["attention"] = [{"layer": la, **h} for la, d in zip(layers, per_layer)
                        for h in d["heads"]]
    if layer is not None:
        doc["layer"] = layer
    if pattern is not None:
        doc["pattern"] = pattern
    return doc


# ---------------------------------------------------------------- packing

class _Blobs:
    """Weights quantised to k / scale and packed: one blob (deflated, base64) per group."""

    def __init__(self, count: int) -> None:
        self.bits = 16 if count <= SIXTEEN_BITS_UP_TO else 8
        self.scale = (1 << self.bits) - 1
        self.groups: dict[str, list[np.ndarray]] = {}
        self.sizes: dict[str, int] = {}

    def add(self, group: str, values: np.ndarray) -> dict:
        """Store `values` (1-D, in [0, 1]) in `group`; where the page finds them."""
        parts = self.groups.setdefault(group, [])
        offset = self.sizes.get(group, 0)
        parts.append(values)
        self.sizes[group] = offset + values.size
        return {"blob": group, "offset": offset}

    def quantised(self, values: np.ndarray) -> np.ndarray:
        dtype = "<u2" if self.bits == 16 else "u1"
        v = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0, posinf=1.0, neginf=0.0)
        return np.rint(np.clip(v, 0.0, 1.0) * self.scale).astype(dtype)

    def encoded(self, first: str | None = None) -> dict[str, str]:
        """Each group's blob, `first` first (the page is drawn as soon as it is read)."""
        out = {}
        order = sorted(self.groups, key=lambda g: g != first)
        for group in order:
            parts = self.groups[group]
            raw = self.quantised(np.concatenate(parts) if parts else np.zeros(0)).tobytes()
            out[group] = base64.b64encode(zlib.compress(raw, LEVEL)).decode("ascii")
        return out


def _matrix(weights, causal: bool) -> np.ndarray:
    """A (rows, cols) matrix as the page stores it: the lower triangle, row by row, for a causal
    square matrix (what is above it is masked); every entry otherwise."""
    w = np.asarray(weights, dtype=np.float32)
    if causal and w.shape[0] == w.shape[1]:
        return w[np.tril_indices(w.shape[0])]
    return w.reshape(-1)


def _stored(shape: tuple[int, int], causal: bool) -> int:
    n, m = shape
    return n * (n + 1) // 2 if causal and n == m else n * m


def _shown(token: dict) -> str:
    """A token's text as the terminal shows it: whitespace visible, controls escaped."""
    raw = bytes.fromhex(token["bytes"]) if "bytes" in token else token["text"].encode("utf-8")
    return safe.terminal(visible(raw))


def _f(x) -> float | None:
    return None if x is None else float(np.float32(x))


def _cell(rec: dict, pattern: str | None, scores: dict) -> dict:
    """A head's map cell: its letter and score as the terminal's map has them (MapCell)."""
    cell = MapCell(rec["layer"], rec["head"], pattern, analysis.HeadScores(**scores)) \
        if scores else None
    return {"layer": rec["layer"], "head": rec["head"], "pattern": pattern,
            "letter": cell.letter if cell else LETTERS.get(pattern, NONE_LETTER),
            "score": _f(cell.score()) if cell else None,
            "scores": {k: _f(v) for k, v in scores.items()},
            "mean_entropy": _f(rec.get("mean_entropy"))}


def _heads(blobs: _Blobs, name: str, records: list[dict], causal: bool, labelled: bool) -> list:
    """The page's head records of one tab, each head's weights stored in its layer's blob."""
    out = []
    for rec in records:
        w = np.asarray(rec["weights"], dtype=np.float32)
        if "scores" in rec:  # inspect / heads: as summary.summarise found them
            cell = _cell(rec, rec.get("pattern"), rec["scores"])
        elif labelled:  # encoder / decoder self-attention: the same analysis
            scores = analysis.head_scores(w, rec.get("ids"))
            cell = _cell({**rec, "mean_entropy": float(analysis.entropy(w).mean())},
                         analysis.label(w, causal, scores), scores.to_dict())
        else:  # cross-attention: no self-attention pattern; its score is its focus
            h = float(analysis.entropy(w).mean())
            cell = _cell({**rec, "mean_entropy": h}, None, {})
            cell["score"] = _f(1.0 - h / np.log(w.shape[1])) if w.shape[1] > 1 else None
        cell.update(blobs.add(f"{name}-{rec['layer']}", _matrix(w, causal)),
                    rows=int(w.shape[0]), cols=int(w.shape[1]), tri=bool(
                        causal and w.shape[0] == w.shape[1]))
        out.append(cell)
    return out


def _count(records: list[dict], causal: bool) -> int:
    return sum(_stored(np.shape(r["weights"]), causal) for r in records)


def page_data(doc: dict) -> tuple[dict, dict[str, str]]:
    """(what the page shows, as JSON; the packed weights by blob name) for a document of
    inspect, heads, cross or generate."""
    command = doc["command"]
    model = doc.get("model", {})
    from attn_cli.views.matrix import _RAMP  # the terminal's heat colours

    data = {"command": command, "encoding": doc.get("encoding"), "model": model,
            "ramp": [[x, list(rgb)] for x, rgb in _RAMP]}
    if command == "generate":
        return _generate(doc, data)
    if command == "cross":
        src = [_shown(t) for t in doc["source_tokens"]]
        tgt = [_shown(t) for t in doc["target_tokens"]]
        ids = {"encoder": [t["id"] for t in doc["source_tokens"]],
               "decoder": [t["id"] for t in doc["target_tokens"]]}
        kinds = {"encoder": (src, src, False), "decoder": (tgt, tgt, True),
                 "cross": (tgt, src, False)}
        records = {k: [dict(r, ids=ids.get(k)) for r in doc["attention"] if r["kind"] == k]
                   for k in kinds}
        blobs = _Blobs(sum(_count(records[k], kinds[k][2]) for k in kinds))
        data["title"] = f"{doc['source']} → {doc['target']}"
        data["views"] = [{"name": k, "queries": q, "keys": keys, "causal": causal,
                          "heads": _heads(blobs, k, records[k], causal, k != "cross")}
                         for k, (q, keys, causal) in kinds.items() if records[k]]
    else:
        causal = bool(model.get("causal", True))
        toks = [_shown(t) for t in doc["tokens"]]
        blobs = _Blobs(_count(doc["attention"], causal))
        data["title"] = doc["text"]
        data["views"] = [{"name": "self-attention", "queries": toks, "keys": toks,
                          "causal": causal,
                          "heads": _heads(blobs, "self", doc["attention"], causal, True)}]
        data["start"] = {"layer": doc.get("layer"), "pattern": doc.get("pattern")}
        ranking = doc.get("ranking")
        if ranking is not None and ranking["pattern"] == "from-to":  # the top head, A pinned
            top = ranking["heads"][0]
            data["start"].update(layer=top["layer"], head=top["head"],
                                 query=ranking["from"]["index"])
    heads = data["views"][0]["heads"]
    start = next((h for h in heads if h["layer"] == data.get("start", {}).get("layer")), heads[0])
    data["bits"], data["decimals"] = blobs.bits, DECIMALS[blobs.bits]
    return data, blobs.encoded(first=start["blob"])


def _generate(doc: dict, data: dict) -> tuple[dict, dict[str, str]]:
    prompt = [_shown(t) for t in doc["tokens"]]
    steps = doc["generated"]
    blobs = _Blobs(sum(np.size(a["weights"]) for s in steps for a in s["attention"]))
    data["title"] = doc["prompt"]
    data["tokens"] = prompt + [_shown(s) for s in steps]
    data["prompt_length"] = len(prompt)
    data["sampling"] = doc.get("sampling")
    data["stop"] = doc.get("stop")
    data["steps"] = [{
        "index": s["index"], "id": s["id"], "token": _shown(s),
        "probability": _f(s["probability"]),
        "top": [{"id": c["id"], "token": safe.terminal(visible(c["token"].encode("utf-8"))),
                 "probability": _f(c["probability"])} for c in s["top"]],
        "rows": [{"layer": a["layer"], "head": a["head"], "length": int(np.size(a["weights"])),
                  **blobs.add("steps", np.asarray(a["weights"], dtype=np.float32).reshape(-1))}
                 for a in s["attention"]],
    } for s in steps]
    data["bits"], data["decimals"] = blobs.bits, DECIMALS[blobs.bits]
    return data, blobs.encoded()


# ---------------------------------------------------------------- the file

def _asset(name: str) -> str:
    return resources.files("attn_cli").joinpath("assets", name).read_text(encoding="utf-8")


def _script_json(obj) -> str:
    """JSON that can sit inside <script>: every '<' escaped, so no '</script>' can end it."""
    return output.dumps(obj).decode("utf-8").rstrip("\n").replace("<", "\\u003c")


def render_page(doc: dict) -> str:
    """The whole page, as text: the template with its style, script, data and blobs inlined."""
    ascii_mode, safe.ASCII = safe.ASCII, False  # the page is UTF-8 whatever stdout is
    try:
        data, blobs = page_data(doc)
    finally:
        safe.ASCII = ascii_mode
    title = f"attn {data['command']} · {data['title']}"
    if len(title) > 80:
        title = title[:79] + "…"
    # the blob shown first comes before the script, the rest after it; each is announced
    # once it has been read
    tags = [f'<script type="application/octet-stream" id="blob-{name}">{text}</script><script>'
            f'(window.attnArrived = window.attnArrived || []).push("{name}")</script>'
            for name, text in blobs.items()]
    parts = {"/*ATTN_CSS*/": _asset("page.css"), "/*ATTN_JS*/": _asset("page.js"),
             "ATTN_TITLE": html.escape(title), "ATTN_DATA": _script_json(data),
             "<!--ATTN_FIRST-->": "\n".join(tags[:1]), "<!--ATTN_BLOBS-->": "\n".join(tags[1:])}
    # one pass over the template: nothing inserted is searched again
    return re.sub("|".join(map(re.escape, parts)), lambda m: parts[m.group(0)],
                  _asset("page.html"))


def write(path: Path, doc: dict) -> None:
    """Write the page of `doc` to `path` (WriteError: cannot write PATH: REASON)."""
    output.write_file(path, render_page(doc))
