"""The `attn` command line through Typer's CliRunner: JSON against the shipped schemas, the
numbers against the model's own forward pass, input handling, the table views, and the
SPEC §4 error table (one `error: ...` line on stderr, exit 2, stdout empty, no traceback).

Usage errors that click itself raises (an unknown option, a value that is not a number) only
become one line through the console script's `main()`; they are in test_subprocess.py.
"""

from __future__ import annotations

import copy
import json
import math
import re
from importlib import resources
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from typer.testing import CliRunner

from attn_cli.cli import app
from attn_cli.inputs import DEFAULT_TEXT

ROOT = Path(__file__).resolve().parents[1]
SENTENCE = "The cat sat on the mat"
# Small and quick, but with more than one layer and head, and d_head != d_model.
SMALL = ["--layers", "2", "--heads", "4", "--d-model", "32", "--seed", "3"]
SMALL_CFG = dict(n_layers=2, n_heads=4, d_model=32, seed=3)
COMMANDS = ("inspect", "heads", "steps", "tokens", "encodings", "model", "rollout")

runner = CliRunner(env={
    "COLUMNS": "120", "LINES": "50", "NO_COLOR": "1", "ATTN_DEBUG": None, "FORCE_COLOR": None,
    "TTY_COMPATIBLE": None, "TTY_INTERACTIVE": None,
})


# ---------------------------------------------------------------------------------------------
# helpers

def invoke(*args, input=None, env=None):
    result = runner.invoke(app, [str(a) for a in args], input=input, env=env)
    # Anything but a clean exit is a crash the CLI let through.
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"attn {' '.join(map(str, args))} raised {result.exception!r}\n{result.output}")
    return result


def ok(*args, input=None, env=None):
    result = invoke(*args, input=input, env=env)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result


def _no_constants(name):
    raise AssertionError(f"{name} in JSON output (SPEC §3: no NaN or Infinity ever)")


def parse(text: str):
    """The whole of stdout as ONE JSON document (nothing else on stdout), no NaN/Infinity."""
    return json.loads(text, parse_constant=_no_constants)


def ok_json(*args, input=None, env=None):
    return parse(ok(*args, "--json", input=input, env=env).stdout)


def ndjson_lines(*args, input=None):
    result = ok(*args, "--ndjson", input=input)
    assert result.stdout.endswith("\n")
    return [parse(line) for line in result.stdout.splitlines()]


def load_schema(command: str) -> dict:
    text = resources.files("attn_cli").joinpath("schemas", f"{command}.schema.json").read_text(
        encoding="utf-8")
    return json.loads(text)


@pytest.fixture(scope="module")
def schemas() -> dict[str, dict]:
    return {c: load_schema(c) for c in COMMANDS}


def validate(doc, schema):
    jsonschema.Draft202012Validator(schema).validate(doc)


def header_schema(schema: dict, drop: tuple[str, ...]) -> dict:
    """The document's schema minus its record fields: what an NDJSON first line must be."""
    s = copy.deepcopy(schema)
    s.pop("$id", None)
    for key in drop:
        s["properties"].pop(key, None)
    s["required"] = [k for k in s["required"] if k not in drop]
    return s


def def_schema(schema: dict, name: str) -> dict:
    """One `$defs` entry of a schema as a schema of its own (an NDJSON record)."""
    return {"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": f"#/$defs/{name}"}


def f32(values) -> np.ndarray:
    """JSON numbers back to float32. JSON keeps float32 precision, so this is exact."""
    return np.asarray(values, dtype=np.float32)


def assert_float32_exact(json_values, expected: np.ndarray) -> None:
    got = np.asarray(json_values, dtype=np.float64)
    # Each JSON number is the shortest text of a float32: it parses back to that float32.
    np.testing.assert_array_equal(got.astype(np.float32), expected.astype(np.float32))


def plain_entropy(row) -> float:
    total = 0.0
    for p in row:
        p = float(p)
        if p > 0:
            total -= p * math.log(p)
    return total


def reference_capture(text: str, *, encoding="o200k_base", stages=False, causal=True,
                      layers=None, heads=None, **cfg):
    """A fresh seeded model, built and run here (not through the CLI), keeping the same
    layers and heads as the command does."""
    from attn_cli import capture
    from attn_cli import models as model_lib
    from attn_cli.models.config import ModelConfig
    from attn_cli.tokenizers import get_encoding, tokenize

    config = ModelConfig(causal=causal, **cfg)
    net = model_lib.seeded(config)
    tokens = tokenize(text, get_encoding(encoding))
    keep = capture.select(config, layers, heads)
    return capture.run(net, text, encoding, tokens, keep, stages=stages)


# ---------------------------------------------------------------------------------------------
# schemas themselves

@pytest.mark.parametrize("command", COMMANDS)
def test_schema_is_valid_draft_2020_12(command):
    schema = load_schema(command)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["additionalProperties"] is False
    assert schema["properties"]["schema_version"]["const"] == 1
    assert schema["properties"]["command"]["const"] == command


def test_schemas_are_strict(schemas):
    doc = ok_json("inspect", SENTENCE, *SMALL, "--layer", "0", "--head", "0")
    validate(doc, schemas["inspect"])
    bad = []
    for mutate in (
        lambda d: d.update(extra=1),
        lambda d: d.update(schema_version=2),
        lambda d: d.update(command="heads"),
        lambda d: d.pop("embeddings"),
        lambda d: d["model"].update(layers="2"),
        lambda d: d["model"].update(extra=True),
        lambda d: d["tokens"][0].update(bytes="XYZ"),
        lambda d: d["tokens"][0].pop("id"),
        lambda d: d["attention"][0]["weights"][0].__setitem__(0, None),
        lambda d: d["attention"][0].update(extra=0),
        lambda d: d["attention"][0]["entropy"].__setitem__(0, "0"),
        lambda d: d["attention"][0]["top"][0]["keys"][0].update(weight=None),
        lambda d: d["embeddings"].update(layer=1),
    ):
        d = copy.deepcopy(doc)
        mutate(d)
        bad.append(d)
    validator = jsonschema.Draft202012Validator(schemas["inspect"])
    for n, d in enumerate(bad):
        assert not validator.is_valid(d), f"mutation {n} was accepted"


