"""Byte-for-byte guard for code moves: run a broad set of attn commands, hash what they print.

    python tests/tools/golden.py --record   # on the tree before a move: writes golden.json
    python tests/tools/golden.py            # after it: exit 1 and list every command that differs

Each case runs `python -m attn_cli ARGS` in a subprocess (COLUMNS=100, no NO_COLOR, an empty
offline Hugging Face home, a fixed working folder) and records sha256 of stdout, stderr, the exit
code and every file the command wrote (--svg, --html, plot pictures, train folders). The cases:
every README example that runs offline (hub names and ~/models paths give their error line),
each command's --help, and each command in the terminal (--no-color), with colour (--svg/--html)
and as JSON, on the seeded model and on tiny checkpoints built once with transformers (gpt2,
llama, bert, bart). Commands whose output carries a wall-clock time are marked and compared
without it. Not part of pytest: it takes minutes (hundreds of subprocesses).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = Path(os.environ.get("ATTN_GOLDEN_TREE") or HERE.parents[1]).resolve()
GOLDEN = HERE / "golden.json"
ROOT = Path(os.environ.get("ATTN_GOLDEN_ROOT", "/tmp/attn-golden"))
CKPT = Path("/tmp/attn-golden/ckpt")  # shared by every ROOT: built once
FIXTURES = REPO.parent / "shared" / "fixtures" / "gpt2-tokenizer"
S = "The cat sat on the mat"
LONG = "The animal didn't cross the street because it was tired."


def build_checkpoints() -> None:
    """Tiny random checkpoints, built once (same seeds, same bytes) and kept in CKPT."""
    if (CKPT / "done").exists():
        return
    sys.path.insert(0, str(REPO / "tests"))
    import torch  # noqa: F401
    import transformers

    from test_cross import BART_CASES
    from test_families import CASES as BASES
    from test_families import randomize
    from test_generate import CASES as LMS

    shutil.rmtree(CKPT, ignore_errors=True)
    specs = {"gpt2": LMS["gpt2"], "llama": LMS["llama-gqa"], "bert": BASES["bert"],
             "bart": ("BartConfig", *BART_CASES["bart-lm-head"])}
    for seed, (name, (cfg, cls, args)) in enumerate(specs.items()):
        config = getattr(transformers, cfg)(vocab_size=50257, attn_implementation="eager", **args)
        hf = getattr(transformers, cls)(config)
        randomize(hf, 300 + seed)
        hf.save_pretrained(CKPT / name)
        for file in ("vocab.json", "merges.txt"):
            shutil.copy(FIXTURES / file, CKPT / name / file)
    (CKPT / "done").write_text("")


def _name(args) -> str:
    """A case's name: its arguments, with this machine's folders as CKPT, ROOT and REPO."""
    return " ".join(args).replace(str(CKPT), "CKPT").replace(str(ROOT), "ROOT") \
        .replace(str(REPO), "REPO")


def cases() -> dict[str, list[str]]:
    g, ll, be, ba = (str(CKPT / n) for n in ("gpt2", "llama", "bert", "bart"))
    out: dict[str, list[str]] = {}

    def add(*args: str) -> None:
        out[_name(args)] = list(args)

    # README examples (pipes to jq dropped: the JSON itself is hashed)
    add("inspect", S)
    add("heads", "--layer", "0")
    add("steps", "She went to the market", "--layer", "0", "--head", "1", "--query", "1")
    add("tokens", "This given sentence is an example text.", "--json")
    add("inspect", LONG, "--json")
    add("inspect", S, "--layer", "0", "--head", "1")
    add("inspect", S, "--json")
    add("heads", "--layer", "1", "--json")
    add("steps", "She went", "--json")
    add("plot", S, "-o", "heads.png")
    add("plot", "--file", str(REPO / "sample_texts" / "paragraph.txt"), "--layer", "1",
        "-o", "layer1.svg")
    add("plot", LONG, "--model", "~/models/gpt2", "--layer", "5", "-o", "gpt2.pdf")
    add("compare", S, "--a", "--seed 0", "--b", "--seed 1")
    add("compare", "The animal didn't cross the street", "--a", "--causal", "--b",
        "--bidirectional")
    add("compare", S, "--a", "--model ~/models/gpt2", "--b",
        "--encoding gpt2 --layers 12 --heads 12 --d-model 768")
    add("compare", "--a", "--seed 0", "--b", "--seed 1", "--json")
    add("steps", S, "--model", ll, "--layer", "1", "--head", "3")
    add("inspect", LONG, "--model", "gpt2", "--layer", "5")
    add("heads", "--model", "EleutherAI/pythia-70m", "--repeat", "30", "--pattern", "induction")
    add("model", "--model", "~/models/SmolLM-135M")
    add("inspect", S, "--model", "EleutherAI/pythia-70m")
    add("heads", "--layer", "3", "--model", "EleutherAI/pythia-70m@step3000")
    add("cross", "Le chat est assis", "The cat sat", "--kind", "cross", "--layer", "0",
        "--head", "1")
    add("cross", "Le chat est assis", "The cat sat", "--kind", "cross", "--layer", "0",
        "--head", "1", "--query", "3")
    add("cross", "Le chat est assis", "The cat sat", "--json")
    add("cross", "Le chat est assis", "The cat sat", "--steps", "--layer", "1", "--head", "0",
        "--json")
    add("generate", S, "-n", "3", "--layer", "1", "--candidates", "3")
    add("generate", S, "-n", "3", "--model", g, "--head", "0", "--layer", "1",
        "--candidates", "3")
    add("inspect", S, "--encoding", "gpt2", "--predict", "3", "--layer", "0", "--head", "0")
    # every command's help
    for cmd in ("", "inspect", "heads", "steps", "rollout", "compare", "plot", "tokens",
                "encodings", "model", "generate", "pull", "cross", "train", "history"):
        add(*([cmd] if cmd else []), "--help")
    add("--version")
    # each command: terminal (no colour), colour via --svg/--html, JSON; seeded and checkpoints
    models = {"seeded": [], "gpt2": ["--model", g], "llama": ["--model", ll],
              "bert": ["--model", be]}
    for tag, m in models.items():
        for cmd, extra in (("inspect", []), ("inspect", ["--full"]), ("inspect", ["--dims", "all"]),
                           ("inspect", ["--layer", "1", "--head", "0", "--top-k", "2",
                                        "--precision", "4"]),
                           ("heads", []), ("heads", ["--layer", "1", "--pattern", "self"]),
                           ("heads", ["--repeat", "5", "--pattern", "induction"]),
                           ("steps", []), ("steps", ["--layer", "1", "--head", "1",
                                                     "--query", "2"]),
                           ("rollout", []), ("model", [])):
            args = [cmd] + ([S] if cmd != "model" else []) + m + extra
            add(*args, "--no-color")
            add(*args, "--json")
            if cmd != "model":
                add(*args, "--svg", f"{tag}-{cmd}.svg", "--html", f"{tag}-{cmd}.html")
        add("inspect", S, *m, "--ndjson")
        add("generate", S, "-n", "4", *m, "--no-color")
        add("generate", S, "-n", "4", *m, "--json")
        add("generate", S, "-n", "4", *m, "--temperature", "0.8", "--sample-seed", "3", "--no-color")
        add("tokens", LONG, *m, "--no-color")
        add("tokens", LONG, *m, "--json")
    add("inspect", S, "--predict", "2", "--no-color")
    add("inspect", S, "--predict", "2", "--json")
    add("generate", S, "-n", "3", "--ndjson")
    add("generate", S, "-n", "3", "--svg", "gen.svg", "--html", "gen.html")
    add("compare", S, "--a", "--seed 0", "--b", f"--model {g}", "--no-color")
    add("compare", S, "--a", "--seed 0", "--b", "--seed 2", "--svg", "cmp.svg")
    add("compare", S, "--a", "--seed 0", "--b", "--seed 1", "--layer", "1", "--no-color")
    add("rollout", S, "--no-color", "--full")
    add("inspect", S, "--reduce", "mean", "--no-color")
    add("inspect", S, "--reduce", "max", "--reduce-layers", "--json")
    add("inspect", S, "--save", "caps.npz")
    add("rollout", S, "--save", "roll.safetensors")
    add("inspect", S, "--encoding", "gpt2", "--model", g, "--no-color")
    for cmd in ("tokens", "encodings"):
        add(cmd, *([LONG] if cmd == "tokens" else []), "--no-color")
        add(cmd, *([LONG] if cmd == "tokens" else []), "--json")
        add(cmd, *([LONG] if cmd == "tokens" else []), "--svg", f"{cmd}.svg")
    add("tokens", "hi \u202e\U0001f600 \t\n", "--encoding", "gpt2", "--no-color")
    add("cross", "Le chat est assis", "The cat sat", "--no-color")
    add("cross", "Le chat est assis", "The cat sat", "--model", ba, "--no-color")
    add("cross", "Le chat est assis", "The cat sat", "--model", ba, "--json")
    add("cross", "Le chat est assis", "The cat sat", "--model", ba, "--kind", "decoder",
        "--svg", "cross.svg", "--html", "cross.html")
    add("cross", "Le chat est assis", "The cat sat", "--steps", "--no-color")
    add("model", "--model", ba, "--no-color")
    add("model", "--model", ba, "--json")
    add("plot", S, "--model", g, "-o", "g.svg")
    add("train", "--out", "trained", "--steps", "20", "--batch", "4", "--snapshots", "5",
        "--no-color")
    add("train", "--out", "trained-json", "--steps", "20", "--batch", "4", "--json")
    add("train", S + " " + S, "--out", "text", "--steps", "10", "--batch", "2", "--no-color")
    # errors (one line, exit 2)
    for args in (["inspect", S, "--layer", "9"], ["heads", "--layer", "7", "--model", g],
                 ["steps", S, "--query", "99"], ["tokens", "x", "--encoding", "nope"],
                 ["inspect", S, "--json", "--ndjson"], ["inspect", "--file", "missing.txt"],
                 ["inspect", S, "--model", str(ROOT / "nowhere")], ["compare", S, "--a", "--x 1"],
                 ["pull", "EleutherAI/pythia-70m"], ["history", "--model", g],
                 ["cross", "a", "b", "--model", g], ["generate", S, "-n", "0"],
                 ["inspect", S, "--device", "tpu"], ["inspect", S, "--dtype", "float8"],
                 ["train", "--out", "trained", "--steps", "2"], ["bogus"],
                 ["inspect", S, "--svg", "/nonexistent/dir/x.svg"]):
        add(*args)
    return out


def follow_ups() -> dict[str, list[str]]:
    """Cases that read what an earlier case wrote (the trained folders)."""
    out = {}
    for args in (["history", "--model", "trained", "--no-color"],
                 ["history", "--model", "trained", "--json"],
                 ["history", "--model", "trained", "--maps", "2", "--no-color"],
                 ["heads", "--model", "trained", "--repeat", "5", "--no-color"],
                 ["generate", "--model", "text", "The cat", "-n", "4", "--no-color"]):
        out[_name(args)] = args
    return out


TIME = re.compile(rb"\d+(\.\d+)?\s?(s|ms|seconds?)\b|\"(elapsed|seconds|time)[a-z_]*\": [0-9.e-]+")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR",
                                                             "ATTN_DEBUG", "COLUMNS", "LINES")}
    env.update(COLUMNS="100", LINES="50", PYTHONPATH=str(REPO), HF_HOME=str(ROOT / "hf"),
               HF_HUB_OFFLINE="1", HOME=str(ROOT / "home"), PYTHONHASHSEED="0")
    return env


def _start(work: Path, args: list[str]) -> int:
    """Fork a child that runs `attn ARGS` in `work` as `python -m attn_cli` would: the parent
    has imported torch & co. once (not attn_cli), so each case costs only its own work."""
    work.mkdir(parents=True, exist_ok=True)
    args = [a.replace("~/", str(ROOT / "home") + "/") for a in args]
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        os.chdir(work)
        os.environ.clear()
        os.environ.update(_env())
        for fd, name, mode in ((0, os.devnull, os.O_RDONLY), (1, ".stdout", os.O_WRONLY),
                               (2, ".stderr", os.O_WRONLY)):
            target = os.open(name, mode | (os.O_CREAT | os.O_TRUNC if fd else 0), 0o644)
            os.dup2(target, fd)
            os.close(target)
        sys.argv = ["attn", *args]
        import runpy

        try:
            runpy.run_module("attn_cli", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
    finally:
        os._exit(code)


def _paths(data: bytes) -> bytes:
    return data.replace(str(CKPT).encode(), b"ROOT/ckpt").replace(str(ROOT).encode(), b"ROOT")


def _result(work: Path, rc: int) -> dict:
    out, err = (_paths((work / name).read_bytes()) for name in (".stdout", ".stderr"))
    files = {}
    for path in sorted(work.rglob("*")):
        if path.is_file() and path.name not in (".stdout", ".stderr") \
                and path.parent.name != "__pycache__":
            data = path.read_bytes()
            if path.suffix in (".pdf", ".png"):
                data = str(len(data)).encode()  # matplotlib stamps dates into these
            files[str(path.relative_to(work))] = sha(TIME.sub(b"T", data))
    timed = bool(TIME.search(out) or TIME.search(err))
    return {"rc": rc, "stdout": sha(TIME.sub(b"T", out)), "stderr": sha(TIME.sub(b"T", err)),
            "files": files, "timed": timed, "stdout_bytes": len(out)}


def _run_many(jobs: list[tuple[str, Path, list[str]]], parallel: int = 2) -> dict:
    results, running, queue = {}, {}, list(jobs)
    while queue or running:
        while queue and len(running) < parallel:
            name, work, args = queue.pop(0)
            running[_start(work, args)] = (name, work)
        pid, status = os.wait()
        name, work = running.pop(pid)
        results[name] = _result(work, os.waitstatus_to_exitcode(status))
    return results


def run_all() -> dict:
    if not (CKPT / "done").exists():  # built in a child: this process must not import attn_cli
        subprocess.run([sys.executable, __file__, "--build"], check=True, env=_env())
    for heavy in ("torch", "numpy", "tiktoken", "rich", "typer", "safetensors", "orjson",
                  "regex", "matplotlib", "matplotlib.figure", "tokenizers"):
        __import__(heavy)
    shutil.rmtree(ROOT / "work", ignore_errors=True)
    jobs = [(name, ROOT / "work" / sha(name.encode()), args) for name, args in cases().items()]
    results = _run_many(jobs)
    # follow-ups read the folders the train cases wrote
    follow = ROOT / "work" / "follow"
    follow.mkdir(parents=True)
    for name in ("trained", "text"):
        src = ROOT / "work" / sha(_name(cases_named("train", name)).encode()) / name
        shutil.copytree(src, follow / name)
    for name, args in follow_ups().items():
        results.update(_run_many([(name, follow, args)], parallel=1))
    return results


def cases_named(cmd: str, out: str) -> list[str]:
    for name, args in cases().items():
        if args[0] == cmd and "--out" in args and args[args.index("--out") + 1] == out:
            return args
    raise KeyError(out)


def main() -> int:
    if os.environ.get("PYTHONHASHSEED") != "0":  # set-order output: the same in every run
        os.execve(sys.executable, [sys.executable, *sys.argv], _env())
    if "--build" in sys.argv:
        build_checkpoints()
        return 0
    sys.path.insert(0, str(REPO))
    import importlib.util

    origin = importlib.util.find_spec("attn_cli").origin
    assert origin.startswith(str(REPO)), f"attn_cli comes from {origin}, not {REPO}"
    results = run_all()
    if "--record" in sys.argv:
        GOLDEN.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
        print(f"recorded {len(results)} cases in {GOLDEN}")
        return 0
    golden = json.loads(GOLDEN.read_text())
    bad = [n for n in sorted(set(golden) | set(results)) if golden.get(n) != results.get(n)]
    for n in bad:
        print(f"DIFFERS: {n}\n  before {golden.get(n)}\n  after  {results.get(n)}")
    print(f"{len(results)} cases, {len(bad)} differ")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
