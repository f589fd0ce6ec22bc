"""`--model FILE.gguf` and `--model ollama:NAME` (SPEC §9), against transformers reading the
same file.

Tiny random transformers models of each GGUF architecture (llama with grouped-query
attention, qwen2 with its q/k/v biases, gpt2) are written as GGUF files in the layout
llama.cpp's converter uses (tests/gguf_writer.py: its names, llama's permuted Q/K rows,
GPT-2's transposed Conv1D weights) in F32, F16, Q8_0, Q4_0 and Q4_K (widths of 256, as
K-quants need), with GPT-2's vocabulary cut to 4,097 tokens and the `pre` each architecture's
converter writes. Token ids, every attention matrix (1e-5) and the final hidden state (1e-4)
must equal transformers' `AutoModel.from_pretrained(folder, gguf_file=…)` (eager,
output_attentions=True) on the same file; the F32 llama file must also equal the model it was
written from (so the Q/K permutation round trip is checked without transformers' loader).
Bad files, the Ollama store, the split patterns and the lazy token table are checked too.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

import gguf_writer  # noqa: E402
from test_families import randomize  # noqa: E402
from test_subprocess import _env, assert_one_line_error, attn  # noqa: E402

from attn_cli.models import gguf_file  # noqa: E402
from attn_cli.tokenizers import gguf as gguf_vocab  # noqa: E402
from attn_cli.errors import ModelLoadError  # noqa: E402
from attn_cli.models import checkpoint  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "gpt2-tokenizer"
N_VOCAB = 4096  # GPT-2's first 4,096 ids (ids ≥ 256 follow its merges), + <|endoftext|>
TEXT = "The animal didn't cross the street because it was too tired, 1984 times!"
ATTN_ATOL, HIDDEN_ATOL = 1e-5, 1e-4

MODELS = {
    # arch: (config class, model class, config, pre)
    "llama": ("LlamaConfig", "LlamaModel", dict(
        hidden_size=256, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=512, max_position_embeddings=64, rope_theta=500.0,
        rms_norm_eps=1e-5, tie_word_embeddings=True), "llama-bpe"),
    "qwen2": ("Qwen2Config", "Qwen2Model", dict(
        hidden_size=256, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=512, max_position_embeddings=64, rms_norm_eps=1e-6,
        tie_word_embeddings=True), "qwen2"),
    "gpt2": ("GPT2Config", "GPT2Model", dict(
        # transformers' GGUF reader takes no n_inner or n_positions: GPT-2's own defaults
        n_embd=256, n_layer=2, n_head=4, n_positions=1024), "gpt-2"),
}
QTYPES = ("F32", "F16", "Q8_0", "Q4_0", "Q4_K")
CASES = [(a, q) for a in MODELS for q in QTYPES]


def gpt2_vocab(pre: str, add_bos: bool) -> dict:
    vocab = json.loads((FIXTURES / "vocab.json").read_text(encoding="utf-8"))
    by_id = sorted(vocab, key=vocab.get)[:N_VOCAB] + ["<|endoftext|>"]
    merges = (FIXTURES / "merges.txt").read_text(encoding="utf-8").splitlines()[1:]
    return {"tokens": by_id, "token_type": [1] * N_VOCAB + [3], "pre": pre,
            "merges": merges[:N_VOCAB - 256], "bos": N_VOCAB, "eos": N_VOCAB,
            "add_bos": add_bos}


def source_model(arch: str, seed: int):
    config_cls, model_cls, args, _ = MODELS[arch]
    config = getattr(transformers, config_cls)(vocab_size=N_VOCAB + 1,
                                                attn_implementation="eager", **args)
    hf = getattr(transformers, model_cls)(config).eval()
    randomize(hf, seed)
    return hf


@pytest.fixture(scope="session")
def files(tmp_path_factory):
    """arch -> (source model, {qtype: GGUF path}), each file alone in its folder."""
    root = tmp_path_factory.mktemp("gguf")
    out = {}
    for seed, (arch, (_, _, _, pre)) in enumerate(MODELS.items()):
        hf = source_model(arch, 300 + seed)
        config = hf.config.to_dict()
        paths = {}
        for qtype in QTYPES:
            folder = root / f"{arch}-{qtype}"
            folder.mkdir()
            paths[qtype] = gguf_writer.write(
                folder / f"tiny-{qtype}.gguf", arch, config, hf.state_dict(), qtype,
                gpt2_vocab(pre, add_bos=arch == "llama"), seed=seed)
        out[arch] = (hf, paths)
    return out


_TOKENIZERS = {}


def reference(path: Path):
    """transformers' model read from the GGUF file, and its tokenizer (one per folder-name
    prefix, the architecture: every file of one holds the same vocabulary)."""
    hf = transformers.AutoModel.from_pretrained(
        str(path.parent), gguf_file=path.name, attn_implementation="eager",
        dtype=torch.float32).eval()
    arch = path.parent.name.split("-")[0]
    if arch not in _TOKENIZERS:
        _TOKENIZERS[arch] = transformers.AutoTokenizer.from_pretrained(str(path.parent),
                                                                       gguf_file=path.name)
    return hf, _TOKENIZERS[arch]


def compare(model, hf, ids):
    cfg = model.cfg
    keep = {layer: tuple(range(cfg.n_heads)) for layer in range(cfg.n_layers)}
    out = model(ids, keep=keep)
    with torch.no_grad():
        ref = hf(torch.tensor([ids]), output_attentions=True)
    worst = 0.0
    for layer in range(cfg.n_layers):
        for head in range(cfg.n_heads):
            got = out.heads[(layer, head)]["weights"].float()
            worst = max(worst, (got - ref.attentions[layer][0, head].float()).abs().max().item())
    hidden = (out.embeddings.float() - ref.last_hidden_state[0].float()).abs().max().item()
    return worst, hidden


@pytest.mark.parametrize("arch,qtype", CASES)
def test_ids_and_every_matrix_equal_transformers_reading_the_file(files, arch, qtype):
    path = files[arch][1][qtype]
    hf, hf_tok = reference(path)
    model, tokenizer = checkpoint.load(str(path), streamed=True)
    ids = [t.id for t in tokenizer.encode(TEXT)]
    assert ids == hf_tok(TEXT)["input_ids"]
    assert (ids[0] == N_VOCAB) == (arch == "llama")  # BOS as the file says (add_bos_token)
    attention, hidden = compare(model, hf, ids)
    assert attention <= ATTN_ATOL, attention
    assert hidden <= HIDDEN_ATOL, hidden
    # the attention is worth comparing: neither uniform nor one-hot everywhere
    w = model(ids, keep={0: (0,)}).heads[(0, 0)]["weights"]
    assert 0.05 < w[-1].max().item() < 0.999


def test_llama_rows_are_unpermuted_back_to_the_source_model(files):
    """The F32 llama file against the transformers model it was written from: llama.cpp's
    Q/K permutation is undone (a wrong undo rotates the wrong pairs: attention changes)."""
    source, paths = files["llama"]
    model, tokenizer = checkpoint.load(str(paths["F32"]))
    ids = [t.id for t in tokenizer.encode(TEXT)]
    attention, hidden = compare(model, source, ids)
    assert attention <= ATTN_ATOL and hidden <= HIDDEN_ATOL, (attention, hidden)


def test_streamed_and_held_give_the_same_bits(files):
    path = files["qwen2"][1]["Q4_0"]
    a, tok = checkpoint.load(str(path), streamed=True)
    b, _ = checkpoint.load(str(path), streamed=False)
    ids = [t.id for t in tok.encode(TEXT)]
    keep = {1: (0, 3)}
    x, y = a(ids, keep=keep), b(ids, keep=keep)
    for key in x.heads:
        assert torch.equal(x.heads[key]["weights"], y.heads[key]["weights"])
    assert torch.equal(x.embeddings, y.embeddings)


def test_the_token_table_is_dequantised_a_row_at_a_time(files):
    """Only the rows of the tokens read; the whole table when the LM head is asked for."""
    from attn_cli.generate import LMHead

    model, tok = checkpoint.load(str(files["llama"][1]["Q8_0"]), streamed=True)
    ids = [t.id for t in tok.encode(TEXT)]
    model(ids)
    assert int(model.wte._done.sum()) == len(set(ids))
    reference_rows = model.wte._files.tensor("model.embed_tokens.weight")
    head = LMHead(model, tok)  # tied: the token table is the head, read whole now
    assert bool(model.wte._done.all())
    torch.testing.assert_close(head.weight, reference_rows, rtol=0, atol=0)


def test_dtype_is_respected(files):
    path = files["gpt2"][1]["Q8_0"]
    model, tok = checkpoint.load(str(path), dtype="bfloat16", streamed=True)
    ids = [t.id for t in tok.encode(TEXT)]
    out = model(ids, keep={1: (2,)})
    assert out.heads[(1, 2)]["weights"].dtype in (torch.bfloat16, torch.float32)
    assert model.wte.weight.dtype == torch.bfloat16
    full, _ = checkpoint.load(str(path))
    exact = full(ids, keep={1: (2,)}).heads[(1, 2)]["weights"]
    assert (out.heads[(1, 2)]["weights"].float() - exact).abs().max() < 0.05


def test_cli_inspect_json_and_model(files):
    path = files["llama"][1]["Q4_K"]
    proc = attn("inspect", "The cat sat", "--model", path, "--json", "--layer", "1", "--head", "3")
    assert proc.returncode == 0, proc.stderr.decode()
    doc = json.loads(proc.stdout)
    assert doc["model"]["family"] == "llama" and doc["model"]["kv_heads"] == 2
    assert [t["id"] for t in doc["tokens"]][0] == N_VOCAB


def test_tokens_never_imports_torch(files, tmp_path):
    from test_startup import run_probe

    proc, modules = run_probe(tmp_path, "tokens", TEXT, "--model",
                              str(files["gpt2"][1]["F16"]), "--json")
    assert "torch" not in modules["roots"], modules["heavy"][:10]
    hf_tok = reference(files["gpt2"][1]["F16"])[1]
    assert [t["id"] for t in json.loads(proc.stdout)["tokens"]] == hf_tok(TEXT)["input_ids"]


# --- the Ollama store -------------------------------------------------------------------------

def ollama_store(root: Path, blob_of: Path, *manifests: tuple[str, ...]) -> str:
    digest = "ab" * 32
    (root / "blobs").mkdir(parents=True)
    shutil.copy(blob_of, root / "blobs" / f"sha256-{digest}")
    for parts in manifests:
        m = root.joinpath("manifests", *parts)
        m.parent.mkdir(parents=True, exist_ok=True)
        m.write_text(json.dumps({"schemaVersion": 2, "layers": [
            {"mediaType": "application/vnd.ollama.image.license", "digest": "sha256:" + "0" * 64},
            {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}",
             "size": blob_of.stat().st_size}]}))
    return digest


@pytest.mark.parametrize("name,parts", [
    ("tiny", ("registry.ollama.ai", "library", "tiny", "latest")),
    ("tiny:q4", ("registry.ollama.ai", "library", "tiny", "q4")),
    ("someone/tiny:v2", ("registry.ollama.ai", "someone", "tiny", "v2")),
    ("hf.co/someone/Tiny-GGUF:Q4_K_M", ("hf.co", "someone", "Tiny-GGUF", "Q4_K_M")),
])
def test_ollama_names_resolve_to_the_model_blob(files, tmp_path, monkeypatch, name, parts):
    digest = ollama_store(tmp_path, files["qwen2"][1]["Q8_0"], parts)
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path))
    assert checkpoint.resolve("ollama:" + name) == tmp_path / "blobs" / f"sha256-{digest}"


def test_ollama_model_runs(files, tmp_path):
    ollama_store(tmp_path, files["qwen2"][1]["Q8_0"],
                 ("registry.ollama.ai", "library", "tiny", "latest"))
    env = _env(OLLAMA_MODELS=str(tmp_path))
    proc = attn("heads", "The cat sat", "--model", "ollama:tiny", "--layer", "0", "--json",
                env=env)
    assert proc.returncode == 0, proc.stderr.decode()
    assert json.loads(proc.stdout)["model"]["family"] == "qwen2"

def test_ollama_says_what_is_missing(files, tmp_path, monkeypatch):
    ollama_store(tmp_path, files["qwen2"][1]["Q8_0"],
                 ("registry.ollama.ai", "library", "tiny", "latest"))
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path))
    with pytest.raises(ModelLoadError, match="ollama:absent:7b.*ollama pull absent:7b"):
        checkpoint.resolve("ollama:absent:7b")
    next((tmp_path / "blobs").iterdir()).unlink()
    with pytest.raises(ModelLoadError, match="blob .* is missing"):
        checkpoint.resolve("ollama:tiny")
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "nowhere"))
    with pytest.raises(ModelLoadError, match="no Ollama store"):
        checkpoint.resolve("ollama:tiny")


def test_ollama_names_that_are_not_names(tmp_path, monkeypatch):
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path))
    for bad in ("ollama:", "ollama:../x", "ollama:a/../../b", "ollama:x:"):
        with pytest.raises(ModelLoadError, match="not an Ollama model name"):
            checkpoint.resolve(bad)


# --- bad files --------------------------------------------------------------------------------

def header_tensor(path: Path, name: str) -> int:
    """Where tensor `name`'s record (n_dims, dims, type, offset) starts in the header."""
    data = path.read_bytes()
    at = data.index(name.encode()) + len(name)
    return at


