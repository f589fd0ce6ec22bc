"""`attn plot`'s figure: each panel holds its own head's weights in the right grid cell, with
causal masking shown as masked, token labels, thinned labels for long inputs, subsets, and
files that are byte-identical run to run, with no pyplot and nothing printed."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import matplotlib
import numpy as np
import pytest

from attn_cli import capture, plot
from attn_cli import models as model
from attn_cli.capture import Capture, HeadCapture
from attn_cli.models.config import ModelConfig
from attn_cli.errors import ConfigError, WriteError
from attn_cli.tokenizers import Token, get_encoding, tokenize

ROOT = Path(__file__).resolve().parents[1]
SENTENCE = "The cat sat on the mat"
MAGIC = {"png": (b"\x89PNG",), "svg": (b"<?xml", b"<svg"), "pdf": (b"%PDF",)}


def make(text=SENTENCE, layers=2, heads=3, causal=True, keep_layers=None, keep_heads=None):
    cfg = ModelConfig(n_layers=layers, n_heads=heads, d_model=8 * heads, causal=causal, seed=0)
    toks = tokenize(text, get_encoding("o200k_base"), False)
    return capture.run(model.seeded(cfg), text, "o200k_base", toks,
                       capture.select(cfg, keep_layers, keep_heads))


def synthetic(texts, layers=1, heads=1):
    """A capture without a model: tokens with the given bytes, random causal weights."""
    T = len(texts)
    w = np.tril(np.random.default_rng(0).random((T, T), dtype=np.float32))
    w /= w.sum(axis=1, keepdims=True)
    cfg = ModelConfig(n_layers=layers, n_heads=heads, d_model=8 * heads)
    toks = [Token(i, i, t.encode()) for i, t in enumerate(texts)]
    return Capture("", "o200k_base", toks, cfg,
                   [HeadCapture(la, h, w) for la in range(layers) for h in range(heads)],
                   [], np.zeros((T, 8)))


def panels(fig):
    """(row, col) -> panel Axes (the colorbar has no subplotspec of the grid's)."""
    out = {}
    for ax in fig.axes:
        if ax.images and ax.get_title():
            spec = ax.get_subplotspec()
            out[spec.rowspan.start, spec.colspan.start] = ax
    return out


def labels(ticklabels):
    return [t.get_text() for t in ticklabels]


@pytest.fixture(scope="module")
def causal():
    return make()


@pytest.fixture(scope="module")
def small():
    """Files cost about a second a save at 2x3 panels: the file tests use 1x2."""
    return make("The cat sat", layers=1, heads=2)


# ---------------------------------------------------------------------------------------------
# What each panel shows

def test_each_panel_holds_its_own_heads_weights_in_its_grid_cell(causal):
    weights = [h.weights for h in causal.heads]
    assert all(not np.array_equal(a, b) for i, a in enumerate(weights) for b in weights[i + 1:])
    grid = panels(plot.figure(causal))
    assert sorted(grid) == [(r, c) for r in range(2) for c in range(3)]
    T = len(causal.tokens)
    upper = np.triu(np.ones((T, T), dtype=bool), k=1)
    for (row, col), ax in grid.items():
        assert ax.get_title() == f"L{row} H{col}"
        image = ax.images[0]
        shown = image.get_array()
        np.testing.assert_array_equal(np.ma.getmaskarray(shown), upper)
        np.testing.assert_array_equal(np.ma.getdata(shown)[~upper],
                                      causal.head(row, col).weights[~upper])
        assert image.get_clim() == (0.0, 1.0)
        assert image.get_interpolation() == "nearest"
        assert image.get_cmap().name.startswith("viridis")


def test_masked_keys_look_different_from_zero_weight(causal):
    image = panels(plot.figure(causal))[0, 0].images[0]
    cmap = image.get_cmap()
    assert cmap.get_bad()[:3] != pytest.approx(cmap(0.0)[:3], abs=0.1)
    assert min(cmap.get_bad()[:3]) > 0.7  # light grey
    rgba = image.to_rgba(image.get_array())
    np.testing.assert_array_equal(rgba[0, 1], cmap.get_bad())  # query 0 cannot see key 1


def test_a_bidirectional_model_has_no_masked_cells():
    cap = make(causal=False)
    for ax in panels(plot.figure(cap)).values():
        shown = ax.images[0].get_array()
        assert not np.ma.getmaskarray(shown).any()
        h = cap.head(*map(int, ax.get_title().replace("L", "").replace("H", "").split()))
        np.testing.assert_array_equal(np.ma.getdata(shown), h.weights)


def test_a_subset_gives_exactly_its_panels():
    cap = make(layers=2, heads=3, keep_layers=[1], keep_heads=[0, 2])
    grid = panels(plot.figure(cap))
    assert {pos: ax.get_title() for pos, ax in grid.items()} == {(0, 0): "L1 H0", (0, 1): "L1 H2"}
    np.testing.assert_array_equal(np.ma.getdata(grid[0, 1].images[0].get_array())[-1],
                                  cap.head(1, 2).weights[-1])
    assert "2 of 6 heads" in plot.figure(cap).get_suptitle()


# ---------------------------------------------------------------------------------------------
# Labels, titles, size

def test_tick_labels_are_the_token_displays_and_axis_labels_are_outside(causal):
    shown = [t.display for t in causal.tokens]
    assert "␣cat" in shown
    grid = panels(plot.figure(causal))
    for (row, col), ax in grid.items():
        assert labels(ax.get_xticklabels()) == shown
        assert labels(ax.get_yticklabels()) == shown
        assert all(t.get_rotation() == 90 for t in ax.get_xticklabels())
        assert ax.get_xlabel() == ("key" if row == 1 else "")
        assert ax.get_ylabel() == ("query" if col == 0 else "")


def test_long_inputs_get_thinned_labels():
    cap = make("word" + " word" * 99, layers=1, heads=1)
    assert len(cap.tokens) == 100
    ax = panels(plot.figure(cap))[0, 0]
    ticks = [int(t) for t in ax.get_xticks()]
    assert 2 <= len(ticks) < 40 and ticks[0] == 0
    assert len(set(np.diff(ticks))) == 1  # evenly spaced
    assert labels(ax.get_xticklabels()) == [cap.tokens[i].display for i in ticks]
    assert [int(t) for t in ax.get_yticks()] == ticks


def test_long_tokens_are_shortened():
    cap = synthetic(["supercalifragilistic", "ok"])
    ax = panels(plot.figure(cap))[0, 0]
    assert labels(ax.get_yticklabels()) == ["supercalifr…", "ok"]


def test_the_title_describes_the_model_or_is_the_one_given(causal):
    title = plot.figure(causal).get_suptitle().replace("\n", " ")
    assert title == ("seeded model (seed 0): 2 layers × 3 heads, d_model 24, causal · "
                     "o200k_base · 6 tokens")
    assert plot.figure(causal, title="mine").get_suptitle() == "mine"


def test_the_figure_scales_with_the_grid_but_stays_capped():
    small = plot.figure(synthetic(["a"] * 6, 1, 2)).get_size_inches()
    wide = plot.figure(synthetic(["a"] * 6, 1, 6)).get_size_inches()
    assert wide[0] > small[0] and max(small) < 12
    huge = plot._layout(12, 12, 1024, 12, "t")
    assert max(huge.width, huge.height) <= plot.MAX_INCHES
    assert huge.panel > 1.0 and not huge.every_panel
    big = plot.figure(synthetic(["a"] * 64, 5, 4))
    assert max(big.get_size_inches()) <= plot.MAX_INCHES
    inner = panels(big)[0, 2]  # a big grid labels its outer panels only
    assert labels(inner.get_xticklabels()) == [] and labels(panels(big)[4, 0].get_xticklabels())


# ---------------------------------------------------------------------------------------------
# Files

@pytest.mark.parametrize("fmt", ["png", "svg", "pdf"])
def test_save_writes_the_format_byte_identical_every_time(small, tmp_path, fmt):
    before = dict(matplotlib.rcParams)
    first, second = tmp_path / f"a.{fmt}", tmp_path / f"b.{fmt}"
    plot.save(small, first)
    plot.save(small, second)
    data = first.read_bytes()
    assert data.startswith(MAGIC[fmt])
    assert data == second.read_bytes()
    assert dict(matplotlib.rcParams) == before  # nothing leaked
    stamps = (b"CreationDate", b"<dc:date>", b"Software", matplotlib.__version__.encode())
    assert not any(stamp in data for stamp in stamps)


def test_the_suffix_is_case_blind(small, tmp_path):
    plot.save(small, tmp_path / "heads.PNG")
    assert (tmp_path / "heads.PNG").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("name", ["heads.jpgx", "heads"])
def test_an_unknown_or_missing_suffix_is_a_config_error(causal, tmp_path, name):
    with pytest.raises(ConfigError) as err:
        plot.save(causal, tmp_path / name)
    message = str(err.value)
    assert "\n" not in message and ".png, .svg, .pdf" in message
    assert (".jpgx" in message) if name.endswith("jpgx") else ("no suffix" in message)
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_target_is_a_write_error(causal, tmp_path):
    missing = tmp_path / "nope" / "heads.png"
    with pytest.raises(WriteError, match="nope") as info:
        plot.save(causal, missing)
    assert info.value.exit_code == 2  # the user can fix it
    assert not missing.parent.exists()
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(WriteError, match="folder"):
        plot.save(causal, tmp_path / "dir.png")


def test_no_heads_is_a_config_error():
    cap = synthetic(["a", "b"])
    cap.heads = []
    with pytest.raises(ConfigError):
        plot.figure(cap)


def test_cjk_emoji_and_dollars_save_silently(tmp_path, capsys, recwarn, caplog):
    caplog.set_level(logging.DEBUG, logger="matplotlib")
    cap = make("猫が座った 🐱 costs $5 and $x$", layers=1, heads=1)
    assert any(ord(c) > 0x2FFF for t in cap.tokens for c in t.display)
    plot.save(cap, tmp_path / "cjk.png")
    plot.save(cap, tmp_path / "cjk.svg")
    assert capsys.readouterr() == ("", "")
    assert [str(w.message) for w in recwarn] == []
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    labels_shown = labels(panels(plot.figure(cap))[0, 0].get_yticklabels())
    assert labels_shown == [t.display for t in cap.tokens]


# ---------------------------------------------------------------------------------------------
# In a fresh interpreter

def run_python(script: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_without_matplotlib_require_says_how_to_install_it():
    result = run_python("""
        import sys
        sys.modules["matplotlib"] = None
        from attn_cli import plot
        from attn_cli.errors import ConfigError, WriteError
        for call in (plot.require, lambda: plot.figure(None), lambda: plot.save(None, None)):
            try:
                call()
            except ConfigError as exc:
                print(exc)
    """)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3 and len(set(lines)) == 1
    assert "pip install 'attn-cli[plot]'" in lines[0]


def test_plotting_never_imports_pyplot(tmp_path):
    result = run_python(f"""
        import sys
        from pathlib import Path
        import numpy as np
        from attn_cli import plot
        from attn_cli.capture import Capture, HeadCapture
        from attn_cli.models.config import ModelConfig
        from attn_cli.tokenizers import Token
        toks = [Token(i, i, b"t") for i in range(3)]
        cap = Capture("", "o200k_base", toks, ModelConfig(),
                      [HeadCapture(0, 0, np.eye(3, dtype=np.float32))], [], np.zeros((3, 8)))
        plot.figure(cap)
        plot.save(cap, Path({str(tmp_path / "x.png")!r}))
        print("matplotlib.pyplot" in sys.modules)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
    assert result.stderr == ""


def test_long_inputs_are_filtered_not_decimated():
    cap = synthetic(["a"] * (plot.SHARP_UP_TO + 1))
    image = panels(plot.figure(cap))[0, 0].images[0]
    assert image.get_interpolation() == "antialiased"
    np.testing.assert_array_equal(np.ma.getdata(image.get_array())[-1], cap.heads[0].weights[-1])
