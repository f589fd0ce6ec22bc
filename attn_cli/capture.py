"""One forward pass -> a `Capture` of plain data (NumPy arrays), ready for analysis and rendering.

This is where the text, the tokenizer and the model meet, and where the view's choice of
layers and heads becomes the model's `keep`: heads that were not asked for are never copied
out of the forward pass.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from attn_cli.models.config import ModelConfig
from attn_cli.errors import ConfigError, InputError
from attn_cli.tokenizers import Token


@dataclass
class HeadCapture:
    layer: int
    head: int
    weights: np.ndarray  # (T, T) float32; rows are queries, columns keys
    stages: dict[str, np.ndarray] = field(default_factory=dict)  # see model.STAGES
    reduced: str | None = None  # "mean" or "max" for an --reduce matrix (head -1)


@dataclass
class Capture:
    text: str
    encoding: str
    tokens: list[Token]
    config: ModelConfig
    heads: list[HeadCapture]  # ordered by (layer, head)
    hidden: list[np.ndarray]  # residual stream after each block, (T, d_model)
    embeddings: np.ndarray | None  # LN_f(final hidden state), (T, d_model); None until run
    # capture.stream: each layer's heads, still to be made (heads, hidden and embeddings are
    # filled in as this is read); None once they are all in `heads`
    pending: Iterator[list[HeadCapture]] | None = None

    def window(self, layer: int) -> int | None:
        """Layer `layer`'s attention window (None: none; a reduced matrix over layers has none)."""
        return self.config.window(layer) if layer >= 0 else None

    def allowed(self, layer: int):
        """(T, T) bool: the keys each query of this layer sees."""
        from attn_cli.analysis import allowed

        return allowed(len(self.tokens), self.config.causal, self.window(layer))

    def head(self, layer: int, head: int) -> HeadCapture:
        for h in self.heads:
            if (h.layer, h.head) == (layer, head):
                return h
        raise KeyError((layer, head))


def select(config: ModelConfig, layers: list[int] | None, heads: list[int] | None
           ) -> dict[int, tuple[int, ...]]:
    """Validate --layer/--head against the model and return layer -> heads to keep."""
    layers = sorted(set(range(config.n_layers) if not layers else layers))
    heads = sorted(set(range(config.n_heads) if not heads else heads))
    for flag, values, n, what in (("--layer", layers, config.n_layers, "layers"),
                                  ("--head", heads, config.n_heads, "heads")):
        bad = [v for v in values if not 0 <= v < n]
        if bad:
            span = "0" if n == 1 else f"0-{n - 1}"
            raise ConfigError(f"{flag} {bad[0]} is out of range: this model has {what} {span}")
    return {layer: tuple(heads) for layer in layers}


def run(model, text: str, encoding: str, tokens: list[Token],
        keep: dict[int, tuple[int, ...]], stages: bool = False) -> Capture:
    """Run the model once on the tokens and copy out what `keep` names."""
    cap = stream(model, text, encoding, tokens, keep, stages, ahead=0, hidden=True)
    cap.heads = [head for layer in cap.pending for head in layer]
    cap.pending = None
    return cap


