"""Weights into the one Transformer: every name and shape checked, then built whole or streamed.

    assemble(source, family, cfg, tokenizer, device, streamed) -> (Transformer, tokenizer)
    build(cfg, tensors) -> Transformer

`source` is a checkpoint folder's weight files (weights.WeightFiles) or anything with their
interface (a GGUF file's tensors: gguf.GGUFTensors); the family's converter (`families/`) maps
its tensors onto the one stack's names. Streamed (on the CPU), a block's weights are read just
before it runs and let go after. checkpoint.py (folders) and gguf.py (GGUF files) both build
through here.
"""

from __future__ import annotations

import contextlib
import re

import torch

from attn_cli.errors import ModelLoadError
from attn_cli.models import transformer
from attn_cli.models.config import ModelConfig
from attn_cli.models.weights import WeightFiles, Weights, _check_layers, _strip


def assemble(source, family, cfg: ModelConfig, tokenizer, device: str, streamed: bool,
             later: frozenset | set = frozenset(), attach=None):
    """The model from its weights `source` (WeightFiles, or anything with its interface: a
    GGUF file's tensors), every name and shape checked first; see checkpoint.load for
    streamed.

    later: keys left out now (each still checked) that attach(model) puts in place after the
    model is built (a GGUF's token table and LM head, dequantised on demand)."""
    _check_layers(source, family, cfg)
    shapes = Weights.dry_run(source, family, cfg)  # every name and shape, from the headers
    from attn_cli import budget

    streamed = streamed and torch.device(device).type == "cpu"
    budget.check_weights(cfg, device, sum(t.numel() for t in shapes.values()),
                         streamed=streamed)
    block = _block_of(family)

    def now(key: str) -> bool:
        return key not in later and not (streamed and block(key) is not None)

    weights = Weights(source, family, cfg, only=now)
    blocks = [key for key in source.shapes if streamed and block(key) is not None]
    for key in source.shapes:  # what is not read now is checked now, read later
        if not now(key) and key not in blocks:
            weights.check(key)

    def check() -> None:  # the streamed blocks' values, read from the file in pieces
        for key in blocks:
            weights.check(key)

    model = build(cfg, family.convert(weights, cfg))
    if attach is not None:
        attach(model)
    if streamed:  # the blocks' check: before the first block runs, or beside the forward pass
        model.stream_blocks(lambda i: _block_tensors(source, family, cfg, block, i), check)
    else:
        source.close()  # the tensors that are mapped keep their file mapped
        model = model.to(device)
    model.stored_weights = source.listing()  # attn model shows the checkpoint's own names
    vocab = cfg.vocab_size
    if tokenizer.max_token_value >= vocab:
        raise ModelLoadError(
            f"the tokenizer in {cfg.source} has {tokenizer.max_token_value + 1} tokens but the "
            f"model's embedding table has only {vocab} rows: the tokenizer files do not belong "
            f"to these weights"
        )
    return model.eval(), tokenizer


def _block_of(family):
    """checkpoint key -> the block it belongs to, or None (embeddings, final norm, LM head)."""
    pattern = re.compile(family.LAYER_KEY)

    def block(key: str) -> int | None:
        m = pattern.match(_strip(key, family.PREFIXES))
        return int(m.group(1)) if m else None

    return block


def _block_tensors(files: "WeightFiles", family, cfg: ModelConfig, block, i: int) -> dict:
    """Block i's tensors, our names without the "h.{i}." prefix, read into memory of their own
    (already checked: see assemble): the family's convert with every other tensor left on the meta
    device."""
    prefix = f"h.{i}."
    weights = Weights(files, family, cfg, only=lambda key: block(key) == i, mapped=False,
                      checked=True)
    return {name[len(prefix):]: t for name, t in family.convert(weights, cfg).items()
            if name.startswith(prefix)}


@contextlib.contextmanager
def _no_embedding_init():
    """nn.Embedding's random init on the meta device computes nothing, but torch routes its
    normal_ through torch._refs, whose first call imports torch._dynamo (1-4 s): skip it, the
    weights are assigned right after."""
    init = torch.nn.Embedding.reset_parameters
    torch.nn.Embedding.reset_parameters = lambda self: None
    try:
        yield
    finally:
        torch.nn.Embedding.reset_parameters = init


def build(cfg: ModelConfig, tensors: dict[str, torch.Tensor]) -> transformer.Transformer:
    """A Transformer for cfg holding these tensors (our names, our shapes, cfg.dtype): the
    tensors themselves, mapped or read, not copies.

    The module is made on the meta device, so no random init is spent on weights that are
    about to be replaced; every parameter is then assigned from the tensors.
    """
    with torch.device("meta"), _no_embedding_init():
        model = transformer.Transformer(cfg)
        if "lm_head.weight" in tensors:  # an untied LM head, where the family found one
            model.lm_head = torch.nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
    model.load_state_dict(tensors, strict=True, assign=True)
    return model
