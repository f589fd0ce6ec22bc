"""`attn generate` and `inspect --predict` (SPEC §7) against transformers and the maths.

Tiny random *ForCausalLM checkpoints (GPT-2 with tied embeddings; Llama with grouped-query
attention and an untied lm_head; GPT-NeoX with partial rotary and its untied embed_out;
Mistral with a sliding window shorter than the text) are built with transformers and saved
with save_pretrained. Their weights are redrawn (test_families.randomize) so the logits spread
over several units and greedy choices are never ties. Greedy ids must equal transformers'
`generate(do_sample=False)`, each probability the softmax of its logits at that step (1e-5),
and each attention row the last row of its `output_attentions` (1e-5). The KV-cached steps
must give the rows and hidden states of a full pass; the seeded model's blockwise LM head the
numbers of a brute-force full-vocabulary product.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from test_cli import (assert_user_error, invoke, load_schema, ok, ok_json,  # noqa: E402
                      parse)
from test_families import FIXTURES, VOCAB, randomize  # noqa: E402

from attn_cli import generate as gen  # noqa: E402
from attn_cli import models  # noqa: E402
from attn_cli.models import checkpoint  # noqa: E402
from attn_cli.models.config import ModelConfig  # noqa: E402
from attn_cli.tokenizers import get_encoding, tokenize  # noqa: E402

PROMPT = "The cat sat on the mat because it was tired."
N = 8
ATOL = 1e-5
SEEN = {}  # case -> largest |probability error|, |attention error|

CASES = {
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", dict(
        n_layer=2, n_head=4, n_embd=32, n_positions=64)),
    "llama-gqa": ("LlamaConfig", "LlamaForCausalLM", dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=48, rope_theta=500.0, max_position_embeddings=64,
        tie_word_embeddings=False)),
    "gpt_neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM", dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        rotary_pct=0.5, rotary_emb_base=100, max_position_embeddings=64,
        use_parallel_residual=True, tie_word_embeddings=False)),
    "mistral-window": ("MistralConfig", "MistralForCausalLM", dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=48, sliding_window=5, max_position_embeddings=64,
        tie_word_embeddings=False)),
}


def _save(hf, folder: Path) -> None:
    hf.save_pretrained(folder)
    for file in ("vocab.json", "merges.txt"):
        shutil.copy(FIXTURES / file, folder / file)


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("generate")
    out = {}
    for seed, (name, (config_cls, model_cls, args)) in enumerate(CASES.items()):
        config = getattr(transformers, config_cls)(vocab_size=VOCAB, attn_implementation="eager",
                                                   **args)
        hf = getattr(transformers, model_cls)(config)
        randomize(hf, 300 + seed)
        if name == "gpt2":
            hf.tie_weights()
        _save(hf, root / name)
        out[name] = (root / name, hf.eval())
    # an encoder, and a Llama saved without its LM head (the base model, untied)
    bert = transformers.BertModel(transformers.BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=40, max_position_embeddings=64))
    _save(bert, root / "bert")
    base = transformers.LlamaModel(transformers.LlamaConfig(
        vocab_size=VOCAB, **CASES["llama-gqa"][2]))
    _save(base, root / "llama-base")
    out["bert"] = (root / "bert", None)
    out["llama-base"] = (root / "llama-base", None)
    return out


@pytest.fixture(scope="session")
def schema():
    return load_schema("generate")


def validate(doc, schema):
    jsonschema.Draft202012Validator(schema).validate(doc)


def hf_generate(hf, ids: list[int], n: int):
    with torch.no_grad():
        out = hf.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False,
                          output_logits=True, output_attentions=True,
                          return_dict_in_generate=True, pad_token_id=0)
    return out


# ---------------------------------------------------------------- parity with transformers

@pytest.mark.parametrize("name", list(CASES))
def test_greedy_equals_transformers(built, name, schema):
    folder, hf = built[name]
    nh = hf.config.num_attention_heads
    heads = [a for h in range(nh) for a in ("--head", str(h))]
    doc = ok_json("generate", PROMPT, "--model", folder, "-n", N, *heads)
    validate(doc, schema)
    ids = [t["id"] for t in doc["tokens"]]
    ref = hf_generate(hf, ids, N)
    expected = ref.sequences[0, len(ids):].tolist()
    got = [g["id"] for g in doc["generated"]]
    assert got == expected, (name, got, expected)
    assert len(set(got)) > 1 or name != "gpt2"  # not one token over and over
    worst_p = worst_a = 0.0
    for step, g in enumerate(doc["generated"]):
        probs = torch.softmax(ref.logits[step][0].double(), dim=-1)
        assert abs(g["probability"] - probs[g["id"]].item()) <= ATOL
        top = torch.topk(probs, len(g["top"]))
        assert [c["id"] for c in g["top"]] == top.indices.tolist()
        np.testing.assert_allclose([c["probability"] for c in g["top"]], top.values.numpy(),
                                   atol=ATOL, rtol=0)
        worst_p = max(worst_p, abs(g["probability"] - probs[g["id"]].item()))
        assert g["index"] == len(ids) + step
        for record in g["attention"]:
            want = ref.attentions[step][record["layer"]][0, record["head"], -1].numpy()
            row = np.asarray(record["weights"])
            assert len(row) == g["index"]
            if len(want) < len(row):  # a sliding-window cache keeps only the window's keys
                assert name == "mistral-window" and (row[:len(row) - len(want)] == 0).all()
                row = row[len(row) - len(want):]
            err = np.abs(row - want).max()
            assert err <= ATOL, (name, step, record["layer"], record["head"], err)
            worst_a = max(worst_a, float(err))
    assert doc["stop"] == "length"
    assert doc["text"] == PROMPT + "".join(g["token"] for g in doc["generated"])
    SEEN[name] = (worst_p, worst_a)


def test_predict_at_the_last_position_is_the_first_generated_token(built):
    folder, hf = built["llama-gqa"]
    inspect = ok_json("inspect", PROMPT, "--model", folder, "--predict", 4, "--layer", 0,
                      "--head", 0)
    jsonschema.Draft202012Validator(load_schema("inspect")).validate(inspect)
    first = ok_json("generate", PROMPT, "--model", folder, "-n", 1)["generated"][0]
    assert len(inspect["predictions"]) == len(inspect["tokens"])
    last = inspect["predictions"][-1]["top"]
    assert last[0]["id"] == first["id"]
    assert abs(last[0]["probability"] - first["probability"]) <= 1e-6
    # every position against transformers' logits
    ids = [t["id"] for t in inspect["tokens"]]
    with torch.no_grad():
        logits = hf(torch.tensor([ids])).logits[0]
    probs = torch.softmax(logits.double(), dim=-1)
    for row in inspect["predictions"]:
        want = torch.topk(probs[row["index"]], 4)
        assert [c["id"] for c in row["top"]] == want.indices.tolist()
        np.testing.assert_allclose([c["probability"] for c in row["top"]], want.values,
                                   atol=ATOL, rtol=0)


# ---------------------------------------------------------------- the KV cache

def _cached_vs_full(model, prompt: list[int], n: int, encoding):
    head = gen.LMHead(model, encoding)
    nh = model.cfg.n_heads
    watch = [(la, h) for la in range(model.cfg.n_layers) for h in range(nh)]
    watch += [(la, -1) for la in range(model.cfg.n_layers)]
    run = gen.Generation(model, head, prompt, n, watch=watch)
    steps = list(run)
    ids = prompt + [s.id for s in steps]
    keep = {la: tuple(range(nh)) for la in range(model.cfg.n_layers)}
    full = model(ids, keep=keep)
    worst = 0.0
    for s in steps:
        for layer, h, w in s.attention:
            heads = range(nh) if h < 0 else [h]
            rows = np.stack([full.heads[(layer, x)]["weights"][s.index - 1, :s.index].numpy()
                             for x in heads]).astype(np.float64).mean(axis=0)
            worst = max(worst, float(np.abs(rows - w).max()))
    # the cached steps' hidden states are the full pass's
    cache = model.new_cache(len(ids))
    first = model.step(ids[:len(prompt)], cache)
    rest = [model.step([t], cache).embeddings for t in ids[len(prompt):]]
    stepped = torch.cat([first.embeddings, *rest])
    torch.testing.assert_close(stepped, full.embeddings, atol=1e-5, rtol=0)
    return worst


@pytest.mark.parametrize("name", ["mistral-window", "gpt_neox", "seeded"])
def test_cached_rows_equal_a_full_pass(built, name):
    if name == "seeded":
        model = models.seeded(ModelConfig(n_layers=3, n_heads=4, d_model=32, seed=5))
        encoding = get_encoding("gpt2")
    else:
        model, encoding = checkpoint.load(str(built[name][0]))
    prompt = [t.id for t in tokenize(PROMPT, encoding)]
    worst = _cached_vs_full(model, prompt, 6, encoding)
    assert worst <= 1e-5, worst
    if name == "mistral-window":  # the window is shorter than the text: it was exercised
        assert model.cfg.windows[0] < len(prompt)


def test_long_prompt_prefill_takes_the_fused_path():
    """A prompt past EXPLICIT_UP_TO: the prefill's kept rows still equal a full pass."""
    model = models.seeded(ModelConfig(n_layers=1, n_heads=2, d_model=16, seed=2))
    prompt = [(7 * i) % 5000 for i in range(models.EXPLICIT_UP_TO + 20)]
    cache = model.new_cache(len(prompt) + 1)
    fwd = model.step(prompt, cache, {0: (0, 1)})
    full = model(prompt, keep={0: (0, 1)})
    for h in (0, 1):
        torch.testing.assert_close(fwd.heads[(0, h)]["weights"][-1],
                                   full.heads[(0, h)]["weights"][-1], atol=1e-6, rtol=0)
    torch.testing.assert_close(fwd.embeddings, full.embeddings, atol=1e-5, rtol=0)



