"""The map of every head, `--from A --to B`, and a first screen that fits (issue 23).

Tiny Llama checkpoints are built with transformers: one (2 layers × 4 heads, grouped-query)
where one head's Q and K are planted so that the query ' it' attends the key ' animal', and
one shaped like SmolLM2-135M (30 layers × 9 heads, 3 key/value heads). The map's figures are
checked against what `attn heads --layer L` prints, the from-to ranking against transformers'
own attentions, and the first screens against their line budgets at 80 columns.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch

transformers = pytest.importorskip("transformers")

from test_cli import (SENTENCE, assert_user_error, error, load_schema, ok,  # noqa: E402
                      ok_json, parse, reference_capture, validate)
from test_families import FIXTURES, VOCAB, randomize  # noqa: E402

from attn_cli import headmap  # noqa: E402
from attn_cli.errors import ConfigError  # noqa: E402
from attn_cli.tokenizers.base import Token  # noqa: E402

TEXT = "The animal didn't cross the street because it was too tired."
COLS80 = {"COLUMNS": "80"}
PLANT_LAYER, PLANT_HEAD = 1, 2
LETTER_COLUMNS = {"P": "prev", "S": "self", "F": "first", "I": "ind", "D": "dup"}
SCORE_KEYS = {"P": "previous_token", "S": "self", "F": "first_token", "I": "induction",
              "D": "duplicate_token"}


def _save(hf, folder):
    hf.save_pretrained(folder)
    for file in ("vocab.json", "merges.txt"):
        shutil.copy(FIXTURES / file, folder / file)


def _plant(hf, query_id: int, key_id: int, scale: float) -> None:
    """Layer PLANT_LAYER, head PLANT_HEAD: q = scale·(x·ê_query)·u and k = scale·(x·ê_key)·u,
    u the head's slowest rotary dimension (it turns by ~0.001 rad a position, so RoPE leaves
    q·k almost as it is): the query token attends the key token far more than any other."""
    cfg = hf.config
    d, hd = cfg.hidden_size, cfg.head_dim
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        emb = hf.embed_tokens.weight
        emb.copy_(torch.randn(emb.shape, generator=g))  # unit-scale, random directions
        e_q = emb[query_id] / emb[query_id].norm()
        e_k = emb[key_id] / emb[key_id].norm()
        attn = hf.layers[PLANT_LAYER].self_attn
        kv = PLANT_HEAD // (cfg.num_attention_heads // cfg.num_key_value_heads)
        slow = hd // 2 - 1
        attn.q_proj.weight[PLANT_HEAD * hd:(PLANT_HEAD + 1) * hd] = 0.0
        attn.q_proj.weight[PLANT_HEAD * hd + slow] = scale * e_q
        attn.k_proj.weight[kv * hd:(kv + 1) * hd] = 0.0
        attn.k_proj.weight[kv * hd + slow] = scale * e_k
    assert d % cfg.num_attention_heads == 0


@pytest.fixture(scope="session")
def planted(tmp_path_factory):
    vocab = json.loads((FIXTURES / "vocab.json").read_text(encoding="utf-8"))
    config = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, intermediate_size=48, rope_theta=10000.0,
        max_position_embeddings=64, tie_word_embeddings=False, attn_implementation="eager")
    torch.manual_seed(0)  # transformers' own init of the weights not planted
    hf = transformers.LlamaModel(config)
    _plant(hf, vocab["Ġit"], vocab["Ġanimal"], 0.7)
    folder = tmp_path_factory.mktemp("headmap") / "planted"
    _save(hf, folder)
    return folder, hf.eval()


@pytest.fixture(scope="session")
def smollm_shaped(tmp_path_factory):
    """30 layers × 9 heads, 3 key/value heads: SmolLM2-135M's head layout, tiny widths."""
    config = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=18, num_hidden_layers=30, num_attention_heads=9,
        num_key_value_heads=3, head_dim=4, intermediate_size=16, max_position_embeddings=64,
        tie_word_embeddings=False, attn_implementation="eager")
    hf = transformers.LlamaModel(config)
    randomize(hf, 23)
    folder = tmp_path_factory.mktemp("headmap") / "llama-30x9"
    _save(hf, folder)
    return folder


def hf_attentions(hf, ids):
    with torch.no_grad():
        out = hf(torch.tensor([ids]), output_attentions=True)
    return [a[0].double().numpy() for a in out.attentions]  # per layer (heads, T, T)


def index_of(doc, text: str) -> int:
    return next(t["index"] for t in doc["tokens"] if t["text"] == text)


# ---------------------------------------------------------------- --from A --to B, planted