def test_steps_schema_allows_null_only_in_masked(schemas):
    doc = ok_json("steps", SENTENCE, *SMALL)
    validate(doc, schemas["steps"])
    validator = jsonschema.Draft202012Validator(schemas["steps"])
    for stage in ("x", "q", "k", "v", "scores", "scaled", "weights", "output"):
        d = copy.deepcopy(doc)
        d["stages"][stage][0][0] = None
        assert not validator.is_valid(d), stage


# ---------------------------------------------------------------------------------------------
# every command: exit 0, one JSON document that validates

@pytest.fixture(scope="module")
def docs() -> dict[str, dict]:
    return {
        "inspect": ok_json("inspect", SENTENCE, *SMALL),
        "heads": ok_json("heads", SENTENCE, *SMALL, "--layer", "1"),
        "steps": ok_json("steps", SENTENCE, *SMALL, "--layer", "1", "--head", "2",
                         "--query", "3"),
        "tokens": ok_json("tokens", SENTENCE),
        "encodings": ok_json("encodings"),
        "model": ok_json("model", *SMALL),
        "rollout": ok_json("rollout", SENTENCE, *SMALL),
    }


@pytest.mark.parametrize("command", COMMANDS)
def test_json_validates_against_shipped_schema(command, docs, schemas):
    validate(docs[command], schemas[command])


@pytest.mark.parametrize("args", [
    ("inspect",), ("heads", "--layer", "1"), ("steps",), ("tokens",), ("model",), ("rollout",),
])
def test_json_with_default_sizes_validates(args, schemas):
    text = () if args[0] == "model" else (SENTENCE,)
    doc = ok_json(*args[:1], *text, *args[1:])
    validate(doc, schemas[args[0]])


def test_json_header_fields(docs):
    for command in ("inspect", "heads", "steps"):
        doc = docs[command]
        assert doc["text"] == SENTENCE
        assert doc["encoding"] == "o200k_base"
        assert doc["model"] == {"source": "seeded", "layers": 2, "heads": 4, "d_model": 32,
                                "d_head": 8, "d_ff": 128, "causal": True, "seed": 3,
                                "positions": "sinusoidal", "family": "seeded", "kv_heads": 4,
                                "window": None, "dtype": "float32"}
    tokens = docs["tokens"]
    assert tokens["count"] == len(tokens["tokens"]) == 6
    assert [t["index"] for t in tokens["tokens"]] == list(range(6))
    assert "".join(bytes.fromhex(t["bytes"]).decode() for t in tokens["tokens"]) == SENTENCE
    assert docs["inspect"]["tokens"] == tokens["tokens"]


def test_inspect_layer_head_selection(schemas):
    doc = ok_json("inspect", SENTENCE, *SMALL, "--layer", "1", "--head", "0", "--head", "3")
    validate(doc, schemas["inspect"])
    assert [(r["layer"], r["head"]) for r in doc["attention"]] == [(1, 0), (1, 3)]
    all_heads = ok_json("inspect", SENTENCE, *SMALL)
    assert [(r["layer"], r["head"]) for r in all_heads["attention"]] == [
        (layer, head) for layer in range(2) for head in range(4)]


def test_encodings_json(docs):
    rows = {e["name"]: e["offline"] for e in docs["encodings"]["encodings"]}
    for name in ("gpt2", "r50k_base", "cl100k_base", "o200k_base"):
        assert rows[name] == "bundled"


def test_model_json(docs):
    doc = docs["model"]
    assert doc["encoding"] == "o200k_base"
    assert doc["model"]["d_head"] == 8 and doc["model"]["layers"] == 2
    from attn_cli import models as model_lib
    from attn_cli.models.config import ModelConfig

    net = model_lib.seeded(ModelConfig(**SMALL_CFG))
    shapes = {name: list(p.shape) for name, p in net.named_parameters()}
    assert {w["name"]: w["shape"] for w in doc["weights"]} == shapes
    assert doc["parameters"] == sum(math.prod(w["shape"]) for w in doc["weights"])


# ---------------------------------------------------------------------------------------------
# NDJSON: the header line is the document minus its records; records are the same as --json

def test_inspect_ndjson(docs, schemas):
    lines = ndjson_lines("inspect", SENTENCE, *SMALL)
    schema = schemas["inspect"]
    header, records, last = lines[0], lines[1:-1], lines[-1]
    validate(header, header_schema(schema, ("attention", "embeddings")))
    for record in records:
        validate(record, def_schema(schema, "attention"))
    assert set(last) == {"embeddings"}
    validate(last["embeddings"], def_schema(schema, "embeddings"))
    assert {**header, "attention": records, **last} == docs["inspect"]


def test_heads_ndjson(docs, schemas):
    lines = ndjson_lines("heads", SENTENCE, *SMALL, "--layer", "1")
    schema = schemas["heads"]
    validate(lines[0], header_schema(schema, ("heads",)))
    for record in lines[1:]:
        validate(record, def_schema(schema, "head"))
    assert {**lines[0], "heads": lines[1:]} == docs["heads"]