def broken(src: Path, dst: Path, edit) -> Path:
    data = bytearray(src.read_bytes())
    edit(data)
    dst.write_bytes(bytes(data))
    return dst


def test_bad_files_are_one_line_each(files, tmp_path):
    q8 = files["llama"][1]["Q8_0"]
    size = q8.stat().st_size
    f = gguf_file.GGUFFile(q8)
    up = f.tensors["blk.1.ffn_up.weight"]
    cases = {
        "truncated": (broken(q8, tmp_path / "cut.gguf", lambda d: d.__delitem__(
            slice(size - 1000, None))), "is truncated: tensor"),
        "header cut": (broken(q8, tmp_path / "head.gguf", lambda d: d.__delitem__(
            slice(4000, None))), "could not read"),
        "not gguf": (broken(q8, tmp_path / "text.gguf", lambda d: d.__setitem__(
            slice(0, 4), b"PK\x03\x04")), "GGUF magic"),
        "nan scale": (broken(q8, tmp_path / "nan.gguf", lambda d: d.__setitem__(
            slice(up.offset + 34 * 5, up.offset + 34 * 5 + 2), b"\x00\x7e")),
            "layers.1.mlp.up_proj.weight"),
    }

    def unknown_type(d):
        at = header_tensor(q8, "blk.0.attn_v.weight") + 4 + 2 * 8
        d[at:at + 4] = struct.pack("<I", 99)

    cases["unknown quant"] = (broken(q8, tmp_path / "q99.gguf", unknown_type), "ggml type 99")
    for name, (path, needle) in cases.items():
        with pytest.raises(ModelLoadError, match=needle.replace("(", r"\(")):
            model, _ = checkpoint.load(str(path), streamed=True)
            model.unchecked()  # streamed: the blocks' values are checked before they run
    # through the CLI: one line, exit 2, nothing on stdout
    assert_one_line_error(attn("inspect", "hi", "--model", tmp_path / "nan.gguf"),
                          "NaN or infinite")


