"""--dtype: weights held and computed in bfloat16 or float16, every softmax in float32.

The reference for the low-precision path is transformers' eager model of the same family run
in the same dtype, on the tiny random checkpoints of test_families.py and test_gpt2.py (their
session fixtures, reused), and transformers' float32 run as the truth. The two implementations
differ only in how half-precision intermediates are rounded: attn fuses Q, K and V into one
projection, divides the scores by √d_k where Llama multiplies by 1/√d_k, and keeps the softmax
in float32 where transformers rounds its output (GPT-2: its input too) to the dtype. So:

- attn is as close to the truth as transformers is: the mean absolute error of every attention
  weight and of the final hidden state, against float32, is at most MEAN_RATIO × transformers'
  own (seen: 0.87-1.22).
- attn is within the dtype's own noise of transformers: the largest difference of any weight is
  at most MAX_RATIO × the largest difference between transformers' run and its float32 run.
- and fixed caps, ATOL on any attention weight and HIDDEN_RTOL × the largest |value| on the
  final hidden state. The fixtures' attention is deliberately sharp (scores of several units;
  GPT-Neo's, unscaled, of tens), where one rounding of a score moves a weight by up to
  w(1 − w)·|s|·2⁻⁸ in bfloat16 (8 significant bits; float16 has 11): transformers' own bfloat16
  run is up to 0.32 off its float32 run here. Seen: bfloat16 ≤ 0.087 (attention), 2.2e-2
  (hidden, relative); float16 ≤ 0.013 and 3.8e-3. The caps are about 1.5-2 × those.
"""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from attn_cli import budget, capture  # noqa: E402
from attn_cli import tokenizers as tokenize  # noqa: E402
from attn_cli.errors import ConfigError, ModelLoadError  # noqa: E402
from attn_cli.models import attend, checkpoint  # noqa: E402
from test_families import built, input_ids  # noqa: E402,F401  (session fixture, reused)
from test_gpt2 import checkpoints, offline  # noqa: E402,F401  (session fixtures, reused)

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}
ATOL = {"bfloat16": 0.15, "float16": 0.03}  # any attention weight, absolute
HIDDEN_RTOL = {"bfloat16": 4e-2, "float16": 8e-3}  # final hidden state, × its largest |value|
MEAN_RATIO = 1.5  # attn's mean error from float32 ≤ this × transformers' own
MAX_RATIO = 2.0  # attn's largest difference from transformers ≤ this × transformers' own
SEEN: dict = {}  # (case, dtype) -> figures for the report at the end

FAMILIES = ["llama-gqa", "llama3-rope-mqa", "mistral-window", "qwen2-window",
            "gpt_neox-parallel", "gpt_neo", "bert"]


def _ours(folder, dtype: str, ids: list[int]):
    model, encoding = checkpoint.load(str(folder), dtype=dtype)
    cfg = model.cfg
    keep = {layer: tuple(range(cfg.n_heads)) for layer in range(cfg.n_layers)}
    cap = capture.run(model, "", "test", tokenize.from_ids(ids, encoding), keep)
    attention = np.stack([np.stack([cap.head(layer, h).weights for h in range(cfg.n_heads)])
                          for layer in range(cfg.n_layers)])
    return model, cap, attention


def _theirs(hf, dtype, ids: list[int]):
    model = copy.deepcopy(hf).to(dtype)  # the session fixture stays float32
    with torch.no_grad():
        out = model(torch.tensor([ids]), output_attentions=True)
    attention = torch.stack([a[0] for a in out.attentions]).float().numpy()
    return attention, out.last_hidden_state[0].float().numpy()