@pytest.mark.parametrize("d_model", [8, 63, 64])
def test_sinusoidal_rows_are_the_tables_rows(d_model):
    from attn_cli.models.transformer import sinusoidal_positions, sinusoidal_rows

    table = sinusoidal_positions(700, d_model)
    for start, T in ((0, 700), (5, 1), (699, 1), (300, 17)):
        assert torch.equal(sinusoidal_rows(start, T, d_model), table[start:start + T])

# ---------------------------------------------------------------- the seeded LM head

def test_seeded_blockwise_logits_equal_brute_force():
    cfg = ModelConfig(n_layers=1, n_heads=2, d_model=24, seed=11)
    model = models.seeded(cfg)
    encoding = get_encoding("gpt2")
    head = gen.LMHead(model, encoding)
    assert head.vocab == 50256  # <|endoftext|> is left out
    h = torch.randn(3, 24, generator=torch.Generator().manual_seed(0))
    scan = head.scan(h, 10)
    table = torch.from_numpy(models.seeded_token_embeddings(list(range(head.vocab)), 11, 24))
    logits = (h @ table.T).double()
    torch.testing.assert_close(scan.lse, torch.logsumexp(logits, dim=-1), atol=1e-6, rtol=0)
    want = torch.topk(logits, 10)
    assert scan.top_ids.tolist() == want.indices.tolist()
    torch.testing.assert_close(scan.top_logits.double(), want.values, atol=1e-5, rtol=0)
    probs = torch.softmax(logits, dim=-1)
    for row in range(3):
        for i, v in zip(scan.top_ids[row], scan.top_logits[row]):
            assert abs(scan.probability(row, float(v)) - probs[row, i].item()) <= 1e-6


