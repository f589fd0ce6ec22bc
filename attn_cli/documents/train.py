"""The documents of `attn train --json` (its header line; schema train) and `attn history`
(schema history)."""

from __future__ import annotations

import numpy as np

from attn_cli.documents import SCHEMA_VERSION


def train_header(out, encoding: str, vocab: int, cfg, about: dict) -> dict:
    """The first line of `attn train --json`; one line per progress report follows."""
    return {"schema_version": 1, "command": "train", "out": str(out), "encoding": encoding,
            "vocab": vocab, "model": cfg.to_dict(), "training": about}


def history_doc(hist) -> dict:
    doc = {"schema_version": SCHEMA_VERSION, "command": "history", "model": str(hist.folder),
           "reports": hist.reports}
    if hist.weights is None:
        return {**doc, "snapshots": None}
    return {**doc, "layer": hist.layer, "head": hist.head,
            "probe": [t.to_dict() for t in hist.probe],
            "snapshots": [{"step": step, "loss": None if np.isnan(loss) else np.float32(loss),
                           "induction": None if s.induction is None else np.float32(s.induction),
                           "previous_token": np.float32(s.previous_token), "weights": w}
                          for step, loss, s, w in zip(hist.steps, hist.losses, hist.scores,
                                                      hist.weights)]}