def test_steps_ndjson(docs, schemas):
    lines = ndjson_lines("steps", SENTENCE, *SMALL, "--layer", "1", "--head", "2",
                         "--query", "3")
    schema = schemas["steps"]
    validate(lines[0], header_schema(schema, ("stages", "query")))
    doc = docs["steps"]
    stage_lines = lines[1:-1]
    assert [r["stage"] for r in stage_lines] == list(doc["stages"])
    for record in stage_lines:
        assert record["values"] == doc["stages"][record["stage"]]
    assert lines[-1] == {"query": doc["query"]}
    validate(lines[-1]["query"], def_schema(schema, "query"))
    assert {k: v for k, v in doc.items() if k not in ("stages", "query")} == lines[0]


def test_tokens_ndjson(docs, schemas):
    lines = ndjson_lines("tokens", SENTENCE)
    schema = schemas["tokens"]
    validate(lines[0], header_schema(schema, ("tokens",)))
    for record in lines[1:]:
        validate(record, def_schema(schema, "token"))
    assert {**lines[0], "tokens": lines[1:]} == docs["tokens"]


# ---------------------------------------------------------------------------------------------
# the numbers are the model's

@pytest.fixture(scope="module")
def reference():
    return reference_capture(SENTENCE, **SMALL_CFG)


def test_inspect_weights_are_the_models(docs, reference):
    doc = docs["inspect"]
    assert len(doc["attention"]) == len(reference.heads) == 8
    T = len(reference.tokens)
    for record in doc["attention"]:
        expected = reference.head(record["layer"], record["head"]).weights
        assert np.asarray(record["weights"]).shape == (T, T)
        assert_float32_exact(record["weights"], expected)
    assert_float32_exact(doc["embeddings"]["vectors"], reference.embeddings)
    assert [t["id"] for t in doc["tokens"]] == [t.id for t in reference.tokens]


def test_inspect_entropy_is_minus_sum_p_ln_p(docs):
    for record in docs["inspect"]["attention"]:
        expected = [plain_entropy(row) for row in f32(record["weights"])]
        np.testing.assert_allclose(record["entropy"], expected, rtol=1e-6, atol=1e-6)
    # the first query of a causal head sees only itself: zero entropy
    assert all(r["entropy"][0] == 0 for r in docs["inspect"]["attention"])


@pytest.mark.parametrize("k", [1, 3, 10])
def test_inspect_top_k_is_a_sort(k):
    doc = ok_json("inspect", SENTENCE, *SMALL, "--top-k", k)
    tokens = [t["text"] for t in doc["tokens"]]
    for record in doc["attention"]:
        w = f32(record["weights"])
        expected = []
        for i in range(len(w)):
            keys = sorted(range(i + 1), key=lambda j: (-w[i, j], j))[:k]  # causal: j <= i
            expected.append({"query": i, "keys": [
                {"index": j, "token": tokens[j], "weight": float(w[i, j])} for j in keys]})
        got = [{"query": t["query"], "keys": [
            {"index": a["index"], "token": a["token"], "weight": float(np.float32(a["weight"]))}
            for a in t["keys"]]} for t in record["top"]]
        assert got == expected


def test_bidirectional_top_k_lists_future_keys():
    doc = ok_json("inspect", SENTENCE, *SMALL, "--bidirectional", "--top-k", "6")
    assert doc["model"]["causal"] is False
    for record in doc["attention"]:
        assert all(len(t["keys"]) == 6 for t in record["top"])
        assert (f32(record["weights"]) > 0).all()


def test_heads_json_is_the_models(docs):
    reference = reference_capture(SENTENCE, layers=[1], **SMALL_CFG)
    doc = docs["heads"]
    assert doc["layer"] == 1
    assert [h["head"] for h in doc["heads"]] == [0, 1, 2, 3]
    for h in doc["heads"]:
        w = reference.head(1, h["head"]).weights
        assert_float32_exact(h["weights"], w)
        mean_h = sum(plain_entropy(row) for row in w) / len(w)
        assert h["mean_entropy"] == pytest.approx(mean_h, rel=1e-5, abs=1e-6)
        s = h["strongest"]
        assert s["key"] <= s["query"]
        assert np.float32(s["weight"]) == w[s["query"], s["key"]]
        prev = sum(float(w[i, i - 1]) for i in range(1, len(w))) / (len(w) - 1)
        assert h["scores"]["previous_token"] == pytest.approx(prev, rel=1e-5)
        first = sum(float(w[i, 0]) for i in range(1, len(w))) / (len(w) - 1)
        assert h["scores"]["first_token"] == pytest.approx(first, rel=1e-5)


