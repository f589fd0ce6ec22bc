"""`attn compare`: the per-head total variation distance against a plain loop over two models
built here, the side options parser, the JSON schema, the table view and the errors."""

from __future__ import annotations

import copy
import dataclasses

import jsonschema
import numpy as np
import pytest

from attn_cli.commands.compare import side_options
from attn_cli.commands.options import ModelOptions
from attn_cli.errors import ConfigError
from test_cli import (SENTENCE, SMALL_CFG, assert_user_error, error, invoke, load_schema, ok,
                      ok_json, reference_capture)

SMALL = ["--layers", "2", "--heads", "3", "--d-model", "24"]
CFG = dict(n_layers=2, n_heads=3, d_model=24)


@pytest.fixture(scope="module")
def schema() -> dict:
    s = load_schema("compare")
    jsonschema.Draft202012Validator.check_schema(s)
    return s


@pytest.fixture(scope="module")
def seeds_doc(schema) -> dict:
    doc = ok_json("compare", SENTENCE, *SMALL, "--a", "--seed 0", "--b", "--seed 1")
    jsonschema.Draft202012Validator(schema).validate(doc)
    return doc


def plain_tv(p, q) -> list[float]:
    """½·Σ_j |p_ij − q_ij| per row, one number at a time."""
    out = []
    for row_p, row_q in zip(p.tolist(), q.tolist()):
        total = 0.0
        for x, y in zip(row_p, row_q):
            total += abs(x - y)
        out.append(total / 2)
    return out


def check_against_references(doc, cap_a, cap_b) -> None:
    means = []
    assert [(h["layer"], h["head"]) for h in doc["heads"]] == \
        [(h.layer, h.head) for h in cap_a.heads]
    for rec in doc["heads"]:
        expected = plain_tv(cap_a.head(rec["layer"], rec["head"]).weights,
                            cap_b.head(rec["layer"], rec["head"]).weights)
        np.testing.assert_allclose(rec["rows"], expected, rtol=1e-6, atol=1e-7)
        assert rec["mean"] == pytest.approx(sum(expected) / len(expected), rel=1e-6, abs=1e-7)
        assert rec["max"] == pytest.approx(max(expected), rel=1e-6, abs=1e-7)
        assert expected[rec["max_query"]] == max(expected)
        means.append(sum(expected) / len(expected))
    assert doc["mean"] == pytest.approx(sum(means) / len(means), rel=1e-6)
    best = max(range(len(means)), key=lambda n: means[n])
    assert doc["most_different"] == {"layer": doc["heads"][best]["layer"],
                                     "head": doc["heads"][best]["head"]}


def test_seed_against_seed_is_the_plain_loop(seeds_doc):
    check_against_references(seeds_doc, reference_capture(SENTENCE, seed=0, **CFG),
                             reference_capture(SENTENCE, seed=1, **CFG))
    assert seeds_doc["a"]["model"]["seed"] == 0 and seeds_doc["b"]["model"]["seed"] == 1
    assert seeds_doc["a"]["options"] == "--seed 0"
    assert all(0 < h["mean"] < 1 for h in seeds_doc["heads"])  # different weights, overlapping


def test_causal_against_bidirectional(schema):
    doc = ok_json("compare", SENTENCE, *SMALL, "--seed", "5",
                  "--a", "--causal", "--b", "--bidirectional")
    jsonschema.Draft202012Validator(schema).validate(doc)
    check_against_references(doc, reference_capture(SENTENCE, seed=5, causal=True, **CFG),
                             reference_capture(SENTENCE, seed=5, causal=False, **CFG))
    last = len(doc["tokens"]) - 1
    for rec in doc["heads"]:
        assert rec["rows"][0] > 0  # query 0 sees only itself in A, every key in B
        if rec["layer"] == 0:  # same input, and the last query sees every key in both
            assert rec["rows"][last] < 1e-6


def test_the_same_model_twice_is_zero(schema):
    doc = ok_json("compare", SENTENCE, *SMALL, "--a", "--seed 0", "--b", "")
    jsonschema.Draft202012Validator(schema).validate(doc)
    assert doc["b"]["options"] == "" and doc["b"]["model"]["seed"] == 0
    assert all(v == 0.0 for h in doc["heads"] for v in h["rows"])
    assert doc["mean"] == 0.0
    assert doc["most_different"] == {"layer": 0, "head": 0}


def test_layer_and_head_choose_what_is_compared():
    doc = ok_json("compare", SENTENCE, *SMALL, "--a", "--seed 0", "--b", "--seed 1",
                  "--layer", "1", "--head", "2", "--head", "0")
    assert [(h["layer"], h["head"]) for h in doc["heads"]] == [(1, 0), (1, 2)]


def test_models_of_different_sizes_compare_what_both_have():
    result = ok("compare", SENTENCE, "--d-model", "24", "--a", "--layers 1 --heads 2",
                "--b", "--layers 2 --heads 3", "--json")
    assert "comparing the 2 (layer, head) pairs both have" in result.stderr
    doc = ok_json("compare", SENTENCE, "--d-model", "24", "--a", "--layers 1 --heads 2",
                  "--b", "--layers 2 --heads 3")
    assert [(h["layer"], h["head"]) for h in doc["heads"]] == [(0, 0), (0, 1)]


