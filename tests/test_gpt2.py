"""Real GPT-2-family weights: `checkpoint.load` against Hugging Face transformers.

Tiny random GPT-2 checkpoints are built with transformers (GPT2Model / GPT2LMHeadModel and
save_pretrained) beside the real GPT-2 tokenizer files from ../shared/fixtures. Their weights are
re-drawn from a local generator so that nothing is zero or one (biases, LayerNorms) and the
attention is sharp: a transposed weight, a wrong scale or a wrong mask would show. Every
attention matrix and hidden state must equal GPT2Model(attn_implementation="eager") to 1e-5
(SPEC §2), and every mistake in a folder must be one clear ModelLoadError line.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
from safetensors.torch import load_file, save_file  # noqa: E402

from attn_cli import capture
from attn_cli import tokenizers as tokenize
from attn_cli.models import checkpoint  # noqa: E402
from attn_cli.errors import InputError, ModelLoadError  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "gpt2-tokenizer"
TEXTS = {
    "english": "The cat sat on the mat because it was tired.",
    "accented": "café naïve résumé",
    "cjk": "日本語のテキスト",
    "emoji": "I ❤️ 🦀 and 🐍",
    "whitespace": "Hello\n\n  world,\tit's   me  ",
}
ATOL = 1e-5

# name: GPT2Config arguments, and how the folder is written
CHECKPOINTS = {
    "1x1x8": dict(n_layer=1, n_head=1, n_embd=8),
    "2x4x32": dict(n_layer=2, n_head=4, n_embd=32),
    "3x2x48-inner80": dict(n_layer=3, n_head=2, n_embd=48, n_inner=80),
    "2x3x24-bin": dict(n_layer=2, n_head=3, n_embd=24),  # pytorch_model.bin only
    "2x2x16-prefix": dict(n_layer=2, n_head=2, n_embd=16),  # GPT2LMHeadModel: transformer.*
    "2x2x16-reorder": dict(n_layer=2, n_head=2, n_embd=16, reorder_and_upcast_attn=True),
}
N_POSITIONS = 64

MAX_ERROR = [0.0]  # the largest |ours - transformers| over attention, hidden states, x, output
MAX_STAGE_ERROR = [0.0]  # the same for q, k, v, scores, scaled, relative to the largest entry


def close(actual, expected, what: str = "", relative: bool = False) -> None:
    """|actual - expected| <= 1e-5 everywhere (SPEC §2's tolerance for attention and hidden
    states); with relative=True, 1e-5 of the largest |expected| instead, for the pre-softmax
    stages, whose entries reach ~100 and carry float32 rounding in proportion."""
    actual = torch.as_tensor(np.asarray(actual), dtype=torch.float32)
    expected = expected.detach().to(torch.float32)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    atol = ATOL
    if actual.numel():
        error = (actual - expected).abs().max().item()
        if relative:
            atol = ATOL * max(1.0, expected.abs().max().item())
            MAX_STAGE_ERROR[0] = max(MAX_STAGE_ERROR[0], error / (atol / ATOL))
        else:
            MAX_ERROR[0] = max(MAX_ERROR[0], error)
    torch.testing.assert_close(actual, expected, atol=atol, rtol=0, msg=lambda m: f"{what}: {m}")


# --- building checkpoints ------------------------------------------------------------------------

def randomize(model: torch.nn.Module, seed: int) -> None:
    """Redraw every weight: sharp attention (std 3/√d in Q and K), nothing left at 0 or 1.

    The output projections are kept small so the residual stream stays O(1), as in GPT-2's
    own init: float32 rounding is relative, and the tolerance of SPEC §2 is absolute.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("lm_head"):
                continue
            noise = torch.randn(p.shape, generator=g)
            if ".ln_" in name or name.startswith(("ln_", "transformer.ln_")):
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * noise)
            elif name.endswith(("wte.weight", "wpe.weight")):
                p.copy_(0.3 * noise)
            elif name.endswith("bias"):
                p.copy_((0.05 if "c_proj" in name else 0.2) * noise)
            else:  # Conv1D weight, (in, out)
                scale = 0.25 if "c_proj" in name else 1.0
                p.copy_(noise * scale / math.sqrt(p.shape[0]))
                if "c_attn" in name:  # columns: Q, K, V
                    p[:, : 2 * p.shape[1] // 3] *= 3.0


@dataclass
class Checkpoint:
    name: str
    folder: Path
    hf: torch.nn.Module  # the GPT2Model it was saved from, eager attention, eval mode
    model: object  # what checkpoint.load made of the folder
    encoding: object


def write_checkpoint(name: str, folder: Path, seed: int, **overrides) -> torch.nn.Module:
    args = dict(CHECKPOINTS[name], n_positions=N_POSITIONS, vocab_size=50257)
    args.update(overrides)
    config = transformers.GPT2Config(**args, attn_implementation="eager")
    folder.mkdir(parents=True)
    if name.endswith("-prefix"):
        lm = transformers.GPT2LMHeadModel(config)
        randomize(lm, seed)
        lm.save_pretrained(folder)
        # As on the hub: the LM head and the old causal-mask buffer are in the file too.
        tensors = load_file(folder / "model.safetensors")
        assert all(k.startswith("transformer.") for k in tensors)
        tensors["lm_head.weight"] = tensors["transformer.wte.weight"].clone()
        tensors["transformer.h.0.attn.bias"] = torch.tril(torch.ones(1, 1, 64, 64))
        save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
        hf = lm.transformer
    else:
        hf = transformers.GPT2Model(config)
        randomize(hf, seed)
        if name.endswith("-bin"):
            # transformers 5 always writes safetensors; write the legacy file as old GPT-2 did,
            # with the attention-mask buffers that must be ignored.
            (folder / "config.json").write_text(config.to_json_string())
            state = dict(hf.state_dict())
            for i in range(config.n_layer):
                state[f"h.{i}.attn.bias"] = torch.tril(torch.ones(1, 1, 64, 64))
                state[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
            torch.save(state, folder / "pytorch_model.bin")
        else:
            hf.save_pretrained(folder)
    for file in checkpoint.TOKENIZER_FILES:
        shutil.copy(FIXTURES / file, folder / file)
    assert hf.config._attn_implementation == "eager"
    return hf.eval()  # eval: no dropout


@pytest.fixture(scope="session", autouse=True)
def offline():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        yield


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[str, Checkpoint]:
    root = tmp_path_factory.mktemp("gpt2")
    out = {}
    for seed, name in enumerate(CHECKPOINTS):
        folder = root / name
        hf = write_checkpoint(name, folder, seed)
        files = {p.name for p in folder.iterdir()}
        assert ("pytorch_model.bin" in files) != ("model.safetensors" in files), files
        model, encoding = checkpoint.load(str(folder))
        out[name] = Checkpoint(name, folder, hf, model, encoding)
    return out


@pytest.fixture(scope="session")
def hf_tokenizer():
    tok = transformers.GPT2TokenizerFast.from_pretrained(str(FIXTURES))
    assert tok("hello world")["input_ids"] == [31373, 995]
    return tok


def copy_of(checkpoints, tmp_path: Path, name: str = "1x1x8") -> Path:
    folder = tmp_path / name
    shutil.copytree(checkpoints[name].folder, folder)
    return folder


def hf_run(hf, ids: list[int]):
    """transformers' forward pass, plus what it computed inside each block (hooks)."""
    inside = {}
    handles = [hf.ln_f.register_forward_hook(
        lambda m, args, out: inside.__setitem__("pre_ln_f", args[0][0]))]
    for i, block in enumerate(hf.h):
        handles += [
            block.ln_1.register_forward_hook(
                lambda m, args, out, i=i: inside.__setitem__(("x", i), out[0])),
            block.attn.c_attn.register_forward_hook(
                lambda m, args, out, i=i: inside.__setitem__(("qkv", i), out[0])),
            block.attn.c_proj.register_forward_pre_hook(
                lambda m, args, i=i: inside.__setitem__(("z", i), args[0][0])),
        ]
    try:
        with torch.no_grad():
            out = hf(torch.tensor([ids]), output_attentions=True, output_hidden_states=True)
    finally:
        for h in handles:
            h.remove()
    return out, inside


# --- the loaded model -------------------------------------------------------------------------

@pytest.mark.parametrize("name", CHECKPOINTS)
def test_config_comes_from_config_json(checkpoints, name):
    ck = checkpoints[name]
    cfg, hf_cfg = ck.model.cfg, ck.hf.config
    assert (cfg.n_layers, cfg.n_heads, cfg.d_model) == (hf_cfg.n_layer, hf_cfg.n_head,
                                                        hf_cfg.n_embd)
    assert cfg.d_ff == (hf_cfg.n_inner or 4 * hf_cfg.n_embd)
    assert cfg.n_positions == N_POSITIONS and cfg.vocab_size == 50257
    assert cfg.positions == "learned" and cfg.causal and cfg.seed is None
    assert cfg.layer_norm_eps == hf_cfg.layer_norm_epsilon
    assert cfg.source == str(ck.folder)
    assert cfg.to_dict()["seed"] is None
    assert not ck.model.training
    for pname, p in ck.model.named_parameters():
        assert p.device.type == "cpu" and p.dtype == torch.float32, pname


@pytest.mark.parametrize("text", TEXTS.values(), ids=TEXTS.keys())
def test_token_ids_match_transformers(checkpoints, hf_tokenizer, text):
    encoding = checkpoints["1x1x8"].encoding
    ids = [t.id for t in tokenize.tokenize(text, encoding)]
    assert ids and ids == hf_tokenizer(text)["input_ids"]
    assert encoding.decode(ids) == text


def test_tokenizer_files_that_are_not_byte_identical_still_parse(checkpoints, tmp_path,
                                                                 hf_tokenizer):
    """Same vocabulary, different bytes: the slow path through encoding_from_files."""
    folder = copy_of(checkpoints, tmp_path)
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    (folder / "vocab.json").write_text(json.dumps(vocab, indent=1), encoding="utf-8")
    _, encoding = checkpoint.load(str(folder))
    for text in TEXTS.values():
        assert [t.id for t in tokenize.tokenize(text, encoding)] == \
            hf_tokenizer(text)["input_ids"]


@pytest.mark.parametrize("text", TEXTS.values(), ids=TEXTS.keys())
@pytest.mark.parametrize("name", CHECKPOINTS)
def test_attention_and_hidden_states_match_transformers(checkpoints, name, text):
    ck = checkpoints[name]
    cfg = ck.model.cfg
    tokens = tokenize.tokenize(text, ck.encoding)
    ids = [t.id for t in tokens]
    cap = capture.run(ck.model, text, "gpt2", tokens, capture.select(cfg, None, None))
    out, inside = hf_run(ck.hf, ids)
    L, T = cfg.n_layers, len(ids)

    assert [(h.layer, h.head) for h in cap.heads] == \
        [(l, h) for l in range(L) for h in range(cfg.n_heads)]
    for head in cap.heads:
        close(head.weights, out.attentions[head.layer][0, head.head],
              f"attention {head.layer}.{head.head}")
        assert np.all(np.triu(head.weights, 1) == 0.0)

    with torch.no_grad():
        close(ck.model.embed(ids), out.hidden_states[0][0], "token + position embeddings")
    assert len(cap.hidden) == L and len(out.hidden_states) == L + 1
    for i in range(L - 1):
        close(cap.hidden[i], out.hidden_states[i + 1][0], f"hidden state after block {i}")
    close(cap.hidden[L - 1], inside["pre_ln_f"], "hidden state after the last block")
    close(cap.embeddings, out.last_hidden_state[0], "ln_f output")
    close(cap.embeddings, out.hidden_states[L][0], "ln_f output (hidden_states[-1])")
    assert cap.embeddings.shape == (T, cfg.d_model)


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_attention_is_sharp_enough_to_catch_mistakes(checkpoints, name):
    """Near-uniform attention would hide a wrong scale or mask; these heads are far from it."""
    ck = checkpoints[name]
    text = TEXTS["english"]
    tokens = tokenize.tokenize(text, ck.encoding)
    cap = capture.run(ck.model, text, "gpt2", tokens, capture.select(ck.model.cfg, None, None))
    T = len(tokens)
    uniform = 1.0 / np.arange(1, T + 1)  # the row maximum of uniform causal attention
    for head in cap.heads:
        excess = (head.weights.max(axis=1) - uniform)[1:].mean()
        assert excess > 0.1, (head.layer, head.head, excess)


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_stages_match_transformers(checkpoints, name):
    """q, k, v of each head are slices of GPT-2's c_attn output; every later stage follows."""
    ck = checkpoints[name]
    cfg = ck.model.cfg
    text = TEXTS["english"]
    tokens = tokenize.tokenize(text, ck.encoding)
    cap = capture.run(ck.model, text, "gpt2", tokens, capture.select(cfg, None, None),
                      stages=True)
    out, inside = hf_run(ck.hf, [t.id for t in tokens])
    d, hs, T = cfg.d_model, cfg.d_head, len(tokens)
    future = torch.ones(T, T, dtype=torch.bool).triu(1)
    for head in cap.heads:
        layer, h = head.layer, head.head
        s = head.stages
        qkv = inside[("qkv", layer)]
        q, k, v = (qkv[:, part * d + h * hs: part * d + (h + 1) * hs] for part in range(3))
        close(s["x"], inside[("x", layer)], "x = ln_1 output")
        close(s["q"], q, "q", relative=True)
        close(s["k"], k, "k", relative=True)
        close(s["v"], v, "v", relative=True)
        close(s["scores"], q @ k.T, "scores", relative=True)
        close(s["scaled"], q @ k.T / math.sqrt(hs), "scaled", relative=True)
        masked = torch.from_numpy(s["masked"])
        assert torch.equal(torch.isneginf(masked), future)
        assert torch.equal(masked.masked_fill(future, 0.0),
                           torch.from_numpy(s["scaled"]).masked_fill(future, 0.0))
        weights = out.attentions[layer][0, h]
        close(head.weights, weights, "weights")
        close(s["output"], inside[("z", layer)][:, h * hs:(h + 1) * hs], "head output")
        # A mistake in the scale would have shown: without ÷√d_k the weights differ clearly.
        unscaled = torch.softmax((q @ k.T).masked_fill(future, float("-inf")), dim=-1)
        if hs > 1:
            assert (unscaled - weights).abs().max() > 1e-2


@pytest.mark.parametrize("name", ["2x4x32", "3x2x48-inner80"])
def test_keeping_some_heads_leaves_the_forward_pass_unchanged(checkpoints, name):
    """Heads not asked for go through the fused SDPA path; the results are the same."""
    ck = checkpoints[name]
    cfg = ck.model.cfg
    text = TEXTS["emoji"]
    tokens = tokenize.tokenize(text, ck.encoding)
    keep = capture.select(cfg, [cfg.n_layers - 1], [1])
    cap = capture.run(ck.model, text, "gpt2", tokens, keep, stages=True)
    out, inside = hf_run(ck.hf, [t.id for t in tokens])
    assert [(h.layer, h.head) for h in cap.heads] == [(cfg.n_layers - 1, 1)]
    close(cap.heads[0].weights, out.attentions[cfg.n_layers - 1][0, 1], "kept head")
    for i in range(cfg.n_layers - 1):
        close(cap.hidden[i], out.hidden_states[i + 1][0], f"hidden state after block {i}")
    close(cap.embeddings, out.last_hidden_state[0], "ln_f output")


def test_input_longer_than_the_positions_is_an_input_error(checkpoints):
    ck = checkpoints["1x1x8"]
    tokens = tokenize.tokenize("word " * (N_POSITIONS + 5), ck.encoding)
    assert len(tokens) > N_POSITIONS
    with pytest.raises(InputError, match=f"only {N_POSITIONS} positions"):
        capture.run(ck.model, "…", "gpt2", tokens, capture.select(ck.model.cfg, None, None))
    fits = tokens[:N_POSITIONS]
    cap = capture.run(ck.model, "…", "gpt2", fits, capture.select(ck.model.cfg, None, None))
    assert cap.heads[0].weights.shape == (N_POSITIONS, N_POSITIONS)


def test_device_argument(checkpoints):
    model, _ = checkpoint.load(str(checkpoints["1x1x8"].folder), device="cpu")
    assert model.device == torch.device("cpu")


# --- the Hugging Face cache -------------------------------------------------------------------

def fake_cache(checkpoints, cache: Path, repo: str, commits: list[str], ref: str | None) -> Path:
    """A hub cache laid out as huggingface_hub writes it: blobs, snapshot symlinks, refs/main."""
    root = cache / ("models--" + repo.replace("/", "--"))
    (root / "blobs").mkdir(parents=True)
    source = checkpoints["1x1x8"].folder
    for n, commit in enumerate(commits):
        snap = root / "snapshots" / commit
        snap.mkdir(parents=True)
        for file in source.iterdir():
            blob = root / "blobs" / f"{n}-{file.name}"
            shutil.copy(file, blob)
            (snap / file.name).symlink_to(os.path.relpath(blob, snap))
        os.utime(snap, (1_000_000 + n, 1_000_000 + n))
    if ref is not None:
        (root / "refs").mkdir()
        (root / "refs" / "main").write_text(ref)
    return root


@pytest.fixture
def clean_env(monkeypatch):
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


@pytest.mark.parametrize("spec", ["gpt2", "openai-community/gpt2"])
def test_cache_follows_refs_main(checkpoints, tmp_path, clean_env, spec):
    clean_env.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    a, b = "a" * 40, "b" * 40
    root = fake_cache(checkpoints, tmp_path / "hub", "openai-community/gpt2", [a, b], ref=a)
    model, encoding = checkpoint.load(spec)
    assert model.cfg.source == str(root / "snapshots" / a)  # refs/main, not the newest
    assert [t.id for t in encoding.encode("hello world")] == [31373, 995]
    reference = checkpoints["1x1x8"].model
    for (n1, p1), (n2, p2) in zip(model.named_parameters(), reference.named_parameters()):
        assert n1 == n2 and torch.equal(p1, p2)


@pytest.mark.parametrize("spec", ["gpt2", "openai-community/gpt2"])
def test_cache_without_refs_takes_the_newest_snapshot(checkpoints, tmp_path, clean_env, spec):
    clean_env.setenv("HF_HOME", str(tmp_path / "hf"))  # the hub cache is $HF_HOME/hub
    old, new = "1" * 40, "2" * 40
    root = fake_cache(checkpoints, tmp_path / "hf" / "hub", "gpt2", [old, new], ref=None)
    model, _ = checkpoint.load(spec)
    assert model.cfg.source == str(root / "snapshots" / new)


def test_cache_default_location_and_stale_ref(checkpoints, tmp_path, clean_env):
    clean_env.setenv("HOME", str(tmp_path))
    cache = tmp_path / ".cache" / "huggingface" / "hub"
    root = fake_cache(checkpoints, cache, "distilbert/distilgpt2", ["c" * 40], ref="d" * 40)
    model, _ = checkpoint.load("distilgpt2")
    assert model.cfg.source == str(root / "snapshots" / ("c" * 40))


def test_name_not_in_cache_says_where_it_looked(tmp_path, clean_env):
    clean_env.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelLoadError) as err:
        checkpoint.load("gpt2")
    message = str(err.value)
    assert str(tmp_path / "hub" / "models--gpt2") in message
    assert str(tmp_path / "hub" / "models--openai-community--gpt2") in message
    assert "huggingface-cli download" in message and "folder" in message
    assert "\n" not in message


def test_name_with_an_empty_cache_folder(tmp_path, clean_env):
    clean_env.setenv("HF_HUB_CACHE", str(tmp_path))
    (tmp_path / "models--someone--tiny-gpt2" / "snapshots").mkdir(parents=True)
    with pytest.raises(ModelLoadError, match="models--someone--tiny-gpt2"):
        checkpoint.load("someone/tiny-gpt2")


# --- mistakes -----------------------------------------------------------------------------------

def load_error(spec) -> str:
    with pytest.raises(ModelLoadError) as err:
        checkpoint.load(str(spec))
    message = str(err.value)
    assert message and "\n" not in message and "Traceback" not in message
    return message


def edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def test_missing_folder(tmp_path):
    message = load_error(tmp_path / "nowhere")
    assert "does not exist" in message and str(tmp_path / "nowhere") in message
    assert "does not exist" in load_error("./no/such/folder")
    assert "empty" in load_error("  ")


def test_a_file_instead_of_a_folder(checkpoints):
    message = load_error(checkpoints["1x1x8"].folder / "model.safetensors")
    assert "not a folder" in message and str(checkpoints["1x1x8"].folder) in message


def test_no_config_json(checkpoints, tmp_path):
    folder = copy_of(checkpoints, tmp_path)
    (folder / "config.json").unlink()
    message = load_error(folder)
    assert "no config.json" in message and str(folder) in message


def test_config_not_json(checkpoints, tmp_path):
    folder = copy_of(checkpoints, tmp_path)
    (folder / "config.json").write_text('{"model_type": "gpt2",')
    assert "not valid JSON" in load_error(folder)
    (folder / "config.json").write_text('["gpt2"]')
    assert "not a JSON object" in load_error(folder)


@pytest.mark.parametrize("leftover", [None, "tf_model.h5"])
def test_no_weights(checkpoints, tmp_path, leftover):
    folder = copy_of(checkpoints, tmp_path)
    (folder / "model.safetensors").unlink()
    if leftover:
        (folder / leftover).write_bytes(b"\x89HDF")
    message = load_error(folder)
    assert "no weights" in message and "model.safetensors" in message
    assert "pytorch_model.bin" in message
    if leftover:
        assert leftover in message


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_safetensors(checkpoints, tmp_path, damage):
    folder = copy_of(checkpoints, tmp_path)
    path = folder / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes({"garbage": b"this is not a safetensors file" * 10,
                      "truncated": data[: len(data) // 2], "empty": b""}[damage])
    message = load_error(folder)
    assert "corrupt" in message and "model.safetensors" in message


def test_corrupt_pytorch_bin(checkpoints, tmp_path):
    folder = copy_of(checkpoints, tmp_path, "2x3x24-bin")
    path = folder / "pytorch_model.bin"
    path.write_bytes(path.read_bytes()[:1000])
    message = load_error(folder)
    assert "corrupt" in message and "pytorch_model.bin" in message


def test_pytorch_bin_that_is_not_a_state_dict(checkpoints, tmp_path):
    folder = copy_of(checkpoints, tmp_path, "2x3x24-bin")
    torch.save([1, 2, 3], folder / "pytorch_model.bin")
    assert "state dict" in load_error(folder)


def test_missing_tensor_is_named(checkpoints, tmp_path):
    folder = copy_of(checkpoints, tmp_path)
    tensors = load_file(folder / "model.safetensors")
    del tensors["h.0.mlp.c_fc.bias"]
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    message = load_error(folder)
    assert "h.0.mlp.c_fc.bias" in message and "no tensor" in message


def test_more_layers_in_config_than_in_weights(checkpoints, tmp_path):
    folder = copy_of(checkpoints, tmp_path)
    edit_config(folder, n_layer=2)
    message = load_error(folder)
    assert "has 1 block but" in message and "n_layer 2" in message


def test_more_blocks_in_weights_than_in_config(checkpoints, tmp_path):
    folder = copy_of(checkpoints, tmp_path, "2x4x32")
    edit_config(folder, n_layer=1)
    message = load_error(folder)
    assert "2 blocks" in message and "n_layer 1" in message


@pytest.mark.parametrize("change, key, found, expected", [
    (dict(n_positions=32), "wpe.weight", (64, 8), (32, 8)),
    (dict(n_inner=16), "h.0.mlp.c_fc.weight", (8, 32), (8, 16)),
    (dict(vocab_size=50300), "wte.weight", (50257, 8), (50300, 8)),
])
def test_shape_mismatch_names_key_and_shapes(checkpoints, tmp_path, change, key, found,
                                             expected):
    folder = copy_of(checkpoints, tmp_path)
    edit_config(folder, **change)
    message = load_error(folder)
    assert key in message and str(found) in message and str(expected) in message


def test_width_mismatch_names_first_tensor(checkpoints, tmp_path):
    folder = copy_of(checkpoints, tmp_path, "2x4x32")
    edit_config(folder, n_embd=64)
    message = load_error(folder)
    assert "wte.weight" in message and "(50257, 32)" in message and "(50257, 64)" in message


@pytest.mark.parametrize("file", ["vocab.json", "merges.txt"])
def test_missing_tokenizer_file(checkpoints, tmp_path, file):
    folder = copy_of(checkpoints, tmp_path)
    (folder / file).unlink()
    message = load_error(folder)
    assert "no tokenizer.json (or vocab.json + merges.txt)" in message


def test_broken_tokenizer_file(checkpoints, tmp_path):
    folder = copy_of(checkpoints, tmp_path)
    (folder / "vocab.json").write_text("{not json")
    assert "vocab.json" in load_error(folder)


def test_tokenizer_larger_than_the_embedding_table(checkpoints, tmp_path):
    folder = tmp_path / "small-vocab"
    config = transformers.GPT2Config(n_layer=1, n_head=1, n_embd=8, n_positions=16,
                                     vocab_size=1000, bos_token_id=0, eos_token_id=0)
    transformers.GPT2Model(config).save_pretrained(folder)
    for file in checkpoint.TOKENIZER_FILES:
        shutil.copy(FIXTURES / file, folder / file)
    message = load_error(folder)
    assert "50257 tokens" in message and "1000 rows" in message


def test_model_type_is_named(checkpoints, tmp_path):
    folder = copy_of(checkpoints, tmp_path)
    edit_config(folder, model_type="t5")
    message = load_error(folder)
    assert "model_type 't5'" in message
    for family in ("gpt2", "gpt_neo", "gpt_neox", "llama", "mistral", "qwen2", "bert", "roberta"):
        assert family in message


@pytest.mark.parametrize("change, words", [
    (dict(activation_function="relu"), ["activation_function 'relu'", "tanh GELU"]),
    (dict(activation_function="gelu"), ["activation_function 'gelu'"]),
    (dict(scale_attn_by_inverse_layer_idx=True), ["scale_attn_by_inverse_layer_idx"]),
    (dict(scale_attn_weights=False), ["scale_attn_weights false"]),
    (dict(n_head=3), ["n_embd 8", "n_head 3"]),
    (dict(n_layer=0), ["n_layer 0"]),
    (dict(n_embd="8"), ["n_embd '8'"]),
    (dict(layer_norm_epsilon=-1), ["layer_norm_epsilon -1"]),
])
def test_unsupported_or_broken_config(checkpoints, tmp_path, change, words):
    folder = copy_of(checkpoints, tmp_path)
    edit_config(folder, **change)
    message = load_error(folder)
    for word in words:
        assert word in message


def test_gelu_pytorch_tanh_is_accepted(checkpoints, tmp_path):
    folder = copy_of(checkpoints, tmp_path)
    edit_config(folder, activation_function="gelu_pytorch_tanh")
    model, _ = checkpoint.load(str(folder))
    assert model.cfg.n_layers == 1


def test_report_max_error():
    """Not a check: prints the largest difference from transformers seen above."""
    if MAX_ERROR[0]:
        print(f"\nmax |attn - transformers|: {MAX_ERROR[0]:.3e} (attention, hidden states); "
              f"{MAX_STAGE_ERROR[0]:.3e} relative to the largest entry (q, k, v, scores)")
        assert MAX_ERROR[0] <= ATOL


# --- attn compare with real weights on one side ---------------------------------------------

def test_compare_checkpoint_against_seeded_model_uses_transformers_attention(checkpoints):
    """--a loads the checkpoint, --b is a seeded model with the same sizes and GPT-2's tokens:
    every TV row equals ½·Σ|A − B| with A from transformers' own eager attention."""
    from test_cli import ok_json, reference_capture

    ck = checkpoints["2x4x32"]
    text = TEXTS["english"]
    doc = ok_json("compare", text, "--a", f"--model '{ck.folder}'",
                  "--b", "--encoding gpt2 --layers 2 --heads 4 --d-model 32 --seed 9")
    ids = [t.id for t in tokenize.tokenize(text, ck.encoding)]
    assert doc["a"]["token_ids"] == doc["b"]["token_ids"] == ids
    assert doc["a"]["model"]["source"] == str(ck.folder) and doc["b"]["model"]["seed"] == 9
    hf_attn = hf_run(ck.hf, ids)[0].attentions
    seeded = reference_capture(text, encoding="gpt2", n_layers=2, n_heads=4, d_model=32, seed=9)
    assert len(doc["heads"]) == 8
    for rec in doc["heads"]:
        a = hf_attn[rec["layer"]][0, rec["head"]].double().numpy()
        b = seeded.head(rec["layer"], rec["head"]).weights.astype(np.float64)
        np.testing.assert_allclose(rec["rows"], 0.5 * np.abs(a - b).sum(axis=1), atol=2e-5)