def test_steps_stages_are_the_formula(docs):
    doc = docs["steps"]
    st = {k: np.asarray([[np.nan if x is None else x for x in row] for row in v],
                        dtype=np.float64) for k, v in doc["stages"].items()}
    T, d_head = len(doc["tokens"]), doc["d_head"]
    assert d_head == 8
    assert st["x"].shape == (T, 32)
    for name in ("q", "k", "v", "output"):
        assert st[name].shape == (T, d_head), name
    for name in ("scores", "scaled", "masked", "weights"):
        assert st[name].shape == (T, T), name
    np.testing.assert_allclose(st["scores"], st["q"] @ st["k"].T, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(st["scaled"], st["scores"] / math.sqrt(d_head), rtol=1e-6,
                               atol=1e-6)
    np.testing.assert_allclose(st["weights"].sum(axis=1), np.ones(T), atol=1e-6)
    # masked: null exactly above the diagonal (causal), the scaled scores elsewhere
    above = np.triu(np.ones((T, T), dtype=bool), k=1)
    assert (np.isnan(st["masked"]) == above).all()
    np.testing.assert_array_equal(st["masked"][~above], st["scaled"][~above])
    # softmax of the masked scores, and the output is A·V
    m = np.where(above, -np.inf, st["masked"])
    softmax = np.exp(m - m.max(axis=1, keepdims=True))
    softmax /= softmax.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(st["weights"], softmax, atol=1e-6)
    assert (st["weights"][above] == 0).all()
    np.testing.assert_allclose(st["output"], st["weights"] @ st["v"], rtol=1e-5, atol=1e-5)
    # --query 3 is row 3
    q = doc["query"]
    assert q["index"] == 3
    assert q["weights"] == doc["stages"]["weights"][3]
    assert q["output"] == doc["stages"]["output"][3]


def test_steps_stages_are_the_models(docs):
    st = docs["steps"]["stages"]
    staged = reference_capture(SENTENCE, stages=True, layers=[1], heads=[2],
                               **SMALL_CFG).head(1, 2)
    assert_float32_exact(st["weights"], staged.weights)
    for name in ("x", "q", "k", "v", "scores", "scaled", "output"):
        assert_float32_exact(st[name], staged.stages[name])


def test_a_heads_numbers_do_not_depend_on_which_heads_were_asked_for(docs):
    """`attn inspect`, `attn inspect --layer 1 --head 2`, `attn heads --layer 1` and
    `attn steps --layer 1 --head 2` show the same head of the same model on the same text:
    a user comparing them should see the same numbers."""
    full = next(r for r in docs["inspect"]["attention"] if (r["layer"], r["head"]) == (1, 2))
    one = ok_json("inspect", SENTENCE, *SMALL, "--layer", "1", "--head", "2")["attention"][0]
    heads = next(h for h in docs["heads"]["heads"] if h["head"] == 2)
    steps = docs["steps"]["stages"]["weights"]
    assert one["weights"] == full["weights"]
    assert heads["weights"] == full["weights"]
    assert steps == full["weights"]


def test_steps_bidirectional_has_no_nulls():
    doc = ok_json("steps", SENTENCE, *SMALL, "--bidirectional", "--layer", "0", "--head", "1")
    assert doc["model"]["causal"] is False
    masked = doc["stages"]["masked"]
    assert all(x is not None for row in masked for x in row)
    assert masked == doc["stages"]["scaled"]
    w = f32(doc["stages"]["weights"])
    assert (w > 0).all()
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-6)
    ref = reference_capture(SENTENCE, causal=False, layers=[0], heads=[1], **SMALL_CFG)
    assert_float32_exact(doc["stages"]["weights"], ref.head(0, 1).weights)


def test_heads_pattern_ranking_and_repeat(schemas):
    doc = ok_json("heads", SENTENCE, *SMALL, "--pattern", "previous-token")
    validate(doc, schemas["heads"])
    ranking = doc["ranking"]
    assert ranking["pattern"] == "previous-token"
    assert sorted((r["layer"], r["head"]) for r in ranking["heads"]) == [
        (layer, head) for layer in range(2) for head in range(4)]
    scores = [r["score"] for r in ranking["heads"]]
    assert scores == sorted(scores, reverse=True)
    probe = ok_json("heads", *SMALL, "--repeat", "6", "--layer", "1")
    validate(probe, schemas["heads"])
    ids = [t["id"] for t in probe["tokens"]]
    assert len(ids) == 12 and ids[:6] == ids[6:]
    for h in probe["heads"]:  # every token repeats: both scores are defined
        assert h["scores"]["duplicate_token"] is not None
        assert h["scores"]["induction"] is not None
    assert_user_error(error("heads", "hi", "--pattern", "bogus"), "bogus")


@pytest.mark.parametrize("how", ["mean", "max"])
def test_inspect_reduce(how, docs, schemas):
    per_head = docs["inspect"]["attention"]
    reduce = np.mean if how == "mean" else np.max
    doc = ok_json("inspect", SENTENCE, *SMALL, "--reduce", how)
    validate(doc, schemas["inspect"])
    assert [(r["layer"], r["head"]) for r in doc["attention"]] == [(0, -1), (1, -1)]
    for record in doc["attention"]:
        stack = [f32(r["weights"]) for r in per_head if r["layer"] == record["layer"]]
        np.testing.assert_allclose(f32(record["weights"]), reduce(stack, axis=0), atol=1e-6)
        if how == "max":  # a row of maxima is not a distribution: no entropy
            assert record["entropy"] is None
        else:
            expected = [plain_entropy(row) for row in f32(record["weights"])]
            np.testing.assert_allclose(record["entropy"], expected, rtol=1e-6, atol=1e-6)
    whole = ok_json("inspect", SENTENCE, *SMALL, "--reduce", how, "--reduce-layers")
    validate(whole, schemas["inspect"])
    assert [(r["layer"], r["head"]) for r in whole["attention"]] == [(-1, -1)]
    stack = [f32(r["weights"]) for r in per_head]
    np.testing.assert_allclose(f32(whole["attention"][0]["weights"]), reduce(stack, axis=0),
                               atol=1e-6)


def test_rollout_is_the_product_of_layers(docs):
    doc = docs["rollout"]
    assert doc["text"] == SENTENCE and doc["model"]["seed"] == 3
    per_head = docs["inspect"]["attention"]
    T = len(doc["tokens"])
    R = np.eye(T)
    for layer in range(2):  # later layers on the left
        A = np.mean([np.asarray(r["weights"], dtype=np.float64) for r in per_head
                     if r["layer"] == layer], axis=0)
        A_hat = 0.5 * A + 0.5 * np.eye(T)
        A_hat /= A_hat.sum(axis=1, keepdims=True)
        R = A_hat @ R
    np.testing.assert_allclose(np.asarray(doc["rollout"]), R, atol=1e-5)
    np.testing.assert_allclose(np.asarray(doc["rollout"]).sum(axis=1), 1.0, atol=1e-5)
    assert [t["query"] for t in doc["top"]] == list(range(T))