def test_seeded_vocabulary_is_the_ordinary_tokens():
    assert gen.ordinary_vocab(get_encoding("o200k_base")) == 199998
    assert gen.ordinary_vocab(get_encoding("cl100k_base")) == 100256
    rows = models.seeded.__module__  # noqa: F841  (the module, for the next import)
    from attn_cli.models.seeded import seeded_embedding_rows

    for seed in (0, 2**32 - 1):
        np.testing.assert_array_equal(
            seeded_embedding_rows(190000, 199998, seed, 40),
            models.seeded_token_embeddings(list(range(190000, 199998)), seed, 40))


# ---------------------------------------------------------------- sampling

def test_gumbel_max_samples_the_softmax():
    logits = torch.tensor([1.0, 0.0, -1.0, 2.0], dtype=torch.float64)
    g = gen.Gumbel(3)
    T = 1.5
    draws = [int(torch.argmax(logits / T + g.draw(4))) for _ in range(20000)]
    freq = np.bincount(draws, minlength=4) / len(draws)
    np.testing.assert_allclose(freq, torch.softmax(logits / T, 0).numpy(), atol=0.015)


@pytest.mark.parametrize("options", [["--temperature", "1.5"], ["--top-k", "20"],
                                     ["--temperature", "0.8", "--top-k", "5"]])
