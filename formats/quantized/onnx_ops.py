"""Weights of ONNX's quantised operators: com.microsoft MatMulNBits and GatherBlockQuantized, QLinearMatMul,
QLinearConv, MatMulInteger and ConvInteger.

MatMulNBits (onnxruntime contrib op; the int4/int8 LLM exports of onnxruntime-genai, Olive and
`MatMulNBitsQuantizer`): attributes K, N, bits (2, 4, 8) and block_size; inputs
- B uint8 (N, k_blocks, blob_size), k_blocks = ceil(K / block_size), blob_size = block_size * bits / 8:
  each block's values packed low bits first;
- scales (N * k_blocks) or (N, k_blocks), the type of A;
- zero_points, optional: uint8 packed the same way (N, ceil(k_blocks * bits / 8)), or unpacked (N, k_blocks)
  in the type of A; absent means 2**(bits - 1);
- g_idx, optional (deprecated) int32 (K): the block of each input row; only the trivial k // block_size
  is accepted (see `dequantize_matmul_nbits`).
W[n, k] = (q[n, k] - zero[n, block(k)]) * scale[n, block(k)]; Y = A @ W.T. The unquantised model's MatMul
had B = W.T, (K, N) = (in, out), which is what `dequantize_matmul_nbits` returns.

GatherBlockQuantized (a quantised embedding table): `data` int4/uint4 (decoded to integers by the tensor
loader) or uint8 (for bits < 8 packed along the last axis, low bits first), block-quantised along
`quantize_axis`; scales of the same rank with ceil(dim / block_size) along that axis; zero points default
to 0 for int4/uint4 and 2**(bits - 1) for uint8. Returns the dequantised table in `data`'s logical shape.

QLinearMatMul / QLinearConv carry the weight's scale and zero point as inputs (per tensor, or per output
channel: axis 1 of a (K, N) MatMul weight, axis 0 of a conv kernel); MatMulInteger and ConvInteger carry
only the zero point, the scale being the constant that a following Mul applies (onnxruntime's
quantize_dynamic names it `<weight>_scale`). All four use `affine.dequantize_affine`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from formats.quantized._common import (
    Floats,
    as_float32,
    ceil_div,
    expect_bits,
    expect_dtype,
    fail,
)
from formats.quantized.affine import dequantize_affine

#: Smallest block size the contrib ops accept (a power of two, at least 16).
MIN_BLOCK_SIZE = 16


@dataclass(frozen=True, slots=True)
class MatMulNBitsAttrs:
    """The attributes of one MatMulNBits node."""

    K: int
    N: int
    bits: int = 4
    block_size: int = 32


def _check_block_size(weight: str, block_size: int) -> None:
    if block_size < MIN_BLOCK_SIZE or block_size & (block_size - 1):
        raise fail(weight, f"block_size {block_size} is not a power of two of at least {MIN_BLOCK_SIZE}")


def _unpack_bytes(packed: npt.NDArray[np.uint8], bits: int, count: int) -> npt.NDArray[np.uint8]:
    """`bits`-bit fields of bytes along the last axis, low bits first, cut to `count`."""
    per_byte = 8 // bits
    shifts = (np.arange(per_byte, dtype=np.uint8) * np.uint8(bits)).astype(np.uint8)
    fields = (packed[..., None] >> shifts) & np.uint8((1 << bits) - 1)
    return fields.reshape(*packed.shape[:-1], packed.shape[-1] * per_byte)[..., :count]


def dequantize_matmul_nbits(
    weight: str,
    attrs: MatMulNBitsAttrs,
    packed: npt.NDArray[np.uint8],
    scales: npt.NDArray[np.floating],
    zero_points: npt.NDArray[np.generic] | None = None,
    g_idx: npt.NDArray[np.integer] | None = None,
) -> Floats:
    """The (K, N) float weight of one MatMulNBits node, as the unquantised MatMul held it.

    Raises:
        TensorError: bits not 2/4/8, a block size that is not a power of two >= 16, B or scales or zero points
            of a shape the attributes do not give, g_idx out of range.
    """
    expect_bits(weight, attrs.bits)
    _check_block_size(weight, attrs.block_size)
    if attrs.K <= 0 or attrs.N <= 0:
        raise fail(weight, f"K={attrs.K} and N={attrs.N} must be positive")
    blocks = ceil_div(attrs.K, attrs.block_size)
    blob = attrs.block_size * attrs.bits // 8
    expect_dtype(weight, "B", packed, "u")
    if tuple(packed.shape) not in ((attrs.N, blocks, blob), (attrs.N, blocks * blob)):
        raise fail(
            weight,
            f"B has shape {list(packed.shape)}; K={attrs.K}, N={attrs.N} need [{attrs.N}, {blocks}, {blob}]",
        )
    if scales.size != attrs.N * blocks:
        raise fail(weight, f"{scales.size} scales; K={attrs.K}, N={attrs.N} need {attrs.N} x {blocks}")
    scale = as_float32(weight, "scales", scales).reshape(attrs.N, blocks)
    q = _unpack_bytes(packed.reshape(attrs.N, blocks * blob), attrs.bits, blocks * attrs.block_size)[
        :, : attrs.K
    ]
    block_of = np.arange(attrs.K) // attrs.block_size
    if g_idx is not None:
        # The deprecated g_idx input: exporters write the trivial k // block_size, which changes nothing. A
        # reordering one is refused: onnxruntime 1.32's CPU kernel does not give (q - zero[g]) * scale[g]
        # for it (checked against the kernel on a permuted g_idx), and guessing would misreport values.
        expect_dtype(weight, "g_idx", g_idx, "iu")
        if g_idx.size != attrs.K:
            raise fail(weight, f"g_idx has {g_idx.size} entries for K={attrs.K}")
        if not np.array_equal(g_idx.reshape(-1), block_of):
            raise fail(weight, "a g_idx that reorders input rows (act-order MatMulNBits) is not supported")
    zero: npt.NDArray[np.int32] | Floats
    if zero_points is None:
        zero = np.full((attrs.N, blocks), 1 << (attrs.bits - 1), dtype=np.int32)
    elif zero_points.dtype == np.uint8:
        packed_zero = ceil_div(blocks * attrs.bits, 8)
        if zero_points.size != attrs.N * packed_zero:
            raise fail(
                weight, f"{zero_points.size} packed zero points; N={attrs.N} needs {attrs.N} x {packed_zero}"
            )
        packed_rows = np.asarray(zero_points, dtype=np.uint8).reshape(attrs.N, packed_zero)
        zero = _unpack_bytes(packed_rows, attrs.bits, blocks).astype(np.int32)
    else:
        if zero_points.size != attrs.N * blocks:
            raise fail(
                weight, f"{zero_points.size} zero points; K={attrs.K}, N={attrs.N} need {attrs.N} x {blocks}"
            )
        zero = as_float32(weight, "zero_points", zero_points).reshape(attrs.N, blocks)
    if zero.dtype.kind == "f":
        shifted = q.astype(np.float32) - zero[:, block_of]
    else:
        shifted = (q.astype(np.int32) - zero[:, block_of]).astype(np.float32)
    return np.ascontiguousarray((shifted * scale[:, block_of]).T)


def matmul_nbits_encoding(attrs: MatMulNBitsAttrs) -> str:
    """`matmulnbits-int4-b32`."""
    return f"matmulnbits-int{attrs.bits}-b{attrs.block_size}"


def dequantize_gather_block_quantized(
    weight: str,
    data: npt.NDArray[np.integer],
    scales: npt.NDArray[np.floating],
    zero_points: npt.NDArray[np.integer] | None,
    *,
    bits: int,
    block_size: int,
    quantize_axis: int,
    packed: bool,
) -> Floats:
    """The float table of one GatherBlockQuantized node (in `data`'s logical shape).

    Args:
        packed: True for uint8 `data` with bits < 8 (values packed along the last axis); False for int4 and
            uint4 data the loader already decoded, and for 8-bit uint8 data.

    Raises:
        TensorError: bits or block size not accepted by the op, scales or zero points of the wrong shape.
    """
    expect_bits(weight, bits)
    _check_block_size(weight, block_size)
    expect_dtype(weight, "data", data, "iu")
    if packed:
        values = _unpack_bytes(data.astype(np.uint8), bits, data.shape[-1] * (8 // bits)).astype(np.int32)
        default_zero = 1 << (bits - 1)
    else:
        values = data.astype(np.int32)
        default_zero = 1 << (bits - 1) if data.dtype == np.uint8 else 0
    rank = values.ndim
    if not -rank <= quantize_axis < rank:
        raise fail(weight, f"quantize_axis {quantize_axis} is outside a tensor of rank {rank}")
    axis = quantize_axis % rank
    blocks = ceil_div(values.shape[axis], block_size)
    expected = (*values.shape[:axis], blocks, *values.shape[axis + 1 :])
    if tuple(scales.shape) != expected:
        raise fail(weight, f"scales have shape {list(scales.shape)}, expected {list(expected)}")
    block_of = np.arange(values.shape[axis]) // block_size
    scale = np.take(as_float32(weight, "scales", scales), block_of, axis=axis)
    if zero_points is None:
        shifted = values - default_zero
    else:
        expect_dtype(weight, "zero_points", zero_points, "iu")
        if packed:
            zero = _unpack_bytes(zero_points.astype(np.uint8), bits, expected[-1]).astype(np.int32)
        else:
            zero = zero_points.astype(np.int32)
        if tuple(zero.shape) != expected:
            raise fail(weight, f"zero points have shape {list(zero.shape)}, expected {list(expected)}")
        shifted = values - np.take(zero, block_of, axis=axis)
    return shifted.astype(np.float32) * scale


def gather_block_quantized_encoding(bits: int, block_size: int) -> str:
    return f"gatherblockquantized-int{bits}-b{block_size}"


#: Which input of each integer operator is the weight, its scale and its zero point (None: not an input).
INTEGER_OPERATOR_INPUTS: dict[str, tuple[int, int | None, int | None]] = {
    "QLinearMatMul": (3, 4, 5),
    "QLinearConv": (3, 4, 5),
    "MatMulInteger": (1, None, 3),
    "ConvInteger": (1, None, 3),
}


def dequantize_integer_weight(
    weight: str,
    op: str,
    values: npt.NDArray[np.integer],
    scale: npt.NDArray[np.floating],
    zero_point: npt.NDArray[np.integer] | None,
) -> Floats:
    """The float weight of a QLinearMatMul/QLinearConv/MatMulInteger/ConvInteger operand.

    A per-channel scale is along the output axis: axis 1 of a MatMul's (K, N) weight, axis 0 of a conv
    kernel (M, C / group, *k); MatMulInteger's and ConvInteger's scale is the one the following Mul applies.

    Raises:
        TensorError: an unknown operator, or a scale that is neither per tensor nor per output channel.
    """
    if op not in INTEGER_OPERATOR_INPUTS:
        raise fail(weight, f"{op} is not an integer-weight operator")
    axis = 0 if "Conv" in op else 1
    return dequantize_affine(weight, values, scale, zero_point, None if scale.size == 1 else axis)


def integer_weight_encoding(op: str, values_dtype: np.dtype[np.generic]) -> str:
    """`qlinear-int8` for QLinear*; `matmulinteger-uint8`, `convinteger-int8` for the integer products."""
    family = "qlinear" if op.startswith("QLinear") else op.lower()
    return f"{family}-{np.dtype(values_dtype).name}"
