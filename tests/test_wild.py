"""Checkpoints as they are saved in the wild (SPEC §2), against transformers reading the same folder.

Each case is a tiny random model saved the way real checkpoints are found: a sentence-transformers
folder (modules.json, 1_Pooling/, a tokenizer.json that pads to 128 and truncates at 128; the
model at the root or, in the older layout, in 0_Transformer/), task-head checkpoints whose names
carry `bert.`, `roberta.`, `model.`, `transformer.` or `gpt_neox.` and extra head tensors, a
config.json in transformers 4.x form (`rope_theta`, `rope_scaling`) written by hand, weights
stored in bfloat16 or float16, sharded, or only as pytorch_model.bin, and a tokenizer_config.json
whose add_bos_token / add_eos_token disagree with tokenizer.json's template.

The reference is transformers itself: `AutoTokenizer` and `AutoModel` (eager, float32) loaded
from the very folder attn reads. Token ids must be equal, every attention matrix within 1e-5 and
the final hidden state within 1e-4.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from test_families import randomize  # noqa: E402
from test_tokenizers import build_bert, build_gpt2, build_llama3, build_neox, build_roberta  # noqa: E402

from attn_cli import capture  # noqa: E402
from attn_cli import tokenizers as tokenize  # noqa: E402
from attn_cli.models import checkpoint, folders  # noqa: E402

TEXT = "The animal didn't cross the street because it was too tired."
ATTN_ATOL, HIDDEN_ATOL = 1e-5, 1e-4
VOCAB = 50304  # at least every fixture tokenizer's ids
PADDED = {"strategy": {"Fixed": 128}, "direction": "Right", "pad_to_multiple_of": None,
          "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"}
TRUNCATED = {"direction": "Right", "max_length": 128, "strategy": "LongestFirst", "stride": 0}

SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
             max_position_embeddings=128)
LLAMA = dict(SMALL, num_key_value_heads=2)
LLAMA3_ROPE_4X = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                  "high_freq_factor": 4.0, "original_max_position_embeddings": 16}

# name: (config class, model class, config args, tokenizer builder, how it is saved)
CASES = {
    "sentence-transformers": ("BertConfig", "BertModel", SMALL, "bert", {"st": "root"}),
    "sentence-transformers-0_Transformer": ("BertConfig", "BertModel", SMALL, "bert",
                                            {"st": "0_Transformer"}),
    "BertForMaskedLM": ("BertConfig", "BertForMaskedLM", SMALL, "bert", {}),
    "BertForSequenceClassification": ("BertConfig", "BertForSequenceClassification",
                                      dict(SMALL, num_labels=3), "bert", {"dtype": "float16"}),
    "RobertaForMaskedLM": ("RobertaConfig", "RobertaForMaskedLM",
                           dict(SMALL, max_position_embeddings=130, pad_token_id=1,
                                type_vocab_size=1), "roberta", {}),
    "RobertaForSequenceClassification": ("RobertaConfig", "RobertaForSequenceClassification",
                                         dict(SMALL, max_position_embeddings=130, pad_token_id=1,
                                              type_vocab_size=1, num_labels=2), "roberta",
                                         {"shards": True}),
    "LlamaForCausalLM-4.x-llama3-bf16-sharded": (
        "LlamaConfig", "LlamaForCausalLM", dict(LLAMA, tie_word_embeddings=False), "llama3",
        {"config4": {"rope_theta": 5000.0, "rope_scaling": LLAMA3_ROPE_4X}, "dtype": "bfloat16",
         "shards": True}),
    "LlamaForCausalLM-4.x-linear-bin": (
        "LlamaConfig", "LlamaForCausalLM", LLAMA, "llama3",
        {"config4": {"rope_theta": 300.0, "rope_scaling": {"type": "linear", "factor": 2.0}},
         "bin": True}),
    "LlamaForCausalLM-5.x-bos-config": (
        "LlamaConfig", "LlamaForCausalLM", LLAMA, "llama3",
        {"tokenizer_config": {"add_bos_token": False, "add_eos_token": True,
                              "eos_token": "<|end_of_text|>"}}),
    "GPTNeoXForCausalLM": ("GPTNeoXConfig", "GPTNeoXForCausalLM",
                           dict(SMALL, rotary_pct=0.5, use_parallel_residual=True), "neox",
                           {"dtype": "bfloat16"}),
    "GPT2LMHeadModel": ("GPT2Config", "GPT2LMHeadModel",
                        dict(n_embd=32, n_layer=2, n_head=4, n_positions=128), "gpt2",
                        {"padded": True}),
}
TOKENIZERS = {"bert": build_bert, "roberta": build_roberta, "llama3": build_llama3,
              "neox": build_neox, "gpt2": build_gpt2}


def _edit_json(path: Path, change) -> None:
    doc = json.loads(path.read_text(encoding="utf-8"))
    change(doc)
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")


def _pad_and_truncate(doc: dict) -> None:
    doc["padding"], doc["truncation"] = dict(PADDED), dict(TRUNCATED)


def _config_4x(doc: dict, fields: dict) -> None:
    """What transformers 4.x wrote: rope_theta and rope_scaling, no rope_parameters."""
    doc.pop("rope_parameters", None)
    doc.update(fields)
    doc["transformers_version"] = "4.46.3"


def _state_dict_bin(hf, folder: Path) -> None:
    """pytorch_model.bin only, as older checkpoints are: the state dict, pickled."""
    for file in folder.glob("model*.safetensors*"):
        file.unlink()
    state = {k: v.contiguous() for k, v in hf.state_dict().items()}
    torch.save(state, folder / "pytorch_model.bin")


def build(name: str, root: Path, seed: int) -> tuple[Path, Path]:
    """(the folder a user passes to --model, the folder transformers reads the model from)."""
    config_cls, model_cls, args, tok, how = CASES[name]
    top = root / name
    inner = top / how["st"] if how.get("st") == "0_Transformer" else top
    made = TOKENIZERS[tok](root / f"{name}-tok")  # tokenizer.json, tokenizer_config.json
    shutil.copytree(made, inner, dirs_exist_ok=True)
    config = getattr(transformers, config_cls)(vocab_size=VOCAB, attn_implementation="eager",
                                               **args)
    if "config4" in how and how["config4"]["rope_scaling"].get("rope_type") == "llama3":
        config.rope_parameters = {"rope_type": "llama3", "rope_theta": 5000.0, **LLAMA3_ROPE_4X}
    hf = getattr(transformers, model_cls)(config)
    randomize(hf, seed)
    dtype = getattr(torch, how.get("dtype", "float32"))
    hf.to(dtype).save_pretrained(inner, max_shard_size="200KB" if how.get("shards") else "5GB")
    if how.get("bin"):
        _state_dict_bin(hf, inner)
    if "config4" in how:
        _edit_json(inner / "config.json", lambda d: _config_4x(d, how["config4"]))
    if "tokenizer_config" in how:
        _edit_json(inner / "tokenizer_config.json", lambda d: d.update(how["tokenizer_config"]))
    if how.get("padded") or "st" in how:
        _edit_json(inner / "tokenizer.json", _pad_and_truncate)
    if "st" in how:  # sentence-transformers' own files around the model
        path = "" if how["st"] == "root" else how["st"]
        (top / "modules.json").write_text(json.dumps([
            {"idx": 0, "name": "0", "path": path,
             "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling",
             "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize",
             "type": "sentence_transformers.models.Normalize"}]), encoding="utf-8")
        (top / "1_Pooling").mkdir()
        (top / "1_Pooling" / "config.json").write_text(json.dumps(
            {"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True}), encoding="utf-8")
        (top / "2_Normalize").mkdir()
        (top / "sentence_bert_config.json").write_text(json.dumps(
            {"max_seq_length": 128, "do_lower_case": False}), encoding="utf-8")
        (top / "config_sentence_transformers.json").write_text(json.dumps(
            {"__version__": {"sentence_transformers": "2.0.0"}}), encoding="utf-8")
    return top, inner


@pytest.fixture(scope="session")
def wild(tmp_path_factory):
    root = tmp_path_factory.mktemp("wild")
    return {name: build(name, root, 300 + i) for i, name in enumerate(CASES)}


@pytest.fixture(scope="session")
def reference(wild):
    """transformers' tokenizer and base model, read from each folder as saved."""
    out = {}
    for name, (_, inner) in wild.items():
        tok = transformers.AutoTokenizer.from_pretrained(str(inner))
        hf = transformers.AutoModel.from_pretrained(str(inner), attn_implementation="eager",
                                                    dtype=torch.float32).eval()
        out[name] = (tok, hf)
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_ids_and_every_matrix_equal_transformers(wild, reference, name):
    top, inner = wild[name]
    tok, hf = reference[name]
    model, tokenizer = checkpoint.load(str(top))
    tokens = tokenize.tokenize(TEXT, tokenizer)
    expected = tok(TEXT)["input_ids"]
    assert [t.id for t in tokens] == expected
    assert len(expected) < 64  # nothing padded to 128
    cfg = model.cfg
    keep = {layer: tuple(range(cfg.n_heads)) for layer in range(cfg.n_layers)}
    cap = capture.run(model, TEXT, "test", tokens, keep)
    with torch.no_grad():
        ref = hf(torch.tensor([expected]), output_attentions=True)
    for layer in range(cfg.n_layers):
        for head in range(cfg.n_heads):
            torch.testing.assert_close(torch.from_numpy(cap.head(layer, head).weights),
                                       ref.attentions[layer][0, head], atol=ATTN_ATOL, rtol=0,
                                       msg=lambda m: f"{name} L{layer} H{head}: {m}")
    torch.testing.assert_close(torch.from_numpy(cap.embeddings), ref.last_hidden_state[0],
                               atol=HIDDEN_ATOL, rtol=0)