def _compare(case: str, dtype: str, folder, hf, ids: list[int]) -> None:
    model, cap, ours = _ours(folder, dtype, ids)
    # what is handed to analysis and rendering is float32 NumPy whatever the dtype
    assert model.dtype == DTYPES[dtype] and all(
        p.dtype == DTYPES[dtype] for p in model.parameters())
    assert ours.dtype == np.float32 and cap.embeddings.dtype == np.float32
    assert all(h.dtype == np.float32 for h in cap.hidden)
    theirs, hidden = _theirs(hf, DTYPES[dtype], ids)
    truth, truth_hidden = _theirs(hf, torch.float32, ids)
    err = np.abs(ours - theirs).max()
    scale = np.abs(hidden).max()
    hidden_err = np.abs(cap.embeddings - hidden).max() / scale
    own = np.abs(theirs - truth).max()  # what the dtype itself does to transformers
    mean = (np.abs(ours - truth).mean() / np.abs(theirs - truth).mean(),
            np.abs(cap.embeddings - truth_hidden).mean() / np.abs(hidden - truth_hidden).mean())
    SEEN[case, dtype] = (err, hidden_err, own, *mean)
    assert err <= ATOL[dtype] and err <= MAX_RATIO * own, (case, dtype, err, own)
    assert hidden_err <= HIDDEN_RTOL[dtype], (case, dtype, hidden_err)
    assert max(mean) <= MEAN_RATIO, (case, dtype, mean)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("case", FAMILIES)
def test_low_precision_equals_transformers_in_the_same_dtype(built, case, dtype):
    folder, hf = built[case]
    _compare(case, dtype, folder, hf, input_ids(case))


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("name", ["2x4x32", "2x2x16-prefix", "2x3x24-bin"])
def test_gpt2_low_precision_equals_transformers(checkpoints, name, dtype):
    ck = checkpoints[name]
    ids = [int(i) for i in np.random.default_rng(3).integers(0, 50256, size=20)]
    _compare("gpt2-" + name, dtype, ck.folder, ck.hf, ids)


def test_float32_is_unchanged_by_the_dtype_switch(built):
    """--dtype float32 is the default path, bit for bit."""
    folder, _ = built["llama-gqa"]
    ids = input_ids("llama-gqa")
    _, default, a = _ours(folder, None, ids)
    _, explicit, b = _ours(folder, "float32", ids)
    assert np.array_equal(a, b) and np.array_equal(default.embeddings, explicit.embeddings)


# --- the softmax is float32 -----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_attend_takes_the_softmax_in_float32(dtype):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 9, 8, generator=g).to(dtype) * 3 for _ in range(3))
    out, stages = attend(q, k, v, causal=True, keep_stages=True)
    w = stages["weights"]
    assert w.dtype == torch.float32 and out.dtype == dtype
    assert stages["masked"].dtype == dtype  # scores stay in the model's dtype
    # the softmax of the (half-precision) masked scores, taken in float32
    torch.testing.assert_close(w, torch.softmax(stages["masked"].float(), dim=-1), rtol=0,
                               atol=0)
    torch.testing.assert_close(w.sum(-1), torch.ones(3, 9), rtol=0, atol=1e-6)
    assert (w.triu(1) == 0).all()
    # and it is the float32 weights, rounded once to the dtype, that weigh V
    torch.testing.assert_close(out, w.to(dtype) @ v, rtol=0, atol=0)


def test_captured_weights_are_float32_rows_that_sum_to_one(built):
    """A bfloat16 softmax would leave row sums off by ~1e-3; the float32 one by ~1e-7."""
    folder, _ = built["mistral-window"]
    _, cap, attention = _ours(folder, "bfloat16", input_ids("mistral-window"))
    np.testing.assert_allclose(attention.sum(-1), 1.0, rtol=0, atol=1e-6)


# --- the seeded model -----------------------------------------------------------------------------

def _json(*args) -> dict:
    from test_cli import ok_json

    return ok_json(*args)


def test_seeded_model_is_float32_unless_asked():
    text = "The cat sat on the mat because it was tired."
    plain = _json("inspect", text)
    assert _json("inspect", text, "--dtype", "float32") == plain
    half = _json("inspect", text, "--dtype", "bfloat16")
    a = np.array([h["weights"] for h in plain["attention"]])
    b = np.array([h["weights"] for h in half["attention"]])
    assert not np.array_equal(a, b)  # rounded weights, really
    np.testing.assert_allclose(b, a, atol=0.05)  # …the same model
    np.testing.assert_allclose(b.sum(-1), 1.0, atol=1e-6)
    assert _json("inspect", text, "--dtype", "bfloat16") == half  # still reproducible


@pytest.mark.parametrize("command", [["heads", "--layer", "1"], ["steps", "--layer", "1"],
                                     ["rollout"], ["generate", "-n", "2"], ["model"],
                                     ["inspect", "--predict", "2"]])
