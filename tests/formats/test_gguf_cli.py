"""End to end: `wwinspect FILE.gguf --format json` analyses every weight matrix of each GGUF fixture.

The expected layers come from each fixture's manifest, written by fixtures/generate_gguf.py from what the
`gguf` package reads back: the 2-D and 3-D weights with at least 10 eigenvalues, in every stored type
(F32/F16/BF16 and each quantisation). Norms and the 4-expert router are listed but not analysed.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import FIXTURES, MANIFESTS, run_cli

GGUF_MANIFESTS = [json.loads(path.read_text()) for path in sorted(MANIFESTS.glob("gguf_*.json"))]


@pytest.mark.parametrize("manifest", GGUF_MANIFESTS, ids=lambda manifest: manifest["fixture"])
def test_cli_analyses_every_weight_matrix(manifest: dict[str, Any]) -> None:
    result = run_cli(str(FIXTURES / manifest["fixture"]), "--format", "json")
    assert result.exit_code == 0, (result.exit_code, result.stderr)
    (report,) = json.loads(result.stdout)["reports"]
    assert report["format"] == "gguf"
    layers = {layer["name"]: layer for layer in report["layers"]}
    analyzed = {name: layer["shape"] for name, layer in layers.items() if layer["status"] == "analyzed"}
    assert analyzed == {layer["name"]: layer["shape"] for layer in manifest["layers"]}
    assert layers["token_embd.weight"]["role"] == "embedding"
    assert layers["blk.0.attn_q.weight"]["role"] == "attention"
    assert layers["blk.0.ffn_down.weight"]["role"] == "mlp"
    assert layers["output.weight"]["role"] == "output"