def test_nan_in_a_float_file_and_missing_files(files, tmp_path):
    f32 = files["gpt2"][1]["F32"]
    t = gguf_file.GGUFFile(f32).tensors["blk.0.attn_qkv.weight"]
    bad = broken(f32, tmp_path / "nan32.gguf", lambda d: d.__setitem__(
        slice(t.offset + 40, t.offset + 44), struct.pack("<f", float("nan"))))
    with pytest.raises(ModelLoadError, match="h.0.attn.c_attn.weight"):
        checkpoint.load(str(bad))
    with pytest.raises(ModelLoadError, match="does not exist"):
        checkpoint.load(str(tmp_path / "absent.gguf"))


def write_variant(tmp_path: Path, name: str, arch="llama", **changes) -> Path:
    """A tiny llama-shaped file whose metadata is edited after the fact (what a lying file
    says)."""
    hf = source_model("llama", 1)
    config = {**hf.config.to_dict(), **changes.pop("config", {})}
    vocab = {**gpt2_vocab(changes.pop("pre", "llama-bpe"), True)}
    return gguf_writer.write(tmp_path / name, arch, config, hf.state_dict(), "Q8_0", vocab)


def test_lying_metadata_unsupported_architecture_and_pre(tmp_path):
    wide = write_variant(tmp_path, "wide.gguf", config={"hidden_size": 128})
    with pytest.raises(ModelLoadError, match="has shape"):
        checkpoint.load(str(wide))
    falcon = write_variant(tmp_path, "falcon.gguf", arch="falcon")
    with pytest.raises(ModelLoadError, match="'falcon'.*llama, qwen2, gpt2"):
        checkpoint.load(str(falcon))
    pre = write_variant(tmp_path, "pre.gguf", pre="klingon-bpe")
    with pytest.raises(ModelLoadError, match="pre-tokenizer 'klingon-bpe'"):
        checkpoint.load(str(pre))
    assert_one_line_error(attn("tokens", "hi", "--model", pre), "klingon-bpe")