# ---------------------------------------------------------------------------------------------
# determinism

@pytest.mark.parametrize("args", [
    ("inspect", SENTENCE, *SMALL, "--json"),
    ("steps", SENTENCE, *SMALL, "--ndjson"),
    ("inspect", SENTENCE, *SMALL, "--precision", "4"),
    ("heads", SENTENCE, *SMALL),
])
def test_same_command_same_bytes(args):
    first = ok(*args).stdout_bytes
    second = ok(*args).stdout_bytes
    assert first == second


def test_seed_changes_the_weights():
    base = [a for a in SMALL if a not in ("--seed", "3")]
    zero = ok_json("inspect", SENTENCE, *base, "--seed", "0")
    one = ok_json("inspect", SENTENCE, *base, "--seed", "1")
    assert zero["model"]["seed"] == 0 and one["model"]["seed"] == 1
    assert zero["tokens"] == one["tokens"]
    for a, b in zip(zero["attention"], one["attention"]):
        assert a["weights"] != b["weights"]
    assert zero["embeddings"] != one["embeddings"]
    default = ok_json("inspect", SENTENCE, *base)
    assert default == zero


# ---------------------------------------------------------------------------------------------
# text input

def test_text_argument():
    assert ok_json("tokens", "hello world")["text"] == "hello world"


def test_dash_reads_stdin():
    result = ok("tokens", "-", "--json", input="from standard input\n")
    assert parse(result.stdout)["text"] == "from standard input\n"
    assert "default" not in result.stderr


def test_piped_stdin_without_text():
    doc = ok_json("tokens", input="piped text")
    assert doc["text"] == "piped text"
    doc = ok_json("inspect", *SMALL, input="piped text")
    assert doc["text"] == "piped text"


