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

import numpy as np
import numpy.typing as npt

from formats.quantized import awq, bitsandbytes, compressed_tensors, gptq, mxfp4
from formats.quantized._common import Floats, ceil_div, fail, round_to
from formats.quantized.affine import dequantize_affine
from formats.quantized.detect import LogicalWeight, Scheme, compressed_weight_args, gptq_params

#: Parts read when the reader opens, because the float shape is written in them.
SHAPE_PARTS = frozenset({"quant_state", "shape"})
#: Largest such part read at open (a quant state is a few hundred bytes of JSON, a weight_shape 16 bytes).
MAX_SHAPE_PART_BYTES = bitsandbytes.MAX_QUANT_STATE_BYTES
#: Most elements of the float weight a `weight_shape` may declare (as safetensors headers may).
MAX_WEIGHT_ELEMENTS = 1 << 40

#: The dtype a reference library returns the weight in, from the safetensors code of its scales.
_ROUNDING = {"F16": "float16", "BF16": "bfloat16", "F32": "float32"}

Parts = Mapping[str, npt.NDArray[np.generic]]


def rounding_of(code: str | None) -> str:
    """The output dtype of a dequantiser whose scales are stored as `code` (float32 when not a float)."""
    return _ROUNDING.get(code or "", "float32")


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


def _group_size(section: Mapping[str, object] | None, in_features: int, groups: int) -> int:
    """The configured group size, or the one the scales' group count gives (-1: one group per column)."""
    value = section.get("group_size") if section is not None else None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if groups <= 1:
        return -1
    return ceil_div(in_features, groups)


def _int_setting(section: Mapping[str, object] | None, key: str) -> int | None:
    value = section.get(key) if section is not None else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


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
    if scheme is Scheme.GPTQ:
        qweight = parts["qweight"]
        params = gptq_params(section, rounding_of(codes.get("scales")))
        if section is None or _int_setting(section, "group_size") is None:
            in_features = qweight.shape[0] * 32 // params.bits if qweight.ndim == 2 else 0
            params = gptq.GPTQParams(
                params.bits,
                _group_size(None, in_features, parts["scales"].shape[0] if parts["scales"].ndim else 1),
                params.checkpoint_format,
                params.output_dtype,
            )
        return gptq.dequantize_gptq(
            name, qweight, parts["qzeros"], parts["scales"], parts.get("g_idx"), params
        )
    if scheme is Scheme.AWQ:
        qweight, scales = parts["qweight"], parts["scales"]
        in_features = qweight.shape[0] if qweight.ndim == 2 else 0
        zero_point = section.get("zero_point", True) if section is not None else True
        version = section.get("version", "gemm") if section is not None else "gemm"
        params = awq.AWQParams(
            _group_size(section, in_features, scales.shape[0] if scales.ndim else 1),
            zero_point is not False,
            version if isinstance(version, str) else str(version),
            rounding_of(codes.get("scales")),
        )
        return awq.dequantize_awq(name, qweight, parts.get("qzeros"), scales, params)
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
        group = _group_size(None, shape[1], columns) if columns > 1 else None
    if not isinstance(group, int) or isinstance(group, bool) or group < 0:
        group = None
    if not isinstance(symmetric, bool):
        symmetric = "zero_point" not in parts
    params = compressed_tensors.PackedParams(bits, group, symmetric, rounding_of(codes.get("scale")))
    return compressed_tensors.dequantize_pack_quantized(
        weight.name, parts["packed"], scale, shape, params, parts.get("zero_point"), parts.get("g_idx")
    )