def test_sampling_is_reproducible_and_follows_the_seed(built, options, schema):
    folder = built["gpt2"][0]
    run = lambda seed: ok_json("generate", PROMPT, "--model", folder, "-n", 12,  # noqa: E731
                               "--seed", seed, *options)
    a, b, c = run(1), run(1), run(2)
    validate(a, schema)
    assert a == b
    assert [g["id"] for g in a["generated"]] != [g["id"] for g in c["generated"]]
    assert a["sampling"]["seed"] == 1
    if "--top-k" in options:
        k = int(options[options.index("--top-k") + 1])
        for g in a["generated"]:  # a draw among the k most likely: listed when k ≤ shown
            if k <= len(g["top"]):
                assert g["id"] in [t["id"] for t in g["top"][:k]]


def test_seeded_sampling_seed_and_sample_seed():
    base = ["generate", PROMPT, "--encoding", "gpt2", "-n", 6, "--layers", 1, "--d-model", 16,
            "--heads", 2, "--temperature", "50"]
    a = ok_json(*base, "--sample-seed", 4)
    b = ok_json(*base, "--sample-seed", 4)
    c = ok_json(*base, "--sample-seed", 5)
    assert a == b
    assert a["model"] == c["model"]  # the same weights (--seed), another draw
    assert [g["id"] for g in a["generated"]] != [g["id"] for g in c["generated"]]
    greedy = ok_json("generate", PROMPT, "--encoding", "gpt2", "-n", 3, "--temperature", 0)
    assert greedy["sampling"] is None


# ---------------------------------------------------------------- output

def test_generate_json_seeded(schema):
    doc = ok_json("generate", PROMPT, "-n", 4, "--layer", 1, "--candidates", 3)
    validate(doc, schema)
    assert doc["command"] == "generate" and doc["prompt"] == PROMPT
    assert doc["encoding"] == "o200k_base" and doc["stop"] == "length"
    for n, g in enumerate(doc["generated"]):
        assert g["index"] == len(doc["tokens"]) + n
        assert [(a["layer"], a["head"]) for a in g["attention"]] == [(1, -1)]
        w = g["attention"][0]["weights"]
        assert len(w) == g["index"] and abs(sum(w) - 1) < 1e-5
        assert len(g["top"]) == 3
        assert g["probability"] == max(c["probability"] for c in g["top"])  # greedy


