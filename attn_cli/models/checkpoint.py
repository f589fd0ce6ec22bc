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
weights.py reads the weight files; assemble.py builds the model from them. A GGUF file
(`PATH.gguf`, `ollama:NAME[:TAG]`) is read by gguf.py through the same assemble.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from attn_cli.models.assemble import assemble, build  # noqa: F401  (build: the API)
from attn_cli.models.families import configure
from attn_cli.models.folders import (  # noqa: F401  (where a checkpoint is: torch-free)
    _ALIASES, CONFIG_DEPTH, CONFIG_LIMIT, PYTORCH_BIN, SAFETENSORS, SAFETENSORS_INDEX,
    TOKENIZER_FILES, _missing, _snapshot, hub_cache_dir, load_tokenizer, read_config, resolve,
    split_revision)
from attn_cli.models.weights import WeightFiles, Weights, default_dtype  # noqa: F401


def load(spec: str, device: str = "cpu", dtype: str | None = None, streamed: bool = False):
    """The model and tokenizer of a checkpoint folder, a cached hub name, or a GGUF file
    (`PATH.gguf`, `ollama:NAME[:TAG]`: models/gguf.py).

    Returns (Transformer in eval mode on `device`, tokenizer). `dtype` (float32, bfloat16,
    float16) is what the weights are held and computed in; None: float32 on the CPU, the
    checkpoint's own dtype elsewhere.

    streamed (on the CPU; for a command that runs the model once): each block's weights are
    read from the file just before the block runs and let go after it, so the process holds
    one block's weights at a time besides the embeddings (mapped: only the rows of the tokens
    read are ever in memory). Every tensor is still checked (names, shapes, finite values)
    before anything runs.
    """
    folder = resolve(spec)
    if folder.is_file():  # a GGUF file (resolve found one): models/gguf.py reads it
        from attn_cli.models import gguf

        return gguf.load(folder, device, dtype, streamed)
    cfg, family = model_config(folder)
    source = WeightFiles(folder)
    cfg = dataclasses.replace(cfg, dtype=dtype or default_dtype(source, device))
    tokenizer = load_tokenizer(folder, family)
    return assemble(source, family, cfg, tokenizer, device, streamed)


def model_config(folder: Path):
    """(ModelConfig, family module) for the folder's config.json."""
    cfg, family = configure(read_config(folder), folder / "config.json")
    return dataclasses.replace(cfg, source=str(folder), seed=None), family