def test_from_to_finds_the_planted_head_with_transformers_weight(planted):
    folder, hf = planted
    doc = ok_json("heads", TEXT, "--model", folder, "--from", "it", "--to", "animal")
    validate(doc, load_schema("heads"))
    ids = [t["id"] for t in doc["tokens"]]
    i, j = index_of(doc, " it"), index_of(doc, " animal")
    ranking = doc["ranking"]
    assert ranking["pattern"] == "from-to"
    assert ranking["from"] == {"index": i, "token": " it"}
    assert ranking["to"] == {"index": j, "token": " animal"}
    ref = hf_attentions(hf, ids)
    first = ranking["heads"][0]
    assert (first["layer"], first["head"]) == (PLANT_LAYER, PLANT_HEAD)
    expected = ref[PLANT_LAYER][PLANT_HEAD, i, j]
    assert 0.5 < expected < 0.999  # planted, not saturated: the number means something
    assert first["score"] == pytest.approx(expected, abs=1e-5)
    # every head is ranked, each by transformers' weight, best first
    cfg = hf.config
    assert sorted((r["layer"], r["head"]) for r in ranking["heads"]) == [
        (la, he) for la in range(cfg.num_hidden_layers) for he in range(cfg.num_attention_heads)]
    for r in ranking["heads"]:
        assert r["score"] == pytest.approx(ref[r["layer"]][r["head"], i, j], abs=1e-5)
    scores = [r["score"] for r in ranking["heads"]]
    assert scores == sorted(scores, reverse=True)


def test_from_to_terminal_names_the_planted_head_first(planted):
    folder, hf = planted
    result = ok("heads", TEXT, "--model", folder, "--from", "it", "--to", "animal", env=COLS80)
    doc = ok_json("heads", TEXT, "--model", folder, "--from", "it", "--to", "animal")
    weight = doc["ranking"]["heads"][0]["score"]
    lines = result.stdout.splitlines()
    title = next(n for n, line in enumerate(lines) if line.startswith("Which heads send"))
    assert "8 ␣it to 1 ␣animal?" in lines[title] and "All 8 ranked" in lines[title]
    assert lines[title + 2].split()[:4] == ["1", str(PLANT_LAYER), str(PLANT_HEAD),
                                           f"{weight:.2f}"]
    strips = [line for line in lines if re.match(r"L\d+ H\d+ ", line)]
    assert len(strips) == 3 and strips[0].startswith(f"L{PLANT_LAYER} H{PLANT_HEAD} ")
    assert f"␣animal {weight:.2f}" in strips[0]
    assert all(len(line) <= 80 for line in lines)


@pytest.mark.parametrize("spec", ["it", "␣it", " it", "8", "it@1"])
def test_from_accepts_a_token_as_shown_typed_or_by_index(planted, spec):
    folder, _ = planted
    doc = ok_json("heads", TEXT, "--model", folder, "--from", spec, "--to", "1")
    assert doc["ranking"]["from"]["index"] == 8 and doc["ranking"]["to"]["index"] == 1


@pytest.mark.parametrize("args,needles", [
    (("--from", "dog", "--to", "animal"), ["--from 'dog'", "no token", "0 The", "8 ␣it",
                                           "TEXT@N"]),
    (("--from", "it@2", "--to", "animal"), ["only 1 token", "8 ␣it"]),
    (("--from", "it", "--to", "99"), ["--to 99", "no token 99", "12 ."]),
    (("--from", "animal", "--to", "it"), ["after", "causal", "masks", "--from 8 --to 1"]),
    (("--from", "it"), ["--from and --to go together"]),
    (("--from", "it", "--to", "animal", "--pattern", "self"), ["pick one"]),
])
def test_from_to_mistakes_are_one_line(planted, args, needles):
    folder, _ = planted
    assert_user_error(error("heads", TEXT, "--model", folder, *args), *needles)


def test_from_to_weights_are_the_inspect_weights_bidirectional():
    args = ("--layers", "2", "--heads", "3", "--d-model", "24", "--bidirectional")
    doc = ok_json("heads", SENTENCE, *args, "--from", "the", "--to", "mat")
    full = ok_json("inspect", SENTENCE, *args)
    i, j = 4, 5  # ' the' and ' mat': a later key is fine without a causal mask
    assert (doc["ranking"]["from"]["index"], doc["ranking"]["to"]["index"]) == (i, j)
    want = {(r["layer"], r["head"]): r["weights"][i][j] for r in full["attention"]}
    assert {(r["layer"], r["head"]): r["score"] for r in doc["ranking"]["heads"]} == want