def test_generate_ndjson_streams_the_same_records(schema):
    args = ["generate", PROMPT, "-n", 3, "--encoding", "gpt2", "--head", 1]
    doc = ok_json(*args)
    lines = [parse(line) for line in ok(*args, "--ndjson").stdout.splitlines()]
    header = {k: v for k, v in doc.items() if k not in ("generated", "text", "stop")}
    assert lines[0] == header
    assert lines[1:-1] == doc["generated"]
    assert lines[-1] == {"text": doc["text"], "stop": doc["stop"]}


def test_generate_terminal_view():
    result = ok("generate", PROMPT, "-n", 3, "--encoding", "gpt2", "--head", 0, "--layer", 1)
    out = result.stdout
    assert out.startswith("attn generate · seeded model (seed 0)")
    assert "greedy" in out and "runners-up" in out and "L1 H0" in out
    lines = out.splitlines()
    produced = [line for line in lines if line.strip().startswith(("11 ", "12 ", "13 "))]
    assert len(produced) >= 3  # one plain line per token (stdout is not a terminal), summary


def test_inspect_predict_view():
    out = ok("inspect", "The cat sat", "--predict", 2, "--layer", 0, "--head", 0).stdout
    assert "Next-token predictions (top 2" in out


def test_end_of_text_stops(built, tmp_path):
    """A model whose end-of-text id is its first greedy choice stops there and says so."""
    folder = tmp_path / "eos"
    shutil.copytree(built["gpt2"][0], folder)
    first = ok_json("generate", PROMPT, "--model", folder, "-n", 1)["generated"][0]["id"]
    for name in ("config.json", "generation_config.json"):
        path = folder / name
        if path.exists():
            data = json.loads(path.read_text())
            data["eos_token_id"] = first
            path.write_text(json.dumps(data))
    result = ok("generate", PROMPT, "--model", folder, "-n", 5, "--json")
    doc = parse(result.stdout)
    assert len(doc["generated"]) == 1 and doc["stop"] == "end_of_text"
    assert "end-of-text" in result.stderr


def test_position_limit_stops_with_a_note(built):
    folder = built["gpt2"][0]  # 64 positions
    prompt = " ".join(["cat"] * 60)
    result = ok("generate", prompt, "--model", folder, "-n", 10, "--json")
    doc = parse(result.stdout)
    assert len(doc["tokens"]) + len(doc["generated"]) == 64
    assert doc["stop"] == "positions" and "64 positions" in result.stderr


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("args, needles", [
    (["-n", "0"], ["-n must be at least 1"]),
    (["--temperature", "-1"], ["--temperature", "≥ 0"]),
    (["--temperature", "nan"], ["--temperature"]),
    (["--top-k", "0"], ["--top-k must be at least 1"]),
    (["--candidates", "0"], ["--candidates"]),
    (["--layer", "5"], ["--layer 5 is out of range"]),
    (["--bidirectional"], ["encoder", "causal"]),
    (["--json", "--ndjson"], ["pick one"]),
])
def test_generate_user_errors(args, needles):
    assert_user_error(invoke("generate", PROMPT, *args), *needles)


def test_checkpoint_errors(built):
    assert_user_error(invoke("inspect", PROMPT, "--model", built["bert"][0], "--predict", 3),
                      "bert is an encoder", "causal")
    assert_user_error(invoke("generate", PROMPT, "--model", built["bert"][0]), "bert")
    assert_user_error(invoke("generate", PROMPT, "--model", built["llama-base"][0]),
                      "no LM head")
    long = " ".join(["cat"] * 80)
    assert_user_error(invoke("generate", long, "--model", built["gpt2"][0]),
                      "80 tokens", "64 positions")
    assert_user_error(invoke("inspect", PROMPT, "--predict", 0), "--predict")


def test_report_parity():
    """The largest differences seen against transformers (the closing note quotes them)."""
    for name, (p, a) in sorted(SEEN.items()):
        print(f"\n{name}: probability {p:.2e}, attention {a:.2e}")
        assert p <= ATOL and a <= ATOL