def test_every_model_command_takes_dtype(built, command):
    folder, _ = built["gpt_neo"]  # tied embeddings: an LM head for generate
    text = [] if command == ["model"] else ["The cat sat on the mat"]
    doc = _json(*command, *text, "--model", str(folder), "--dtype", "bfloat16")
    assert doc["command"] == command[0]


def test_compare_float32_with_bfloat16(built):
    folder, _ = built["llama-gqa"]
    doc = _json("compare", "The cat sat on the mat", "--model", str(folder),
                "--a", "--dtype float32", "--b", "--dtype bfloat16")
    assert doc["command"] == "compare"


# --- errors --------------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["inspect", "hi", "--dtype", "bf16"],
    ["model", "--dtype", "float64"],
    ["inspect", "hi", "--model", "/no/such/folder", "--dtype", "half"],  # said first
])
def test_unknown_dtype_is_one_line(args):
    from test_subprocess import assert_one_line_error, attn

    proc = attn(*args)
    assert_one_line_error(proc, "--dtype must be float32, bfloat16 or float16, got",
                          repr(args[-1]))


def test_compare_side_with_unknown_dtype_names_the_side():
    from test_subprocess import assert_one_line_error, attn

    proc = attn("compare", "hi", "--a", "--dtype int8", "--b", "--seed 1")
    assert_one_line_error(proc, "A (--a '--dtype int8')", "--dtype must be")


def test_float16_overflow_is_named(built, tmp_path):
    """A float32 weight beyond float16's ±65,504 would become inf: refused, with the way out."""
    from safetensors.torch import load_file, save_file
    from test_families import edit

    folder = edit(built["llama-gqa"][0], tmp_path)
    tensors = load_file(folder / "model.safetensors")
    tensors["layers.1.mlp.up_proj.weight"][2, 3] = 1e6
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    checkpoint.load(str(folder))  # float32 holds it
    with pytest.raises(ModelLoadError) as err:
        checkpoint.load(str(folder), dtype="float16")
    message = str(err.value)
    assert "layers.1.mlp.up_proj.weight" in message and "float16's range" in message
    assert "--dtype bfloat16" in message and "\n" not in message


# --- loading: mapped or read into place, never twice ----------------------------------------------

def mapped_from(tensor: torch.Tensor, path) -> bool:
    """Whether the tensor's memory is a mapping of the file (Linux: /proc/self/maps)."""
    ptr, real = tensor.data_ptr(), os.path.realpath(path)
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and os.path.realpath(fields[5].strip()) == real:
                low, high = (int(x, 16) for x in fields[0].split("-"))
                if low <= ptr < high:
                    return True
    return False


needs_proc = pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="Linux only")


@needs_proc
def test_weights_are_the_files_pages_or_read_into_place(built):
    """Stored in the dtype asked for: a weight is the mapped file's memory, not a copy.
    Concatenated (Q, K, V; gate, up) or converted: memory of its own, exactly its size (read
    into place, not mapped and then copied)."""
    folder, _ = built["llama-gqa"]
    file = folder / "model.safetensors"
    model, _ = checkpoint.load(str(folder))
    block = model.h[0]
    assert mapped_from(block.attn.c_proj.weight, file)
    assert mapped_from(model.wte.weight, file)
    fused = block.attn.c_attn.weight
    assert not mapped_from(fused, file)
    assert fused.untyped_storage().nbytes() == fused.numel() * 4
    half, _ = checkpoint.load(str(folder), dtype="bfloat16")
    w = half.h[0].attn.c_proj.weight
    assert w.dtype == torch.bfloat16 and not mapped_from(w, file)
    assert w.untyped_storage().nbytes() == w.numel() * 2
    torch.testing.assert_close(w, block.attn.c_proj.weight.to(torch.bfloat16), rtol=0, atol=0)


@needs_proc
def test_a_bfloat16_checkpoint_maps_in_bfloat16(built, tmp_path):
    folder, hf = built["llama-gqa"]
    saved = tmp_path / "bf16"
    copy.deepcopy(hf).to(torch.bfloat16).save_pretrained(saved)
    for f in ("vocab.json", "merges.txt"):
        (saved / f).write_bytes((folder / f).read_bytes())
    files = checkpoint.WeightFiles(saved)
    assert checkpoint.default_dtype(files, "cpu") == "float32"
    assert checkpoint.default_dtype(files, "cuda") == "bfloat16"  # the checkpoint's own
    model, _ = checkpoint.load(str(saved), dtype="bfloat16")
    assert mapped_from(model.h[1].attn.c_proj.weight, saved / "model.safetensors")
    up = model.h[1].mlp.c_fc.weight  # gate and up, read into one tensor of the model's dtype
    assert up.dtype == torch.bfloat16 and up.untyped_storage().nbytes() == up.numel() * 2


