"""AWQ checkpoints (AutoAWQ "gemm" version, the one transformers and vLLM load): qweight, qzeros, scales.

Layout of one Linear with `in_features` K, `out_features` N and `group_size` g (AutoAWQ's
WQLinear_GEMM.from_linear):
- `qweight` int32 (K, N / 8): the OUTPUT axis packed, eight 4-bit fields per word in AutoAWQ's interleaved
  order: bit offset 4 * j of word w holds column 8 * w + AWQ_ORDER[j] (the order its GEMM kernel unpacks);
- `qzeros` int32 (K / g, N / 8): zero points, packed the same way (stored as they are, no minus one);
- `scales` float16 (K / g, N).
W[k, n] = (q[k, n] - zero[k // g, n]) * scales[k // g, n], stored (in, out); `dequantize_awq` returns the
Linear's (out, in). The "gemv" and "gemv_fast" versions pack the input axis instead and are refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from formats.quantized._common import (
    Floats,
    as_float32,
    expect_dtype,
    expect_shape,
    fail,
    input_groups,
    interleave,
    round_to,
    unpack_words,
)

#: Position j of each packed word holds column AWQ_ORDER[j] of its run of eight (AutoAWQ's packing).
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
AWQ_BITS = 4
AWQ_VERSIONS = frozenset({"gemm"})


@dataclass(frozen=True, slots=True)
class AWQParams:
    """What `quantization_config` says: group size, whether zero points are stored, the packing version."""

    group_size: int
    zero_point: bool = True
    version: str = "gemm"
    output_dtype: str = "float16"


def awq_logical_shape(qweight_shape: tuple[int, ...]) -> tuple[int, int]:
    """(out, in) of the Linear whose gemm `qweight` has this shape."""
    rows, words = qweight_shape
    return words * 32 // AWQ_BITS, rows


def dequantize_awq(
    weight: str,
    qweight: npt.NDArray[np.integer],
    qzeros: npt.NDArray[np.integer] | None,
    scales: npt.NDArray[np.floating],
    params: AWQParams,
) -> Floats:
    """The (out, in) float weight of one AWQ gemm Linear.

    Raises:
        TensorError: another packing version, a group size that does not fit the scales, or parts of the
            wrong shape or dtype.
    """
    if params.version.lower() not in AWQ_VERSIONS:
        raise fail(weight, f"AWQ version {params.version!r} is not supported (supported: gemm)")
    expect_dtype(weight, "qweight", qweight, "iu")
    if qweight.ndim != 2:
        raise fail(weight, f"qweight has {qweight.ndim} dimensions, expected 2")
    out_features, in_features = awq_logical_shape(qweight.shape)
    group_size, groups = input_groups(weight, params.group_size, in_features, out_features, scales)
    if not params.zero_point or qzeros is None:
        # AutoAWQ writes qzeros for every checkpoint it packs; without them the offset is unknown.
        raise fail(weight, "AWQ without zero points (zero_point false or no qzeros) is not supported")
    expect_dtype(weight, "qzeros", qzeros, "iu")
    expect_shape(weight, "qzeros", qzeros, (groups, qweight.shape[1]))
    q = interleave(unpack_words(qweight, AWQ_BITS, 1, out_features), 1, AWQ_ORDER).astype(np.int32)
    zeros = interleave(unpack_words(qzeros, AWQ_BITS, 1, out_features), 1, AWQ_ORDER).astype(np.int32)
    group_of = np.arange(in_features) // group_size
    q = q - zeros[group_of]
    values = q.astype(np.float32) * as_float32(weight, "scales", scales)[group_of]
    return round_to(np.ascontiguousarray(values.T), params.output_dtype)


def awq_encoding(bits: int = AWQ_BITS) -> str:
    return f"awq-int{bits}"
