"""`attn train`: a small model learns on the CPU, and its heads can be watched forming.

    vocab = task_vocabulary(encoding) | text_vocabulary(tokens)   the model's own few tokens
    model = initial(cfg, vocab)         the seeded model of the options, with a token table
    run = Training(model, batches, …)   iterate: one Report per `every` steps
    save(out, …)                        a checkpoint folder that `--model DIR` reads

The task without a text is the classic one where induction heads form (Olsson et al. 2022):
sequences of random tokens that repeat with a period drawn per sequence (4 … context/2), the
loss taken where the next token can be known from an earlier copy. A fixed period would let a
head attend "period − 1 back" by position alone, which scores as induction on a probe of that
period and fails on any other; a random period leaves copying from after the earlier
occurrence as the only way. With a text, the task is next-token prediction on windows of it.

What makes the head form in a few hundred steps rather than never (measured while building
this; see the README): the token table starts from the seeded model's hashed rows (unit
variance, the same scale as the sinusoidal positions), and the LM head is a separate matrix
that starts at zero, so the first steps do not fight a tied head's large random logits.
Every draw comes from one local `torch.Generator` seeded with --seed, and training runs in one
thread: the same options give the same weights, bit for bit.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from attn_cli.errors import ConfigError, InputError, WriteError
from attn_cli.models.config import ModelConfig
from attn_cli.tokenizers import Token

# Candidates for the task's vocabulary: common words that most encodings keep as one token.
WORDS = """cat dog sun moon tree bird fish king queen red blue green house car road river
hill sea book door cup hat bed box ship star rain snow wind fire stone gold milk bread
apple egg horse cow lion bear wolf fox frog duck owl bee rose leaf seed farm town city
park lake boat train shoe coat bell drum key lamp map pen ring sock table chair clock
wall roof""".split()
TASK_VOCAB = 64
PROBE_REPEAT = 20  # the probe: 20 random tokens of the vocabulary, then the same 20 again
PROBE_TEXT = 40  # with a text, the probe is its first 40 tokens
MIN_TEXT_TOKENS = 8


# ---------------------------------------------------------------- vocabulary and model

def task_vocabulary(encoding, size: int = TASK_VOCAB) -> list[int]:
    """The encoding ids of `size` words (with a leading space) that it keeps as one token."""
    ids = []
    for word in WORDS:
        piece = encoding.encode_ordinary(" " + word)
        if len(piece) == 1 and piece[0] not in ids:
            ids.append(piece[0])
        if len(ids) == size:
            return ids
    raise ConfigError(f"the {encoding.name} encoding keeps only {len(ids)} of attn's task words "
                      f"as single tokens, fewer than {size}: train with another --encoding")


def text_vocabulary(ids: list[int]) -> list[int]:
    """Every token id of the text, in order of first appearance."""
    return list(dict.fromkeys(ids))


def initial(options: ModelConfig, vocab: list[int]):
    """The seeded model of the options, given a token table over the vocabulary (row 0 is
    <unk>, zeros; row r the seeded model's own hashed row of token vocab[r−1]) and an untied
    LM head that starts at zero."""
    from attn_cli.models.seeded import seeded, seeded_token_embeddings

    cfg = replace(options, vocab_size=len(vocab) + 1, tie_embeddings=False, family="attn")
    model = seeded(cfg)
    with torch.no_grad():
        table = torch.zeros(cfg.vocab_size, cfg.d_model)
        table[1:] = torch.from_numpy(seeded_token_embeddings(vocab, cfg.seed, cfg.d_model))
        model.wte.weight.copy_(table)
        model.lm_head = torch.nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        model.lm_head.weight.zero_()
    return model


def check_memory(options: ModelConfig, n_vocab: int, settings: "Settings") -> None:
    """Refuse sizes whose training cannot fit, before anything is built: the weights with
    their gradients and AdamW's two moments, and one step's activations (every block keeps
    its inputs, attention matrices and MLP for the backward pass)."""
    from attn_cli import budget

    cfg = replace(options, vocab_size=n_vocab)
    weights = budget.parameters(cfg) + n_vocab * cfg.d_model  # + the LM head
    tokens = settings.batch * settings.context
    per_block = tokens * (8 * cfg.d_model + 3 * cfg.d_ff) \
        + settings.batch * cfg.n_heads * settings.context ** 2 * 3
    need = (4 * weights + cfg.n_layers * per_block + 3 * tokens * n_vocab) * budget.FLOAT
    have = int(budget.available() * budget.HEADROOM)
    if need > have:
        raise ConfigError(f"training {cfg.n_layers} layers × d_model {cfg.d_model} on "
                          f"{settings.batch} × {settings.context} tokens needs about "
                          f"{budget.human(need)} of memory but about {budget.human(have)} is "
                          f"free: choose smaller --layers, --d-model, --batch or --context")


# ---------------------------------------------------------------- batches

@dataclass(frozen=True)
class Batch:
    inputs: torch.Tensor  # (batch, context) int64 rows
    targets: torch.Tensor  # (batch, context) int64 rows, -100 where no loss is taken


def repeat_batches(g: torch.Generator, batch: int, context: int, n_vocab: int
                   ) -> Iterator[Batch]:
    """Random tokens (rows 1 … n_vocab−1) repeating with a period of 4 … context/2 drawn per
    sequence; the loss is taken from the second copy on (the first is unpredictable)."""
    at = torch.arange(context + 1)
    while True:
        period = torch.randint(4, context // 2 + 1, (batch, 1), generator=g)
        tokens = torch.randint(1, n_vocab, (batch, context + 1), generator=g)
        seq = torch.gather(tokens, 1, at[None] % period)
        targets = seq[:, 1:].clone()
        targets[at[None, 1:] < period] = -100
        yield Batch(seq[:, :-1], targets)


def text_batches(g: torch.Generator, rows: torch.Tensor, batch: int, context: int
                 ) -> Iterator[Batch]:
    """Windows of the text at random offsets: predict every next token."""
    last = len(rows) - context - 1  # the last offset with a next token for every position
    while True:
        start = torch.randint(0, last + 1, (batch, 1), generator=g)
        idx = start + torch.arange(context + 1)[None]
        seq = rows[idx]
        yield Batch(seq[:, :-1], seq[:, 1:])


# ---------------------------------------------------------------- training

@dataclass(frozen=True)
class Settings:
    steps: int
    batch: int
    lr: float
    context: int
    every: int  # a report every this many steps
    snapshots: int | None  # the probe's attention every this many steps

    def check(self) -> None:
        for flag, value, low in (("--steps", self.steps, 1), ("--batch", self.batch, 1),
                                 ("--context", self.context, 8), ("--every", self.every, 1)):
            if value < low:
                raise ConfigError(f"{flag} must be at least {low}, got {value}")
        if self.snapshots is not None and self.snapshots < 1:
            raise ConfigError(f"--snapshots must be at least 1, got {self.snapshots}")
        if not (math.isfinite(self.lr) and 0 < self.lr <= 1):
            raise ConfigError(f"--lr must be a number in (0, 1], got {self.lr}")


@dataclass
class Report:
    step: int
    loss: float  # the mean training loss over the steps since the last report
    induction: tuple[int, int, float] | None  # (layer, head, score) of the best head on the probe
    previous: tuple[int, int, float]  # the same for the previous-token score

    def to_dict(self) -> dict:
        def best(x):
            return None if x is None else {"layer": x[0], "head": x[1],
                                           "score": np.float32(x[2])}
        return {"step": self.step, "loss": np.float32(self.loss), "induction": best(self.induction),
                "previous_token": best(self.previous)}


@dataclass
class Snapshots:
    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # that step's training loss (0: none)
    weights: list[np.ndarray] = field(default_factory=list)  # each (layers, heads, T, T)


class Training:
    """Iterating yields a Report every `settings.every` steps (and after the last)."""

    def __init__(self, model, batches: Iterator[Batch], settings: Settings, probe: list[Token]):
        self.model, self.batches, self.settings = model, batches, settings
        self.probe = probe
        self.snapshots = Snapshots() if settings.snapshots else None
        self.reports: list[Report] = []
        self.seconds = 0.0

    def attention(self) -> np.ndarray:
        """The probe's attention in every head: (layers, heads, T, T) float32."""
        cfg = self.model.cfg
        keep = {layer: tuple(range(cfg.n_heads)) for layer in range(cfg.n_layers)}
        out = self.model.forward([t.id for t in self.probe], keep=keep)
        return np.stack([np.stack([out.heads[(layer, h)]["weights"].numpy()
                                   for h in range(cfg.n_heads)])
                         for layer in range(cfg.n_layers)])

    def scores(self, weights: np.ndarray):
        from attn_cli.analysis import head_scores

        ids = [t.id for t in self.probe]
        induction, previous = None, (0, 0, -1.0)
        for (layer, head), _ in np.ndenumerate(weights[:, :, 0, 0]):
            s = head_scores(weights[layer, head], ids)
            if s.induction is not None and (induction is None or s.induction > induction[2]):
                induction = (layer, head, s.induction)
            if s.previous_token > previous[2]:
                previous = (layer, head, s.previous_token)
        return induction, previous

    def snapshot(self, step: int, loss: float | None) -> None:
        self.snapshots.steps.append(step)
        self.snapshots.losses.append(math.nan if loss is None else loss)
        self.snapshots.weights.append(self.attention())

    def __iter__(self) -> Iterator[Report]:
        s, model = self.settings, self.model
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # one thread: the same sums in the same order on any machine
        try:
            opt = torch.optim.AdamW(model.parameters(), lr=s.lr)
            if self.snapshots is not None:
                self.snapshot(0, None)
            total, count, start = 0.0, 0, time.perf_counter()
            for step in range(1, s.steps + 1):
                batch = next(self.batches)
                model.train()
                logits = model.logits(batch.inputs)
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                       batch.targets.reshape(-1), ignore_index=-100)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                model.eval()
                value = float(loss.detach())
                total, count = total + value, count + 1
                if not math.isfinite(total):
                    raise ConfigError(f"the loss became {total} at step {step}: lower --lr")
                if self.snapshots is not None and step % s.snapshots == 0:
                    self.snapshot(step, value)
                if step % s.every == 0 or step == s.steps:
                    self.seconds = time.perf_counter() - start
                    report = Report(step, total / count, *self.scores(self.attention()))
                    self.reports.append(report)
                    total, count = 0.0, 0
                    yield report
        finally:
            torch.set_num_threads(threads)