def test_find_token_exact_before_loose_and_nth():
    tokens = [Token(n, n, raw) for n, raw in enumerate([b"it", b" was", b" it", b" it", b"5"])]
    assert headmap.find_token(tokens, "it", "--from").index == 0  # exact text first
    assert headmap.find_token(tokens, "it", "--from").matches == (0, 2, 3)
    assert headmap.find_token(tokens, "␣it", "--from").index == 2
    assert headmap.find_token(tokens, " it@2", "--from").index == 3
    assert headmap.find_token(tokens, "it@3", "--from").index == 3
    assert headmap.find_token(tokens, "4", "--from").index == 4  # digits: an index
    assert headmap.find_token(tokens, "5@1", "--from").index == 4  # the token whose text is 5
    for bad in ("it@4", "it@0", "cat", "7"):
        with pytest.raises(ConfigError):
            headmap.find_token(tokens, bad, "--to")


def test_several_matches_say_which_one_is_used():
    args = ("heads", "the cat saw the dog", "--layers", "1", "--heads", "2", "--d-model", "16",
            "--from", "dog", "--json")
    result = ok(*args, "--to", "the")
    assert parse(result.stdout)["ranking"]["to"] == {"index": 0, "token": "the"}
    assert result.stderr.count("note:") == 1 and "the@2" in result.stderr
    second = ok(*args, "--to", "the@2")
    assert parse(second.stdout)["ranking"]["to"] == {"index": 3, "token": " the"}
    assert second.stderr == ""


# ---------------------------------------------------------------- the map

def _map_rows(stdout: str) -> dict[int, str]:
    """layer -> the letters of its heads, read off a no-colour map (3 characters a cell)."""
    rows = {}
    for line in stdout.splitlines():
        m = re.match(r"(L(\d+) +)", line)
        if m and len(line) > len(m[1]):
            cells = line[len(m[1]):]
            rows[int(m[2])] = cells
    return rows


def _layer_table(stdout: str) -> dict[int, dict[str, str]]:
    """`attn heads --layer L`'s table: head -> its printed prev/self/first/dist/dup/ind."""
    out, header = {}, None
    for line in stdout.splitlines():
        fields = line.split()
        if fields[:1] == ["head"]:
            header = fields
            continue
        if header and fields and fields[0].isdigit() and len(fields) >= 8:
            out[int(fields[0])] = dict(zip(("prev", "self", "first", "dist", "dup", "ind"),
                                           fields[-7:-1]))
    return out


def test_map_fits_one_screen_and_names_every_head(smollm_shaped):
    result = ok("heads", TEXT, "--model", smollm_shaped, env=COLS80)
    lines = result.stdout.splitlines()
    assert len(lines) <= 40, "\n".join(lines)
    assert all(len(line) <= 80 for line in lines)
    doc = ok_json("heads", TEXT, "--model", smollm_shaped)
    validate(doc, load_schema("heads"))
    assert [(c["layer"], c["head"]) for c in doc["map"]] == [
        (la, he) for la in range(30) for he in range(9)]
    rows = _map_rows(result.stdout)
    assert sorted(rows) == list(range(30))
    for c in doc["map"]:
        letter = headmap.LETTERS.get(c["pattern"], headmap.NONE_LETTER)
        assert rows[c["layer"]][3 * c["head"]] == letter, (c, rows[c["layer"]])


MANY = ("--layers", "6", "--heads", "5", "--d-model", "40", "--seed", "2")  # 30 heads


def test_every_figure_in_the_map_is_what_heads_layer_prints():
    """The map's JSON scores and labels are --layer L's, number for number, and each best
    head the map lists shows the score `attn heads --layer L` prints for it."""
    text = "the cat saw the dog and the cat ran"  # tokens repeat: every score is defined
    doc = ok_json("heads", text, *MANY)
    by_layer, tables = {}, {}
    for layer in range(6):
        detail = ok_json("heads", text, *MANY, "--layer", str(layer))
        by_layer[layer] = detail
        for h in detail["heads"]:
            c = doc["map"][layer * 5 + h["head"]]
            assert (c["layer"], c["head"]) == (layer, h["head"])
            assert c["scores"] == h["scores"] and c["pattern"] == h["pattern"]
        tables[layer] = _layer_table(ok("heads", text, *MANY, "--layer", str(layer),
                                        env={"COLUMNS": "200"}).stdout)
    out = ok("heads", text, *MANY, env={"COLUMNS": "120"}).stdout
    listed = set()
    for line in out.splitlines():
        m = re.search(r"   ([PSFID]) [a-z-]+ +((?:L\d+ H\d+ \S+ *)+)$", line)
        if not m:
            continue
        for la, he, shown in re.findall(r"L(\d+) H(\d+) (\S+)", m[2]):
            assert tables[int(la)][int(he)][LETTER_COLUMNS[m[1]]] == shown, (line, la, he)
            score = by_layer[int(la)]["heads"][int(he)]["scores"][SCORE_KEYS[m[1]]]
            assert f"{score:.2f}" == shown
            listed.add(m[1])
    assert listed == set("PSFID")  # every pattern lists its best heads


