"""Write GGUF files as llama.cpp's convert_hf_to_gguf.py does, from a transformers model's
state dict and config, with the `gguf` library's writer (for tests/test_gguf.py and the
benchmarks; written from llama.cpp's converter and tensor map, not from attn's reader).

    write(path, arch, config, state, qtype, vocab)

- names: `token_embd`, `blk.N.attn_q` … (gguf-py's tensor_mapping for LLAMA, QWEN2, GPT2);
- llama's Q and K rows permuted for ggml's rotary layout (`LlamaModel.permute`), K with the
  key/value head count; GPT-2's Conv1D weights transposed to (out, in);
- Llama 3.1's "llama3" rotary scaling as a `rope_freqs` tensor of one factor per frequency
  (`LlamaModel.generate_extra_tensors`), written before the model's tensors as it writes it;
- 2-D weights in `qtype` (F32, F16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 through gguf.quants; the
  K-quants, which gguf-py cannot quantise, as random blocks with finite scales, seeded), 1-D
  tensors in F32 as llama.cpp keeps them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import gguf
from gguf import GGMLQuantizationType as Q

K_QUANTS = {"Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"}
# where each K-quant block keeps its fp16 scales (d, and dmin where it has one)
K_SCALES = {"Q2_K": (80, 84), "Q3_K": (108, 110), "Q4_K": (0, 4), "Q5_K": (0, 4),
            "Q6_K": (208, 210)}


def permute(w: np.ndarray, n_head: int, n_head_kv: int | None) -> np.ndarray:
    """llama.cpp's LlamaModel.permute."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def gguf_names(arch: str, state: dict, config: dict) -> dict[str, np.ndarray]:
    """GGUF name -> array (torch layout), transformed as the converter transforms it."""
    out = {}
    for name, tensor in state.items():
        a = tensor.detach().float().numpy()
        n = name.removeprefix("model.").removeprefix("transformer.")
        if arch == "gpt2":
            if n.endswith((".attn.bias", ".attn.masked_bias")):
                continue
            if n.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")):
                a = a.T
            for hf, gg in (("wte.", "token_embd."), ("wpe.", "position_embd."),
                           ("ln_f.", "output_norm."), ("lm_head.", "output.")):
                if n.startswith(hf):
                    n = gg + n[len(hf):]
            for hf, gg in ((".ln_1.", ".attn_norm."), (".attn.c_attn.", ".attn_qkv."),
                           (".attn.c_proj.", ".attn_output."), (".ln_2.", ".ffn_norm."),
                           (".mlp.c_fc.", ".ffn_up."), (".mlp.c_proj.", ".ffn_down.")):
                n = n.replace(hf, gg)
            n = n.replace("h.", "blk.", 1) if n.startswith("h.") else n
        else:
            if arch == "llama" and (".q_proj." in n):
                a = permute(a, config["num_attention_heads"], config["num_attention_heads"])
            if arch == "llama" and (".k_proj." in n):
                a = permute(a, config["num_attention_heads"], config["num_key_value_heads"])
            for hf, gg in (("embed_tokens.", "token_embd."), ("norm.", "output_norm."),
                           ("lm_head.", "output.")):
                if n.startswith(hf):
                    n = gg + n[len(hf):]
            for hf, gg in ((".self_attn.q_proj.", ".attn_q."), (".self_attn.k_proj.", ".attn_k."),
                           (".self_attn.v_proj.", ".attn_v."), (".self_attn.o_proj.",
                                                                 ".attn_output."),
                           (".mlp.gate_proj.", ".ffn_gate."), (".mlp.up_proj.", ".ffn_up."),
                           (".mlp.down_proj.", ".ffn_down."), (".input_layernorm.",
                                                               ".attn_norm."),
                           (".post_attention_layernorm.", ".ffn_norm.")):
                n = n.replace(hf, gg)
            n = n.replace("layers.", "blk.", 1) if n.startswith("layers.") else n
        out[n] = a
    return out


