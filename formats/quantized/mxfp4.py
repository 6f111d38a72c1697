"""MXFP4 expert weights as gpt-oss checkpoints store them (`quant_method: mxfp4`).

A stacked expert projection `<m>.gate_up_proj` (or `down_proj`) is stored as
- `<m>.gate_up_proj_blocks` uint8 (experts, out, in / 32, 16): per 32 input values, 16 bytes of E2M1
  codes, element 2j in the LOW nibble of byte j and 2j + 1 in the high nibble;
- `<m>.gate_up_proj_scales` uint8 (experts, out, in / 32): an E8M0 exponent per block, 2**(s - 127).
transformers' `convert_moe_packed_tensors` decodes each block, scales it with ldexp and transposes the last
two axes, giving the (experts, in, out) parameter the unquantised model has (gpt-oss multiplies x @ W);
`dequantize_mxfp4` returns that same orientation. Its default output dtype is bfloat16, in which every
value of the format is exact (an E2M1 value times a power of two).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from formats.quantized._common import Floats, expect_dtype, fail, round_to, unpack_nibbles
from formats.quantized.compressed_tensors import E2M1_VALUES

MXFP4_BLOCK = 32
E8M0_BIAS = 127
#: Suffixes of the two parts of one MXFP4 weight.
BLOCKS_SUFFIX = "_blocks"
SCALES_SUFFIX = "_scales"


def dequantize_mxfp4(
    weight: str,
    blocks: npt.NDArray[np.uint8],
    scales: npt.NDArray[np.uint8],
    output_dtype: str = "bfloat16",
) -> Floats:
    """The (..., in, out) float weight of one gpt-oss MXFP4 projection.

    Raises:
        TensorError: blocks not uint8 (..., out, groups, 16), scales not uint8 (..., out, groups).
    """
    expect_dtype(weight, "the blocks", blocks, "u")
    expect_dtype(weight, "the scales", scales, "u")
    if blocks.ndim < 3 or blocks.shape[-1] != MXFP4_BLOCK // 2:
        raise fail(weight, f"blocks have shape {list(blocks.shape)}, expected [..., out, groups, 16]")
    if tuple(scales.shape) != tuple(blocks.shape[:-1]):
        raise fail(weight, f"scales have shape {list(scales.shape)}, expected {list(blocks.shape[:-1])}")
    codes = unpack_nibbles(blocks, axis=-1, count=MXFP4_BLOCK, high_first=False)
    exponents = scales.astype(np.int32) - E8M0_BIAS
    # ldexp in float64 is exact here; the cast to float32 keeps every finite value of the format.
    values = np.ldexp(E2M1_VALUES[codes].astype(np.float64), exponents[..., None]).astype(np.float32)
    *prefix, out_features, groups, width = values.shape
    matrix = values.reshape(*prefix, out_features, groups * width)
    return round_to(np.ascontiguousarray(np.swapaxes(matrix, -1, -2)), output_dtype)


def mxfp4_encoding() -> str:
    return "mxfp4"
