"""End to end on GGUF: layer roles come from llama.cpp's tensor names (the analysed set of every fixture is
checked for all formats in tests/cli/test_every_fixture.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import FIXTURES, MANIFESTS, run_cli

GGUF_MANIFESTS = [json.loads(path.read_text()) for path in sorted(MANIFESTS.glob("gguf_*.json"))]


@pytest.mark.parametrize("manifest", GGUF_MANIFESTS, ids=lambda manifest: manifest["fixture"])
def test_cli_names_the_role_of_every_gguf_layer(manifest: dict[str, Any]) -> None:
    result = run_cli(str(FIXTURES / manifest["fixture"]), "--format", "json")
    assert result.exit_code == 0, (result.exit_code, result.stderr)
    (report,) = json.loads(result.stdout)["reports"]
    layers = {layer["name"]: layer for layer in report["layers"]}
    assert layers["token_embd.weight"]["role"] == "embedding"
    assert layers["blk.0.attn_q.weight"]["role"] == "attention"
    assert layers["blk.0.ffn_down.weight"]["role"] == "mlp"
    assert layers["output.weight"]["role"] == "output"