def rope_freqs(config: dict) -> np.ndarray | None:
    """llama.cpp's LlamaModel.generate_extra_tensors: for rope_type "llama3", the factor each
    rotary frequency is divided by (1 for wavelengths under original/high_freq_factor, `factor`
    over original/low_freq_factor, 1 / ((1 − s)/factor + s) between), float32 as it computes
    them; None for any other rope. The converter reads original_max_position_embeddings from
    the top of config.json (default 8192, which is what Llama 3.x's rope_scaling says too);
    here it comes from the rope parameters, where transformers keeps it."""
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if rope.get("rope_type") != "llama3":
        return None
    base = rope.get("rope_theta", config.get("rope_theta", 10000.0))
    dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    freqs = 1.0 / (np.float32(base) ** (np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)))
    factor, low, high = rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"]
    old = rope.get("original_max_position_embeddings",
                   config.get("original_max_position_embeddings", 8192))
    low_wavelen, high_wavelen = old / low, old / high
    out = []
    for freq in freqs:
        wavelen = np.float32(2 * np.pi) / freq
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def quantise(a: np.ndarray, qtype: str, rng: np.random.Generator) -> tuple[np.ndarray, Q]:
    """(data, type) as the writer takes them."""
    if a.ndim == 1 or qtype == "F32":
        return a.astype(np.float32), Q.F32
    if qtype == "F16":
        return a.astype(np.float16), Q.F16
    t = Q[qtype]
    if qtype not in K_QUANTS:
        return gguf.quants.quantize(a.astype(np.float32), t), t
    block, size = gguf.GGML_QUANT_SIZES[t]
    blocks = a.size // block
    raw = rng.integers(0, 256, size=(blocks, size), dtype=np.uint8)
    lo, hi = K_SCALES[qtype]
    d = rng.uniform(1e-4, 2e-4, size=(blocks, 1))
    if hi - lo == 4:  # d and dmin: dmin × the mean minimum ≈ d × the mean code, values ≈ 0
        d = np.concatenate([d, 7.5 * d], axis=1)
    raw[:, lo:hi] = d.astype(np.float16).view(np.uint8)
    return raw.reshape(a.shape[0], -1), t


# context length, width, blocks, feed-forward width (gpt2: None is 4 × width), heads
SHAPE_KEYS = {"gpt2": ("n_positions", "n_embd", "n_layer", "n_inner", "n_head"),
              "llama": ("max_position_embeddings", "hidden_size", "num_hidden_layers",
                        "intermediate_size", "num_attention_heads")}


def write(path: Path, arch: str, config: dict, state: dict, qtype: str, vocab: dict,
          seed: int = 0, extra=None) -> Path:
    """A GGUF file of the model. vocab: tokens, token_type, bos, eos, add_bos, and merges + pre
    (model `gpt2`, the default) or scores + unk (model `llama`: SentencePiece); config: the
    transformers config as a dict."""
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), arch)
    # the shape, from the transformers config's keys of each family
    keys = SHAPE_KEYS["gpt2" if arch == "gpt2" else "llama"]
    w.add_context_length(config[keys[0]])
    w.add_embedding_length(config[keys[1]])
    w.add_block_count(config[keys[2]])
    w.add_feed_forward_length(config[keys[3]] or 4 * config[keys[1]])
    w.add_head_count(config[keys[4]])
    if arch == "gpt2":
        w.add_layer_norm_eps(config["layer_norm_epsilon"])
    else:
        w.add_head_count_kv(config["num_key_value_heads"])
        rope = config.get("rope_parameters") or {}
        w.add_rope_freq_base(rope.get("rope_theta", config.get("rope_theta", 10000.0)))
        w.add_layer_norm_rms_eps(config["rms_norm_eps"])
        w.add_rope_dimension_count(config["hidden_size"] // config["num_attention_heads"])
    w.add_tokenizer_model(vocab.get("model", "gpt2"))
    if vocab.get("model", "gpt2") == "gpt2":
        w.add_tokenizer_pre(vocab["pre"])
        w.add_token_merges(vocab["merges"])
    else:  # SentencePiece (`llama`): scores, no merges, no pre, an unknown token
        w.add_token_scores(vocab["scores"])
        w.add_unk_token_id(vocab["unk"])
    w.add_token_list(vocab["tokens"])
    w.add_token_types(vocab["token_type"])
    w.add_bos_token_id(vocab["bos"])
    w.add_eos_token_id(vocab["eos"])
    w.add_add_bos_token(vocab["add_bos"])
    if extra is not None:
        extra(w)
    factors = rope_freqs(config) if arch == "llama" else None
    if factors is not None:
        w.add_tensor("rope_freqs.weight", factors)
    for name, a in gguf_names(arch, state, config).items():
        data, t = quantise(a, qtype, rng)
        w.add_tensor(name, data, raw_dtype=None if t in (Q.F32, Q.F16) else t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
