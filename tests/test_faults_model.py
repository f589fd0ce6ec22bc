"""SPEC §4, faults and hostile input on the model side, run as a user runs `attn` (a
subprocess): memory budgeted before it is allocated, and checkpoints that lie. Each case must
end with one line on stderr, exit 2, nothing on stdout, quickly, and without allocating what the
sizes claim."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
from safetensors.torch import load_file, save_file  # noqa: E402

from test_subprocess import _env, assert_one_line_error, attn  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "gpt2-tokenizer"
# The budget depends on the machine's free memory; a fixed cap makes the refusals repeatable.
CAPPED = _env(ATTN_MEMORY_LIMIT="4G")


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("faults") / "tiny"
    config = transformers.GPT2Config(n_layer=1, n_head=2, n_embd=16, n_positions=32,
                                     vocab_size=50257)
    transformers.GPT2Model(config).save_pretrained(folder)
    for file in ("vocab.json", "merges.txt"):
        shutil.copy(FIXTURES / file, folder / file)
    return folder


def variant(tiny: Path, tmp_path: Path, name: str = "m", **config) -> Path:
    folder = tmp_path / name
    shutil.copytree(tiny, folder)
    if config:
        data = json.loads((folder / "config.json").read_text())
        data.update(config)
        (folder / "config.json").write_text(json.dumps(data))
    return folder


# --- memory is budgeted before it is allocated -------------------------------------------------

@pytest.mark.parametrize("args, needles", [
    (["inspect", "hi", "--layers", "100000"], ["100000 layers", "of memory", "--layers"]),
    (["inspect", "hi", "--d-model", "10000000", "--heads", "1"], ["d_model 10000000"]),
    (["inspect", "hi", "--d-ff", str(10**12)], ["d_ff 1000000000000", "PB"]),
    (["heads", "--repeat", str(10**9)], ["2,000,000,000 tokens", "--layer/--head"]),
])
def test_sizes_are_refused_before_anything_is_built(args, needles):
    proc = attn(*args, env=CAPPED)
    assert_one_line_error(proc, "needs about", "is free", *needles)


def test_long_text_is_refused_with_a_way_out(tmp_path):
    big = tmp_path / "big.txt"
    big.write_text("word " * 60_000)
    proc = attn("inspect", "--file", big, "--json", env=CAPPED)
    assert_one_line_error(proc, "60,001 tokens with 8 heads kept", "--layer/--head",
                          "shorter text")


def test_the_way_out_works():
    """Fewer kept heads is a real way out: the estimate falls below the cap that refused all."""
    from attn_cli import budget
    from attn_cli.models import ModelConfig, seeded

    cfg, cap = ModelConfig(), 4 * 2**30 * budget.HEADROOM
    assert budget.run_bytes(cfg, 6000, 8) > cap > budget.run_bytes(cfg, 6000, 1)
    # the estimate counts what is kept: stages cost more than weights alone, more heads more
    assert budget.run_bytes(cfg, 100, 1, stages=True) > budget.run_bytes(cfg, 100, 1)
    assert budget.parameters(cfg) == sum(p.numel() for p in seeded(cfg).parameters())


def test_parameter_count_is_exact_for_every_family(tmp_path):
    """The estimate's weights are the model's own count, for each switch of the config."""
    from attn_cli import budget
    from attn_cli.models import ModelConfig, Transformer

    for cfg in (ModelConfig(), ModelConfig(n_heads=4, n_kv_heads=2, norm="rmsnorm",
                                           gated_mlp=True, qkv_bias=True, out_bias=False,
                                           mlp_bias=False, positions="rotary", vocab_size=100,
                                           final_norm=True),
                ModelConfig(positions="learned", n_positions=30, position_offset=2,
                            token_types=2, embed_norm=True, final_norm=False, post_norm=True,
                            vocab_size=77, head_dim=8)):
        with torch.device("meta"):
            model = Transformer(cfg)
        assert budget.parameters(cfg) == sum(p.numel() for p in model.parameters()), cfg


def test_memory_limit_must_be_a_size():
    proc = attn("inspect", "hi", env=_env(ATTN_MEMORY_LIMIT="lots"))
    assert_one_line_error(proc, "ATTN_MEMORY_LIMIT", "'lots'")


@pytest.mark.parametrize("change, needles", [
    (dict(n_layer=10**6), ["has 1 block but", "n_layer 1000000"]),
    (dict(n_embd=10**9, n_head=1), ["wte.weight", "(50257, 16)", "(50257, 1000000000)"]),
    (dict(vocab_size=10**12), ["wte.weight", "(1000000000000, 16)"]),
])
def test_config_sizes_are_checked_against_the_weights(tiny, tmp_path, change, needles):
    proc = attn("inspect", "hi", "--model", variant(tiny, tmp_path, **change))
    assert_one_line_error(proc, *needles)


# --- checkpoints that lie -----------------------------------------------------------------------

def test_deeply_nested_config(tiny, tmp_path):
    folder = variant(tiny, tmp_path)
    (folder / "config.json").write_text('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")
    proc = attn("inspect", "hi", "--model", folder)
    assert_one_line_error(proc, "config.json", "nests more than")


@pytest.mark.parametrize("value", ["Infinity", "NaN", "-1", "0", '"1e-5"'])
def test_layer_norm_epsilon_must_be_positive_and_finite(tiny, tmp_path, value):
    folder = variant(tiny, tmp_path)
    text = (folder / "config.json").read_text()
    data = json.loads(text)
    data["layer_norm_epsilon"] = 1e-5
    (folder / "config.json").write_text(json.dumps(data).replace("1e-05", value))
    proc = attn("inspect", "hi", "--model", folder)
    assert_one_line_error(proc, "layer_norm_epsilon", "positive finite number")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_weights_must_be_finite(tiny, tmp_path, bad):
    folder = variant(tiny, tmp_path)
    tensors = load_file(folder / "model.safetensors")
    tensors["h.0.attn.c_attn.weight"][3, 5] = bad
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    for extra in ([], ["--json"]):
        proc = attn("inspect", "hi", "--model", folder, *extra)
        assert_one_line_error(proc, "h.0.attn.c_attn.weight", "NaN or infinite")


def test_index_shard_outside_the_folder(tiny, tmp_path):
    other = variant(tiny, tmp_path, "other")
    folder = variant(tiny, tmp_path, "m")
    (folder / "model.safetensors").unlink()
    keys = load_file(other / "model.safetensors").keys()
    index = {"metadata": {}, "weight_map": {k: "../other/model.safetensors" for k in keys}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    proc = attn("inspect", "hi", "--model", folder)
    assert_one_line_error(proc, "../other/model.safetensors", "outside", "inside the checkpoint")


class _Boom:
    def __reduce__(self):
        return (print, ("this code must never run",))


def test_pickle_with_code_is_refused_in_attns_words(tiny, tmp_path):
    folder = variant(tiny, tmp_path)
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    state = dict(state, payload=_Boom())
    with open(folder / "pytorch_model.bin", "wb") as f:
        torch.save(state, f, pickle_module=pickle)
    proc = attn("inspect", "hi", "--model", folder)
    assert_one_line_error(proc, "pytorch_model.bin", "holds Python code", "safetensors")
    err = proc.stderr.decode()
    assert "weights_only" not in err and "Warning" not in err
    assert b"this code must never run" not in proc.stdout + proc.stderr


def test_a_good_bin_still_loads(tiny, tmp_path):
    folder = variant(tiny, tmp_path)
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    proc = attn("inspect", "hi", "--model", folder, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["model"]["family"] == "gpt2"


def test_unknown_family_lists_the_supported_ones(tiny, tmp_path):
    proc = attn("inspect", "hi", "--model", variant(tiny, tmp_path, model_type="mamba"))
    assert_one_line_error(proc, "model_type 'mamba'", "gpt_neox", "llama", "roberta")


def peak_kb(*args, env=CAPPED) -> int:
    """The peak RSS (KB) of `attn ARGS` run in a child of a bare interpreter (Linux)."""
    import sys

    script = ("import resource, subprocess, sys; "
              "subprocess.run([sys.executable, '-m', 'attn_cli', *sys.argv[1:]], "
              "capture_output=True); "
              "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", script, *map(str, args)],
                         capture_output=True, env=env, timeout=120)
    return int(out.stdout.decode().split()[-1])


def test_refusals_do_not_allocate(tiny, tmp_path):
    """A refusal costs what a normal start costs: its peak memory stays near a tiny run's."""
    base = peak_kb("inspect", "hi", "--json")
    for args in (["inspect", "hi", "--layers", "100000"], ["heads", "--repeat", str(10**9)]):
        assert peak_kb(*args) < base + 100_000, args  # KB: within 100 MB of a normal run


