"""End to end: every HDF5/Keras fixture analysed by the CLI gives exactly its manifest's layers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import FIXTURES, load_manifests, run_cli

MANIFESTS = [m for m in load_manifests() if m["format"] == "hdf5" and m["fixture"].startswith("keras/")]


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda m: str(m["fixture"]))
def test_cli_analyses_exactly_the_manifest_layers(manifest: dict[str, Any]) -> None:
    result = run_cli(FIXTURES / manifest["fixture"], "--format", "json")
    assert result.exit_code == 0, result.output
    (report,) = json.loads(result.stdout)["reports"]
    assert report["format"] == "hdf5"
    analysed = sorted(
        (layer["name"], layer["shape"]) for layer in report["layers"] if layer["status"] == "analyzed"
    )
    assert analysed == sorted((layer["name"], layer["shape"]) for layer in manifest["layers"])
    for layer in report["layers"]:
        if layer["status"] == "analyzed":
            assert layer["alpha"] is None or layer["alpha"] > 1, layer["name"]


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