def test_patterns_are_those_of_heads(seeds_doc):
    heads = ok_json("heads", SENTENCE, *SMALL, "--seed", "1", "--layer", "1")
    want = {h["head"]: h["pattern"] for h in heads["heads"]}
    got = {h["head"]: h["b_pattern"] for h in seeds_doc["heads"] if h["layer"] == 1}
    assert got == want


def test_schema_is_strict(seeds_doc, schema):
    validator = jsonschema.Draft202012Validator(schema)
    for mutate in (
        lambda d: d.update(extra=1),
        lambda d: d.update(metric="kl"),
        lambda d: d["a"].pop("model"),
        lambda d: d["heads"][0]["rows"].__setitem__(0, 1.5),
        lambda d: d["heads"][0].update(a_pattern="banana"),
        lambda d: d["most_different"].update(layer=-1),
    ):
        d = copy.deepcopy(seeds_doc)
        mutate(d)
        assert not validator.is_valid(d)


def test_table_view(seeds_doc):
    out = ok("compare", SENTENCE, *SMALL, "--a", "--seed 0", "--b", "--seed 1").stdout
    focus = seeds_doc["most_different"]
    assert f"Layer {focus['layer']} · Head {focus['head']}: the most different head" in out
    for word in ("mean TV", "max TV", "A pattern", "B pattern", "B − A", "A (--seed 0)",
                 "B (--seed 1)"):
        assert word in out
    # one row per compared head, its mean at --precision
    rows = [r for r in map(str.split, out.splitlines())
            if len(r) >= 7 and r[0].isdigit() and r[1].isdigit() and "." in r[2]]
    table = {(int(r[0]), int(r[1])): r[2] for r in rows}
    assert len(table) == len(seeds_doc["heads"])
    for rec in seeds_doc["heads"]:
        assert table[rec["layer"], rec["head"]] == f"{rec['mean']:.2f}"


def test_same_options_same_bytes():
    args = ("compare", SENTENCE, *SMALL, "--a", "--seed 0", "--b", "--bidirectional")
    assert ok(*args).stdout == ok(*args).stdout
    assert ok(*args, "--json").stdout == ok(*args, "--json").stdout


# ---------------------------------------------------------------------------------------------
# the --a / --b parser

BASE = ModelOptions(layers=3, heads=None, d_model=None, d_ff=None, seed=7, causal=None,
                    encoding=None, model=None, device="cpu", truncate=False)


@pytest.mark.parametrize("spec,changes", [
    ("", {}),
    ("--seed 1", {"seed": 1}),
    ("--seed=1 --bidirectional", {"seed": 1, "causal": False}),
    ("  --causal  --heads 2 ", {"causal": True, "heads": 2}),
    ("--d-model 48 --d-ff 100 --layers 1", {"d_model": 48, "d_ff": 100, "layers": 1}),
    ("--encoding gpt2", {"encoding": "gpt2"}),
    ("--model 'my models/gpt2'", {"model": "my models/gpt2"}),
])
def test_side_options(spec, changes):
    assert side_options(BASE, "--a", spec) == dataclasses.replace(BASE, **changes)


@pytest.mark.parametrize("spec,needle", [
    ("--seed", "--seed needs a value"),
    ("--seed x", "--seed needs a whole number, got 'x'"),
    ("--temperature 2", "'--temperature' is not a model option"),
    ("7", "'7' is not a model option"),
    ("--causal=yes", "--causal takes no value"),
    ("--model 'unclosed", "No closing quotation"),
])
def test_side_options_errors(spec, needle):
    with pytest.raises(ConfigError, match="^--b: ") as info:
        side_options(BASE, "--b", spec)
    assert needle in str(info.value)


# ---------------------------------------------------------------------------------------------
# errors: one line, exit 2, stdout empty

@pytest.mark.parametrize("args,needles", [
    ((), ("compare needs two different sides",)),
    (("--a", "--seed 0", "--b", "--dropout 0.1"), ("--b:", "'--dropout' is not a model option")),
    (("--a", "--seed -1", "--b", "--seed 1"), ("A (--a '--seed -1')", "seed")),
    (("--a", "--layers 1", "--b", "--layers 2", "--layer", "1"),
     ("A (--a '--layers 1')", "--layer 1 is out of range")),
    (("--a", "--encoding gpt2", "--b", "--encoding o200k_base"),
     ("different tokens", "8 with gpt2", "6 with o200k_base", "same --encoding")),
    (("--a", "--seed 0", "--b", "--seed 1", "--json", "--svg", "x.svg"), ("--svg",)),
])
def test_errors(args, needles):
    text = "hello     world 12345" if "--encoding gpt2" in args else SENTENCE
    assert_user_error(error("compare", text, *args), *needles)


def test_text_is_read_once_from_stdin():
    result = invoke("compare", "-", *SMALL, "--a", "--seed 0", "--b", "--seed 1", "--json",
                    input="The dog barked")
    assert result.exit_code == 0, result.output
    assert '"text":"The dog barked"' in result.stdout


def test_small_cfg_is_the_cli_default_shape():
    # guards the import above: SMALL_CFG is test_cli's, used to keep both files' models apart
    assert SMALL_CFG["n_heads"] != CFG["n_heads"]