def test_the_cases_are_what_they_say(wild):
    """The fixtures really are wild: prefixes and head tensors, 4.x keys, stored dtypes."""
    def keys(name):
        files = checkpoint.WeightFiles(folders.resolve(str(wild[name][0])))
        return files

    assert all(k.startswith(("bert.", "cls.")) for k in keys("BertForMaskedLM").shapes)
    assert any(k.startswith("classifier") for k in keys("RobertaForSequenceClassification").shapes)
    assert any(k.startswith("embed_out") for k in keys("GPTNeoXForCausalLM").shapes)
    assert set(keys("GPTNeoXForCausalLM").dtypes.values()) == {"BF16"}
    assert set(keys("BertForSequenceClassification").dtypes.values()) == {"F16"}
    llama = wild["LlamaForCausalLM-4.x-llama3-bf16-sharded"][1]
    assert (llama / "model.safetensors.index.json").is_file()
    cfg = json.loads((llama / "config.json").read_text())
    assert "rope_scaling" in cfg and "rope_parameters" not in cfg
    binary = wild["LlamaForCausalLM-4.x-linear-bin"][1]
    assert (binary / "pytorch_model.bin").is_file() and not list(binary.glob("*.safetensors"))
    old = wild["sentence-transformers-0_Transformer"][0]
    assert not (old / "config.json").exists() and (old / "0_Transformer" / "config.json").is_file()
    padded = json.loads((wild["sentence-transformers"][0] / "tokenizer.json").read_text())
    assert padded["padding"]["strategy"] == {"Fixed": 128}