# ---------------------------------------------------------------- the checkpoint folder

def config_json(model, encoding_name: str, vocab: list[int], about: dict) -> dict:
    cfg = model.cfg
    return {"model_type": "attn", "architectures": ["AttnForCausalLM"],
            "n_layers": cfg.n_layers, "n_heads": cfg.n_heads, "d_model": cfg.d_model,
            "d_ff": cfg.d_ff, "positions": cfg.positions, "layer_norm_eps": cfg.layer_norm_eps,
            "encoding": encoding_name, "vocab": vocab, "trained": about}


def check_out(out: Path, overwrite: bool) -> None:
    """Before any training: the folder must be new (or empty, or --overwrite) and its parent
    writable."""
    if out.exists() and not out.is_dir():
        raise WriteError.of(out, "ENOTDIR", "--out names a file; give a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{out} already holds files: choose a new --out folder, or add "
                          f"--overwrite to replace it")
    parent = out.resolve().parent
    if not parent.is_dir():
        raise WriteError.of(out, "ENOENT", f"the folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise WriteError.of(out, "EACCES", f"the folder {parent} is not writable")


def save(out: Path, model, config: dict, history: list[dict], probe: list[Token],
         snapshots: Snapshots | None, overwrite: bool) -> None:
    """Write the folder whole or not at all: into a hidden temporary folder beside it, which
    is renamed to `out` at the end (and removed if anything fails or is interrupted)."""
    from safetensors.torch import save as st_save

    from attn_cli.output import dumps

    parent = out.resolve().parent
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{out.name}.", suffix=".partial"))
    try:
        weights = {name: t.detach().contiguous() for name, t in model.state_dict().items()}
        files = {
            "model.safetensors": st_save(weights, metadata={"format": "pt"}),
            "config.json": _config_text(config),
            "training.json": dumps({"reports": history}),
        }
        if snapshots is not None:
            files["snapshots.safetensors"] = st_save(
                {"weights": torch.from_numpy(np.stack(snapshots.weights)),
                 "steps": torch.tensor(snapshots.steps, dtype=torch.int64),
                 "loss": torch.tensor(snapshots.losses, dtype=torch.float32)},
                metadata={"probe": json.dumps([t.to_dict() for t in probe])})
        for name, data in files.items():
            with open(tmp / name, "wb") as f:
                f.write(data.encode() if isinstance(data, str) else data)
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o777 & ~_umask())
        if out.is_dir() and any(out.iterdir()):  # --overwrite: out is replaced only now
            old = Path(tempfile.mkdtemp(dir=parent, prefix=f".{out.name}.", suffix=".old"))
            os.replace(out, old / "model")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)  # onto nothing, or onto an empty folder
    except OSError as exc:
        raise WriteError.from_os(out, exc) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _config_text(config: dict) -> str:
    """config.json, indented, with the vocabulary's ids on one line rather than one each."""
    text = json.dumps({**config, "vocab": "@vocab"}, indent=2)
    return text.replace('"@vocab"', json.dumps(config["vocab"])) + "\n"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@dataclass
