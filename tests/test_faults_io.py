"""SPEC §4, faults and hostile input (issue 10): writes that fail, text that must not reach the
terminal raw, a hostile environment, empty and endless input, and what a new user sees at 80
columns. Every case runs `attn` as a user would, in a subprocess, and checks the exit status,
the one line on stderr and what stdout holds."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 120
FIXTURES = ROOT.parent / "shared" / "fixtures" / "gpt2-tokenizer"
EXAMPLE = 'e.g. attn inspect "The cat sat on the mat"'
DEFAULT_NOTE = ('note: no text given; using the default sentence "The cat sat on the mat '
                'because it was tired."')


def _env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("ATTN_DEBUG", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE",
                        "NO_COLOR", "COLUMNS", "LINES", "PYTHONIOENCODING")}
    env.update(COLUMNS="120", NO_COLOR="1", PYTHONIOENCODING="utf-8",
               PYTHONDONTWRITEBYTECODE="1")
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def attn(*args, input: bytes | None = None, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
         env: dict | None = None, preexec=None, cwd=ROOT) -> subprocess.CompletedProcess:
    """`attn ARGS` in a subprocess; by default with no standard input (/dev/null)."""
    if input is not None:
        stdin = None
    return subprocess.run([sys.executable, "-m", "attn_cli", *map(os.fsencode, args)],
                          input=input, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE,
                          timeout=TIMEOUT, cwd=cwd, env=env or _env(), preexec_fn=preexec)


def err_line(proc) -> str:
    """The one line on stderr (and nothing raw or traceback-like in it)."""
    err = proc.stderr.decode("utf-8")
    assert err.endswith("\n") and err.count("\n") == 1, f"not one line on stderr:\n{err}"
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e]", err), err
    return err[:-1]


def failed(proc, code: int, line: str | None = None, *needles: str) -> str:
    """Exit `code`, nothing on stdout, one line on stderr: `line` exactly, or with `needles`."""
    got = err_line(proc)
    assert proc.returncode == code, (proc.returncode, got)
    if proc.stdout is not None:
        assert proc.stdout == b"", proc.stdout
    if line is not None:
        assert got == line
    for needle in needles:
        assert needle in got, (needle, got)
    return got


def close_stdout() -> None:  # preexec_fn: the child starts with file descriptor 1 closed
    os.close(1)


def close_stdin() -> None:
    os.close(0)


# ---------------------------------------------------------------------------------------------
# 4. writes that fail are reported, never "a bug"

def test_saved_file_paths_are_checked_before_the_model_runs(tmp_path):
    missing = tmp_path / "missing" / "a.svg"
    # --layers 0 would be refused when the model is built: the path is refused first
    failed(attn("inspect", "hi", "--layers", "0", "--svg", missing), 2,
           f"error: cannot write {missing}: No such file or directory (the folder "
           f"{missing.parent} does not exist)")
    failed(attn("heads", "hi", "--html", tmp_path), 2,
           f"error: cannot write {tmp_path}: Is a directory (give a file name inside the folder)")
    afile = tmp_path / "afile"
    afile.write_text("x")
    failed(attn("tokens", "hi", "--svg", afile / "a.svg"), 2,
           f"error: cannot write {afile / 'a.svg'}: Not a directory ({afile} is not a folder)")
    assert afile.read_text() == "x"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="permissions do not bind root")
def test_saved_file_in_a_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        failed(attn("tokens", "hi", "--svg", folder / "a.svg"), 2,
               f"error: cannot write {folder / 'a.svg'}: Permission denied (the folder "
               f"{folder} is not writable)")
    finally:
        folder.chmod(0o700)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_saved_file_on_a_full_disk():
    proc = attn("tokens", "hi", "--svg", "/dev/full")
    assert proc.returncode == 1
    assert err_line(proc) == "error: cannot write /dev/full: No space left on device"
    assert b"hi" in proc.stdout  # the result was printed before the picture failed


def test_a_failed_save_leaves_no_half_file(tmp_path):
    """A write cut short (here by a 2 kB file size limit, EFBIG) keeps the old file whole and
    leaves no temporary file behind."""
    resource = pytest.importorskip("resource")
    old = tmp_path / "out.svg"
    old.write_text("the old picture")

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))

    proc = attn("tokens", "The cat sat on the mat", "--svg", old, preexec=small_files)
    assert proc.returncode == 1
    assert err_line(proc) == f"error: cannot write {old}: File too large"
    assert old.read_text() == "the old picture"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.svg"]
    # and a save that works replaces the file whole, with the usual permissions
    ok = attn("tokens", "hi", "--svg", old, "--html", tmp_path / "new.html")
    assert ok.returncode == 0, ok.stderr
    assert old.read_text().lstrip().startswith("<svg")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "new.html").stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("args", [
    ["tokens", "hi"], ["tokens", "hi", "--json"], ["tokens", "hi", "--ndjson"],
    ["--help"], ["--version"], ["tokens", "--help"],
])
def test_stdout_on_a_full_disk(args):
    with open("/dev/full", "wb") as full:
        proc = attn(*args, stdout=full)
    assert proc.returncode == 1
    assert err_line(proc) == "error: cannot write standard output: No space left on device"


@pytest.mark.parametrize("args", [["tokens", "hi"], ["tokens", "hi", "--json"], ["--version"],
                                  ["--help"]])
def test_closed_stdout(args):
    """`attn … >&-`: a descriptor that is not open is a failed write (exit 1), not a bug."""
    proc = attn(*args, stdout=None, preexec=close_stdout)
    assert proc.returncode == 1
    assert err_line(proc) == "error: cannot write standard output: Bad file descriptor"


@pytest.mark.parametrize("args", [["--help"], ["tokens", "-"]])
def test_closed_pipe_still_ends_quietly(args):
    """`attn --help | head -c 10`: the reader went away; that is not an error."""
    proc = subprocess.Popen([sys.executable, "-m", "attn_cli", *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                            env=_env())
    try:
        if args[-1] == "-":
            proc.stdin.write(("The cat sat on the mat. " * 500).encode())  # a 110 kB table
        proc.stdin.close()
        head = proc.stdout.read(10)
        proc.stdout.close()
        err = proc.stderr.read()
        proc.wait(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert head
    assert err == b"", err.decode()
    assert proc.returncode == 0


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_plot_to_a_full_disk(tmp_path):
    pytest.importorskip("matplotlib")
    link = tmp_path / "full.png"
    link.symlink_to("/dev/full")  # a device is written as it is, never replaced by a file
    proc = attn("plot", "hi", "--layers", "1", "-o", link)
    failed(proc, 1, f"error: cannot write {link}: No space left on device")
    assert link.is_symlink() and Path("/dev/full").is_char_device()


# ---------------------------------------------------------------------------------------------
# 5. nothing raw reaches the terminal

HOSTILE = "a\u202eb\u2028c\x1b[31md\x07e\u200bf"


def test_option_values_and_paths_are_escaped_in_the_error_line(tmp_path):
    failed(attn("inspect", "hi", "--model", "evil\x1b[2J\x07"), 2, None,
           "evil<1B>[2J<07>")
    name = "a\x1b[31mb\nc"
    failed(attn("tokens", "--file", name), 2,
           "error: cannot read --file a<1B>[31mb<0A>c: No such file or directory")
    missing = tmp_path / "new\nfolder\u202e" / "a.svg"
    failed(attn("tokens", "hi", "--svg", missing), 2, None,
           f"{tmp_path}/new<0A>folder<U+202E>/a.svg: No such file or directory")
    # a path that is not UTF-8 shows its bytes
    failed(attn("tokens", "--file", b"caf\xe9"), 2,
           "error: cannot read --file caf<E9>: No such file or directory")
    failed(attn("tokens", "hi", "--encoding", "x\x1by"), 2, None, r"'x\x1by'")


def test_token_text_is_escaped_in_tables_and_exact_in_json():
    proc = attn("inspect", HOSTILE, "--layer", "0", "--head", "0", "--dims", "2")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode()
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u200b\u202e]", out), out
    for escaped in ("<U+202E>", "<U+2028>", "<1B>", "<07>", "<U+200B>"):
        assert escaped in out, escaped
    assert proc.stderr == b""
    tokens = attn("tokens", HOSTILE)
    assert tokens.returncode == 0 and "<U+202E>" in tokens.stdout.decode()
    assert "\u202e" not in tokens.stdout.decode()
    doc = json.loads(attn("tokens", HOSTILE, "--json").stdout)
    assert doc["text"] == HOSTILE
    assert "".join(t["text"] for t in doc["tokens"]) == HOSTILE


def _tiny_gpt2(folder: Path) -> Path:
    """A 1-layer random GPT-2 checkpoint (config, safetensors, the GPT-2 tokenizer files)."""
    import shutil

    import numpy as np
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    d = 8

    def rand(*shape):
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    tensors = {"wte.weight": rand(50257, d), "wpe.weight": rand(16, d),
               "ln_f.weight": 1 + rand(d), "ln_f.bias": rand(d)}
    for name, shape in (("ln_1.weight", (d,)), ("ln_1.bias", (d,)),
                        ("attn.c_attn.weight", (d, 3 * d)), ("attn.c_attn.bias", (3 * d,)),
                        ("attn.c_proj.weight", (d, d)), ("attn.c_proj.bias", (d,)),
                        ("ln_2.weight", (d,)), ("ln_2.bias", (d,)),
                        ("mlp.c_fc.weight", (d, 4 * d)), ("mlp.c_fc.bias", (4 * d,)),
                        ("mlp.c_proj.weight", (4 * d, d)), ("mlp.c_proj.bias", (d,))):
        tensors["h.0." + name] = rand(*shape)
    folder.mkdir(parents=True)
    config = {"model_type": "gpt2", "n_layer": 1, "n_head": 2, "n_embd": d, "n_positions": 16,
              "vocab_size": 50257, "activation_function": "gelu_new",
              "layer_norm_epsilon": 1e-5}
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    for name in ("vocab.json", "merges.txt"):
        shutil.copyfile(FIXTURES / name, folder / name)
    return folder


@pytest.mark.skipif(not FIXTURES.is_dir(), reason="needs the GPT-2 tokenizer fixtures")
def test_a_model_folder_name_is_escaped_in_the_header(tmp_path):
    folder = _tiny_gpt2(tmp_path / "gpt\x1b[31m2\u202e")
    proc = attn("inspect", "The cat", "--model", folder, "--no-color")
    assert proc.returncode == 0, proc.stderr
    header = proc.stdout.decode().splitlines()[0]
    assert f"attn inspect · {tmp_path}/gpt<1B>[31m2<U+202E> (gpt2): 1 layer × 2" in header
    assert "\x1b" not in proc.stdout.decode() and "\u202e" not in proc.stdout.decode()
    doc = json.loads(attn("inspect", "The cat", "--model", folder, "--json").stdout)
    assert doc["model"]["source"] == str(folder)  # JSON keeps the exact text


# ---------------------------------------------------------------------------------------------
# 6. environment and input

@pytest.mark.parametrize("columns", ["0", "-5", "wide", ""])
def test_columns_that_is_not_a_width_is_ignored(columns):
    proc = attn("tokens", "hi there", env=_env(COLUMNS=columns))
    assert proc.returncode == 0 and proc.stderr == b""
    assert re.search(r"^\s+1\s+1354\s+␣there\s+6$", proc.stdout.decode(), re.M), proc.stdout
    helped = attn("inspect", "--help", env=_env(COLUMNS=columns))
    assert helped.returncode == 0 and "Usage: attn inspect" in helped.stdout.decode()


@pytest.mark.parametrize("args,shown", [
    (["inspect", "--layer", "0", "--head", "1"], ["1 _cat", "0.61", " x ", "|v|"]),
    (["steps", "She went", "--query", "1"], ["-inf", "sqrt(d_k)", "Attention to 'She'", "#"]),
    (["tokens", "café 猫\n"], ["<U+00E9>", "\\n", "<E7><8C>"]),
    (["--help"], ["Usage: attn", "Look inside attention"]),
])
def test_an_ascii_only_stdout_gets_ascii_stand_ins(args, shown):
    proc = attn(*args, env=_env(PYTHONIOENCODING="ascii", COLUMNS="80"))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode("ascii")  # pure ASCII, or this fails
    proc.stderr.decode("ascii")
    for text in shown:
        assert text in out, (text, out)


@pytest.mark.parametrize("command", ["tokens", "inspect"])
def test_an_empty_encoding_name_is_an_error(command):
    failed(attn(command, "hi", "--encoding", ""), 2, None, "error: unknown encoding ''")


def test_empty_pipe_or_file_is_empty_input(tmp_path):
    failed(attn("inspect", input=b""), 2,
           f"error: standard input is empty: pipe some text in, or give it as an argument, "
           f"{EXAMPLE}")
    failed(attn("tokens", "-"), 2, None, "standard input is empty")  # `-` on /dev/null
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    failed(attn("tokens", "--file", empty), 2,
           f"error: --file {empty} is empty: give a file with some text, or the text itself, "
           f"{EXAMPLE}")
    failed(attn("tokens", input=b" \n "), 2, None, "empty or only whitespace")


@pytest.mark.parametrize("how", ["devnull", "closed"])
def test_no_stdin_uses_the_default_sentence(how):
    """A job started with no input (stdin /dev/null or closed), like a person at a terminal
    who typed no text, gets the sample sentence."""
    proc = attn("tokens", "--json", **({"preexec": close_stdin, "stdin": None}
                                       if how == "closed" else {}))
    assert proc.returncode == 0, proc.stderr
    assert err_line(proc) == DEFAULT_NOTE
    assert json.loads(proc.stdout)["text"] == "The cat sat on the mat because it was tired."


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_endless_input_is_capped():
    failed(attn("tokens", "--file", "/dev/zero"), 2,
           "error: --file /dev/zero holds more than 16 MiB of text, more than attn can show; "
           "give a shorter text (e.g. head -c 100000 FILE)")
    with open("/dev/zero", "rb") as zero:
        failed(attn("tokens", stdin=zero), 2, None,
               "error: standard input holds more than 16 MiB of text")


# ---------------------------------------------------------------------------------------------
# 7. what a new user sees

@pytest.mark.parametrize("no_color", [None, "1"])
def test_a_saved_picture_has_the_colours_when_stdout_is_a_pipe(tmp_path, no_color):
    svg, html = tmp_path / "a.svg", tmp_path / "a.html"
    proc = attn("inspect", "The cat sat", "--layer", "0", "--head", "0", "--svg", svg,
                "--html", html, env=_env(NO_COLOR=no_color))
    assert proc.returncode == 0 and proc.stderr == b""
    assert b"\x1b[" not in proc.stdout  # the terminal text stays plain in a pipe
    yellow = "#fde725"  # the heat colour of weight 1.00 (query 0 attends only to itself)
    assert yellow in svg.read_text(encoding="utf-8")
    assert yellow in html.read_text(encoding="utf-8")


def _lines(proc) -> list[str]:
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.decode().splitlines()


def test_the_default_sentence_at_80_columns():
    out = _lines(attn("inspect", "--layer", "0", "--head", "1", env=_env(COLUMNS="80")))
    assert max(map(len, out)) <= 80
    text = "\n".join(out)
    # numbers, not a compact heat map
    assert "compact heat map" not in text
    assert re.search(r"^1 ␣cat +0\.61 0\.39 +·", text, re.M), text
    # the token strip breaks between tokens, never between an index and its token
    strip = out[2:out.index("")]
    assert len(strip) > 1
    for line in strip:
        assert re.fullmatch(r"\d+ \S+(  \d+ \S+)*", line), line
    # embeddings: every column whole (no "-2.…")
    assert "…" not in text
    assert re.search(r"^token +‖v‖ +0 +1 +2 +3 +4 +5 +6 +7$", text, re.M), text


def test_narrower_matrices_drop_leading_zeros_before_the_numbers():
    text = "\n".join(_lines(attn("inspect", "--layer", "0", "--head", "1",
                                 env=_env(COLUMNS="60"))))
    assert re.search(r"^0 The +1 +·", text, re.M), text  # 1 for 1.00
    assert re.search(r"^1 ␣cat +\.61 \.39 +·", text, re.M), text
    assert "as many as fit in 60 columns; --json has every one" in text


def test_help_at_80_columns_is_grouped_and_readable():
    out = "\n".join(_lines(attn("inspect", "--help", env=_env(COLUMNS="80"))))
    for panel in ("Input", "Model", "View", "Output"):
        assert f"╭─ {panel} " in out, panel
    # descriptions get the room: one whole sentence on the option's line
    assert re.search(r"--layers +<int> +Transformer blocks \[default: 2\]\.", out), out
    assert re.search(r"--svg +<path> +Also save what is printed as SVG\.", out), out


def test_full_numbers_for_a_long_input():
    text = " ".join(f"w{i}" for i in range(30))
    out = _lines(attn("inspect", text, "--layer", "0", "--head", "0", "--full", "--dims", "2",
                      env=_env(COLUMNS="80")))
    T = int(re.search(r"· (\d+) tokens", " ".join(out[:2])).group(1))
    assert T * 7 > 80  # too wide for the terminal: numbers all the same
    header = next(n for n, line in enumerate(out) if line.startswith("Layer 0 · Head 0"))
    columns = out[header + 1].split()
    assert columns == [str(j) for j in range(T)]
    rows = out[header + 3:header + 3 + T]
    assert rows[-1].split()[-T:] and all(re.fullmatch(r"\d\.\d\d", c)
                                         for c in rows[-1].split()[-T:])