# --- the split patterns -------------------------------------------------------------------------

def sequential_split(text: str, patterns: list[str]) -> list[str]:
    """llama.cpp's unicode_regex_split: each pattern splits every piece of the one before; the
    text between matches stays a piece."""
    import regex

    pieces = [text]
    for pattern in patterns:
        out = []
        for piece in pieces:
            at = 0
            for m in regex.finditer(pattern, piece):
                if m.start() > at:
                    out.append(piece[at:m.start()])
                if m.end() > m.start():
                    out.append(m.group())
                at = m.end()
            if at < len(piece):
                out.append(piece[at:])
        pieces = out
    return pieces


GPT2_LLAMA_CPP = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
SEQUENCES = {  # llama.cpp's regex_exprs lists
    "smollm": [r"\p{N}", GPT2_LLAMA_CPP],
    "default": [r"[\p{P}\$\+<=>\^~\|]+", GPT2_LLAMA_CPP, r"\p{N}+", r"[0-9][0-9][0-9]"],
    "gpt-2": [GPT2_LLAMA_CPP],
}


def one_regex_split(text: str, pre: str) -> list[str]:
    import regex

    from attn_cli.tokenizers.byte_level import _covering

    return [m.group() for m in regex.finditer(_covering(gguf_vocab.PRE_PATTERNS[pre]), text)]


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

