"""GGUF files for the benchmarks (SPEC §5, §9), written with the `gguf` library's writer.

    python benchmarks/gguf_files.py from-folder DIR OUT.gguf QTYPE
        the safetensors checkpoint DIR (a LlamaForCausalLM saved by run.py, with GPT-2's
        vocab.json + merges.txt) as a GGUF file in QTYPE (tests/gguf_writer.py: llama.cpp's
        names, permuted Q/K, 1-D tensors in F32)
    python benchmarks/gguf_files.py llama3-8b OUT.gguf
        a Llama-3-8B-shaped file (32 layers, 32 heads, 8 kv heads, d_model 4,096, d_ff 14,336,
        vocabulary 128,256, untied LM head) in Q4_0 with random blocks (small finite scales),
        written one tensor at a time: the writer never holds more than one (≈ 4.7 GB on disk)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import gguf  # noqa: E402
import gguf_writer  # noqa: E402


def gpt2_vocab(folder: Path) -> dict:
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    merges = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
    merges = [m for m in merges if m and not m.startswith("#version")]
    tokens = sorted(vocab, key=vocab.get)
    return {"tokens": tokens, "token_type": [1] * len(tokens), "merges": merges,
            "pre": "gpt-2", "bos": 0, "eos": 0, "add_bos": False}


def from_folder(folder: Path, out: Path, qtype: str) -> None:
    from safetensors.torch import load_file

    config = json.loads((folder / "config.json").read_text())
    state = load_file(str(folder / "model.safetensors"))
    gguf_writer.write(out, "llama", config, state, qtype, gpt2_vocab(folder))


def llama3_8b(out: Path) -> None:
    d, ff, layers, heads, kv, vocab = 4096, 14336, 32, 32, 8, 128256
    hd = d // heads
    w = gguf.GGUFWriter(str(out), "llama")
    w.add_context_length(8192)
    w.add_embedding_length(d)
    w.add_block_count(layers)
    w.add_feed_forward_length(ff)
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_rope_freq_base(500000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(hd)
    w.add_vocab_size(vocab)
    fixtures = next(p for p in (HERE.parent.parent / "shared" / "fixtures" / "gpt2-tokenizer",
                                HERE.parent / "shared" / "fixtures" / "gpt2-tokenizer")
                    if p.is_dir())
    v = gpt2_vocab(fixtures)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(v["tokens"])
    w.add_token_types(v["token_type"])
    w.add_token_merges(v["merges"])
    w.add_bos_token_id(len(v["tokens"]) - 1)
    w.add_eos_token_id(len(v["tokens"]) - 1)
    shapes = [("token_embd.weight", (vocab, d))]
    for i in range(layers):
        shapes += [(f"blk.{i}.attn_norm.weight", (d,)), (f"blk.{i}.attn_q.weight", (d, d)),
                   (f"blk.{i}.attn_k.weight", (kv * hd, d)),
                   (f"blk.{i}.attn_v.weight", (kv * hd, d)),
                   (f"blk.{i}.attn_output.weight", (d, d)), (f"blk.{i}.ffn_norm.weight", (d,)),
                   (f"blk.{i}.ffn_gate.weight", (ff, d)), (f"blk.{i}.ffn_up.weight", (ff, d)),
                   (f"blk.{i}.ffn_down.weight", (d, ff))]
    shapes += [("output_norm.weight", (d,)), ("output.weight", (vocab, d))]
    Q4 = gguf.GGMLQuantizationType.Q4_0
    block, size = gguf.GGML_QUANT_SIZES[Q4]
    for name, shape in shapes:
        if len(shape) == 1:
            w.add_tensor_info(name, shape, np.dtype(np.float32), shape[0] * 4)
        else:
            nbytes = shape[0] * shape[1] // block * size
            w.add_tensor_info(name, (shape[0], shape[1] // block * size), np.dtype(np.uint8),
                              nbytes, raw_dtype=Q4)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    rng = np.random.default_rng(0)
    for name, shape in shapes:
        if len(shape) == 1:
            w.write_tensor_data(np.ones(shape, dtype=np.float32))
            continue
        rows, blocks = shape[0], shape[1] // block
        raw = rng.integers(0, 256, size=(rows, blocks, size), dtype=np.uint8)
        scale = np.full((rows, blocks, 1), 0.02 / np.sqrt(shape[1]) * 4, dtype=np.float16)
        raw[:, :, 0:2] = scale.view(np.uint8)
        w.write_tensor_data(raw.reshape(rows, blocks * size))
        del raw
    w.close()


if __name__ == "__main__":
    if sys.argv[1] == "from-folder":
        from_folder(Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4])
    elif sys.argv[1] == "llama3-8b":
        llama3_8b(Path(sys.argv[2]))
    else:
        sys.exit(f"unknown kind {sys.argv[1]}")