def test_map_json_and_ndjson_add_the_map_and_keep_layer_0():
    args = ("--layers", "3", "--heads", "2", "--d-model", "16")
    doc = ok_json("heads", SENTENCE, *args)
    validate(doc, load_schema("heads"))
    assert doc["layer"] == 0 and [h["head"] for h in doc["heads"]] == [0, 1]
    assert len(doc["map"]) == 6
    one = ok_json("heads", SENTENCE, *args, "--layer", "2")
    assert "map" not in one and one["layer"] == 2
    lines = [json.loads(x) for x in ok("heads", SENTENCE, *args, "--ndjson").stdout.splitlines()]
    assert lines[0]["map"] == doc["map"] and lines[1:] == doc["heads"]


def test_map_wraps_wide_layers_in_groups():
    result = ok("heads", "The cat sat", "--layers", "2", "--heads", "40", "--d-model", "80",
                env=COLS80)
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines)
    rulers = [line for line in lines if re.match(r" +0 ", line) or re.match(r" +32 ", line)]
    assert len(rulers) == 2, lines  # heads 0-31, then 32-39
    rows = [line for line in lines if re.match(r"L[01] ", line)]
    assert len(rows) == 4
    assert [len(r.split()[1]) for r in rows[:2]] == [64, 64]  # 32 cells of 2 characters


def test_pattern_colours_by_that_score_and_lists_the_best(smollm_shaped):
    result = ok("heads", "--model", smollm_shaped, "--repeat", "12", "--pattern", "induction",
                env=COLS80)
    doc = ok_json("heads", "--model", smollm_shaped, "--repeat", "12", "--pattern",
                  "induction")
    best = doc["ranking"]["heads"][:10]
    listed = re.findall(r"(\d+)\. L(\d+) H(\d+) (\S+)", result.stdout)
    assert [(int(la), int(he)) for _, la, he, _ in listed] == \
        [(r["layer"], r["head"]) for r in best]
    assert [s for *_, s in listed] == [f"{r['score']:.2f}" for r in best]
    assert "note:" not in result.stderr  # tokens repeat: the pattern can occur


def test_svg_keeps_the_map_colours(tmp_path):
    from attn_cli.views.matrix import _ramp

    svg = tmp_path / "map.svg"
    args = ("heads", SENTENCE, "--layers", "3", "--heads", "2", "--d-model", "16")
    ok(*args, "--svg", svg)  # NO_COLOR is set: the terminal has no colours, the file does
    doc = ok_json(*args)
    picture = svg.read_text(encoding="utf-8").lower()
    for c in doc["map"]:
        cell = headmap.MapCell(c["layer"], c["head"], c["pattern"], _scores(c["scores"]))
        score = cell.score()
        assert "#%02x%02x%02x" % _ramp(score) in picture, c


def _scores(d: dict):
    from attn_cli.analysis import HeadScores

    return HeadScores(**d)


# ---------------------------------------------------------------- a pattern that cannot occur

@pytest.mark.parametrize("pattern", ["induction", "duplicate-token"])
def test_a_pattern_that_cannot_occur_is_said_once(pattern):
    args = ("heads", "The cat sat on a mat", "--layers", "3", "--heads", "2", "--d-model", "16",
            "--pattern", pattern)
    for extra in ((), ("--layer", "1"), ("--json",)):
        result = ok(*args, *extra)
        assert result.stderr.count("note:") == 1, result.stderr
        assert "no token repeats" in result.stderr and "--repeat" in result.stderr
    ok_result = ok("heads", "a cat and a cat", "--layers", "2", "--heads", "2",
                   "--d-model", "16", "--pattern", pattern)
    assert "note:" not in ok_result.stderr


# ---------------------------------------------------------------- inspect's first screen

def test_inspect_on_many_heads_starts_with_the_map(smollm_shaped):
    result = ok("inspect", TEXT, "--model", smollm_shaped, env=COLS80)
    lines = result.stdout.splitlines()
    assert len(lines) < 60, "\n".join(lines)
    assert "The map: 270 heads" in result.stdout and "--all" in result.stdout
    assert not re.search(r"Layer \d+ · Head \d+", result.stdout)
    assert sorted(_map_rows(result.stdout)) == list(range(30))
    assert "Contextual embeddings" in result.stdout
    doc = ok_json("inspect", TEXT, "--model", smollm_shaped)
    assert len(doc["attention"]) == 270  # the JSON has every head, as before