def test_file(tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("Ünïcödé from a file\n", encoding="utf-8")
    assert ok_json("tokens", "--file", path)["text"] == "Ünïcödé from a file\n"
    assert ok_json("inspect", "--file", path, *SMALL)["text"] == "Ünïcödé from a file\n"


@pytest.fixture
def terminal_stdin(monkeypatch):
    """No text typed at a terminal. (CliRunner's stdin is an empty pipe, which SPEC §4 makes
    empty input, an error; tests/test_faults_io.py runs the real cases in subprocesses.)"""
    from attn_cli import inputs

    monkeypatch.setattr(inputs, "_isatty", lambda stream: True)


@pytest.mark.parametrize("command", ["tokens", "inspect", "heads", "steps"])
def test_default_sentence(command, terminal_stdin):
    result = ok(command, "--json")
    doc = parse(result.stdout)  # stdout is only the JSON
    assert doc["text"] == DEFAULT_TEXT
    assert "default sentence" in result.stderr
    assert DEFAULT_TEXT in result.stderr


def test_default_sentence_matches_sample_texts():
    assert (ROOT / "sample_texts" / "default.txt").read_text(encoding="utf-8").strip() \
        == DEFAULT_TEXT == "The cat sat on the mat because it was tired."


def test_default_sentence_table_view(terminal_stdin):
    result = ok("heads", "--layer", "0")
    assert "default sentence" in result.stderr
    assert "␣cat" in result.stdout
    assert "default sentence" not in result.stdout


def test_errors_replace_on_invalid_utf8_file(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"caf\xe9 ok")
    doc = ok_json("tokens", "--file", path, "--errors", "replace")
    assert doc["text"] == "caf\ufffd ok"
    doc = ok_json("inspect", "--file", path, "--errors", "replace", *SMALL)
    assert doc["text"] == "caf\ufffd ok"


def test_errors_replace_on_stdin():
    result = ok("tokens", "-", "--json", "--errors", "replace", input=b"ab\xffcd")
    assert parse(result.stdout)["text"] == "ab\ufffdcd"


def test_allow_special():
    special = ok_json("tokens", "<|endoftext|>", "--allow-special")
    assert [t["id"] for t in special["tokens"]] == [199999]
    assert special["tokens"][0]["text"] == "<|endoftext|>"
    ordinary = ok_json("tokens", "<|endoftext|>")
    ids = [t["id"] for t in ordinary["tokens"]]
    assert len(ids) > 1 and 199999 not in ids
    assert "".join(t["text"] for t in ordinary["tokens"]) == "<|endoftext|>"
    gpt2 = ok_json("tokens", "a<|endoftext|>", "--allow-special", "--encoding", "gpt2")
    assert [t["id"] for t in gpt2["tokens"]][-1] == 50256
    doc = ok_json("inspect", "hi <|endoftext|>", "--allow-special", *SMALL)
    assert doc["tokens"][-1]["id"] == 199999


# ---------------------------------------------------------------------------------------------
# the tokens view

def test_tokens_view_visible_whitespace():
    out = ok("tokens", "The cat\tsat\non  the mat").stdout
    assert "␣cat" in out
    assert "↵" in out
    assert "⇥" in out


@pytest.mark.parametrize("encoding", ["r50k_base", "gpt2"])
def test_tokens_view_partial_utf8(encoding):
    doc = ok_json("tokens", "hi 🐱", "--encoding", encoding)
    raw = b"".join(bytes.fromhex(t["bytes"]) for t in doc["tokens"])
    assert raw == "hi 🐱".encode()
    partial = [t for t in doc["tokens"] if "\ufffd" in t["text"]]
    assert len(partial) >= 2, "the emoji should be split across tokens in " + encoding
    out = ok("tokens", "hi 🐱", "--encoding", encoding).stdout
    assert "<F0>" in out and "<9F>" in out
    assert "\ufffd" not in out
    lines = out.splitlines()
    for t in doc["tokens"]:  # every token has its row: index, id, ..., byte length
        assert any(line.split()[:2] == [str(t["index"]), str(t["id"])] and
                   line.split()[-1] == str(len(bytes.fromhex(t["bytes"]))) for line in lines)


def test_tokens_view_no_color_has_no_escape_codes():
    out = ok("tokens", "hi there", "--no-color").stdout
    assert "\x1b[" not in out


# ---------------------------------------------------------------------------------------------
# table views

def _rows_of(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines()]


def test_inspect_table_numbers_follow_precision():
    doc = ok_json("inspect", SENTENCE, *SMALL, "--layer", "0", "--head", "1")
    w = f32(doc["attention"][0]["weights"])
    labels = [[str(t["index"]), t["text"].replace(" ", "␣")] for t in doc["tokens"]]
    T = len(w)
    for precision in (1, 3):
        out = ok("inspect", SENTENCE, *SMALL, "--layer", "0", "--head", "1",
                 "--precision", precision).stdout
        assert "␣cat" in out and "␣mat" in out
        rows = _rows_of(out)
        for i in range(T):
            cells = [f"{w[i, j]:.{precision}f}" for j in range(i + 1)] + ["·"] * (T - 1 - i)
            assert labels[i] + cells in rows, (precision, i, cells)


def test_inspect_table_shows_top_k_and_embeddings():
    out = ok("inspect", SENTENCE, *SMALL, "--layer", "0", "--head", "0", "--dims", "4").stdout
    assert "top 3" in out
    assert "embeddings" in out.lower()
    # 32 dims do not fit in 120 columns: whole columns are left out, with a note, never cut
    out_all = ok("inspect", SENTENCE, *SMALL, "--layer", "0", "--head", "0",
                 "--dims", "all").stdout
    assert "as many as fit in 120 columns" in out_all and "…" not in out_all
    out_all = ok("inspect", SENTENCE, *SMALL, "--layer", "0", "--head", "0",
                 "--dims", "all", "--full").stdout
    assert "(32 of 32 dims)" in out_all


def test_steps_and_heads_tables():
    out = ok("steps", SENTENCE, *SMALL, "--query", "2").stdout
    assert "softmax" in out and "␣sat" in out
    assert "Attention to" in out
    out = ok("heads", SENTENCE, *SMALL, "--layer", "1").stdout
    assert "␣mat" in out and "head" in out


LONG = " ".join(["word"] * 80)


def test_long_input_switches_to_heat_map():
    doc = ok_json("tokens", LONG)
    assert doc["count"] == 80
    out = ok("inspect", LONG, *SMALL, "--layer", "0", "--head", "0").stdout
    assert "heat map" in out
    assert "--full" in out and "--json" in out
    assert all(len(line) <= 120 for line in out.splitlines())


def test_full_gives_numbers_for_long_input():
    doc = ok_json("inspect", LONG, *SMALL, "--layer", "0", "--head", "0")
    w = f32(doc["attention"][0]["weights"])
    out = ok("inspect", LONG, *SMALL, "--layer", "0", "--head", "0", "--full").stdout
    assert "heat map" not in out
    # every visible weight of the 80×80 causal matrix is printed as a number (3240 of them;
    # the top-k lines and the embeddings table add fewer than 1000 more)
    numbers = re.findall(r"(?<![\d.])\d\.\d\d(?![\d])", out)
    assert len(numbers) >= 80 * 81 // 2, (
        f"--full printed only {len(numbers)} numbers for an 80-token matrix")
    assert f"{w[79, 0]:.2f}" in numbers


def _colour_codes(out: str) -> list[str]:
    """SGR parameters that set a colour (bold, dim, underline are not colours)."""
    found = []
    for params in re.findall(r"\x1b\[([\d;]*)m", out):
        codes = [int(p) for p in params.split(";") if p]
        if any(c in (38, 48) or 30 <= c <= 37 or 40 <= c <= 47 or 90 <= c <= 97
               or 100 <= c <= 107 for c in codes):
            found.append(params)
    return found


def test_no_color_and_NO_COLOR():
    args = ("inspect", SENTENCE, *SMALL, "--layer", "0", "--head", "0")
    colored = invoke(*args, env={"NO_COLOR": None, "FORCE_COLOR": "1"})
    assert colored.exit_code == 0, colored.output
    assert _colour_codes(colored.stdout)
    plain = invoke(*args, "--no-color", env={"NO_COLOR": None, "FORCE_COLOR": "1"})
    assert plain.exit_code == 0 and not _colour_codes(plain.stdout)
    honoured = invoke(*args, env={"NO_COLOR": "1", "FORCE_COLOR": "1"})
    assert honoured.exit_code == 0 and not _colour_codes(honoured.stdout)
    # and with no terminal and no FORCE_COLOR, no escape codes at all
    piped = invoke(*args, env={"NO_COLOR": None, "FORCE_COLOR": None})
    assert piped.exit_code == 0 and "\x1b[" not in piped.stdout


def test_svg_and_html(tmp_path):
    svg, html = tmp_path / "out.svg", tmp_path / "out.html"
    result = ok("inspect", SENTENCE, *SMALL, "--layer", "0", "--head", "0", "--svg", svg,
                "--html", html)
    assert svg.read_text(encoding="utf-8").lstrip().startswith("<svg")
    assert "<html" in html.read_text(encoding="utf-8").lower()
    assert "␣cat" in result.stdout


