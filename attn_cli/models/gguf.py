"""A GGUF file's weights, read as a checkpoint folder's are (SPEC §9).

    load(path, device, dtype, streamed) -> (Transformer, tokenizer)

The file's metadata (`{arch}.block_count`, `.embedding_length`, `.attention.head_count(_kv)`,
`.rope.freq_base`, …) becomes the config.json its family reads (`families/llama.py` for
`llama` and `qwen2`, `families/gpt2.py` for `gpt2`), so the one ModelConfig and the one stack
serve it; its tensors (`token_embd`, `blk.N.attn_q`, …) are shown to the family's converter
under the Hugging Face names it reads, each dequantised with the `gguf` library (ggml's own
code) into --dtype only when the converter reads it. So the stack streams a GGUF as it streams
a folder (`assemble.py`): a block's weights are dequantised just before it runs and
let go after; the token table and the LM head are dequantised on demand (the rows of the tokens
read; the whole head only when predictions are asked for).

Layout as llama.cpp's convert_hf_to_gguf.py writes it: a weight of shape (out, in) is stored
with ne = [in, out]; llama's Q and K rows are permuted for ggml's rotary layout
(`LlamaModel.permute`), undone here as transformers' GGUF loader undoes it; GPT-2's Conv1D
weights are stored transposed, (out, in), and shown to the family as Conv1D (in, out) again.
Llama 3.1's "llama3" rotary scaling is stored as a `rope_freqs` tensor, one factor per
frequency (the converter's `generate_extra_tensors`), which llama.cpp divides each frequency by:
the config carries those factors (rope_scaling "factors") and the one rotary code applies them.

Nothing in the file is trusted: the header's sizes against the file's length (gguf_file.py), the
metadata against the tensors' shapes (the family's Weights checks), every tensor's quantisation
type, and its values: a float tensor's values, a quantised one's scales (its values are integer
codes times those) must be finite — checked from the file in pieces before anything runs.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from attn_cli.errors import ModelLoadError
from attn_cli.models.assemble import assemble
from attn_cli.models.families import configure
from attn_cli.models.gguf_file import EXTRA, SUPPORTED, TYPES, GGUFFile
from attn_cli.models.weights import _anonymous
from attn_cli.tokenizers.gguf import load as load_vocabulary

ARCHITECTURES = ("llama", "qwen2", "gpt2")
CHUNK = 16 * 2**20  # bytes read at a time when checking values

# GGUF tensor names -> Hugging Face names (after the family's prefix), per architecture
_LLAMA = {"attn_norm.weight": "input_layernorm.weight", "ffn_norm.weight":
          "post_attention_layernorm.weight", "ffn_gate.weight": "mlp.gate_proj.weight",
          "ffn_up.weight": "mlp.up_proj.weight", "ffn_down.weight": "mlp.down_proj.weight",
          "ffn_gate.bias": "mlp.gate_proj.bias", "ffn_up.bias": "mlp.up_proj.bias",
          "ffn_down.bias": "mlp.down_proj.bias",
          **{f"attn_{g}.{p}": f"self_attn.{h}_proj.{p}" for g, h in
             (("q", "q"), ("k", "k"), ("v", "v"), ("output", "o")) for p in ("weight", "bias")}}
_GPT2 = {"attn_norm.weight": "ln_1.weight", "attn_norm.bias": "ln_1.bias",
         "attn_qkv.weight": "attn.c_attn.weight", "attn_qkv.bias": "attn.c_attn.bias",
         "attn_output.weight": "attn.c_proj.weight", "attn_output.bias": "attn.c_proj.bias",
         "ffn_norm.weight": "ln_2.weight", "ffn_norm.bias": "ln_2.bias",
         "ffn_up.weight": "mlp.c_fc.weight", "ffn_up.bias": "mlp.c_fc.bias",
         "ffn_down.weight": "mlp.c_proj.weight", "ffn_down.bias": "mlp.c_proj.bias"}
_NAMES = {
    "llama": ("model.", "layers.{}.", _LLAMA, {"token_embd.weight": "embed_tokens.weight",
                                               "output_norm.weight": "norm.weight"}),
    "gpt2": ("transformer.", "h.{}.", _GPT2, {"token_embd.weight": "wte.weight",
                                              "position_embd.weight": "wpe.weight",
                                              "output_norm.weight": "ln_f.weight",
                                              "output_norm.bias": "ln_f.bias"}),
}
_BLOCK = re.compile(r"^blk\.(\d+)\.(.+)$")
_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def load(path: Path, device: str = "cpu", dtype: str | None = None, streamed: bool = False):
    """The model and tokenizer of a GGUF file (see checkpoint.load for device, dtype and
    streamed)."""
    f = GGUFFile(path)
    arch = f.architecture
    if arch not in ARCHITECTURES:
        raise ModelLoadError(f"{path} holds a {arch[:40]!r} model; attn reads GGUF files of "
                             f"these architectures: {', '.join(ARCHITECTURES)}")
    cfg, family = configure(_config_json(f, arch), path)
    rotary = f.get(f"{arch}.rope.dimension_count")
    if arch != "gpt2" and isinstance(rotary, int) and rotary != cfg.d_head:
        cfg = dataclasses.replace(cfg, rotary_dim=rotary)
    cfg = dataclasses.replace(cfg, source=str(path), seed=None, dtype=dtype or "float32")
    files = GGUFTensors(f, arch, cfg)
    _check_dequantisers(files)
    cfg = _rope_factors(files, cfg)
    tokenizer = load_vocabulary(f)
    head = "lm_head.weight" if "lm_head.weight" in files.shapes else None
    table = _NAMES[_family_names(arch)][0] + _NAMES[_family_names(arch)][3]["token_embd.weight"]

    def attach(model):
        model.wte = Rows(files, table, cfg)
        if head is not None:
            model.lm_head = Rows(files, head, cfg)

    model, tokenizer = assemble(files, family, cfg, tokenizer, device, streamed,
                                later={table, head} - {None}, attach=attach)
    if model.block_source is not None:
        model.stream_blocks(_read_ahead(model.block_source, cfg.n_layers), model.unchecked)
    return model, tokenizer


def _rope_factors(files: "GGUFTensors", cfg):
    """cfg with each rotary frequency divided by its factor in the file's `rope_freqs` tensor,
    as llama.cpp divides it (`ggml_rope_ext`'s freq_factors): how llama.cpp's converter writes
    Llama 3.1's "llama3" scaling, one factor per frequency. cfg as it is without the tensor."""
    key = "rope_freqs.weight"
    if key not in files._of:
        return cfg
    files.used.add(key)  # attn model lists it as read
    shape, half = tuple(files._of[key][0].shape), cfg.rotary // 2
    if shape != (half,):
        raise ModelLoadError(f"tensor {key} in {cfg.source} has shape {shape} but the file's "
                             f"rotary dimension {cfg.rotary} needs ({half},)")
    factors = files.tensor(key).double()
    if not bool((torch.isfinite(factors) & (factors > 0)).all()):
        raise ModelLoadError(f"tensor {key} in {cfg.source} holds rotary factors that are not "
                             f"positive finite numbers: the file is corrupt")
    scaling = dict(cfg.rope_scaling)
    if scaling.get("rope_type") == "linear":  # llama.cpp scales by both (freq_scale too)
        factors = factors * float(scaling["factor"])
    return dataclasses.replace(cfg, rope_scaling=(("rope_type", "factors"),
                                                  ("factors", tuple(factors.tolist()))))


def _check_dequantisers(files: "GGUFTensors") -> None:
    """One line, before anything is read, when the file's quantised tensors need the `gguf`
    library (ggml's dequantisers) and it is not installed; F32, F16 and BF16 files do not."""
    quantised = sorted({t.type_name for t, _ in files._of.values()
                        if t.ggml_type in TYPES and TYPES[t.ggml_type][1] > 1})
    if not quantised:
        return
    try:
        import gguf  # noqa: F401  (the library, not this module)
    except ImportError:
        raise ModelLoadError(f"{files.file.path} holds {', '.join(quantised)} tensors, which attn "
                             f"dequantises with the `gguf` library, an optional extra: "
                             f"{EXTRA}") from None


def _read_ahead(source, n_layers: int):
    """source(i) (block i's tensors), with block i + 1 dequantised in a worker thread while
    block i runs: NumPy's dequantisers and torch's matmuls both let go of the GIL, so the two
    overlap. Two blocks are held at once, as the memory budget allows for."""
    from concurrent.futures import ThreadPoolExecutor

    pool, ahead = ThreadPoolExecutor(1, thread_name_prefix="attn-gguf"), {}

    def get(i: int) -> dict:
        future = ahead.pop(i, None) or pool.submit(source, i)
        if i + 1 < n_layers:
            ahead[i + 1] = pool.submit(source, i + 1)
        return future.result()

    return get


def _family_names(arch: str) -> str:
    return "gpt2" if arch == "gpt2" else "llama"


def _config_json(f: GGUFFile, arch: str) -> dict:
    """The config.json that the metadata describes, in the family's keys."""
    a = arch
    vocab = f.get(f"{a}.vocab_size") or len(f.get("tokenizer.ggml.tokens") or []) or \
        (f.tensors["token_embd.weight"].shape[0] if "token_embd.weight" in f.tensors else 0)
    tied = "output.weight" not in f.tensors
    common = {"vocab_size": vocab, "tie_word_embeddings": tied}
    d, nh = f.int(f"{a}.embedding_length"), f.int(f"{a}.attention.head_count")
    layers, ff = f.int(f"{a}.block_count"), f.int(f"{a}.feed_forward_length")
    positions = f.int(f"{a}.context_length", default=2048)
    if arch == "gpt2":
        return {"model_type": "gpt2", "n_embd": d, "n_head": nh, "n_layer": layers,
                "n_inner": ff, "n_positions": positions, "layer_norm_epsilon":
                f.float(f"{a}.attention.layer_norm_epsilon", default=1e-5), **common}
    kv = f.get(f"{a}.attention.head_count_kv", nh)
    if isinstance(kv, list):  # one per layer: attn's stack has one kv_heads for all
        if len(set(kv)) != 1:
            raise ModelLoadError(f"{f.path} gives each layer its own number of key/value heads "
                                 f"({str(kv)[:60]}); attn's stack has one for every layer")
        kv = kv[0]
    hf = {"model_type": arch, "hidden_size": d, "num_attention_heads": nh,
          "num_key_value_heads": kv, "num_hidden_layers": layers, "intermediate_size": ff,
          "max_position_embeddings": positions,
          "rms_norm_eps": f.float(f"{a}.attention.layer_norm_rms_epsilon", default=1e-6),
          "rope_theta": f.float(f"{a}.rope.freq_base", default=10000.0), **common}
    head_dim = f.get(f"{a}.attention.key_length")
    if head_dim is not None and head_dim != d // nh:
        hf["head_dim"] = head_dim
    if arch == "llama" and "blk.0.attn_q.bias" in f.tensors:
        hf["attention_bias"] = True
    scaling = f.get(f"{a}.rope.scaling.type", "none")
    if scaling == "linear":
        hf["rope_scaling"] = {"rope_type": "linear",
                              "factor": f.float(f"{a}.rope.scaling.factor")}
    elif scaling != "none":
        raise ModelLoadError(f"{f.path} uses {str(scaling)[:20]!r} rotary scaling; attn computes "
                             f"plain and linear rotary positions from a GGUF file, and those "
                             f"a rope_freqs tensor scales")
    if "rope_freqs.weight" in f.tensors and arch != "llama":
        raise ModelLoadError(f"{f.path} scales its {arch} model's rotary frequencies by a tensor "
                             f"(rope_freqs), which attn reads in llama files only")
    return hf


class GGUFTensors:
    """The GGUF file's tensors under the Hugging Face names the family's converter reads, with
    the interface of weights.WeightFiles (shapes, stored, tensor, read_into, finite)."""

    def __init__(self, f: GGUFFile, arch: str, cfg):
        self.file, self.arch, self.cfg = f, arch, cfg
        self.folder = f.path
        prefix, layer, per_block, other = _NAMES[_family_names(arch)]
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.dtypes: dict[str, str] = {}
        self._of: dict[str, tuple] = {}  # our key -> (tensor record, transform)
        self.used: set[str] = set()  # the keys the family's convert reads (Weights notes them)
        for name, t in f.tensors.items():
            m = _BLOCK.match(name)
            if m:
                hf = per_block.get(m.group(2))
                key = None if hf is None else prefix + layer.format(m.group(1)) + hf
            elif name == "output.weight":
                key = "lm_head.weight"
            elif name == "rope_freqs.weight":  # read by load (_rope_factors), not the family
                self._of[name] = (t, None)
                continue
            else:
                key = prefix + other[name] if name in other else None
            if key is None:
                continue  # a tensor attn does not use
            shape, transform = t.shape, None
            if arch == "llama" and m and m.group(2).split(".")[0] in ("attn_q", "attn_k"):
                heads = cfg.n_heads if m.group(2).startswith("attn_q") else cfg.kv_heads
                transform = ("unpermute", heads)
            if arch == "gpt2" and m and key.endswith(_CONV1D) and len(shape) == 2:
                shape, transform = shape[::-1], ("transpose",)
            self.shapes[key], self.dtypes[key] = tuple(shape), t.type_name
            self._of[key] = (t, transform)

    def listing(self) -> list[dict]:
        """Every tensor under the file's own name (`blk.0.attn_q.weight`): shape (rows first,
        as torch has it; ggml's ne is the reverse), its type, and whether attn reads it."""
        used = {self._of[key][0].name for key in self.used}
        return [{"name": name, "shape": list(t.shape), "dtype": t.type_name,
                 "used": name in used} for name, t in self.file.tensors.items()]

    def stored(self, key: str) -> torch.dtype | None:
        """What the tensor comes out as: float32 once dequantised (F16 and BF16 as they are);
        None for a type attn does not read (the converter then says so)."""
        t = self._of[key][0]
        if t.ggml_type not in TYPES:
            raise ModelLoadError(f"tensor {t.name} in {self.file.path} is stored as "
                                 f"{t.type_name}, a quantisation attn does not read (it reads "
                                 f"{SUPPORTED})")
        return {1: torch.float16, 30: torch.bfloat16}.get(t.ggml_type, torch.float32)

    def _raw(self, t, start_row: int = 0, rows: int | None = None) -> np.ndarray:
        """Rows of the tensor as stored: (rows, row_bytes) bytes, read from the file."""
        rows = t.n // t.shape[-1] if rows is None else rows
        data = self.file.read(t.offset + start_row * t.row_bytes, rows * t.row_bytes)
        return np.frombuffer(data, dtype=np.uint8).reshape(rows, t.row_bytes)

    def _values(self, t, raw: np.ndarray) -> torch.Tensor:
        """Dequantised rows (rows, row length): float32, or F16/BF16 as stored."""
        if t.ggml_type == 0:
            return torch.from_numpy(raw.view(np.float32).copy())
        if t.ggml_type == 1:
            return torch.from_numpy(raw.view(np.float16).copy())
        if t.ggml_type == 30:
            return torch.from_numpy(raw.view(np.int16).copy()).view(torch.bfloat16)
        import gguf

        # the type's own dequantiser on every row at once (gguf.quants.dequantize cuts the
        # rows into groups: dozens of calls per tensor, each taking the GIL back from the
        # thread that writes the output)
        return torch.from_numpy(getattr(gguf.quants, t.type_name).dequantize_rows(raw))

    def tensor(self, key: str) -> torch.Tensor:
        """The whole tensor, dequantised, in our shape."""
        t, transform = self._of[key]
        self.stored(key)
        values = self._values(t, self._raw(t)).reshape(t.shape)
        if transform is None:
            return values
        if transform[0] == "transpose":
            return values.t()
        return _unpermute(values, transform[1])

    def read_into(self, key: str, out: torch.Tensor) -> None:
        values = self.tensor(key)
        out.copy_(values.reshape(out.shape) if values.is_contiguous() else values)
        if out.dtype == torch.float16 and not bool(torch.isfinite(out).all()):
            raise ModelLoadError(
                f"tensor {self._of[key][0].name} in {self.file.path} holds values beyond "
                f"float16's range once dequantised: load it with --dtype bfloat16 or float32")

    def rows(self, key: str, ids: list[int]) -> torch.Tensor:
        """Rows `ids` (ascending) of a (rows, d) tensor, dequantised: only their bytes are
        read, a run of consecutive rows at once."""
        t = self._of[key][0]
        self.stored(key)
        runs, start = [], 0
        for k in range(1, len(ids) + 1):
            if k == len(ids) or ids[k] != ids[k - 1] + 1:
                runs.append(self._raw(t, ids[start], k - start))
                start = k
        return self._values(t, np.concatenate(runs))

    def finite(self, key: str, dtype: torch.dtype) -> bool:
        """No NaN or ±inf in the tensor's values (float types) or in its blocks' scales
        (quantised types), read from the file CHUNK bytes at a time."""
        t = self._of[key][0]
        self.stored(key)
        kind = TYPES[t.ggml_type]
        step = max(1, CHUNK // t.row_bytes)
        rows = t.n // t.shape[-1]
        for start in range(0, rows, step):
            raw = self._raw(t, start, min(step, rows - start))
            if kind[3] is None:
                values = self._values(t, raw)
                if not bool(torch.isfinite(values).all()):
                    return False
                continue
            lo, hi = kind[3]
            scales = raw.reshape(-1, kind[2])[:, lo:hi].copy().view(np.float16)
            if not np.isfinite(scales).all():
                return False
        return True

    def close(self) -> None:
        pass


def _unpermute(w: torch.Tensor, heads: int) -> torch.Tensor:
    """Undo llama.cpp's `LlamaModel.permute` of Q or K rows (weight or bias): per head, its
    rows were reordered from rotate-half pairs (i, i + d/2) to interleaved pairs (2i, 2i + 1)."""
    rest = w.shape[1:]
    return w.reshape(heads, w.shape[0] // heads // 2, 2, *rest).transpose(1, 2) \
        .reshape(w.shape)


class Rows(nn.Module):
    """A GGUF token table (or LM head) dequantised on demand into --dtype: `forward(ids)`
    dequantises the rows of the tokens read (once each); reading `.weight` whole (the LM
    head, which scores every token) dequantises the rest. Its memory is mapped from the kernel,
    so rows never read take none."""

    def __init__(self, files: GGUFTensors, key: str, cfg):
        super().__init__()
        shape = files.shapes[key]
        self.weight = nn.Parameter(_anonymous(shape, getattr(torch, cfg.dtype)),
                                   requires_grad=False)
        self._files, self._key = files, key
        self._done = torch.zeros(shape[0], dtype=torch.bool)
        self._whole = False

    def _fill(self, ids: torch.Tensor) -> None:
        table = self._parameters["weight"]
        ids = ids[~self._done[ids]]
        if ids.numel():
            rows = self._files.rows(self._key, ids.tolist())
            table.data[ids.to(table.device)] = rows.to(table.device, table.dtype)
            self._done[ids] = True

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        self._fill(torch.unique(ids.detach().flatten().cpu()))
        return F.embedding(ids, self._parameters["weight"])

    def __getattr__(self, name: str):
        if name == "weight" and self.__dict__.get("_whole") is False:
            self._whole = True
            vocab, d = self._parameters["weight"].shape
            step = max(1, CHUNK // (4 * d))
            with torch.inference_mode():
                for start in range(0, vocab, step):
                    self._fill(torch.arange(start, min(start + step, vocab)))
        return super().__getattr__(name)