class History:
    """What attn history shows: the reports, and the snapshots of one head."""

    folder: Path
    reports: list[dict]
    probe: list[Token]
    layer: int | None
    head: int | None
    steps: list[int]  # snapshot steps (empty without --snapshots)
    losses: list[float]  # the training loss at each (NaN at step 0)
    weights: np.ndarray | None  # (S, T, T): the head's attention at each snapshot
    scores: list  # analysis.HeadScores of the head at each snapshot


def load_history(folder: Path, layer: int | None, head: int | None) -> History:
    """A trained folder's reports, and its snapshots of the head asked for (by default the
    best induction head of the last snapshot, or the best previous-token head of a text)."""
    from attn_cli.analysis import head_scores

    try:
        reports = json.loads((folder / "training.json").read_bytes())["reports"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"could not read {folder / 'training.json'} ({type(exc).__name__}): "
                         f"train the model again") from None
    if not (folder / "snapshots.safetensors").is_file():
        if layer is not None or head is not None:
            raise InputError(f"{folder} has no snapshots.safetensors: train with --snapshots N "
                             f"to follow a head's attention as it forms")
        return History(folder, reports, [], None, None, [], [], None, [])
    steps, losses, weights, probe = load_snapshots(folder)
    n_layers, n_heads = weights.shape[1:3]
    ids = [t.id for t in probe]
    if layer is None or head is None:
        final = [[head_scores(weights[-1, li, h], ids) for h in range(n_heads)]
                 for li in range(n_layers)]
        key = (lambda s: s.induction or 0.0) if any(
            (s.induction or 0) > 0 for row in final for s in row) else \
            (lambda s: s.previous_token)
        best = max(((li, h) for li in range(n_layers) for h in range(n_heads)
                    if (layer is None or li == layer) and (head is None or h == head)),
                   key=lambda lh: key(final[lh[0]][lh[1]]), default=None)
        if best is None:
            raise ConfigError(f"--layer {layer} is out of range: this model has layers 0–"
                              f"{n_layers - 1}")
        layer, head = best
    for flag, value, n in (("--layer", layer, n_layers), ("--head", head, n_heads)):
        if not 0 <= value < n:
            what = "layers" if flag == "--layer" else "heads"
            raise ConfigError(f"{flag} {value} is out of range: this model has {what} 0–{n - 1}")
    picked = weights[:, layer, head]
    return History(folder, reports, probe, layer, head, steps, losses, picked,
                   [head_scores(w, ids) for w in picked])


def load_snapshots(folder: Path):
    """(steps, losses, weights (S, layers, heads, T, T), probe tokens) of a trained folder."""
    from safetensors.numpy import load_file, safe_open

    path = folder / "snapshots.safetensors"
    try:
        tensors = load_file(path)
        with safe_open(path, "np") as f:
            probe = json.loads(f.metadata()["probe"])
        tokens = [Token(t["index"], t["id"], bytes.fromhex(t["bytes"]),
                        t.get("special", False)) for t in probe]
        steps, losses, weights = tensors["steps"], tensors["loss"], tensors["weights"]
        if weights.ndim != 5 or not len(steps) == len(losses) == len(weights) \
                or weights.shape[-1] != len(tokens):
            raise ValueError("the arrays do not agree")
    except Exception as exc:  # safetensors raises its own errors; KeyError, ValueError…
        raise InputError(f"could not read {path} ({type(exc).__name__}): train the model "
                         f"again") from None
    return steps.tolist(), losses.tolist(), weights, tokens