# ---------------------------------------------------------------------------------------------
# SPEC §4: user mistakes are one line on stderr, exit 2, nothing on stdout

OFFLINE = {
    "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9",
    "NO_PROXY": None, "no_proxy": None, "DATA_GYM_CACHE_DIR": None,
}


def assert_user_error(result, *needles):
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert result.stdout == "", result.stdout
    err = result.stderr
    assert err.startswith("error: "), err
    assert err.strip().count("\n") == 0, f"more than one line on stderr:\n{err}"
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in err, (needle, err)


def error(*args, input=None, env=None):
    return invoke(*args, input=input, env=env)


@pytest.mark.parametrize("args,needles", [
    (("inspect", ""), ["empty"]),
    (("inspect", "   "), ["empty"]),
    (("tokens", " \n\t "), ["empty"]),
    (("inspect", "hi", "--layer", "5"), ["--layer 5", "0-1"]),
    (("inspect", "hi", "--head", "9"), ["--head 9", "0-3"]),
    (("inspect", "hi", "--layers", "3", "--layer", "3"), ["--layer 3", "0-2"]),
    (("heads", "hi", "--layer", "2"), ["--layer 2", "0-1"]),
    (("steps", "hi", "--head", "4"), ["--head 4", "0-3"]),
    (("steps", "hi", "--layer", "-1"), ["--layer -1", "0-1"]),
    (("inspect", "hi", "--d-model", "10", "--heads", "3"), ["--d-model", "--heads"]),
    (("model", "--d-model", "30", "--heads", "4"), ["--d-model", "--heads"]),
    (("inspect", "hi", "--layers", "0"), ["--layers"]),
    (("inspect", "hi", "--heads", "-1"), ["--heads"]),
    (("inspect", "hi", "--d-model", "0"), ["--d-model"]),
    (("inspect", "hi", "--d-ff", "0"), ["--d-ff"]),
    (("model", "--layers", "-2"), ["--layers"]),
    (("tokens", "hi", "--encoding", "nope"), ["nope"]),
    (("inspect", "hi", "--encoding", "nope"), ["nope"]),
    (("steps", "hi", "--query", "5"), ["--query 5"]),
    (("steps", SENTENCE, "--query", "-1"), ["--query -1"]),
    (("inspect", "hi", "--json", "--ndjson"), ["--json", "--ndjson"]),
    (("tokens", "hi", "--json", "--ndjson"), ["--json", "--ndjson"]),
    (("inspect", "hi", "--dims", "abc"), ["--dims"]),
    (("inspect", "hi", "--dims", "0"), ["--dims"]),
    (("steps", "hi", "--dims", "-3"), ["--dims"]),
    (("inspect", "hi", "--errors", "bogus"), ["--errors"]),
    (("inspect", "hi", "--reduce", "median"), ["--reduce"]),
    (("inspect", "hi", "--reduce-layers"), ["--reduce"]),
    (("rollout", "   "), ["empty"]),
    (("rollout", "hi", "--heads", "3"), ["--d-model", "--heads"]),
])
def test_user_errors(args, needles):
    assert_user_error(error(*args), *needles)


def test_encoding_that_needs_the_network(tmp_path):
    env = {**OFFLINE, "TIKTOKEN_CACHE_DIR": str(tmp_path)}
    for command in (("tokens", "hi"), ("inspect", "hi", *SMALL)):
        result = error(*command, "--encoding", "p50k_base", env=env)
        assert_user_error(result, "p50k_base")


def test_invalid_utf8_names_the_byte_offset(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"hello \xff world")
    assert_user_error(error("tokens", "--file", path), "offset 6", "--errors replace")
    assert_user_error(error("inspect", "--file", path, *SMALL), "offset 6")
    assert_user_error(error("tokens", "-", input=b"ab\xc3(d"), "offset 2")


def test_missing_file(tmp_path):
    assert_user_error(error("tokens", "--file", tmp_path / "nope.txt"), "nope.txt")


def test_missing_model_folder(tmp_path):
    missing = tmp_path / "no-such-model"
    assert_user_error(error("inspect", "hi", "--model", missing), str(missing))
    assert_user_error(error("model", "--model", missing), str(missing))


def test_corrupt_model_folder(tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_text("{not json", encoding="utf-8")
    assert_user_error(error("inspect", "hi", "--model", folder))


def test_model_with_layers(tmp_path):
    assert_user_error(error("inspect", "hi", "--model", tmp_path, "--layers", "2"),
                      "--layers", "--model")
    assert_user_error(error("model", "--model", tmp_path, "--seed", "1"), "--seed", "--model")


def test_nothing_on_stdout_for_errors_in_json_mode():
    result = error("inspect", "hi", "--layer", "7", "--json")
    assert_user_error(result, "--layer 7")
    result = error("steps", "hi", "--query", "3", "--ndjson")
    assert_user_error(result, "--query 3")


# ---------------------------------------------------------------------------------------------
# --model: a tiny GPT-2-family folder (random weights, the real GPT-2 tokenizer files)

FIXTURES = ROOT.parent / "shared" / "fixtures" / "gpt2-tokenizer"
N_POSITIONS = 16


def _gpt2_tensors(n_layer: int, n_embd: int, seed: int) -> dict:
    import torch

    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=0.2):
        return (torch.randn(*shape, generator=g) * scale).contiguous()

    t = {"wte.weight": rand(50257, n_embd), "wpe.weight": rand(N_POSITIONS, n_embd),
         "ln_f.weight": 1 + rand(n_embd, scale=0.05), "ln_f.bias": rand(n_embd, scale=0.05)}
    for i in range(n_layer):
        p = f"h.{i}."
        t.update({  # Conv1D layout: (in, out)
            p + "ln_1.weight": 1 + rand(n_embd, scale=0.05), p + "ln_1.bias": rand(n_embd),
            p + "attn.c_attn.weight": rand(n_embd, 3 * n_embd),
            p + "attn.c_attn.bias": rand(3 * n_embd),
            p + "attn.c_proj.weight": rand(n_embd, n_embd), p + "attn.c_proj.bias": rand(n_embd),
            p + "ln_2.weight": 1 + rand(n_embd, scale=0.05), p + "ln_2.bias": rand(n_embd),
            p + "mlp.c_fc.weight": rand(n_embd, 4 * n_embd), p + "mlp.c_fc.bias": rand(4 * n_embd),
            p + "mlp.c_proj.weight": rand(4 * n_embd, n_embd),
            p + "mlp.c_proj.bias": rand(n_embd),
        })
    return t


