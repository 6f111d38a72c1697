"""All-zero, constant, NaN and Inf matrices fail cheaply with a reason, before any eigensolver runs.

A zero or constant matrix has at most one nonzero eigenvalue; the Gram route then distrusts its small
eigenvalues and falls back to a full float64 SVD, about a minute for 4096 x 4096 on a laptop, so a file
of zeros was a cheap denial of service.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from inspector.errors import LayerFailedError
from inspector.options import AnalysisOptions
from inspector.science.eigen import CpuBackend
from inspector.science.metrics import measure_layer
from tests.conftest import run_cli

SIZE = 4096


class _NoSolver(CpuBackend):
    """A backend that fails the test if the eigensolver is reached."""

    def eigenvalues(self, matrix: np.ndarray) -> np.ndarray:  # type: ignore[override]
        raise AssertionError("the eigensolver ran on a degenerate matrix")

    def eigenvalues_batch(self, matrices: np.ndarray) -> np.ndarray:  # type: ignore[override]
        raise AssertionError("the eigensolver ran on a degenerate matrix")


def _matrix(kind: str) -> np.ndarray:
    if kind == "zeros":
        return np.zeros((SIZE, SIZE), dtype=np.float32)
    if kind == "negative zeros":
        return np.full((SIZE, SIZE), -0.0, dtype=np.float32)
    if kind == "constant":
        return np.full((SIZE, SIZE), 0.25, dtype=np.float32)
    W = np.zeros((SIZE, SIZE), dtype=np.float32)
    W[SIZE // 2, SIZE // 3] = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf}[kind]
    return W


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("zeros", "every weight is zero"),
        ("negative zeros", "every weight is zero"),
        ("constant", "every weight equals 0.25"),
        ("nan", "1 of 16777216 weights are NaN or infinite"),
        ("inf", "NaN or infinite"),
        ("-inf", "NaN or infinite"),
    ],
)
def test_degenerate_matrix_fails_before_the_eigensolver(kind: str, words: str) -> None:
    W = _matrix(kind)
    start = time.monotonic()
    with pytest.raises(LayerFailedError, match=words):
        measure_layer([W], N=SIZE, M=SIZE, scale=1.0, options=AnalysisOptions(), backend=_NoSolver())
    assert time.monotonic() - start < 2


def test_zero_conv_slices_fail_too() -> None:
    slices = [np.zeros((512, 256), dtype=np.float32) for _ in range(9)]
    with pytest.raises(LayerFailedError, match="every weight is zero"):
        measure_layer(slices, N=512, M=256, scale=1.0, options=AnalysisOptions(), backend=_NoSolver())


def test_one_nonzero_slice_is_measured() -> None:
    rng = np.random.default_rng(0)
    slices = [np.zeros((128, 64), dtype=np.float32), rng.standard_normal((128, 64)).astype(np.float32)]
    metrics = measure_layer(slices, N=128, M=64, scale=1.0, options=AnalysisOptions(), backend=CpuBackend())
    assert metrics.num_evals == 128


def test_cli_reports_a_large_zero_layer_as_failed_quickly(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    good = rng.standard_normal((256, 128)).astype(np.float32)
    zeros = np.zeros((SIZE, SIZE), dtype=np.float32)
    nans = np.full((1024, 1024), np.nan, dtype=np.float32)
    header: dict[str, object] = {}
    data = b""
    for name, array in (("zero.weight", zeros), ("nan.weight", nans), ("good.weight", good)):
        header[name] = {
            "dtype": "F32",
            "shape": list(array.shape),
            "data_offsets": [len(data), len(data) + array.nbytes],
        }
        data += array.tobytes()
    text = json.dumps(header).encode()
    path = tmp_path / "degenerate.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    start = time.monotonic()
    result = run_cli(path, "--format", "json")
    assert time.monotonic() - start < 30  # the zero layer alone took over a minute before
    assert result.exit_code == 0, result.stderr
    layers = {layer["name"]: layer for layer in json.loads(result.stdout)["reports"][0]["layers"]}
    assert layers["zero.weight"]["status"] == "failed" and "zero" in layers["zero.weight"]["reason"]
    assert layers["nan.weight"]["status"] == "failed" and "NaN" in layers["nan.weight"]["reason"]
    assert layers["good.weight"]["status"] == "analyzed"
