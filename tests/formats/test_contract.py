"""The reader contract, run against every fixture listed in fixtures/manifests/.

Each manifest is written by its generator from the framework that made the file, so these checks
compare what our readers see with what the framework saved: names, shapes, dtypes and aliases, values of
the right shape and type, and a reader that refuses to read after it is closed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from formats import FormatError, open_model
from tests.conftest import FIXTURES, listing, load_manifests

MANIFESTS = load_manifests()


def _id(manifest: dict[str, Any]) -> str:
    return str(manifest["fixture"])


def test_there_are_fixtures_of_every_format() -> None:
    formats = {manifest["format"] for manifest in MANIFESTS}
    assert formats == {"safetensors", "pytorch", "torchscript", "gguf", "onnx", "hdf5"}


@pytest.mark.parametrize("manifest", MANIFESTS, ids=_id)
def test_reader_lists_exactly_the_manifest_tensors(manifest: dict[str, Any]) -> None:
    with open_model(FIXTURES / manifest["fixture"]) as reader:
        assert reader.format == manifest["format"]
        listed = listing(reader)
    expected = [
        {
            "name": entry["name"],
            "shape": list(entry["shape"]),
            "dtype": entry["dtype"],
            "aliases": sorted(entry.get("aliases", [])),
        }
        for entry in manifest["tensors"]
    ]
    # Order is each format's own business (tested per format where the format fixes it).
    by_name = lambda entry: entry["name"]  # noqa: E731
    assert sorted(listed, key=by_name) == sorted(expected, key=by_name)


@pytest.mark.parametrize("manifest", MANIFESTS, ids=_id)
def test_every_float_tensor_reads_as_float_of_its_shape(manifest: dict[str, Any]) -> None:
    with open_model(FIXTURES / manifest["fixture"]) as reader:
        for ref in reader.tensors():
            if ref.info.skip_reason is not None or not (
                ref.info.dtype.is_float or ref.info.dtype.value == "QUANTIZED"
            ):
                continue
            values = ref.read()
            assert values.dtype in (np.float32, np.float64), ref.info.name
            assert values.shape == ref.info.shape, ref.info.name


@pytest.mark.parametrize("manifest", MANIFESTS, ids=_id)
def test_read_after_close_is_refused(manifest: dict[str, Any]) -> None:
    reader = open_model(FIXTURES / manifest["fixture"])
    readable = [
        ref
        for ref in reader.tensors()
        if ref.info.skip_reason is None and (ref.info.dtype.is_float or ref.info.dtype.value == "QUANTIZED")
    ]
    reader.close()
    assert readable, "a fixture without a readable tensor proves nothing"
    with pytest.raises(FormatError):
        readable[0].read()


@pytest.mark.parametrize("manifest", MANIFESTS, ids=_id)
def test_listing_after_close_is_refused(manifest: dict[str, Any]) -> None:
    reader = open_model(FIXTURES / manifest["fixture"])
    reader.close()
    with pytest.raises(FormatError, match="closed"):
        next(iter(reader.tensors()))


@pytest.mark.parametrize(
    "path", [FIXTURES / "sharded", FIXTURES / "torch" / "hf_sharded"], ids=lambda path: path.name
)
def test_a_sharded_checkpoint_refuses_listing_and_reading_after_close(path: Path) -> None:
    reader = open_model(path)
    ref = next(iter(reader.tensors()))
    reader.close()
    with pytest.raises(FormatError, match="closed"):
        next(iter(reader.tensors()))
    with pytest.raises(FormatError, match="closed"):
        ref.read()