def _write_gpt2(folder: Path, n_layer=2, n_head=2, n_embd=16, config_layers=None) -> Path:
    import shutil

    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    config = {"model_type": "gpt2", "n_layer": config_layers or n_layer, "n_head": n_head,
              "n_embd": n_embd, "n_positions": N_POSITIONS, "vocab_size": 50257,
              "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5}
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    save_file(_gpt2_tensors(n_layer, n_embd, seed=1), folder / "model.safetensors",
              metadata={"format": "pt"})
    for name in ("vocab.json", "merges.txt"):
        shutil.copyfile(FIXTURES / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory):
    if not FIXTURES.is_dir():
        pytest.skip(f"the GPT-2 tokenizer fixtures are not at {FIXTURES}")
    return _write_gpt2(tmp_path_factory.mktemp("ckpt") / "tiny-gpt2")


def test_model_folder_json_validates(gpt2_folder, schemas):
    doc = ok_json("inspect", SENTENCE, "--model", gpt2_folder)
    validate(doc, schemas["inspect"])
    assert doc["model"] == {"source": str(gpt2_folder), "layers": 2, "heads": 2, "d_model": 16,
                            "d_head": 8, "d_ff": 64, "causal": True, "seed": None,
                            "positions": "learned", "n_positions": N_POSITIONS,
                            "vocab_size": 50257, "family": "gpt2", "kv_heads": 2,
                            "window": None, "dtype": "float32"}
    assert doc["encoding"] == "gpt2"
    assert [t["id"] for t in doc["tokens"]] == [464, 3797, 3332, 319, 262, 2603]
    for command, extra in (("heads", ()), ("steps", ("--query", "2")), ("rollout", ())):
        validate(ok_json(command, SENTENCE, "--model", gpt2_folder, *extra), schemas[command])
    model = ok_json("model", "--model", gpt2_folder)
    validate(model, schemas["model"])
    assert model["model"]["positions"] == "learned"


def test_model_folder_weights_are_the_checkpoints(gpt2_folder):
    from attn_cli import capture
    from attn_cli.models import checkpoint
    from attn_cli.tokenizers import tokenize

    doc = ok_json("inspect", SENTENCE, "--model", gpt2_folder, "--layer", "1", "--head", "1")
    net, encoding = checkpoint.load(str(gpt2_folder))
    tokens = tokenize(SENTENCE, encoding)
    cap = capture.run(net, SENTENCE, "gpt2", tokens, capture.select(net.cfg, [1], [1]))
    assert_float32_exact(doc["attention"][0]["weights"], cap.head(1, 1).weights)


def test_input_longer_than_the_positions(gpt2_folder):
    long = " ".join(["cat"] * (N_POSITIONS + 4))
    assert_user_error(error("inspect", long, "--model", gpt2_folder), str(N_POSITIONS),
                      "--truncate")
    result = ok("inspect", long, "--model", gpt2_folder, "--truncate", "--json")
    doc = parse(result.stdout)
    assert len(doc["tokens"]) == N_POSITIONS
    assert "note" in result.stderr or "warning" in result.stderr


def test_mismatched_model_folder(tmp_path):
    if not FIXTURES.is_dir():
        pytest.skip(f"the GPT-2 tokenizer fixtures are not at {FIXTURES}")
    folder = _write_gpt2(tmp_path / "mismatched", n_layer=1, config_layers=3)
    assert_user_error(error("inspect", "hi", "--model", folder))
    assert_user_error(error("model", "--model", folder))


@pytest.mark.parametrize("command,needles", [
    ("inspect", ["Transformer blocks [default: 2]", "[default: o200k_base]", "[default: all]"]),
    ("plot", ["pip install 'attn-cli[plot]'", ".png, .svg or .pdf"]),
    ("compare", ["--causal/--bidirectional", "--model"]),
])
def test_help_keeps_square_brackets(command, needles):
    # rich markup would take "[default: 2]" and "[plot]" for tags and drop them
    out = " ".join(ok(command, "--help", env={"COLUMNS": "200"}).stdout.split())
    for needle in needles:
        assert needle in out


def test_heads_maps_wrap_in_rows_separated_by_a_blank_line():
    out = ok("heads", "The cat sat", "--heads", "8", "--d-model", "32", "--layer", "0",
             env={"COLUMNS": "60"}).stdout.splitlines()
    titles = [n for n, line in enumerate(out) if line.strip().startswith("head 0")
              or line.strip().startswith("head 5")]
    assert len(titles) == 2, out
    first, second = titles
    assert second - first == 5  # title, 3 token rows, a blank line
    assert out[second - 1].strip() == ""
    assert [line.split()[:2] for line in out[first + 1:first + 4]] == \
        [["0", "The"], ["1", "␣cat"], ["2", "␣sat"]]