def stream(model, text: str, encoding: str, tokens: list[Token],
           keep: dict[int, tuple[int, ...]], stages: bool = False, ahead: int = 2,
           hidden: bool = False) -> Capture:
    """run(), a layer at a time: a Capture whose heads are still to come, as cap.pending: an
    iterator of each layer's kept heads (ordered by head) as the forward pass makes them.
    When it ends, cap.embeddings is filled in (and, with `hidden`, cap.hidden: the residual
    stream after every block, which no view shows; run keeps it for the parity tests).

    ahead > 0 (and more than one layer kept): the forward pass runs on a thread of its own,
    at most `ahead` layers ahead of the reader (more where a layer's matrices are small: up
    to AHEAD_BYTES of them), so that a layer can be written while the next ones are computed,
    and only a few layers' matrices are ever held at once. The checks (positions, memory)
    are made here, before anything runs; a streamed checkpoint's block values are checked
    here too, beside the forward pass, before this returns (nothing is shown before)."""
    if not tokens:
        raise InputError("the text produced no tokens")
    cfg = model.cfg
    if cfg.n_positions is not None and len(tokens) > cfg.n_positions:
        raise InputError(
            f"the input has {len(tokens)} tokens but this model has only {cfg.n_positions} "
            f"positions: shorten the text or pass --truncate"
        )
    from attn_cli import budget

    kept = sum(len(h) for h in keep.values())
    widest = max(map(len, keep.values()), default=0)
    threaded = ahead > 0 and len(keep) > 1
    if threaded:  # the layers in the queue, the one being read and the one being made
        per_layer = widest * len(tokens) ** 2 * 4 * (4 if stages else 1)  # T×T float32 each
        ahead = max(ahead, AHEAD_BYTES // max(per_layer, 1))
        kept = min(kept, (ahead + 2) * widest)
    budget.check_run(cfg, len(tokens), kept, stages, model.block_source is not None)
    cap = Capture(text=text, encoding=encoding, tokens=tokens, config=cfg, heads=[],
                  hidden=[], embeddings=None)
    # What is alive now (the imports, the model) lives until the command ends: the cyclic
    # collector need not walk it again at each full collection while the layers are made
    # and written (for every head of a real-size model, that was over a second).
    gc.freeze()

    def layers() -> Iterator[list[HeadCapture]]:
        x = None
        for layer, heads, x in model.layers([t.id for t in tokens], keep, stages):
            captured = []
            for head, tensors in heads.items():
                arrays = {name: _np32(t) for name, t in tensors.items()}
                weights = arrays.pop("weights")
                captured.append(HeadCapture(layer, head, weights, arrays if stages else {}))
            if hidden:
                cap.hidden.append(_np32(x))
            if captured:
                yield captured
        cap.embeddings = _np32(model.final(x))

    check, model.unchecked = model.unchecked, None
    if not threaded:
        if check is not None:
            check()
        cap.pending = layers()
        return cap
    cap.pending, halt = _threaded(layers(), ahead)
    if check is not None:
        try:
            check()
        except BaseException:
            halt()
            raise
    return cap


AHEAD_BYTES = 32 * 2**20  # the forward thread may run ahead by this many bytes of matrices


def _np32(t) -> np.ndarray:
    return t.detach().float().cpu().numpy()


_DONE = object()


def _threaded(items: Iterator, ahead: int) -> tuple[Iterator, Callable[[], None]]:
    """(reader, halt): the items of `items` as the reader yields them, made on a thread of its
    own (started now) at most `ahead` items ahead of the reader; an exception there is raised
    by the reader, where the item would have been. halt() stops the maker and waits for it.

    However the reader stops (done, an error, Ctrl-C, a closed pipe), or if it is never read,
    the maker is told to stop and waited for before the interpreter shuts down: it finishes
    the item it is making (one block of the forward pass) and makes no other. A thread still
    inside torch when Python finalises would abort the process ("terminate called without an
    active exception")."""
    import atexit
    import queue
    import threading

    made: queue.Queue = queue.Queue(maxsize=ahead)
    stop = threading.Event()

    def make() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        made.put((item, None), timeout=0.05)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            made.put((_DONE, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the reader
            made.put((None, exc))
        finally:  # a generator stopped early is closed here, in the thread that ran it
            close = getattr(items, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # noqa: BLE001 - it was stopped; nothing is lost
                    pass

    maker = threading.Thread(target=make, name="attn-forward", daemon=True)

    def halt() -> None:
        stop.set()
        while maker.is_alive():  # empty the queue: the maker may be waiting to hand one on
            try:
                made.get(timeout=0.05)
            except queue.Empty:
                pass
        atexit.unregister(halt)

    def read() -> Iterator:
        try:
            while True:
                item, exc = made.get()
                if exc is not None:
                    raise exc
                if item is _DONE:
                    return
                yield item
        finally:
            halt()

    atexit.register(halt)
    maker.start()
    return read(), halt
