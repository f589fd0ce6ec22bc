"""GGUF files whose rotary frequencies come from a `rope_freqs` tensor (Llama 3.1 and later).

llama.cpp's converter writes Llama 3's "llama3" rotary scaling as one factor per frequency
(`LlamaModel.generate_extra_tensors`, re-done in tests/gguf_writer.py from the converter, not
from attn), and llama.cpp divides each frequency by its factor. A tiny LlamaForCausalLM with
that scaling (original_max_position_embeddings 64, so that at d_head 64 and rope_theta 500
most frequencies move) is written with the tensor; every attention matrix (1e-5) and the final
hidden state (1e-4) of attn reading the file must equal the transformers model it was written
from, on a text of 40+ tokens. The reference is that model itself, not transformers' GGUF
loader, which drops the tensor (no mapping for `rope_freqs`) and so runs plain rotary
positions. The same weights without the tensor must be far off: the test can fail.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

import gguf_writer  # noqa: E402
from test_families import randomize  # noqa: E402
from test_gguf import ATTN_ATOL, HIDDEN_ATOL, MODELS, N_VOCAB, compare, gpt2_vocab  # noqa: E402
from test_subprocess import assert_one_line_error, attn  # noqa: E402

from attn_cli.errors import ModelLoadError  # noqa: E402
from attn_cli.models import checkpoint  # noqa: E402

LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
          "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
# 43 tokens. Each file stores its factors in float32, so each frequency differs from
# transformers' float32 llama3 formula by an ulp or so, an angle error that grows with the
# position: 4e-6 at 43 tokens, 9e-6 at 52 (with the llama3 formula itself, attn is bit-equal)
LONG = ("The animal didn't cross the street because it was too tired, and the driver, who "
        "had waited at the corner for 1984 seconds, finally drove on.")


@pytest.fixture(scope="module")
def scaled(tmp_path_factory):
    """(source LlamaForCausalLM, {name: F32 path}): "freqs" with its rope_freqs tensor,
    "plain" the same weights written without it."""
    args = {**MODELS["llama"][2], "tie_word_embeddings": False,
            "max_position_embeddings": 512}  # 8 × the original 64
    config = transformers.LlamaConfig(vocab_size=N_VOCAB + 1, attn_implementation="eager",
                                      rope_scaling=dict(LLAMA3), **args)
    hf = transformers.LlamaForCausalLM(config).eval()
    randomize(hf, 31)
    root = tmp_path_factory.mktemp("gguf-rope")
    conf = hf.config.to_dict()
    plain = {**conf, "rope_parameters": {"rope_type": "default", "rope_theta": 500.0}}
    vocab = gpt2_vocab("llama-bpe", add_bos=True)
    return hf, {name: gguf_writer.write(root / f"{name}.gguf", "llama", c, hf.state_dict(),
                                        "F32", vocab)
                for name, c in (("freqs", conf), ("plain", plain))}


def test_the_written_factors_are_llama3_scaling(scaled):
    """The file's factors divide the plain frequencies into transformers' llama3 ones (and
    they are not all 1: some frequencies move, some stay)."""
    hf, paths = scaled
    tensor = gguf.GGUFReader(paths["freqs"]).get_tensor(0)
    assert tensor.name == "rope_freqs.weight"
    factors = torch.from_numpy(tensor.data.copy())
    inv = 1.0 / 500.0 ** (torch.arange(0, 64, 2).float() / 64)
    torch.testing.assert_close(inv / factors, hf.model.rotary_emb.inv_freq.float())
    assert factors.min() == 1 and factors.max() == 8 and len(set(factors.tolist())) > 3


@pytest.mark.parametrize("streamed", [True, False])
def test_every_matrix_equals_the_source_model(scaled, streamed):
    hf, paths = scaled
    model, tokenizer = checkpoint.load(str(paths["freqs"]), streamed=streamed)
    assert dict(model.cfg.rope_scaling)["rope_type"] == "factors"
    ids = [t.id for t in tokenizer.encode(LONG)]
    assert len(ids) >= 40
    attention, hidden = compare(model, hf.model, ids)
    assert attention <= ATTN_ATOL and hidden <= HIDDEN_ATOL, (attention, hidden)


def test_without_the_factors_the_matrices_are_far_off(scaled):
    """The same weights with plain rotary positions (the file without rope_freqs; what
    transformers' GGUF loader runs on the file with it) are far from the source model."""
    hf, paths = scaled
    model, tokenizer = checkpoint.load(str(paths["plain"]))
    assert model.cfg.rope_scaling == ()
    attention, hidden = compare(model, hf.model, [t.id for t in tokenizer.encode(LONG)])
    assert attention > 0.1 and hidden > 0.1, (attention, hidden)


def test_attn_model_lists_rope_freqs_as_read(scaled):
    proc = attn("model", "--model", scaled[1]["freqs"], "--json")
    assert proc.returncode == 0, proc.stderr.decode()
    weights = {w["name"]: w for w in json.loads(proc.stdout)["weights"]}
    assert weights["rope_freqs.weight"] == {"name": "rope_freqs.weight", "shape": [32],
                                            "dtype": "F32", "used": True}
    assert all(w["used"] for w in weights.values())


def _llama(tmp_path, name: str, extra) -> str:
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=N_VOCAB + 1, **MODELS["llama"][2])).eval()
    return str(gguf_writer.write(tmp_path / name, "llama", hf.config.to_dict(),
                                 hf.state_dict(), "F32", gpt2_vocab("llama-bpe", True),
                                 extra=extra))


def test_bad_factors_and_yarn_are_one_line(tmp_path):
    cases = {
        "short.gguf": (lambda w: w.add_tensor("rope_freqs.weight", np.ones(5, np.float32)),
                       r"rope_freqs.weight .* has shape \(5,\) but the file's rotary "
                       r"dimension 64 needs \(32,\)"),
        "zero.gguf": (lambda w: w.add_tensor("rope_freqs.weight", np.zeros(32, np.float32)),
                      "rotary factors that are not positive finite numbers"),
        "yarn.gguf": (lambda w: w.add_rope_scaling_type(gguf.RopeScalingType.YARN),
                      "uses 'yarn' rotary scaling"),
    }
    for name, (extra, needle) in cases.items():
        path = _llama(tmp_path, name, extra)
        with pytest.raises(ModelLoadError, match=needle):
            checkpoint.load(path)
    assert_one_line_error(attn("inspect", "hi", "--model", tmp_path / "yarn.gguf"), "'yarn'")
