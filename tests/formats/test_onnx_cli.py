"""End to end: every ONNX fixture analysed by the CLI gives exactly its manifest's layers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import FIXTURES, load_manifests, run_cli

MANIFESTS = [m for m in load_manifests() if m["format"] == "onnx" and m["fixture"].startswith("onnx/")]


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda m: str(m["fixture"]))
def test_cli_analyses_exactly_the_manifest_layers(manifest: dict[str, Any]) -> None:
    result = run_cli(FIXTURES / manifest["fixture"], "--format", "json")
    assert result.exit_code == 0, result.output
    (report,) = json.loads(result.stdout)["reports"]
    assert report["format"] == "onnx"
    analysed = sorted(
        (layer["name"], layer["shape"]) for layer in report["layers"] if layer["status"] == "analyzed"
    )
    assert analysed == sorted((layer["name"], layer["shape"]) for layer in manifest["layers"])
    for layer in report["layers"]:
        if layer["status"] == "analyzed":
            assert layer["alpha"] is None or layer["alpha"] > 1, layer["name"]


def test_cli_reports_depthwise_kernels_as_skipped_with_the_reason() -> None:
    result = run_cli(FIXTURES / "onnx/cnn.onnx", "--format", "json")
    (report,) = json.loads(result.stdout)["reports"]
    layers = {layer["name"]: layer for layer in report["layers"]}
    assert layers["dw.weight"]["status"] == "skipped"
    assert "depthwise" in layers["dw.weight"]["reason"]
    assert layers["gconv.weight"]["kind"] == "conv2d" and layers["conv1d.weight"]["kind"] == "conv1d"
    assert layers["fc.weight"]["status"] == "analyzed" and layers["fc.bias"]["status"] == "skipped"