PIECES = st.sampled_from(["a", "B", "é", "日", " ", "  ", "\t", "\n", "1", "23", "4567", "٣",
                          "!", "?!", "'s", "'", "$", "+", "=", "@", "`", "©", "-", ".", ",",
                          "😀", "\r\n"])


@settings(max_examples=300, deadline=None)
@given(st.lists(PIECES, max_size=14).map("".join))
def test_one_regex_cuts_text_as_llama_cpps_list_of_patterns(text):
    for pre, patterns in SEQUENCES.items():
        assert one_regex_split(text, pre) == sequential_split(text, patterns), (pre, text)


# --- SentencePiece vocabularies (`tokenizer.ggml.model` llama) ----------------------------------

SP_TEXTS = [TEXT, "  two  spaces and\nnewlines", "日本 tired cats", "</s> and <s> as text"]


def sentencepiece_vocab(seed: int) -> dict:
    """A Llama-2-style SentencePiece vocabulary: <unk> <s> </s>, the 256 byte tokens, then
    pieces (every prefix of every ▁word of a small corpus, and its characters) with shuffled
    scores and no merges, as llama.cpp writes such a file; "日本" is left to the byte tokens."""
    import random

    rng = random.Random(seed)
    corpus = (TEXT + " the cat sat on the mat, two spaces and newlines as text tired").split()
    chars, pieces = set("▁\n"), []
    for word in corpus:
        piece = "▁" + word
        chars |= set(piece)
        pieces += [piece[:k] for k in range(2, len(piece) + 1) if piece[:k] not in pieces]
    scores = list(range(-len(pieces), 0))
    rng.shuffle(scores)
    single = sorted(chars)
    tokens = ["<unk>", "<s>", "</s>", *(f"<0x{b:02X}>" for b in range(256)), *pieces, *single]
    return {"model": "llama", "tokens": tokens,
            "token_type": [2, 3, 3] + [6] * 256 + [1] * (len(pieces) + len(single)),
            "scores": [0.0] * 259 + [float(s) for s in scores]
            + [-1000.0 - i for i in range(len(single))],
            "unk": 0, "bos": 1, "eos": 2, "add_bos": True}


