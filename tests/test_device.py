"""--device: cuda is a clear error without a GPU, auto falls back to the CPU with the same bytes,
and on a machine with a GPU the numbers equal the CPU's to 1e-4."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from attn_cli.cli import app

runner = CliRunner()
ARGS = ["inspect", "The cat sat on the mat", "--json"]


def test_auto_gives_the_cpu_bytes_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: test_cuda_matches_cpu covers it")
    cpu = runner.invoke(app, ARGS + ["--device", "cpu"])
    auto = runner.invoke(app, ARGS + ["--device", "auto"])
    assert cpu.exit_code == 0 and auto.exit_code == 0, auto.output
    assert auto.stdout == cpu.stdout


def test_cuda_without_a_gpu_is_a_one_line_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = runner.invoke(app, ARGS + ["--device", "cuda"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("error: --device cuda") and result.stderr.count("\n") == 1


def test_unknown_device_is_refused():
    result = runner.invoke(app, ARGS + ["--device", "tpu"])
    assert result.exit_code == 2 and "cpu, cuda or auto" in result.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    cpu = json.loads(runner.invoke(app, ARGS + ["--device", "cpu"]).stdout)
    gpu = json.loads(runner.invoke(app, ARGS + ["--device", "cuda"]).stdout)
    for a, b in zip(cpu["attention"], gpu["attention"]):
        np.testing.assert_allclose(a["weights"], b["weights"], atol=1e-4)
    np.testing.assert_allclose(cpu["embeddings"]["vectors"], gpu["embeddings"]["vectors"],
                               atol=1e-4)
