"""Next-token predictions and generation: the LM head, sampling, and the KV-cached loop.

    head = LMHead(model, encoding)          the model's language-model head (or a one-line error)
    predict(head, hidden, k)                each position's top-k next tokens, with probabilities
    Generation(model, head, …)              iterate: one Step per new token, as it is made

The LM head is the checkpoint's own (`lm_head.weight`, GPT-NeoX's `embed_out.weight`) where it
has one, else the token embedding (tied, as in GPT-2). The seeded model ties its hashed token
embeddings: logits = h · Eᵀ over the encoding's ordinary tokens, with E made block by block
(`seeded_embedding_rows`), so o200k's 200k rows never sit in memory at once; special tokens are
left out of its vocabulary (nothing ever taught it to end a text, so it never stops early).

Every block of logits feeds three running reductions: the top-k (ties: the lower id first), a
log-sum-exp (float64), and, when sampling from the whole vocabulary, a Gumbel-max draw
(argmax of logit/T + Gumbel noise is a sample of softmax(logit/T)). The probability reported
for a token is always the model's own, softmax(logits) at temperature 1; the temperature and
top-k only change which token is drawn. Noise comes from a local torch.Generator seeded with
--seed, drawn in vocabulary order: same options, same text. The global RNG is never touched.

Generation runs the prompt once, then one token per step through `Transformer.step` and its KV
cache: N new tokens cost one prompt pass and N − 1 one-token steps, not N full passes. The
attention a new token "attended to" is the row of the query that predicted it: the last
position's row over every earlier token.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from attn_cli.errors import ConfigError, InputError

SEEDED_ELEMENTS = 2**17  # entries of the seeded model's virtual token table made at a time
LOGIT_FLOATS = 2**22  # at most this many logits in one block (T positions × rows), 16 MB


# ---------------------------------------------------------------- the vocabulary's tokens

def token_bytes(encoding, token_id: int) -> bytes | None:
    """The bytes of a token id, or None for an id the tokenizer has no token for (a padded
    embedding table's spare rows)."""
    try:
        if hasattr(encoding, "token_bytes"):  # a Tokenizer (tokenizers/)
            return encoding.token_bytes(int(token_id))
        return encoding.decode_single_token_bytes(int(token_id))  # a bare tiktoken encoding
    except Exception:  # tiktoken raises KeyError, a Tokenizer EncodingError
        return None


def token_text(raw: bytes | None) -> str:
    return "" if raw is None else raw.decode("utf-8", errors="replace")


def ordinary_vocab(encoding) -> int:
    """n such that ids 0 … n−1 are the encoding's ordinary (non-special) tokens: below the
    first special id, less any unused ids just under it (o200k's 199998, cl100k's 100256)."""
    specials = []
    for s in getattr(encoding, "special_tokens_set", ()):
        try:
            specials.append(encoding.encode_single_token(s))
        except Exception:
            pass
    n = min(specials) if specials else encoding.n_vocab
    while n > 0 and token_bytes(encoding, n - 1) is None:
        n -= 1
    return n


# ---------------------------------------------------------------- the LM head

@dataclass(frozen=True)
class Sampling:
    """How the next token is chosen: greedy (the default), or a draw from
    softmax(logits / temperature) over the top_k tokens (all of them when top_k is None)."""

    temperature: float | None = None  # None or 0: greedy
    top_k: int | None = None
    seed: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature == 0 or (self.temperature is None and self.top_k is None)

    @property
    def t(self) -> float:
        return 1.0 if self.temperature is None else float(self.temperature)

    def to_dict(self) -> dict | None:
        if self.greedy:
            return None
        return {"temperature": self.t, "top_k": self.top_k, "seed": self.seed}

    def check(self) -> None:
        t = self.temperature
        if t is not None and (not math.isfinite(t) or t < 0):
            raise ConfigError(f"--temperature must be a finite number ≥ 0 (0 is greedy), got {t}")
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError(f"--top-k must be at least 1, got {self.top_k}")


@dataclass
class Scan:
    """What one pass over the vocabulary leaves, per position (rows of h)."""

    top_ids: torch.Tensor  # (T, k) int64, largest logit first
    top_logits: torch.Tensor  # (T, k) float32
    lse: torch.Tensor  # (T,) float64: log Σ exp(logits)
    sampled: tuple[int, float] | None = None  # (id, logit) of a whole-vocabulary draw

    def probability(self, row: int, logit: float) -> np.float32:
        return np.float32(math.exp(float(logit) - float(self.lse[row])))


class Gumbel:
    """Gumbel(0, 1) noise from a local generator: argmax(logit/T + noise) samples softmax."""

    def __init__(self, seed: int):
        self.generator = torch.Generator().manual_seed(seed)

    def draw(self, n: int) -> torch.Tensor:
        u = torch.rand(n, generator=self.generator, dtype=torch.float64)
        return -torch.log(-torch.log(u))


@contextmanager
def _one_cpu_thread(device: torch.device):
    """The seeded head's scan is a hundred small products and reductions: on the CPU they are
    fastest in one thread (torch's thread pool costs more than it gives on blocks this size,
    and on a busy machine its spinning threads slow each op tenfold)."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class LMHead:
    """logits = LN_f(h) · Wᵀ, with W the checkpoint's LM head, its token embedding (tied), or
    the seeded model's hashed token embedding."""

    def __init__(self, model, encoding):
        cfg = model.cfg
        if not cfg.causal:
            what = f"{cfg.family} is an encoder" if cfg.family != "seeded" else \
                "--bidirectional makes the seeded model an encoder"
            raise ConfigError(f"{what} with no causal language-model head here: next-token "
                              f"predictions need a causal model (GPT-2, GPT-Neo, GPT-NeoX, "
                              f"Llama, Mistral, Qwen2 or the seeded model)")
        self.model, self.encoding = model, encoding
        self.device = model.device
        self.weight: torch.Tensor | None = None
        if model.wte is None:  # the seeded model
            self.vocab = ordinary_vocab(encoding)
            self.source = "tied (hashed token embeddings, special tokens left out)"
        elif getattr(model, "lm_head", None) is not None:
            self.weight = model.lm_head.weight
            self.source = "lm_head"
        elif cfg.tie_embeddings:
            self.weight = model.wte.weight
            self.source = "tied (token embeddings)"
        else:
            raise ConfigError(
                f"the checkpoint in {cfg.source} has no LM head (no lm_head.weight, and "
                f"tie_word_embeddings is false): it was saved from the base model; save the "
                f"*ForCausalLM model to get predictions")
        if self.weight is not None:
            self.vocab = self.weight.shape[0]

    def blocks(self, T: int) -> Iterator[tuple[int, torch.Tensor]]:
        """(first id, rows of W) in vocabulary order."""
        if self.weight is not None:
            rows = max(8192, LOGIT_FLOATS // max(T, 1))
            for start in range(0, self.vocab, rows):
                yield start, self.weight[start:start + rows]
            return
        from attn_cli.models.seeded import seeded_embedding_rows

        cfg = self.model.cfg
        rows = max(64, SEEDED_ELEMENTS // cfg.d_model)  # ~1 MB of hashes: stays in cache
        starts = list(range(0, self.vocab, rows))

        for start in starts:  # made here, one block at a time (worker threads would fight
            # torch's own for the cores: the small products below slow down tenfold)
            block = seeded_embedding_rows(start, min(start + rows, self.vocab), cfg.seed,
                                          cfg.d_model)
            yield start, torch.from_numpy(block).to(self.device)

    @torch.inference_mode()
    def scan(self, h: torch.Tensor, k: int, gumbel: Gumbel | None = None,
             temperature: float = 1.0) -> Scan:
        """One pass over the vocabulary for the rows of h (T, d_model): the top-k logits, the
        log-sum-exp, and with `gumbel` (one row only) a draw from softmax(logits / T)."""
        if self.weight is None:
            with _one_cpu_thread(self.device):
                return self._scan(h, k, gumbel, temperature)
        return self._scan(h, k, gumbel, temperature)

    def _scan(self, h: torch.Tensor, k: int, gumbel: Gumbel | None, temperature: float) -> Scan:
        h = h.to(self.device, torch.float32)
        T = h.shape[0]
        k = min(k, self.vocab)
        top_v = torch.empty(T, 0, device=self.device)
        top_i = torch.empty(T, 0, dtype=torch.long, device=self.device)
        m = torch.full((T,), -math.inf, dtype=torch.float64, device=self.device)
        s = torch.zeros(T, dtype=torch.float64, device=self.device)
        best = (-math.inf, -1, 0.0)  # (score, id, logit) of the Gumbel draw
        for start, rows in self.blocks(T):
            # (T, B): what nn.Linear(bias=False) computes; in float32 under any --dtype
            logits = F.linear(h, rows.to(h.dtype))
            wide = logits.double()
            new_m = torch.maximum(m, wide.max(dim=1).values)
            s = s * torch.exp(m - new_m) + torch.exp(wide - new_m[:, None]).sum(dim=1)
            m = new_m
            v, i = logits.topk(min(k, logits.shape[1]), dim=1)
            v, i = torch.cat([top_v, v], 1), torch.cat([top_i, i + start], 1)
            # ties: the lower id first (candidates are in id order; the sort is stable)
            order = torch.sort(i, dim=1).indices
            v, i = v.gather(1, order), i.gather(1, order)
            order = torch.sort(v, dim=1, descending=True, stable=True).indices[:, :k]
            top_v, top_i = v.gather(1, order), i.gather(1, order)
            if gumbel is not None:
                score = wide[0].cpu() / temperature + gumbel.draw(logits.shape[1])
                j = int(torch.argmax(score))
                if float(score[j]) > best[0]:
                    best = (float(score[j]), start + j, float(logits[0, j]))
        return Scan(top_i.cpu(), top_v.cpu(), (m + torch.log(s)).cpu(),
                    (best[1], best[2]) if gumbel is not None else None)


# ---------------------------------------------------------------- predictions

@dataclass(frozen=True)
class Candidate:
    id: int
    probability: np.float32
    raw: bytes | None

    @property
    def text(self) -> str:
        return token_text(self.raw)

    def to_dict(self) -> dict:
        return {"id": self.id, "token": self.text, "probability": self.probability}


def candidates(scan: Scan, row: int, k: int, encoding) -> list[Candidate]:
    return [Candidate(int(i), scan.probability(row, float(v)), token_bytes(encoding, int(i)))
            for i, v in zip(scan.top_ids[row, :k].tolist(), scan.top_logits[row, :k].tolist())]


def predict(head: LMHead, hidden: np.ndarray | torch.Tensor, k: int) -> list[list[Candidate]]:
    """Each position's top-k next tokens. hidden: the final norm's output, (T, d_model)."""
    if k < 1:
        raise ConfigError(f"--predict must be at least 1, got {k}")
    h = torch.as_tensor(hidden)
    scan = head.scan(h, k)
    return [candidates(scan, row, k, head.encoding) for row in range(h.shape[0])]


# ---------------------------------------------------------------- generation

@dataclass
class Step:
    """One generated token."""

    index: int  # its position in the whole sequence (prompt first)
    id: int
    raw: bytes | None
    probability: np.float32  # softmax(logits) of the step that made it
    top: list[Candidate]  # the most likely tokens at that step (runners-up)
    # (layer, head, weights over tokens 0 … index−1); head −1: the mean over the layer's heads
    attention: list[tuple[int, int, np.ndarray]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return token_text(self.raw)


def stop_ids(model, encoding) -> set[int]:
    """End-of-text ids: the checkpoint's eos_token_id (generation_config.json, else
    config.json), else its tokenizer's end-of-text token. None for the seeded model, whose
    vocabulary has no special tokens."""
    cfg = model.cfg
    if cfg.source == "seeded":
        return set()
    import json

    for name in ("generation_config.json", "config.json"):
        path = Path(cfg.source) / name
        try:
            eos = json.loads(path.read_text(encoding="utf-8")).get("eos_token_id")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(eos, int) and not isinstance(eos, bool):
            return {eos}
        if isinstance(eos, list) and eos and all(isinstance(e, int) for e in eos):
            return set(eos)
    eos = getattr(encoding, "eos_id", None)  # the checkpoint tokenizer's own
    if isinstance(eos, int):
        return {eos}
    try:
        return {encoding.encode_single_token("<|endoftext|>")}
    except Exception:
        return set()


def watch_list(cfg, layers: list[int] | None, heads: list[int] | None
               ) -> list[tuple[int, int]]:
    """(layer, head) rows to report: with --head, those heads of each layer; without, the
    mean over every head of each layer (head −1). Out-of-range values are an error."""
    from attn_cli.capture import select

    keep = select(cfg, layers, heads)
    if heads:
        return [(layer, head) for layer, hs in keep.items() for head in hs]
    return [(layer, -1) for layer in keep]


def check_budget(cfg, prompt: int, new: int, rows: int) -> None:
    """Refuse a generation whose prompt pass, KV cache and kept rows cannot fit."""
    from attn_cli import budget

    budget.check_run(cfg, prompt, 0)
    total = prompt + new
    cache = cfg.n_layers * 2 * cfg.kv_heads * total * cfg.d_head * budget.FLOAT
    kept = new * total * rows * budget.FLOAT * 2
    need = budget.run_bytes(cfg, prompt, 0, False) + cache + kept
    have = int(budget.available() * budget.HEADROOM)
    if need > have:
        raise ConfigError(f"{new:,} new tokens after a {prompt:,}-token prompt need about "
                          f"{budget.human(need)} of memory but about {budget.human(have)} is "
                          f"free: ask for fewer with -n, or fewer rows with --layer/--head")


class Generation:
    """Iterate to generate: one Step per new token, yielded as soon as it is chosen. After
    the loop, `stop` says why it ended: "length" (-n reached), "end_of_text" (the model's
    end-of-text token) or "positions" (the model's position limit)."""

    def __init__(self, model, head: LMHead, prompt_ids: list[int], new: int, *,
                 sampling: Sampling = Sampling(), shown: int = 5,
                 watch: list[tuple[int, int]] | None = None, stops: set[int] = frozenset()):
        cfg = model.cfg
        if new < 1:
            raise ConfigError(f"-n must be at least 1, got {new}")
        if not prompt_ids:
            raise InputError("the prompt produced no tokens")
        sampling.check()
        limit = cfg.n_positions
        if limit is not None and len(prompt_ids) >= limit:
            raise InputError(
                f"the prompt has {len(prompt_ids)} tokens and this model reads at most {limit} "
                f"positions: nothing is left to generate; shorten the prompt")
        self.model, self.head, self.prompt = model, head, list(prompt_ids)
        self.new, self.sampling, self.shown = new, sampling, shown
        self.watch = watch if watch is not None else [(la, -1) for la in range(cfg.n_layers)]
        self.stops = set(stops)
        self.room = new if limit is None else min(new, limit - len(prompt_ids))
        self.stop: str | None = None
        self.steps: list[Step] = []

    def keep(self) -> dict[int, tuple[int, ...]]:
        nh, out = self.model.cfg.n_heads, {}
        for layer, head in self.watch:
            heads = range(nh) if head < 0 else (head,)
            out[layer] = tuple(sorted(set(out.get(layer, ())) | set(heads)))
        return out

    def rows(self, fwd) -> list[tuple[int, int, np.ndarray]]:
        """The last query row of each watched head (or of each layer's head mean)."""
        nh, out, per_layer = self.model.cfg.n_heads, [], {}
        for layer, head in self.watch:
            if layer not in per_layer:
                heads = self.keep()[layer]
                stack = torch.stack([fwd.heads[(layer, h)]["weights"][-1] for h in heads])
                per_layer[layer] = dict(zip(heads, stack.float().cpu().numpy()))
            got = per_layer[layer]
            if head < 0:
                mean = np.stack([got[h] for h in range(nh)]).astype(np.float64).mean(axis=0)
                out.append((layer, -1, mean.astype(np.float32)))
            else:
                out.append((layer, head, got[head]))
        return out

    def __iter__(self) -> Iterator[Step]:
        model, head, sampling = self.model, self.head, self.sampling
        encoding = head.encoding
        keep = self.keep()
        gumbel = None if sampling.greedy else Gumbel(sampling.seed)
        k = max(self.shown, sampling.top_k or 0)
        whole = gumbel is not None and sampling.top_k is None  # draw over the whole vocabulary
        cache = model.new_cache(len(self.prompt) + self.room - 1)
        fwd = model.step(self.prompt, cache, keep)
        index = len(self.prompt)
        for n in range(self.room):
            scan = head.scan(fwd.embeddings[-1:], k, gumbel if whole else None, sampling.t)
            if gumbel is None:
                chosen, logit = int(scan.top_ids[0, 0]), float(scan.top_logits[0, 0])
            elif whole:
                chosen, logit = scan.sampled
            else:  # a draw among the top_k
                kk = min(sampling.top_k, scan.top_ids.shape[1])
                score = scan.top_logits[0, :kk].double() / sampling.t + gumbel.draw(kk)
                j = int(torch.argmax(score))
                chosen, logit = int(scan.top_ids[0, j]), float(scan.top_logits[0, j])
            step = Step(index, chosen, token_bytes(encoding, chosen),
                        scan.probability(0, logit), candidates(scan, 0, self.shown, encoding),
                        self.rows(fwd))
            self.steps.append(step)
            yield step
            if chosen in self.stops:
                self.stop = "end_of_text"
                return
            if n == self.room - 1:
                break
            fwd = model.step([chosen], cache, keep)
            index += 1
        self.stop = "length" if self.room == self.new else "positions"