@pytest.fixture(scope="module")
def sentencepiece_file(tmp_path_factory):
    vocab = sentencepiece_vocab(7)
    config_cls, model_cls, args, _ = MODELS["llama"]
    config = getattr(transformers, config_cls)(vocab_size=len(vocab["tokens"]),
                                                attn_implementation="eager", **args)
    hf = getattr(transformers, model_cls)(config).eval()
    randomize(hf, 77)
    folder = tmp_path_factory.mktemp("gguf-sp") / "sentencepiece"  # its own key in reference()
    folder.mkdir()
    return gguf_writer.write(folder / "sp.gguf", "llama", hf.config.to_dict(),
                             hf.state_dict(), "Q8_0", vocab)


def test_sentencepiece_ids_and_matrices_equal_transformers(sentencepiece_file):
    hf, hf_tok = reference(sentencepiece_file)
    model, tokenizer = checkpoint.load(str(sentencepiece_file), streamed=True)
    assert tokenizer.name == "GGUF SentencePiece"
    for text in SP_TEXTS:  # special-token text is text unless --allow-special (SPEC §2)
        for special in (False, True):
            ids = [t.id for t in tokenizer.encode(text, allow_special=special)]
            assert ids == hf_tok(text, split_special_tokens=not special)["input_ids"], text
    ids = [t.id for t in tokenizer.encode(SP_TEXTS[2])]
    assert ids[0] == 1 and any(3 <= i < 259 for i in ids)  # BOS; 日本 in byte tokens
    assert any(i >= 259 + 20 for i in ids)  # and some merged pieces, not only characters
    attention, hidden = compare(model, hf, [t.id for t in tokenizer.encode(TEXT)])
    assert attention <= ATTN_ATOL and hidden <= HIDDEN_ATOL, (attention, hidden)
    proc = attn("tokens", SP_TEXTS[1], "--model", sentencepiece_file, "--json")
    assert proc.returncode == 0, proc.stderr.decode()
    assert [t["id"] for t in json.loads(proc.stdout)["tokens"]] == \
        hf_tok(SP_TEXTS[1])["input_ids"]


def test_missing_extras_are_one_line(files, sentencepiece_file, monkeypatch):
    """A SentencePiece vocabulary needs `tokenizers`, a quantised file the `gguf` library:
    without them, one line naming the extra (an F32 byte-level file needs neither)."""
    import sys

    monkeypatch.setitem(sys.modules, "tokenizers", None)  # `import tokenizers` fails
    with pytest.raises(ModelLoadError, match=r"SentencePiece.*attn-cli\[hf\]"):
        checkpoint.load(str(sentencepiece_file))
    monkeypatch.setitem(sys.modules, "gguf", None)
    with pytest.raises(ModelLoadError, match=r"Q8_0 tensors.*attn-cli\[gguf\]"):
        checkpoint.load(str(files["qwen2"][1]["Q8_0"]))
    model, tokenizer = checkpoint.load(str(files["gpt2"][1]["F32"]))
    assert model.cfg.n_layers == 2


# --- every command that takes --model --------------------------------------------------------

def test_the_memory_budget_counts_a_gguf_file(files):
    proc = attn("inspect", "hi", "--model", files["llama"][1]["Q4_0"],
                env=_env(ATTN_MEMORY_LIMIT="200K"))
    assert_one_line_error(proc, "needs about", "is free")


