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


# --- a quantised copy: alpha moves by no more than the quantisation error allows ----------------------

#: The digits model quantised by onnxruntime's quantize_static (QDQ, int8 per output channel;
#: fixtures/generate_onnx_graphs.py).
QUANTISED_COPY = "digits_qdq_int8.onnx"


def _slices(values: Any) -> list[Any]:
    """The matrices the analysis measures: the tensor itself, or a conv kernel's (out, in) slices."""
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 2:
        return [values]
    return [values[(slice(None), slice(None), *position)] for position in np.ndindex(*values.shape[2:])]


def _read_weights(path: Path) -> dict[str, Any]:
    with open_model(path) as reader:
        return {
            _base(ref.info.name.removesuffix("_quantized")): ref.read()
            for ref in reader.tensors()
            if ref.info.skip_reason is None
        }


def test_a_quantised_copy_moves_alpha_no_more_than_weyls_inequality_allows(
    reports: dict[str, dict[str, dict[str, Any]]],
) -> None:
    """The bound. Let W be the float weights, Q the dequantised int8 copy, eps = max over the measured
    matrices of ||Q_k - W_k||_2. Weyl's inequality gives |s_i(Q_k) - s_i(W_k)| <= eps for every singular
    value, and so for every order statistic of the pooled singular values (moving each element by at most
    eps moves the i-th largest by at most eps). The eigenvalues are lambda_i = c s_i^2 (c the conv scale,
    which cancels below), so with r_i = eps / s_i < 1:
        |ln lambda_i(Q) - ln lambda_i(W)| <= d_i = 2 |ln(1 - r_i)|.
    alpha is the MLE over the n largest eigenvalues, xmin their smallest (the n-th):
        alpha = 1 + n / S,  S = sum_{i<=n} ln(lambda_i / lambda_n),
    and each term of S moves by at most d_i + d_n, so with dS = sum_i (d_i + d_n) < S:
        |alpha(Q) - alpha(W)| <= n dS / (S (S - dS))     (for the same n).
    The MLE's xmin is a minimum of the KS distance and may pick another n for Q; the bound is checked on
    the tail size the float model's fit chose, and the reported alphas are compared when Q's fit chose
    the same n (it does for all three layers here: 45, 48 and 9)."""
    import numpy as np

    float_layers = reports[REFERENCE]
    quantised = {
        _base(name.removesuffix("_quantized")): layer for name, layer in _analysed(QUANTISED_COPY).items()
    }
    assert set(quantised) == set(float_layers)
    weights = _read_weights(FIXTURES / "crossformat" / FILES[REFERENCE])
    copies = _read_weights(FIXTURES / "crossformat" / QUANTISED_COPY)
    for name, layer in float_layers.items():
        w_slices, q_slices = _slices(weights[name]), _slices(copies[name])
        eps = max(float(np.linalg.norm(q - w, 2)) for q, w in zip(q_slices, w_slices, strict=True))
        s_w = np.sort(np.concatenate([np.linalg.svd(w, compute_uv=False) for w in w_slices]))[::-1]
        s_q = np.sort(np.concatenate([np.linalg.svd(q, compute_uv=False) for q in q_slices]))[::-1]
        assert float(np.max(np.abs(s_q - s_w))) <= eps * (1 + 1e-9), name  # Weyl, pooled order statistics
        n = layer["num_pl_spikes"]
        tail_w, tail_q = s_w[:n] ** 2, s_q[:n] ** 2
        total = float(np.sum(np.log(tail_w / tail_w[-1])))
        assert math.isclose(1 + n / total, layer["alpha"], rel_tol=1e-9), name  # the report's own MLE
        ratio = eps / s_w[:n]
        assert ratio.max() < 1, name
        spread = 2 * np.abs(np.log1p(-ratio))
        moved = float(np.sum(spread + spread[-1]))
        assert moved < total, name
        bound = n * moved / (total * (total - moved))
        # int8 per-channel quantisation is fine enough for the bound to say something.
        assert bound < 0.2, (name, bound)
        same_tail_alpha = 1 + n / float(np.sum(np.log(tail_q / tail_q[-1])))
        assert abs(same_tail_alpha - layer["alpha"]) <= bound, (name, same_tail_alpha, layer["alpha"], bound)
        if quantised[name]["num_pl_spikes"] == n:
            assert abs(quantised[name]["alpha"] - layer["alpha"]) <= bound, name