def test_inspect_prints_matrices_when_asked():
    args = ("inspect", SENTENCE, "--layers", "3", "--heads", "6", "--d-model", "24")
    titles = r"Layer \d+ · Head \d+"
    assert "The map: 18 heads" in ok(*args).stdout
    assert len(re.findall(titles, ok(*args, "--all").stdout)) == 18
    assert len(re.findall(titles, ok(*args, "--layer", "1").stdout)) == 6
    assert len(re.findall(titles, ok(*args, "--head", "2").stdout)) == 3
    assert len(re.findall(titles, ok(*args, "--all").stdout)) == 18
    four = ok("inspect", SENTENCE, "--layers", "4", "--heads", "4", "--d-model", "16").stdout
    assert len(re.findall(titles, four)) == 16  # 16 heads fit: every matrix


def test_inspect_on_the_default_model_is_the_full_view():
    """The seeded 2 × 4 model: what render.inspect_view draws, byte for byte."""
    from rich.console import Console

    from attn_cli.views.inspect import inspect_view
    from attn_cli.views.matrix import View

    out = ok("inspect", SENTENCE).stdout
    cap = reference_capture(SENTENCE)
    console = Console(width=120, no_color=True, highlight=False, soft_wrap=False, emoji=False,
                      markup=False, record=True, file=open("/dev/null", "w"))
    console.print(inspect_view(cap, View(width=120, color=False)))
    assert out == console.export_text()


# ---------------------------------------------------------------- probabilities

@pytest.mark.parametrize("p,precision,shown", [
    (3.1e-05, 3, "3.1e-05"), (0.0009996, 3, "1.0e-03"), (0.0, 3, "0.000"), (0.0123, 3, "0.012"),
    (0.001, 3, "0.001"), (0.004, 2, "4.0e-03"), (0.5, 2, "0.50"), (1.0, 3, "1.000"),
])
def test_small_probabilities_are_never_zero(p, precision, shown):
    from attn_cli.views.generate import probability

    assert probability(p, precision) == shown


def test_runners_up_wrap_between_items():
    from rich.text import Text

    from attn_cli.views.matrix import wrap_between

    items = [Text(f"tok{n} 0.0{n}") for n in range(12)]
    lines = wrap_between(items, 60, lead=Text("    5 ␣Paris  0.773   runners-up: "))
    assert len(lines) > 1
    pad = len("    5 ␣Paris  0.773   runners-up: ")
    joined = []
    for n, line in enumerate(lines):
        assert line.cell_len <= 60
        body = line.plain[pad:]
        assert n == 0 or line.plain[:pad].strip() == ""
        joined += body.split(" · ")
    assert joined == [item.plain for item in items]
    # a lead that leaves no room for the first item: the items start on the next line
    lines = wrap_between(items[:2], 20, lead=Text("x" * 18), indent=2)
    assert [line.plain for line in lines] == ["x" * 18, "  tok0 0.00", "  tok1 0.01"]


def test_generate_runners_up_lines_hold_whole_items():
    result = ok("generate", "The cat", "-n", "2", "--candidates", "12", env={"COLUMNS": "70"})
    runner_lines = [line for line in result.stdout.splitlines()
                    if "runners-up:" in line or line.startswith(" " * 30)]
    assert len(runner_lines) > 2
    for line in runner_lines:
        assert len(line) <= 70
        body = line.split("runners-up:")[-1].strip()
        for item in body.split(" · "):
            assert re.fullmatch(r"\S+ (\d\.\d{3}|\d\.\de-\d\d)", item), (item, line)


def test_layer_ranking_lists_the_best_and_says_when_none_can_be_scored():
    args = ("heads", "The cat sat", *MANY, "--layer", "2")
    out = ok(*args, "--pattern", "self").stdout
    doc = ok_json(*args, "--pattern", "self")
    rows = re.findall(r"^ +(\d+) +(\d+) +(\d+) +(\d\.\d\d)$", out, re.M)
    assert [(int(la), int(he), s) for _, la, he, s in rows] == \
        [(r["layer"], r["head"], f"{r['score']:.2f}") for r in doc["ranking"]["heads"][:20]]
    assert "… 10 more heads: --json ranks every one" in out
    none = ok(*args, "--pattern", "induction").stdout
    assert "none can be scored: no token repeats" in none
    assert not re.search(r"^ +1 +\d+ +\d+ +—$", none, re.M)