# --- the budget -----------------------------------------------------------------------------------

def test_budget_counts_the_dtype():
    from attn_cli.models import ModelConfig

    big = dict(n_layers=32, n_heads=32, d_model=4096, d_ff=14336, n_kv_heads=8,
               vocab_size=128256, norm="rmsnorm", gated_mlp=True, positions="rotary",
               qkv_bias=False, out_bias=False, mlp_bias=False, tie_embeddings=False,
               source="/m", seed=None)
    f32, bf16 = ModelConfig(**big), ModelConfig(**big, dtype="bfloat16")
    n = budget.parameters(f32)
    assert budget.load_bytes(f32) == n * 4 + n * 4 // 32
    assert budget.load_bytes(bf16) * 2 == budget.load_bytes(f32)
    head = 128256 * 4096  # the untied LM head, which parameters() does not count
    assert budget.run_bytes(f32, 2000, 1) - budget.run_bytes(bf16, 2000, 1) == (n + head) * 2
    # streamed (a block at a time): all but 30 of the 32 blocks are not held
    block = budget.block_parameters(f32)
    assert n == 32 * block + 4096 + 128256 * 4096  # blocks, final norm, token table
    assert budget.run_bytes(f32, 2000, 1) - budget.run_bytes(f32, 2000, 1, streamed=True) \
        == 30 * block * 4
    with pytest.raises(ConfigError):
        ModelConfig(dtype="int8")


# --- a GPU, where there is one --------------------------------------------------------------------

@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_cuda_low_precision_equals_transformers_on_the_gpu(built, dtype):
    folder, hf = built["llama-gqa"]
    ids = input_ids("llama-gqa")
    model, encoding = checkpoint.load(str(folder), device="cuda", dtype=dtype)
    assert model.device.type == "cuda" and model.dtype == DTYPES[dtype]
    cap = capture.run(model, "", "t", tokenize.from_ids(ids, encoding), {1: (0, 3)})
    ref = copy.deepcopy(hf).to("cuda", DTYPES[dtype])
    with torch.no_grad():
        out = ref(torch.tensor([ids], device="cuda"), output_attentions=True)
    for head in (0, 3):
        got = cap.head(1, head).weights
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, out.attentions[1][0, head].float().cpu().numpy(),
                                   atol=ATOL[dtype], rtol=0)


def test_report_low_precision():
    """Prints the differences seen (the closing note quotes them)."""
    for (case, dtype), (err, hidden, own, attention, final) in sorted(SEEN.items()):
        print(f"\n{case} {dtype}: largest attention difference from transformers {err:.1e} "
              f"(transformers' own from float32 {own:.1e}); final hidden state {hidden:.1e} "
              f"of its largest value; mean error from float32 / transformers': attention "
              f"{attention:.2f}, hidden {final:.2f}")
        assert err <= ATOL[dtype] and hidden <= HIDDEN_RTOL[dtype]


# --- the JSON says which dtype the numbers were computed in ----------------------------------

def test_json_model_names_its_dtype(built):
    from test_cli import load_schema, validate

    folder, _ = built["llama-gqa"]
    text = "The cat sat on the mat"
    for dtype, want in ((None, "float32"), ("bfloat16", "bfloat16"), ("float16", "float16")):
        asked = ("--dtype", dtype) if dtype else ()
        doc = _json("inspect", text, "--model", str(folder), "--layer", "0", "--head", "0",
                    *asked)
        validate(doc, load_schema("inspect"))
        assert doc["model"]["dtype"] == want, dtype
    doc = _json("model", "--model", str(folder), "--dtype", "bfloat16")
    validate(doc, load_schema("model"))
    assert doc["model"]["dtype"] == "bfloat16"
    assert _json("inspect", text, "--layer", "0", "--head", "0")["model"]["dtype"] == "float32"
