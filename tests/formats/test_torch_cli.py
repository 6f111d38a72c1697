"""End to end: `wwinspect FIXTURE --format json` analyses exactly the layers a user expects of a checkpoint.

The expected layers come from each fixture's manifest, written by fixtures/generate_torch.py from the
modules that own the weights (Linear, Conv, Embedding, LSTM, MultiheadAttention with at least 10
eigenvalues). Everything else the file holds (biases, norms, buffers, optimizer state) is listed but not
analysed.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import FIXTURES, MANIFESTS, run_cli

TORCH_MANIFESTS = [json.loads(path.read_text()) for path in sorted(MANIFESTS.glob("torch_*.json"))]


@pytest.mark.parametrize("manifest", TORCH_MANIFESTS, ids=lambda manifest: manifest["fixture"])
def test_cli_analyses_the_expected_layers(manifest: dict[str, Any]) -> None:
    result = run_cli(str(FIXTURES / manifest["fixture"]), "--format", "json")
    assert result.exit_code == 0, (result.exit_code, result.stderr)
    (report,) = json.loads(result.stdout)["reports"]
    assert report["format"] == manifest["format"]
    analyzed = {layer["name"]: layer["shape"] for layer in report["layers"] if layer["status"] == "analyzed"}
    assert analyzed == {layer["name"]: layer["shape"] for layer in manifest["layers"]}
    listed = {layer["name"] for layer in report["layers"]}
    assert listed == {tensor["name"] for tensor in manifest["tensors"]}
