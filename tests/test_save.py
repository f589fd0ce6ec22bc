"""`--save FILE.safetensors` / `FILE.npz` (issue 12): the arrays read back with safetensors and
plain `numpy.load` equal the numbers of the same command's `--json`, the metadata carries the
tokens, ids and model config, and a save that cannot be made is one line, with no half file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file

from test_cli import SENTENCE, assert_user_error, error, f32, ok, ok_json
from test_faults_io import attn, failed

FORMATS = ("safetensors", "npz")


def read(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """(arrays, metadata) the way a user reads them: numpy.load with no pickles, its
    `__metadata__` one JSON object; or safetensors, whose str -> str metadata has the
    numbers, `model` and `tokens` as JSON text."""
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as f:
            arrays = {name: f[name] for name in f.files}
        return arrays, json.loads(arrays.pop("__metadata__").item())
    arrays = load_file(path)
    with safe_open(path, "np") as f:
        meta = f.metadata()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()), meta
    for key in ("schema_version", "model", "tokens"):
        meta[key] = json.loads(meta[key])
    return arrays, meta


def saved(fmt: str, tmp_path: Path, *args) -> tuple[dict, dict, dict]:
    """Run `attn ARGS --json --save FILE`: (the JSON document, the arrays, the metadata)."""
    path = tmp_path / f"out.{fmt}"
    doc = ok_json(*args, "--save", path)
    arrays, meta = read(path)
    return doc, arrays, meta


def check_metadata(doc: dict, arrays: dict, meta: dict) -> None:
    assert meta["format"] == "attn.save"
    assert meta["schema_version"] == doc["schema_version"] == 1
    for key in ("command", "text", "encoding", "model", "tokens"):
        assert meta[key] == doc[key], key
    assert arrays["ids"].dtype == np.int64
    assert arrays["ids"].tolist() == [t["id"] for t in doc["tokens"]]


@pytest.mark.parametrize("fmt", FORMATS)
def test_inspect_reads_back_equal_to_its_json(fmt, tmp_path):
    doc, arrays, meta = saved(fmt, tmp_path, "inspect", SENTENCE, "--layer", "1", "--head", "0",
                              "--head", "2")
    check_metadata(doc, arrays, meta)
    assert meta["command"] == "inspect"
    # only the heads asked for, one (T, T) float32 array each, equal to the JSON numbers
    assert sorted(arrays) == ["embeddings", "ids", "layer.1.head.0.weights",
                              "layer.1.head.2.weights"]
    assert [(r["layer"], r["head"]) for r in doc["attention"]] == [(1, 0), (1, 2)]
    T = len(doc["tokens"])
    for record in doc["attention"]:
        got = arrays[f"layer.{record['layer']}.head.{record['head']}.weights"]
        assert got.dtype == np.float32 and got.shape == (T, T)
        np.testing.assert_array_equal(got, f32(record["weights"]))
        assert np.all(got[np.triu_indices(T, 1)] == 0)  # masked keys: weight 0, not -inf
    np.testing.assert_array_equal(arrays["embeddings"], f32(doc["embeddings"]["vectors"]))
    assert arrays["embeddings"].shape == (T, doc["model"]["d_model"])


@pytest.mark.parametrize("fmt", FORMATS)
def test_heads_saves_the_layer_shown(fmt, tmp_path):
    doc, arrays, meta = saved(fmt, tmp_path, "heads", SENTENCE, "--layer", "1",
                              "--pattern", "previous-token")  # captures every layer, shows one
    check_metadata(doc, arrays, meta)
    assert meta["command"] == "heads"
    assert sorted(arrays) == ["ids"] + [f"layer.1.head.{h}.weights" for h in range(4)]
    for record in doc["heads"]:
        np.testing.assert_array_equal(arrays[f"layer.1.head.{record['head']}.weights"],
                                      f32(record["weights"]))


@pytest.mark.parametrize("fmt", FORMATS)
def test_rollout_saves_the_rollout_and_the_layer_means(fmt, tmp_path):
    doc, arrays, meta = saved(fmt, tmp_path, "rollout", SENTENCE)
    check_metadata(doc, arrays, meta)
    assert sorted(arrays) == ["ids", "layer.0.mean.weights", "layer.1.mean.weights", "rollout"]
    np.testing.assert_array_equal(arrays["rollout"], f32(doc["rollout"]))
    # the layer means are what the rollout is made of, and the mean of inspect's heads
    heads = ok_json("inspect", SENTENCE)["attention"]
    for layer in (0, 1):
        mean = np.mean([f32(r["weights"]) for r in heads if r["layer"] == layer], axis=0,
                       dtype=np.float64)
        np.testing.assert_allclose(arrays[f"layer.{layer}.mean.weights"], mean, atol=1e-7)
    from attn_cli.analysis import rollout

    np.testing.assert_array_equal(
        rollout([arrays["layer.0.mean.weights"], arrays["layer.1.mean.weights"]]),
        arrays["rollout"])


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("reduce,names", [
    ([], ["layer.0.mean.weights", "layer.1.mean.weights"]),
    (["--reduce-layers"], ["mean.weights"]),
])
def test_inspect_reduce_saves_the_reduced_matrices(fmt, tmp_path, reduce, names):
    doc, arrays, _ = saved(fmt, tmp_path, "inspect", SENTENCE, "--reduce", "mean", *reduce)
    assert sorted(arrays) == ["embeddings", "ids", *names]
    for name, record in zip(names, doc["attention"]):
        np.testing.assert_array_equal(arrays[name], f32(record["weights"]))


def test_pytorch_reads_the_safetensors_file(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file as load_torch

    doc = ok_json("inspect", SENTENCE, "--layer", "0", "--save", tmp_path / "a.safetensors")
    tensors = load_torch(tmp_path / "a.safetensors")
    assert tensors["layer.0.head.3.weights"].dtype == torch.float32
    assert tensors["ids"].tolist() == [t["id"] for t in doc["tokens"]]


@pytest.mark.parametrize("fmt", FORMATS)
def test_save_goes_with_the_terminal_view(fmt, tmp_path):
    """--save is an extra output: the view printed is the same with and without it."""
    path = tmp_path / f"view.{fmt}"
    plain = ok("heads", SENTENCE, "--layer", "0").stdout
    result = ok("heads", SENTENCE, "--layer", "0", "--save", path)
    assert result.stdout == plain
    arrays, meta = read(path)
    assert sorted(arrays) == ["ids"] + [f"layer.0.head.{h}.weights" for h in range(4)]
    assert meta["text"] == SENTENCE


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_same_run_gives_the_same_bytes(fmt, tmp_path):
    """No dates, no hash order: a saved file follows from the options as the JSON does."""
    a, b = tmp_path / f"a.{fmt}", tmp_path / f"b.{fmt}"
    ok("rollout", SENTENCE, "--save", a)
    ok("rollout", SENTENCE, "--save", b)
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize("name", ["out.json", "out.npy", "out", "out.safetensors.tmp"])
def test_an_unknown_suffix_is_refused_before_the_model_runs(tmp_path, name):
    # --layers 0 would be refused when the model is built: the suffix is refused first
    result = error("inspect", "hi", "--layers", "0", "--save", tmp_path / name)
    assert_user_error(result, f"--save {tmp_path / name}", ".safetensors or .npz")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["inspect", "heads", "rollout"])
def test_a_missing_folder_is_refused_before_the_model_runs(tmp_path, command):
    missing = tmp_path / "missing" / "a.npz"
    failed(attn(command, "hi", "--layers", "0", "--save", missing), 2,
           f"error: cannot write {missing}: No such file or directory (the folder "
           f"{missing.parent} does not exist)")
    folder = tmp_path / "dir.safetensors"
    folder.mkdir()
    failed(attn(command, "hi", "--save", folder), 2,
           f"error: cannot write {folder}: Is a directory (give a file name inside the folder)")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_full_disk_is_one_line_and_exit_1(fmt, tmp_path):
    link = tmp_path / f"full.{fmt}"
    link.symlink_to("/dev/full")  # a device is written as it is, never replaced by a file
    failed(attn("inspect", "hi", "--json", "--save", link), 1,
           f"error: cannot write {link}: No space left on device")
    assert link.is_symlink() and Path("/dev/full").is_char_device()
    assert [p.name for p in tmp_path.iterdir()] == [link.name]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_failed_save_leaves_no_half_file(fmt, tmp_path):
    """A write cut short (a 4 kB file size limit, EFBIG) keeps the old file whole and leaves no
    temporary file behind."""
    resource = pytest.importorskip("resource")
    old = tmp_path / f"out.{fmt}"
    old.write_bytes(b"the old arrays")

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (4000, 4000))

    failed(attn("inspect", SENTENCE, "--save", old, preexec=small_files), 1,
           f"error: cannot write {old}: File too large")
    assert old.read_bytes() == b"the old arrays"
    assert [p.name for p in tmp_path.iterdir()] == [old.name]
    # and one that works replaces it whole
    ok("inspect", SENTENCE, "--save", old)
    assert "ids" in read(old)[0]
    assert [p.name for p in tmp_path.iterdir()] == [old.name]


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_text_and_tokens_are_kept_exactly(fmt, tmp_path):
    """Any text: non-ASCII, a partial UTF-8 token, control and bidi characters, quotes."""
    text = 'naïve "café" 日本語 🙂 a\u202eb\x1b[31m'
    doc, arrays, meta = saved(fmt, tmp_path, "rollout", text)
    check_metadata(doc, arrays, meta)
    assert meta["text"] == text
