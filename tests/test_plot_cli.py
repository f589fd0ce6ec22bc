"""`attn plot` end to end: the file it writes, its errors, and the missing-extra message. The
figure's contents (each panel is its head's weights) are tested in test_plot.py."""

from __future__ import annotations

import subprocess
import sys

import pytest

from test_cli import assert_user_error, error, ok

ARGS = ("The cat sat", "--layers", "1", "--heads", "2", "--d-model", "16")


@pytest.mark.parametrize("suffix,magic", [(".png", b"\x89PNG\r\n\x1a\n"), (".svg", b"<?xml"),
                                          (".pdf", b"%PDF-")])
def test_plot_writes_the_picture_and_nothing_on_stdout(tmp_path, suffix, magic):
    path = tmp_path / f"heads{suffix}"
    result = ok("plot", *ARGS, "-o", path)
    assert result.stdout == ""
    assert f"wrote {path} (2 heads, 3 tokens)" in result.stderr
    first = path.read_bytes()
    assert first.startswith(magic)
    ok("plot", *ARGS, "--output", path)
    assert path.read_bytes() == first  # the same options give the same bytes


def test_plot_layer_and_head_choose_the_panels(tmp_path):
    result = ok("plot", "The cat sat", "--layers", "2", "--heads", "3", "--d-model", "24",
                "--layer", "1", "--head", "2", "-o", tmp_path / "one.png")
    assert "(1 head, 3 tokens)" in result.stderr


def test_plot_dpi_changes_the_size(tmp_path):
    import struct

    sizes = []
    for dpi in ("50", "100"):
        path = tmp_path / f"{dpi}.png"
        ok("plot", *ARGS, "--dpi", dpi, "-o", path)
        width, height = struct.unpack(">II", path.read_bytes()[16:24])  # the IHDR chunk
        sizes.append((width, height))
    assert sizes[1][0] == pytest.approx(2 * sizes[0][0], abs=2)
    assert sizes[1][1] == pytest.approx(2 * sizes[0][1], abs=2)


@pytest.mark.parametrize("name,needles", [
    ("heads.jpg", ("unknown image format '.jpg'", ".png, .svg, .pdf")),
    ("heads", ("no suffix",)),
    ("missing/heads.png", ("does not exist",)),
])
def test_plot_bad_output_paths(tmp_path, name, needles):
    path = tmp_path / name
    assert_user_error(error("plot", *ARGS, "-o", path), *needles)
    assert not path.exists()


def test_plot_model_errors_are_one_line(tmp_path):
    assert_user_error(error("plot", *ARGS, "--layer", "3", "-o", tmp_path / "x.png"),
                      "--layer 3 is out of range")


def test_plot_without_matplotlib_says_how_to_get_it(tmp_path):
    code = ("import sys; sys.modules['matplotlib'] = None; sys.argv = ['attn', 'plot', 'hi', "
            f"'-o', {str(tmp_path / 'x.png')!r}]; from attn_cli.cli import main; main()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.strip() == ("error: attn plot needs matplotlib, an optional extra: "
                                   "pip install 'attn-cli[plot]'")
    assert not (tmp_path / "x.png").exists()