@pytest.mark.parametrize("args", [
    ("steps", "--layer", "1", "--head", "2", "--json"),
    ("rollout", "--json"),
    ("model", "--json"),
    ("plot", "--layer", "0", "--head", "1", "-o", "{tmp}/p.png"),
    ("compare", "--a", "--model {gguf}", "--b", "--model {gguf}", "--json"),
])
def test_every_model_command_reads_a_gguf_file(files, tmp_path, args):
    path = files["qwen2"][1]["Q4_K"]
    args = [a.format(gguf=path, tmp=tmp_path) for a in args]
    text = [] if args[0] == "model" else ["The cat sat"]
    extra = [] if args[0] == "compare" else ["--model", str(path)]
    proc = attn(args[0], *text, *extra, *args[1:])
    assert proc.returncode == 0, proc.stderr.decode()
    if args[0] == "plot":
        assert (tmp_path / "p.png").stat().st_size > 1000
        return
    doc = json.loads(proc.stdout)
    if args[0] == "compare":  # the same file on both sides: every head moves by exactly 0
        assert doc["mean"] == 0 and all(h["mean"] == 0 for h in doc["heads"]), doc["mean"]
    elif args[0] == "model":
        assert doc["model"]["family"] == "qwen2" and doc["model"]["kv_heads"] == 2
    else:
        assert doc["model"]["source"] == str(path)


def test_generate_equals_transformers_greedy_on_the_file(files):
    """attn generate (the LM head: the token table, read whole only now) against transformers'
    AutoModelForCausalLM greedy decoding of the same file."""
    path = files["llama"][1]["Q8_0"]
    proc = attn("generate", "The cat sat", "--model", path, "-n", "6", "--json")
    assert proc.returncode == 0, proc.stderr.decode()
    doc = json.loads(proc.stdout)
    prompt = [t["id"] for t in doc["tokens"]]
    got = [step["id"] for step in doc["generated"]]
    hf = transformers.AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    with torch.no_grad():
        out = hf.generate(torch.tensor([prompt]), max_new_tokens=len(got), do_sample=False,
                          eos_token_id=None, pad_token_id=0)
        logits = hf(torch.tensor([prompt])).logits[0, -1]
    assert got and got == out[0, len(prompt):].tolist()
    first = torch.softmax(logits.double(), -1)[got[0]].item()
    assert abs(doc["generated"][0]["probability"] - first) < 1e-5


# --- the other quantisation types ------------------------------------------------------------

def test_the_type_table_agrees_with_ggml():
    """Block length and bytes of every type attn reads, against the gguf library's own table."""
    for ggml_type, (name, block, nbytes, _) in gguf_file.TYPES.items():
        t = gguf.GGMLQuantizationType(ggml_type)
        assert t.name == name and gguf.GGML_QUANT_SIZES[t] == (block, nbytes), name


@pytest.mark.parametrize("qtype", ["BF16", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q5_K",
                                   "Q6_K"])
def test_other_quantisations_equal_transformers(files, tmp_path, qtype):
    """The types the main matrix leaves out, on the llama model (a K-quant with its scales
    set to NaN is refused, naming the tensor)."""
    source = files["llama"][0]
    path = gguf_writer.write(tmp_path / f"tiny-{qtype}.gguf", "llama", source.config.to_dict(),
                             source.state_dict(), qtype, gpt2_vocab("llama-bpe", True))
    hf = transformers.AutoModel.from_pretrained(str(tmp_path), gguf_file=path.name,
                                                attn_implementation="eager",
                                                dtype=torch.float32).eval()
    model, tokenizer = checkpoint.load(str(path), streamed=True)
    attention, hidden = compare(model, hf, [t.id for t in tokenizer.encode(TEXT)])
    assert attention <= ATTN_ATOL and hidden <= HIDDEN_ATOL, (attention, hidden)
    if qtype in gguf_writer.K_SCALES:
        t = gguf_file.GGUFFile(path).tensors["blk.1.ffn_up.weight"]
        lo = gguf_writer.K_SCALES[qtype][0]
        bad = broken(path, tmp_path / "nan.gguf", lambda d: d.__setitem__(
            slice(t.offset + 3 * t.block_bytes + lo, t.offset + 3 * t.block_bytes + lo + 2),
            b"\x00\x7e"))
        with pytest.raises(ModelLoadError, match="layers.1.mlp.up_proj.weight"):
            model, _ = checkpoint.load(str(bad), streamed=True)
            model.unchecked()  # streamed: the blocks' values are checked before they run
