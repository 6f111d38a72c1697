"""End to end over every fixture: `wwinspect FIXTURE --format json` analyses exactly the manifest's layers.

Each manifest is written by its generator from the framework that saved the file (state_dict(), Keras
layer weights, what gguf reads back, the ONNX exporter's module names), so this compares what a user would
expect with what the CLI reports, for every format, layout and quantisation in fixtures/.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from tests.conftest import FIXTURES, ROOT, load_manifests, run_cli

SCHEMA = json.loads((ROOT / "docs" / "report.schema.json").read_text())
MANIFESTS = load_manifests()


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda manifest: str(manifest["fixture"]))
def test_cli_analyses_exactly_the_manifest_layers(manifest: dict[str, Any]) -> None:
    result = run_cli(FIXTURES / manifest["fixture"], "--format", "json")
    assert result.exit_code == 0, (result.exit_code, result.stderr)
    assert result.stderr == ""
    document = json.loads(result.stdout)
    jsonschema.validate(document, SCHEMA)
    (report,) = document["reports"]
    assert report["format"] == manifest["format"]
    analysed = {layer["name"]: layer["shape"] for layer in report["layers"] if layer["status"] == "analyzed"}
    assert analysed == {layer["name"]: layer["shape"] for layer in manifest["layers"]}
    assert {layer["name"] for layer in report["layers"]} == {tensor["name"] for tensor in manifest["tensors"]}
    for layer in report["layers"]:
        if layer["status"] == "analyzed":
            assert layer["num_evals"] >= 10 and layer["lambda_max"] > 0, layer["name"]
            assert layer["alpha"] is None or layer["alpha"] > 1, layer["name"]
        else:
            assert layer["reason"], layer["name"]
