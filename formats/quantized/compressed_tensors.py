"""compressed-tensors checkpoints (llm-compressor, vLLM): "pack-quantized", "naive-quantized", FP8, NVFP4.

`quantization_config.format` names how each targeted Linear `<m>` is stored:
- "pack-quantized" (W4A16, W8A16...): `<m>.weight_packed` int32 (out, ceil(in * bits / 32)), a dense
  little-endian bit stream per row of unsigned fields, each the signed value plus 2**(bits - 1);
  `<m>.weight_scale` (out, groups) in the model dtype (groups = 1 for per-channel); `<m>.weight_shape`
  int64 [out, in]; for asymmetric schemes `<m>.weight_zero_point` int32 packed the same way along the
  OUTPUT axis, (ceil(out * bits / 32), groups); checkpoints of compressed-tensors < 0.13 may also hold
  `<m>.weight_g_idx` (in,), the group of each input column under activation ordering.
- "naive-quantized": `<m>.weight` int8 (out, in) with `weight_scale` and, asymmetric, `weight_zero_point`.
- "float-quantized": `<m>.weight` F8_E4M3 with `weight_scale` (per tensor, per channel (out, 1) or per
  128x128 block): the safetensors reader's FP8 scale pairing already reads these.
- "nvfp4-pack-quantized": `<m>.weight_packed` uint8 (out, in / 2), E2M1 codes, the first element in the low
  nibble; `<m>.weight_scale` F8_E4M3 (out, in / 16); `<m>.weight_global_scale` float32 (1,).
Dequantisation (compressed_tensors.quantization.lifecycle.forward.dequantize): (q - zero_point) * scale
computed in the scale's dtype, per group of `group_size` consecutive input columns; NVFP4 divides the
scale by the global scale first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from formats.quantized._common import (
    Floats,
    as_float32,
    ceil_div,
    expect_dtype,
    expect_shape,
    fail,
    packed_words,
    round_to,
    unpack_nibbles,
    unpack_words,
)

#: Bit widths compressed-tensors' pack_to_int32 accepts.
PACKED_BITS = frozenset(range(1, 9))
#: E2M1 code -> value (the OCP microscaling 4-bit float), sign in bit 3.
E2M1_VALUES = np.array(
    [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0], dtype=np.float32
)
NVFP4_GROUP = 16


@dataclass(frozen=True, slots=True)
class PackedParams:
    """The weights' QuantizationArgs of one config group.

    Attributes:
        bits: num_bits.
        group_size: input columns per scale; None for per-channel ("channel" strategy) or per-tensor.
        symmetric: False means zero points are stored.
        output_dtype: the scale's dtype, in which compressed-tensors computes and returns the weight.
    """

    bits: int
    group_size: int | None
    symmetric: bool = True
    output_dtype: str = "bfloat16"


def _groups(weight: str, in_features: int, group_size: int | None, scale: npt.NDArray[np.generic]) -> int:
    groups = 1 if group_size is None else ceil_div(in_features, group_size)
    if group_size is not None and group_size <= 0:
        raise fail(weight, f"group_size {group_size} is not positive")
    if scale.ndim == 1 and groups == 1:
        return groups
    if scale.ndim != 2 or scale.shape[1] != groups:
        raise fail(
            weight,
            f"weight_scale has shape {list(scale.shape)}; group_size {group_size} over {in_features} "
            f"input columns needs {groups} per row",
        )
    return groups


def dequantize_pack_quantized(
    weight: str,
    packed: npt.NDArray[np.integer],
    scale: npt.NDArray[np.floating],
    shape: tuple[int, ...],
    params: PackedParams,
    zero_point: npt.NDArray[np.integer] | None = None,
    g_idx: npt.NDArray[np.integer] | None = None,
) -> Floats:
    """The (out, in) float weight of one "pack-quantized" Linear; `shape` is the `weight_shape` tensor.

    Raises:
        TensorError: bits outside 1..8, a packed tensor shorter than `shape`, scales that do not fit the group
            size, zero points missing for an asymmetric scheme or of the wrong shape, g_idx out of range.
    """
    if params.bits not in PACKED_BITS:
        raise fail(weight, f"{params.bits}-bit values are not supported by pack-quantized")
    if len(shape) != 2 or any(dim < 0 for dim in shape):
        raise fail(weight, f"weight_shape {list(shape)} is not (out, in)")
    expect_dtype(weight, "weight_packed", packed, "iu")
    out_features, in_features = shape
    expect_shape(weight, "weight_packed", packed, (out_features, packed_words(params.bits, in_features)))
    groups = _groups(weight, in_features, params.group_size, scale)
    offset = 1 << (params.bits - 1)
    q = unpack_words(packed, params.bits, axis=1, count=in_features).astype(np.int32) - offset
    if g_idx is not None:
        expect_dtype(weight, "weight_g_idx", g_idx, "iu")
        expect_shape(weight, "weight_g_idx", g_idx, (in_features,))
        group_of = g_idx.astype(np.int64)
        if group_of.size and (group_of.min() < 0 or group_of.max() >= groups):
            raise fail(weight, f"weight_g_idx holds groups outside 0..{groups - 1}")
    else:
        group_of = np.arange(in_features) // (params.group_size or max(in_features, 1))
    scales = as_float32(weight, "weight_scale", scale).reshape(out_features if scale.ndim == 2 else 1, -1)
    if scales.shape[0] not in (1, out_features):
        raise fail(weight, f"weight_scale has {scales.shape[0]} rows for {out_features} outputs")
    if not params.symmetric:
        if zero_point is None:
            raise fail(weight, "the scheme is asymmetric but there is no weight_zero_point")
        expect_dtype(weight, "weight_zero_point", zero_point, "iu")
        expect_shape(
            weight, "weight_zero_point", zero_point, (packed_words(params.bits, out_features), groups)
        )
        zeros = unpack_words(zero_point, params.bits, axis=0, count=out_features).astype(np.int32) - offset
        q = q - zeros[:, group_of]
    values = q.astype(np.float32) * scales[:, group_of]
    return round_to(values, params.output_dtype)


def dequantize_nvfp4(
    weight: str,
    packed: npt.NDArray[np.uint8],
    scale: npt.NDArray[np.floating],
    global_scale: npt.NDArray[np.floating],
    output_dtype: str = "bfloat16",
) -> Floats:
    """The (out, in) float weight of one "nvfp4-pack-quantized" Linear (scale already widened from FP8).

    Raises:
        TensorError: packed not uint8 (out, in / 2), scales not (out, in / 16), a global scale that is not
            one float.
    """
    expect_dtype(weight, "weight_packed", packed, "u")
    if packed.ndim != 2:
        raise fail(weight, f"weight_packed has {packed.ndim} dimensions, expected 2")
    out_features, in_features = packed.shape[0], packed.shape[1] * 2
    expect_shape(weight, "weight_scale", scale, (out_features, ceil_div(in_features, NVFP4_GROUP)))
    if global_scale.size != 1:
        raise fail(weight, f"weight_global_scale has {global_scale.size} elements, expected 1")
    codes = unpack_nibbles(packed, axis=1, count=in_features, high_first=False)
    effective = as_float32(weight, "weight_scale", scale) / as_float32(
        weight, "weight_global_scale", global_scale
    ).reshape(())
    group_of = np.arange(in_features) // NVFP4_GROUP
    return round_to(E2M1_VALUES[codes] * effective[:, group_of], output_dtype)


def dequantize_float_quantized(
    weight: str,
    values: npt.NDArray[np.floating],
    scale: npt.NDArray[np.floating],
    output_dtype: str = "bfloat16",
) -> Floats:
    """The (out, in) float weight of one "float-quantized" (FP8) Linear, values already widened to float32.

    compressed-tensors multiplies in the scale's dtype, so the product is rounded to `output_dtype`; the
    safetensors reader's FP8 pairing computes the same product in float32 without that rounding. The scale
    is per tensor (one value), per channel ((out, 1) or (out,)) or per block ((ceil(out / b), ceil(in / b))).

    Raises:
        TensorError: values not 2-D, or a scale grid that does not tile the weight.
    """
    expect_dtype(weight, "weight", values, "f")
    if values.ndim != 2:
        raise fail(weight, f"the FP8 weight has {values.ndim} dimensions, expected 2")
    out_features, in_features = values.shape
    scales = as_float32(weight, "weight_scale", scale)
    if scales.size == 1:
        grid = scales.reshape(1, 1)
    elif scales.size == out_features and (scales.ndim == 1 or scales.shape[-1] == 1):
        grid = scales.reshape(out_features, 1)
    elif scales.ndim == 2 and out_features and in_features:
        rows, columns = ceil_div(out_features, scales.shape[0]), ceil_div(in_features, scales.shape[1])
        if (
            ceil_div(out_features, rows) != scales.shape[0]
            or ceil_div(in_features, columns) != scales.shape[1]
        ):
            raise fail(
                weight, f"weight_scale {list(scales.shape)} does not tile the weight {list(values.shape)}"
            )
        grid = np.repeat(np.repeat(scales, rows, axis=0), columns, axis=1)[:out_features, :in_features]
    else:
        raise fail(weight, f"weight_scale {list(scales.shape)} does not tile the weight {list(values.shape)}")
    return round_to(np.asarray(values, dtype=np.float32) * grid, output_dtype)


def compressed_encoding(format_name: str, bits: int) -> str:
    """`compressed-int4` for pack/naive-quantized ints, `compressed-fp8`, `compressed-nvfp4`."""
    if format_name == "float-quantized":
        return "compressed-fp8"
    if format_name == "nvfp4-pack-quantized":
        return "compressed-nvfp4"
    return f"compressed-int{bits}"