# --- a model bigger than the memory: refused before a weight is read ------------------------------

LLAMA_8B = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
                max_position_embeddings=8192, rope_theta=500000.0, tie_word_embeddings=False,
                model_type="llama")


@pytest.fixture(scope="session")
def huge(tmp_path_factory) -> Path:
    """A Llama-3-8B-shaped checkpoint in a few kB of disk: its config.json, and a safetensors
    file whose header names every tensor (bfloat16, 16 GB in all) and whose data is a hole.
    Headers and config agree, so only the memory budget can refuse it."""
    folder = tmp_path_factory.mktemp("huge") / "llama-8b"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(LLAMA_8B))
    d, ff, v = LLAMA_8B["hidden_size"], LLAMA_8B["intermediate_size"], LLAMA_8B["vocab_size"]
    kv = d // LLAMA_8B["num_attention_heads"] * LLAMA_8B["num_key_value_heads"]
    shapes = {"model.embed_tokens.weight": (v, d), "model.norm.weight": (d,),
              "lm_head.weight": (v, d)}
    for i in range(LLAMA_8B["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes.update({p + "self_attn.q_proj.weight": (d, d), p + "self_attn.k_proj.weight":
                       (kv, d), p + "self_attn.v_proj.weight": (kv, d),
                       p + "self_attn.o_proj.weight": (d, d), p + "mlp.gate_proj.weight":
                       (ff, d), p + "mlp.up_proj.weight": (ff, d), p + "mlp.down_proj.weight":
                       (d, ff), p + "input_layernorm.weight": (d,),
                       p + "post_attention_layernorm.weight": (d,)})
    header, end = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in shapes.items():
        n = 2 * shape[0] * (shape[1] if len(shape) > 1 else 1)
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [end, end + n]}
        end += n
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    with open(folder / "model.safetensors", "wb") as f:
        f.write(len(blob).to_bytes(8, "little") + blob)
        f.truncate(8 + len(blob) + end)  # sparse: no block of the 16 GB is written
    for file in ("vocab.json", "merges.txt"):
        shutil.copy(FIXTURES / file, folder / file)
    return folder


