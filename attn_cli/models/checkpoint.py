"""Real weights from disk: a Hugging Face folder, or a name in the local Hugging Face cache.

    load("path/to/folder")  or  load("gpt2")  ->  (Transformer, tokenizer)

A folder holds config.json, the weights (model.safetensors, a sharded model.safetensors.index.json,
or the older pytorch_model.bin, read only with torch's `weights_only` loader) and the tokenizer
files. config.json's model_type picks the family (`families/`), which maps the config onto the
one ModelConfig and the checkpoint's tensor names onto the one Transformer's. A name such as
`gpt2` or `EleutherAI/pythia-70m` is looked up in the Hugging Face cache; nothing is ever
downloaded here.

Nothing in the folder is trusted: config.json is read with a size and depth limit and every
value checked; the tensors' names and shapes are checked against config.json from the files'
headers before a weight is read; every tensor must be finite; every shard an index names stays
inside the folder. Each problem is one `ModelLoadError` line that says what is wrong and what
to do. folders.py finds the folder and reads its config.json and tokenizer (no torch);
weights.py reads the weight files; this module builds the model from them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from pathlib import Path

import torch

from attn_cli.errors import AttnError, ModelLoadError
from attn_cli.models import transformer
from attn_cli.models.config import ModelConfig
from attn_cli.models.families import HFConfig, families, supported
from attn_cli.models.folders import (  # noqa: F401  (where a checkpoint is: torch-free)
    _ALIASES, CONFIG_DEPTH, CONFIG_LIMIT, PYTORCH_BIN, SAFETENSORS, SAFETENSORS_INDEX,
    TOKENIZER_FILES, _missing, _snapshot, hub_cache_dir, load_tokenizer, read_config, resolve,
    split_revision)
from attn_cli.models.weights import WeightFiles, Weights, _check_layers, _strip, default_dtype


def load(spec: str, device: str = "cpu", dtype: str | None = None, streamed: bool = False):
    """The model and tokenizer of a checkpoint folder or cached hub name.

    Returns (Transformer in eval mode on `device`, tokenizer). `dtype` (float32, bfloat16,
    float16) is what the weights are held and computed in; None: float32 on the CPU, the
    checkpoint's own dtype elsewhere.

    streamed (on the CPU; for a command that runs the model once): each block's weights are
    read from the file just before the block runs and let go after it, so the process holds
    one block's weights at a time besides the embeddings (mapped: only the rows of the tokens
    read are ever in memory). Every tensor is still checked (names, shapes, finite values):
    the blocks' values before the first block runs, or beside the forward pass where its
    caller takes the check (Transformer.stream_blocks), before anything is shown.
    """
    folder = resolve(spec)
    cfg, family = model_config(folder)
    source = WeightFiles(folder)
    cfg = dataclasses.replace(cfg, dtype=dtype or default_dtype(source, device))
    _check_layers(source, family, cfg)
    tokenizer = load_tokenizer(folder, family)
    shapes = Weights.dry_run(source, family, cfg)  # every name and shape, from the headers
    from attn_cli import budget

    streamed = streamed and torch.device(device).type == "cpu"
    budget.check_weights(cfg, device, sum(t.numel() for t in shapes.values()),
                         streamed=streamed)
    if streamed:
        block = _block_of(family)
        weights = Weights(source, family, cfg, only=lambda key: block(key) is None)
        blocks = [key for key in source.shapes if block(key) is not None]

        def check() -> None:  # the blocks' values, read from the files in pieces
            for key in blocks:
                weights.check(key)

        model = build(cfg, family.convert(weights, cfg))
        model.stream_blocks(lambda i: _block_tensors(source, family, cfg, block, i), check)
    else:
        model = build(cfg, family.convert(Weights(source, family, cfg), cfg))
        source.close()  # the tensors that are mapped keep their file mapped
        model = model.to(device)
    model.stored_weights = source.listing()  # attn model shows the checkpoint's own names
    vocab = cfg.vocab_size
    if tokenizer.max_token_value >= vocab:
        raise ModelLoadError(
            f"the tokenizer in {folder} has {tokenizer.max_token_value + 1} tokens but the "
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
    (already checked: see load): the family's convert with every other tensor left on the meta
    device."""
    prefix = f"h.{i}."
    weights = Weights(files, family, cfg, only=lambda key: block(key) == i, mapped=False,
                      checked=True)
    return {name[len(prefix):]: t for name, t in family.convert(weights, cfg).items()
            if name.startswith(prefix)}


def model_config(folder: Path):
    """(ModelConfig, family module) for the folder's config.json."""
    where = folder / "config.json"
    hf = read_config(folder)
    model_type = hf.get("model_type", "gpt2")  # old GPT-2 configs carry no model_type
    family = families().get(model_type)
    if family is None:
        shown = repr(model_type)[:80]
        raise ModelLoadError(
            f"{where} says model_type {shown}; attn reads GPT-2 and these other families: "
            f"{', '.join(supported())}"
        )
    try:
        cfg = family.config(HFConfig(hf, where))
        return dataclasses.replace(cfg, source=str(folder), seed=None), family
    except ModelLoadError:
        raise
    except AttnError as exc:
        raise ModelLoadError(f"{where} describes a model attn cannot build: {exc}") from None


# --- weights into the model -------------------------------------------------------------------

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
