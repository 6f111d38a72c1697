"""Affine integer quantisation, y = (q - zero_point) * scale, per tensor or per channel along one axis.

One rule behind several formats: ONNX DequantizeLinear (per tensor, per axis and blocked), QLinearConv and
QLinearMatMul weights and the weights of MatMulInteger and ConvInteger (whose scale sits in the Mul after
the integer product), PyTorch's per-tensor and per-channel quantised tensors, and compressed-tensors'
"naive-quantized" int8 weights. The subtraction is done in integers and the product in float32, as
onnxruntime's DequantizeLinear kernel and torch's `dequantize()` do, which matters only for the last bit.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from formats.quantized._common import expect_dtype, fail


def _along(parameter: npt.NDArray[np.generic], rank: int, axis: int) -> npt.NDArray[np.generic]:
    shape = [1] * rank
    shape[axis] = parameter.size
    return parameter.reshape(shape)


def _blocked(
    parameter: npt.NDArray[np.generic], length: int, axis: int, block_size: int
) -> npt.NDArray[np.generic]:
    """A blocked parameter (ceil(length / block_size) entries along `axis`) repeated to one per element."""
    repeated = np.repeat(parameter, block_size, axis=axis)
    return np.take(repeated, np.arange(length), axis=axis)


def dequantize_affine(
    weight: str,
    values: npt.NDArray[np.integer],
    scale: npt.NDArray[np.floating],
    zero_point: npt.NDArray[np.generic] | None,
    axis: int | None,
    *,
    compute: type[np.floating] = np.float32,
    block_size: int = 0,
    output: type[np.floating] = np.float32,
) -> npt.NDArray[np.floating]:
    """(values - zero_point) * scale, with one scale per tensor (`axis` None), per index of `axis`, or per
    block of `block_size` elements along `axis` (ONNX's blocked DequantizeLinear).

    Args:
        weight: the logical weight's name, for messages.
        values: the stored integers.
        scale: one value, or one per index of `axis` (any shape with that many elements).
        zero_point: like `scale`, integers; None means 0.
        axis: the channel axis of a per-channel scale (negative counts from the end).
        compute: float32 for ONNX and torch's per-tensor scale; float64 where the reference computes in
            double (torch's per-channel float64 scales, ONNX double scales).
        block_size: elements per scale along `axis`; the scale has ceil(dim / block_size) entries there
            (0: not blocked).
        output: the dtype returned (float32, or float64 for ONNX double scales).

    Raises:
        TensorError: integers that are not integers, a scale that is not per tensor or per channel of
            `axis`, or a zero point of another size.
    """
    expect_dtype(weight, "the quantised values", values, "iu")
    expect_dtype(weight, "the scale", scale, "f")
    rank = values.ndim
    if block_size and axis is not None:
        if not -rank <= axis < rank:
            raise fail(weight, f"channel axis {axis} is outside a tensor of rank {rank}")
        axis %= rank
        blocks = -(-values.shape[axis] // block_size)
        expected = (*values.shape[:axis], blocks, *values.shape[axis + 1 :])
        if tuple(scale.shape) != expected or (zero_point is not None and tuple(zero_point.shape) != expected):
            raise fail(weight, f"blocked scale shape {list(scale.shape)}, expected {list(expected)}")
        scale_b: npt.NDArray[np.generic] = _blocked(scale, values.shape[axis], axis, block_size)
        zero_b = (
            _blocked(zero_point, values.shape[axis], axis, block_size) if zero_point is not None else None
        )
        return _product(values, scale_b, zero_b, compute, output)
    if axis is None or scale.size == 1:
        if scale.size != 1:
            raise fail(weight, f"a per-tensor scale has {scale.size} elements")
        scale_b = scale.reshape(())
        zero_b = zero_point.reshape(()) if zero_point is not None and zero_point.size == 1 else zero_point
    else:
        if not -rank <= axis < rank:
            raise fail(weight, f"channel axis {axis} is outside a tensor of rank {rank}")
        axis %= rank
        if scale.size != values.shape[axis]:
            raise fail(
                weight,
                f"{scale.size} scales for axis {axis} of shape {list(values.shape)}, "
                f"expected {values.shape[axis]}",
            )
        scale_b = _along(scale, rank, axis)
        zero_b = _along(zero_point, rank, axis) if zero_point is not None else None
    if zero_point is not None and zero_point.size != scale.size:
        raise fail(weight, f"{zero_point.size} zero points for {scale.size} scales")
    return _product(values, scale_b, zero_b, compute, output)


def _product(
    values: npt.NDArray[np.integer],
    scale: npt.NDArray[np.generic],
    zero: npt.NDArray[np.generic] | None,
    compute: type[np.floating],
    output: type[np.floating],
) -> npt.NDArray[np.floating]:
    """(values - zero) * scale with the parameters already broadcastable to the values."""
    if zero is not None and zero.dtype.kind not in "iu":
        # Float zero points (torch's per_channel_affine_float_qparams) are subtracted in float.
        shifted = values.astype(compute) - np.asarray(zero).astype(compute)
        return (shifted * np.asarray(scale).astype(compute)).astype(output)
    shifted_int = values.astype(np.int64)
    if zero is not None:
        shifted_int = shifted_int - np.asarray(zero).astype(np.int64)
    return (shifted_int.astype(compute) * np.asarray(scale).astype(compute)).astype(output)
