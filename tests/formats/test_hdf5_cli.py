"""End to end on Keras specifics: channels-last conv kernels, recurrent kernels, depthwise skips (the analysed
set of every fixture is checked for all formats in tests/cli/test_every_fixture.py)."""

from __future__ import annotations

import json

from tests.conftest import FIXTURES, run_cli


def test_cli_reads_keras_conv_kernels_as_spatial_in_out() -> None:
    result = run_cli(FIXTURES / "keras/cnn.keras", "--format", "json")
    (report,) = json.loads(result.stdout)["reports"]
    layers = {layer["name"]: layer for layer in report["layers"]}
    conv = layers["conv1/kernel"]  # (3, 3, 3, 12): nine (3, 12) slices
    assert conv["kind"] == "conv2d" and (conv["N"], conv["M"], conv["num_evals"]) == (12, 3, 27)
    assert "depthwise" in layers["dw/kernel"]["reason"]


def test_cli_reads_keras_recurrent_kernels_as_recurrent() -> None:
    result = run_cli(FIXTURES / "keras/lstm.h5", "--format", "json")
    (report,) = json.loads(result.stdout)["reports"]
    layers = {layer["name"]: layer for layer in report["layers"]}
    assert layers["lstm/lstm_cell/recurrent_kernel"]["kind"] == "recurrent"
    assert (layers["lstm/lstm_cell/kernel"]["N"], layers["lstm/lstm_cell/kernel"]["M"]) == (80, 16)