def _attn(*args, env=None):
    return subprocess.run([sys.executable, "-m", "attn_cli", *args], capture_output=True,
                          text=True, env={**os.environ, "COLUMNS": "100", **(env or {})})


@pytest.mark.parametrize("name", ["sentence-transformers-0_Transformer", "GPT2LMHeadModel",
                                  "LlamaForCausalLM-5.x-bos-config"])
def test_attn_tokens_with_model_equals_autotokenizer_without_torch(wild, reference, name):
    """`attn tokens TEXT --model M`: the checkpoint's own ids, specials marked, no torch."""
    probe = ("import runpy, sys; sys.argv = ['attn'] + sys.argv[1:]\n"
             "try:\n    runpy.run_module('attn_cli', run_name='__main__')\n"
             "finally:\n    sys.stderr.write('TORCH=%s' % ('torch' in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", probe, "tokens", TEXT, "--model",
                           str(wild[name][0]), "--json"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.endswith("TORCH=False")
    doc = json.loads(proc.stdout)
    tok = reference[name][0]
    expected = tok(TEXT)["input_ids"]
    assert [t["id"] for t in doc["tokens"]] == expected
    specials = set(tok.all_special_ids)
    assert [t.get("special", False) for t in doc["tokens"]] == [i in specials for i in expected]
    table = _attn("tokens", TEXT, "--model", str(wild[name][0]))
    assert table.returncode == 0, table.stderr
    marked = [line for line in table.stdout.splitlines() if line.rstrip().endswith("special")]
    n = sum(i in specials for i in expected)
    assert len(marked) == (n + 1 if n else 0)  # and the header's "special" column, if any


def test_tokens_model_and_encoding_together_is_one_line(wild):
    proc = _attn("tokens", "hi", "--model", str(wild["GPT2LMHeadModel"][0]), "--encoding", "gpt2")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: --encoding cannot be combined with --model")
    assert proc.stderr.count("\n") == 1


def test_model_lists_the_checkpoints_own_names(wild):
    """`attn model` shows the tensors as the checkpoint names them, and which it does not use."""
    top, inner = wild["BertForMaskedLM"]
    proc = _attn("model", "--model", str(top), "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    files = checkpoint.WeightFiles(inner)
    assert [w["name"] for w in doc["weights"]] == list(files.shapes)
    by_name = {w["name"]: w for w in doc["weights"]}
    assert by_name["bert.encoder.layer.0.attention.self.query.weight"]["shape"] == [32, 32]
    assert by_name["bert.encoder.layer.0.attention.self.query.weight"]["used"] is True
    assert by_name["cls.predictions.transform.dense.weight"]["used"] is False
    assert all(w["dtype"] == "float32" for w in doc["weights"])
    table = _attn("model", "--model", str(top)).stdout
    assert "bert.encoder.layer.1.attention.self.key.weight" in table
    assert "h.0.attn.c_attn.weight" not in table
    assert "not used" in table
    llama = _attn("model", "--model", str(wild["LlamaForCausalLM-4.x-llama3-bf16-sharded"][0]),
                  "--json")
    names = {w["name"]: w for w in json.loads(llama.stdout)["weights"]}
    assert names["model.layers.0.self_attn.q_proj.weight"]["dtype"] == "bfloat16"
    assert names["lm_head.weight"]["used"] is True  # the LM head of --predict and generate


def test_padding_in_tokenizer_json_is_ignored_on_both_paths(tmp_path):
    """The byte-level path (tiktoken) and the `tokenizers` library path both ignore padding
    and truncation, as AutoTokenizer does."""
    gpt2 = build_gpt2(tmp_path, "gpt2-padded")
    bert = build_bert(tmp_path)

    def fixed(doc):
        doc["padding"] = dict(PADDED, strategy={"Fixed": 64}, pad_id=50256,
                              pad_token="<|endoftext|>")
        doc["truncation"] = dict(TRUNCATED, max_length=4)

    for folder in (gpt2, bert):
        _edit_json(folder / "tokenizer.json", fixed)
        ours = [t.id for t in tokenize.tokenize(TEXT, folders.load_tokenizer(folder))]
        theirs = transformers.AutoTokenizer.from_pretrained(str(folder))(TEXT)["input_ids"]
        assert ours == theirs and 4 < len(ours) < 64


def test_modules_json_that_points_outside_is_not_followed(tmp_path):
    folder = tmp_path / "st"
    folder.mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "config.json").write_text("{}")
    (folder / "modules.json").write_text(json.dumps(
        [{"path": "../outside", "type": "sentence_transformers.models.Transformer"}]))
    assert folders.resolve(str(folder)) == folder
    proc = _attn("inspect", "hi", "--model", str(folder))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: no config.json in")
