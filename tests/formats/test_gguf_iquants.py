"""The IQ, TQ and microscaling GGML types against the `gguf` package's own dequantisation, bit for bit.

The fixture files (fixtures/gguf/iq*.gguf, tq*.gguf, mxfp4.gguf, nvfp4.gguf) are covered by the manifest
tests of test_gguf_reader.py; here every type also meets blocks of arbitrary bytes, which reach every grid
index, sign mask, sub-scale and exponent (NaN and infinite scales included), and the code books are
checked point for point against the tables gguf-py ships.
"""

from __future__ import annotations

import gguf
import numpy as np
import pytest

from formats._gguf_grids import grid
from formats._gguf_quants import GGML_TYPES

NEW_TYPES = (
    *("IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ4_XS"),
    *("TQ1_0", "TQ2_0", "MXFP4", "NVFP4"),
)
BY_NAME = {entry.name: entry for entry in GGML_TYPES.values()}


@pytest.mark.parametrize("name", ["IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S"])
def test_code_books_equal_the_gguf_tables(name: str) -> None:
    reference = getattr(gguf.quants, name)
    reference.init_grid()
    np.testing.assert_array_equal(grid(name), reference.grid.reshape(reference.grid_shape))


@pytest.mark.parametrize("name", NEW_TYPES)
def test_arbitrary_blocks_match_gguf_bit_for_bit(name: str) -> None:
    ggml = BY_NAME[name]
    assert ggml.dequantize is not None and ggml.layout is not None
    raw = np.random.default_rng(sum(map(ord, name))).integers(0, 256, (512, ggml.type_size), dtype=np.uint8)
    with np.errstate(invalid="ignore", over="ignore"):
        ours = ggml.dequantize(raw.reshape(-1).view(ggml.layout)).reshape(512, ggml.block_size)
        theirs = np.asarray(gguf.quants.dequantize(raw, gguf.GGMLQuantizationType[name]), dtype=np.float32)
    theirs = theirs.reshape(512, ggml.block_size)
    assert ours.dtype == np.float32
    # Same bits, NaN payloads aside: NaN where gguf has NaN, equal everywhere else.
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
    finite = ~np.isnan(theirs)
    np.testing.assert_array_equal(ours[finite].view(np.uint32), theirs[finite].view(np.uint32))
    assert len(np.unique(ours[np.isfinite(ours)])) > 16  # not a constant


@pytest.mark.parametrize("name", ["TQ1_0", "TQ2_0", "MXFP4"])
def test_gguf_quantised_values_round_trip(name: str) -> None:
    """Blocks from gguf-py's own quantiser decode to what its dequantiser says, and near the input."""
    values = np.random.default_rng(7).standard_normal((8, 256)).astype(np.float32)
    quantised = gguf.quants.quantize(values, gguf.GGMLQuantizationType[name])
    ggml = BY_NAME[name]
    assert ggml.dequantize is not None and ggml.layout is not None
    blocks = np.ascontiguousarray(quantised).reshape(-1).view(ggml.layout)
    ours = ggml.dequantize(blocks).reshape(values.shape)
    theirs = gguf.quants.dequantize(quantised, gguf.GGMLQuantizationType[name])
    np.testing.assert_array_equal(ours, theirs)
    # Ternary types keep signs and the block maximum; MXFP4 keeps values within half a step of E2M1.
    assert np.corrcoef(ours.ravel(), values.ravel())[0, 1] > 0.7


def test_ternary_digits_cover_minus_one_zero_and_one() -> None:
    ggml = BY_NAME["TQ2_0"]
    assert ggml.dequantize is not None and ggml.layout is not None
    block = np.zeros(ggml.type_size, dtype=np.uint8)
    block[:64] = 0b10_01_00_10  # crumbs 2, 0, 1, 2 from the low bits up
    block[64:66] = np.array([1.0], dtype="<f2").view(np.uint8)
    values = ggml.dequantize(block.view(ggml.layout))
    assert set(np.unique(values).tolist()) == {-1.0, 0.0, 1.0}