# inspect reads a checkpoint one block at a time (checkpoint.load, streamed): it needs the token
# table, the LM head and two blocks' worth (6.1 GB in float32), which a 2 GB cap refuses;
# generate holds every block (33.1 GB), which a 4 GB cap refuses.
SMALL_CAP = _env(ATTN_MEMORY_LIMIT="2G")


@pytest.mark.parametrize("dtype, needs", [(None, "6.1 GB"), ("float32", "6.1 GB"),
                                          ("bfloat16", "3.1 GB"), ("float16", "3.1 GB")])
def test_a_model_too_big_is_refused_with_what_it_needs(huge, dtype, needs):
    extra = ["--dtype", dtype] if dtype else []
    proc = attn("inspect", "hi", "--model", huge, "--layer", "20", "--head", "3", *extra,
                env=SMALL_CAP)
    assert_one_line_error(proc, f"in {dtype or 'float32'} needs about {needs} of memory",
                          "8,030,261,248 weights", "32 layers", "read a block at a time",
                          "is free", "smaller model")


@pytest.mark.parametrize("dtype, needs", [(None, "33.1 GB"), ("bfloat16", "16.6 GB")])
def test_generate_holds_every_block_and_says_what_that_needs(huge, dtype, needs):
    extra = ["--dtype", dtype] if dtype else []
    proc = attn("generate", "hi", "--model", huge, *extra, env=CAPPED)
    assert_one_line_error(proc, f"in {dtype or 'float32'} needs about {needs} of memory",
                          "8,030,261,248 weights", "32 layers", "is free", "smaller model")
    assert "block at a time" not in proc.stderr.decode()


def test_a_model_too_big_is_refused_without_allocating(tiny, huge):
    base = peak_kb("inspect", "hi", "--json", "--model", tiny)
    assert peak_kb("inspect", "hi", "--model", huge, "--dtype", "bfloat16",
                   env=SMALL_CAP) < base + 100_000


def test_the_refusal_offers_a_narrower_dtype_that_fits(tiny):
    """Float32 weights of the tiny model (808k, 3.2 MB, plus a layer's worth while loading)
    do not fit in 80% of 6 MB; bfloat16 ones do, and the message says so."""
    small = _env(ATTN_MEMORY_LIMIT="6M")
    proc = attn("inspect", "hi", "--model", tiny, env=small)
    assert_one_line_error(proc, "in float32 needs about 6.5 MB", "pass --dtype bfloat16 (about "
                          "3.2 MB)")
    proc = attn("inspect", "hi", "--model", tiny, "--dtype", "bfloat16", "--json", env=small)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["model"]["family"] == "gpt2"
