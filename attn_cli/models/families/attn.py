"""Models trained by `attn train` (model_type "attn").

The folder holds attn's own module names (no mapping), the seeded stack's architecture
(pre-LN, sinusoidal positions, GELU MLP, biases) and a small vocabulary: config.json's
`vocab` lists the encoding id of each embedding row after row 0 (`<unk>`), and `encoding`
names the tiktoken encoding that splits the text (tokenizers.VocabTokenizer).
"""

from __future__ import annotations

from attn_cli.models.config import ModelConfig
from attn_cli.models.families.hf_config import HFConfig

NAMES = ("attn",)
PREFIXES = ()
LAYER_KEY = r"^h\.(\d+)\."
LAYERS_FIELD = "n_layers"


def config(hf: HFConfig) -> ModelConfig:
    vocab = vocabulary(hf)
    n_heads, d_model = hf.int("n_heads"), hf.int("d_model")
    if d_model % n_heads:
        raise hf.refuse(f"has d_model {d_model}, which n_heads {n_heads} does not divide: the "
                        f"config is broken")
    return ModelConfig(
        n_layers=hf.int("n_layers"), n_heads=n_heads, d_model=d_model, d_ff=hf.int("d_ff"),
        positions="sinusoidal", vocab_size=len(vocab) + 1,
        layer_norm_eps=hf.float("layer_norm_eps", default=1e-5), family="attn",
        tie_embeddings=False)


def vocabulary(hf: HFConfig) -> list[int]:
    """The encoding id of each embedding row after <unk>."""
    _, vocab = hf.raw("vocab")
    if not isinstance(vocab, list) or not vocab or not all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in vocab) \
            or len(set(vocab)) != len(vocab):
        raise hf.refuse("has a vocab that is not a list of distinct token ids: train the "
                        "model again with attn train")
    return vocab


def tokenizer(hf: HFConfig):
    """The encoding named in config.json, cut down to the model's vocabulary."""
    from attn_cli.tokenizers import VocabTokenizer, get_encoding

    encoding = get_encoding(hf.str("encoding", "o200k_base"))
    vocab = vocabulary(hf)
    if max(vocab) >= encoding.n_vocab:
        raise hf.refuse(f"lists token id {max(vocab)}, which the {encoding.name} encoding does "
                        f"not have")
    return VocabTokenizer(encoding, vocab)


def convert(w, cfg: ModelConfig) -> dict:
    """The names are attn's own: every parameter of the stack, and the untied LM head."""
    import torch

    from attn_cli.models.transformer import Transformer

    with torch.device("meta"):
        shapes = {name: tuple(p.shape) for name, p in Transformer(cfg).named_parameters()}
    shapes["lm_head.weight"] = (cfg.vocab_size, cfg.d_model)
    return {name: w.get(name, shape) for name, shape in shapes.items()}
