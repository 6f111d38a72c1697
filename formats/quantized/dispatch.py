"""From the stored parts of one `LogicalWeight` to its float values: the one place each dequantiser is called.

A reader plans the logical weights of a checkpoint with `detect.plan_quantized`, reads the few small parts
that carry the float shape (`SHAPE_PARTS`: bitsandbytes' quant-state JSON, compressed-tensors'
`weight_shape`) when it opens, and on `read()` hands every part of one weight, as stored (integers as
integers, floats widened to float32) with its safetensors dtype code, to `dequantize`.

Settings come from the checkpoint's `quantization_config` where it states them; where it does not (a
checkpoint without a config.json), from the parts' shapes: the number of scale groups gives the group
size, the presence of zero points an asymmetric scheme. The result is rounded once to the dtype the
reference library returns (the scales' dtype), so it equals the library's own dequantised copy bit for
bit (tests/formats/test_quantized_*.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from formats.quantized import awq, bitsandbytes, compressed_tensors, gptq, mxfp4
from formats.quantized._common import Floats, fail, round_to
from formats.quantized.affine import dequantize_affine
from formats.quantized.detect import LogicalWeight, Scheme, compressed_weight_args, group_size_of, rounding_of

#: Parts read when the reader opens, because the float shape is written in them.
SHAPE_PARTS = frozenset({"quant_state", "shape"})
#: Largest such part read at open (a quant state is a few hundred bytes of JSON, a weight_shape 16 bytes).
MAX_SHAPE_PART_BYTES = bitsandbytes.MAX_QUANT_STATE_BYTES
#: Most elements of the float weight a `weight_shape` may declare (as safetensors headers may).
MAX_WEIGHT_ELEMENTS = 1 << 40

#: role -> a stored part: integers as stored, floats widened to float32 (each dequantiser checks the kinds).
Parts = Mapping[str, npt.NDArray[Any]]


def logical_shape(weight: LogicalWeight, shape_parts: Parts) -> tuple[int, ...]:
    """The float shape of `weight`, from the plan or from the small parts read at open.

    Raises:
        TensorError: the quant state or weight_shape is unusable (hostile JSON, negative or huge dims).
    """
    if weight.shape is not None:
        return weight.shape
    if weight.scheme is Scheme.BNB_4BIT:
        return bitsandbytes.parse_quant_state(weight.name, shape_parts["quant_state"]).shape
    if weight.scheme is Scheme.COMPRESSED_PACKED:
        raw = np.asarray(shape_parts["shape"])
        if raw.dtype.kind not in "iu" or raw.shape != (2,):
            raise fail(weight.name, f"weight_shape is {raw.dtype} {list(raw.shape)}, not two integers")
        dims = tuple(int(dim) for dim in raw)
        if any(dim < 0 for dim in dims) or dims[0] * dims[1] > MAX_WEIGHT_ELEMENTS:
            raise fail(weight.name, f"weight_shape {list(dims)} is not a plausible (out, in)")
        return dims
    raise fail(weight.name, "the plan gives no shape for this scheme")


def dequantize(
    weight: LogicalWeight,
    parts: Parts,
    codes: Mapping[str, str],
    section: Mapping[str, object] | None,
) -> Floats:
    """The float values of `weight` from its stored parts.

    Args:
        weight: the planned logical weight.
        parts: role -> the stored array (integers as stored, floats widened to float32).
        codes: role -> the part's safetensors dtype code (the scales' code fixes the output rounding).
        section: the checkpoint's quantization_config, or None.

    Raises:
        TensorError: the parts do not fit together or the settings (one line naming the weight).
    """
    name, scheme = weight.name, weight.scheme
    if scheme is Scheme.GPTQ and weight.gptq is not None:
        return gptq.dequantize_gptq(
            name, parts["qweight"], parts["qzeros"], parts["scales"], parts.get("g_idx"), weight.gptq
        )
    if scheme is Scheme.AWQ and weight.awq is not None:
        return awq.dequantize_awq(name, parts["qweight"], parts.get("qzeros"), parts["scales"], weight.awq)
    if scheme is Scheme.BNB_4BIT:
        state = bitsandbytes.parse_quant_state(name, parts["quant_state"])
        return bitsandbytes.dequantize_bnb_4bit(
            name,
            parts["packed"],
            parts["absmax"],
            parts["quant_map"],
            state,
            parts.get("nested_absmax"),
            parts.get("nested_quant_map"),
        )
    if scheme is Scheme.BNB_INT8:
        return bitsandbytes.dequantize_bnb_int8(name, parts["values"], parts["scb"])
    if scheme is Scheme.COMPRESSED_PACKED:
        return _pack_quantized(weight, parts, codes, section)
    if scheme is Scheme.COMPRESSED_FP8:
        return compressed_tensors.dequantize_float_quantized(
            name, parts["values"], parts["scale"], rounding_of(codes.get("scale"))
        )
    if scheme is Scheme.COMPRESSED_NAIVE:
        values, scale = parts["values"], parts["scale"]
        axis = None if scale.size == 1 else 0
        result = dequantize_affine(name, values, scale, parts.get("zero_point"), axis)
        return round_to(result, rounding_of(codes.get("scale")))
    if scheme is Scheme.COMPRESSED_NVFP4:
        return compressed_tensors.dequantize_nvfp4(
            name, parts["packed"], parts["scale"], parts["global_scale"]
        )
    if scheme is Scheme.MXFP4:
        return mxfp4.dequantize_mxfp4(name, parts["blocks"], parts["scales"])
    raise fail(name, f"no dequantiser for {scheme.value}")


def _pack_quantized(
    weight: LogicalWeight, parts: Parts, codes: Mapping[str, str], section: Mapping[str, object] | None
) -> Floats:
    shape = logical_shape(weight, parts)
    scale = parts["scale"]
    args = compressed_weight_args(section, weight.name.removesuffix(".weight"))
    bits = args.get("num_bits") if args is not None else None
    group = args.get("group_size") if args is not None else None
    symmetric = args.get("symmetric") if args is not None else None
    if not isinstance(bits, int) or isinstance(bits, bool):
        bits = 4
    if args is None:
        columns = scale.shape[1] if scale.ndim == 2 else 1
        group = group_size_of(None, shape[1], columns) if columns > 1 else None
    if not isinstance(group, int) or isinstance(group, bool) or group < 0:
        group = None
    if not isinstance(symmetric, bool):
        symmetric = "zero_point" not in parts
    params = compressed_tensors.PackedParams(bits, group, symmetric, rounding_of(codes.get("scale")))
    return compressed_tensors.dequantize_pack_quantized(
        weight.name, parts["packed"], scale, shape, params, parts.get("zero_point"), parts.get("g_idx")
    )
