"""Affine integer quantisation, y = (q - zero_point) * scale, per tensor or per channel along one axis.

One rule behind several formats: ONNX QLinearConv/QLinearMatMul weights and the weights of MatMulInteger and
ConvInteger (whose scale sits in the Mul after the integer product), PyTorch's per-tensor and per-channel
quantised tensors, and compressed-tensors' "naive-quantized" int8 weights. The subtraction is done in
integers and the product in float32, as onnxruntime's DequantizeLinear kernel and torch's `dequantize()`
do; `scale_first=False` keeps that order, which matters only for the last bit.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from formats.quantized._common import Floats, expect_dtype, fail


def _along(parameter: npt.NDArray[np.generic], rank: int, axis: int) -> npt.NDArray[np.generic]:
    shape = [1] * rank
    shape[axis] = parameter.size
    return parameter.reshape(shape)


def dequantize_affine(
    weight: str,
    values: npt.NDArray[np.integer],
    scale: npt.NDArray[np.floating],
    zero_point: npt.NDArray[np.generic] | None,
    axis: int | None,
    *,
    compute: type[np.floating] = np.float32,
) -> Floats:
    """(values - zero_point) * scale, with one scale per tensor (`axis` None) or per index of `axis`.

    Args:
        weight: the logical weight's name, for messages.
        values: the stored integers.
        scale: one value, or one per index of `axis` (any shape with that many elements).
        zero_point: like `scale`, integers; None means 0.
        axis: the channel axis of a per-channel scale (negative counts from the end).
        compute: float32 for ONNX and torch's per-tensor scale; float64 where the reference computes in
            double (torch's per-channel float64 scales) before rounding to float32.

    Raises:
        TensorError: integers that are not integers, a scale that is not per tensor or per channel of
            `axis`, or a zero point of another size.
    """
    expect_dtype(weight, "the quantised values", values, "iu")
    expect_dtype(weight, "the scale", scale, "f")
    rank = values.ndim
    if axis is None or scale.size == 1:
        if scale.size != 1:
            raise fail(weight, f"a per-tensor scale has {scale.size} elements")
        scale_b: npt.NDArray[np.generic] = scale.reshape(())
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
    if zero_point is not None:
        if zero_point.size != scale.size:
            raise fail(weight, f"{zero_point.size} zero points for {scale.size} scales")
        if zero_point.dtype.kind not in "iu":
            # Float zero points (torch's per_channel_affine_float_qparams) are subtracted in float.
            shifted = values.astype(compute) - np.asarray(zero_b).astype(compute)
            return (shifted * np.asarray(scale_b).astype(compute)).astype(np.float32)
        shifted_int = values.astype(np.int64) - np.asarray(zero_b).astype(np.int64)
    else:
        shifted_int = values.astype(np.int64)
    return (shifted_int.astype(compute) * np.asarray(scale_b).astype(compute)).astype(np.float32)
