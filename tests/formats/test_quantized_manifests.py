"""The grouping rules against the manifests of the quantised fixtures (fixtures/manifests/quantized_*.json).

Each manifest was written by fixtures/generate_quantized.py from what the library saved and dequantised:
the logical weights (the keys of its reference copy) and the stored tensors that are parts of them. The
rules in `formats.quantized.detect`, given only the header (names, shapes, dtypes) and config.json, must
find exactly those weights with exactly those shapes and consume exactly those parts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from safetensors import safe_open

from formats.quantized.detect import StoredTensor, plan_quantized
from tests.conftest import FIXTURES, MANIFESTS

QUANTISED_MANIFESTS = [
    manifest
    for manifest in (json.loads(path.read_text()) for path in sorted(MANIFESTS.glob("quantized_*.json")))
    if manifest["format"] == "safetensors"
]


def _header(path: Path) -> list[StoredTensor]:
    with safe_open(str(path), "pt") as handle:
        return [
            StoredTensor(name, tuple(handle.get_slice(name).get_shape()), handle.get_slice(name).get_dtype())
            for name in handle.keys()  # noqa: SIM118 - safe_open is not a mapping
        ]


def test_every_safetensors_kind_has_a_manifest() -> None:
    assert len(QUANTISED_MANIFESTS) == 9


@pytest.mark.parametrize("manifest", QUANTISED_MANIFESTS, ids=lambda manifest: manifest["fixture"])
def test_grouping_finds_exactly_the_manifest(manifest: dict[str, Any]) -> None:
    fixture = FIXTURES / manifest["fixture"]
    config = json.loads((fixture.parent / "config.json").read_text())
    plan = plan_quantized(_header(fixture), config)
    quantised = {layer["name"]: tuple(layer["shape"]) for layer in manifest["layers"] if layer["quantised"]}
    assert plan.problems == ()
    assert {weight.name for weight in plan.weights} == set(quantised)
    for weight in plan.weights:
        assert weight.shape in (None, quantised[weight.name]), weight.name
    assert set(plan.consumed) == set(manifest["quantised_parts"])
    plain = {layer["name"] for layer in manifest["layers"] if not layer["quantised"]}
    assert not plain & set(plan.consumed)
