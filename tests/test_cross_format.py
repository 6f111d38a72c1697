"""One trained network in six files (safetensors, PyTorch, ONNX, .keras, .weights.h5, GGUF F32) must give
the same layers and the same numbers: the readers' layouts (Keras kernels are (kh, kw, in, out) and
(in, out), the others (out, in, ...)), orientation and conv slicing all have to agree.

fixtures/generate_crossformat.py writes the files from one torch model; the Keras twin's first dense
kernel has its rows permuted to Keras's flatten order, which changes no eigenvalue.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from formats import open_model
from tests.conftest import FIXTURES, run_cli

FILES = {
    "safetensors": "digits.safetensors",
    "pytorch": "digits.pt",
    "onnx": "digits.onnx",
    "keras": "digits.keras",
    "keras-weights": "digits.weights.h5",
    "gguf": "digits.gguf",
}
REFERENCE = "safetensors"
#: Agreement the product contract asks of the same eigenvalues reached through different files.
RELATIVE = 1e-9


def _base(name: str) -> str:
    """`fc1.weight` and Keras's `fc1/kernel` are the same layer."""
    return re.sub(r"(\.weight|/kernel)$", "", name)


def _analysed(path_name: str) -> dict[str, dict[str, Any]]:
    result = run_cli(FIXTURES / "crossformat" / path_name, "--format", "json")
    assert result.exit_code == 0, result.output
    (report,) = json.loads(result.stdout)["reports"]
    return {_base(layer["name"]): layer for layer in report["layers"] if layer["status"] == "analyzed"}


@pytest.fixture(scope="module")
def reports() -> dict[str, dict[str, dict[str, Any]]]:
    return {label: _analysed(name) for label, name in FILES.items()}


def test_every_format_analyses_the_same_layers(reports: dict[str, dict[str, dict[str, Any]]]) -> None:
    expected = reports[REFERENCE]
    assert set(expected) == {"conv2", "fc1", "fc2"}  # conv1 has 1 input channel: 9 eigenvalues, skipped
    for label, layers in reports.items():
        assert set(layers) == set(expected), label
        for name, layer in layers.items():
            reference = expected[name]
            assert (layer["N"], layer["M"], layer["num_evals"], layer["kind"]) == (
                reference["N"], reference["M"], reference["num_evals"], reference["kind"],
            ), (label, name)  # fmt: skip


@pytest.mark.parametrize("metric", ["alpha", "xmin", "D", "lambda_max", "log_norm", "stable_rank"])
def test_every_format_gives_the_same_numbers(
    reports: dict[str, dict[str, dict[str, Any]]], metric: str
) -> None:
    expected = reports[REFERENCE]
    for label, layers in reports.items():
        for name, layer in layers.items():
            value, reference = layer[metric], expected[name][metric]
            assert value is not None and reference is not None, (label, name, metric)
            assert math.isclose(value, reference, rel_tol=RELATIVE), (label, name, metric, value, reference)


def _reasons(path: Path) -> dict[str, str]:
    result = run_cli(str(path), "--format", "json")
    assert result.exit_code == 0, result.output
    (report,) = json.loads(result.stdout)["reports"]
    return {layer["name"]: layer["reason"] for layer in report["layers"] if layer["status"] == "skipped"}


# Files whose readers give skip reasons of their own: structural ones worded from the format's hints
# (ONNX, Keras), optimizer state (PyTorch), an FP8 weight without its scale (safetensors).
READER_REASONS = [
    FIXTURES / "crossformat" / "digits.onnx",
    FIXTURES / "crossformat" / "digits.keras",
    FIXTURES / "crossformat" / "digits.weights.h5",
    FIXTURES / "onnx" / "cnn.onnx",
    FIXTURES / "keras" / "cnn.keras",
    FIXTURES / "torch" / "lightning.ckpt",
    FIXTURES / "fp8_blocks.safetensors",
]


@pytest.mark.parametrize("path", READER_REASONS, ids=lambda path: path.name)
def test_a_readers_skip_reason_reaches_the_report_unchanged(path: Path) -> None:
    reasons = _reasons(path)
    with open_model(path) as reader:
        given = {ref.info.name: ref.info.skip_reason for ref in reader.tensors() if ref.info.skip_reason}
    assert given, path.name
    for name, reason in given.items():
        assert reasons[name] == reason, (path.name, name)


def test_a_bias_is_worded_the_same_in_every_format_that_says_it_is_one() -> None:
    worded: dict[str, set[str]] = {}
    for label in ("onnx", "keras", "keras-weights", "gguf"):
        for name, reason in _reasons(FIXTURES / "crossformat" / FILES[label]).items():
            if name.endswith(("bias", "/bias")):
                worded.setdefault(re.sub(r"[./]bias$", "", name), set()).add(reason)
    assert set(worded) == {"conv1", "conv2", "fc1", "fc2"}
    assert all(len(reasons) == 1 for reasons in worded.values()), worded
