"""End to end on ONNX specifics: depthwise kernels, recurrent stacks and names from the graph (the analysed
set of every fixture is checked for all formats in tests/cli/test_every_fixture.py)."""

from __future__ import annotations

import json

from tests.conftest import FIXTURES, run_cli


def test_cli_reports_depthwise_kernels_as_skipped_with_the_reason() -> None:
    result = run_cli(FIXTURES / "onnx/cnn.onnx", "--format", "json")
    (report,) = json.loads(result.stdout)["reports"]
    layers = {layer["name"]: layer for layer in report["layers"]}
    assert layers["dw.weight"]["status"] == "skipped"
    assert "depthwise" in layers["dw.weight"]["reason"]
    assert layers["gconv.weight"]["kind"] == "conv2d" and layers["conv1d.weight"]["kind"] == "conv1d"
    assert layers["fc.weight"]["status"] == "analyzed" and layers["fc.bias"]["status"] == "skipped"
