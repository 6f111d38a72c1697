"""Which stored tensors of a Hugging Face checkpoint make up one quantised weight, and what it is called.

Pure functions over what a reader knows before reading any tensor: names, shapes and safetensors dtype
codes of every stored tensor, and the checkpoint's `config.json` (its `quantization_config`, or
`compression_config` in compressed-tensors checkpoints before 0.10). `plan_quantized` groups the parts of
each quantised Linear (GPTQ qweight/qzeros/scales/g_idx, bitsandbytes weight/absmax/quant_map/...,
compressed-tensors weight_packed/weight_scale/..., gpt-oss *_blocks/*_scales) into a `LogicalWeight` named
after the weight of the unquantised model, says which stored tensors it consumed (never to be analysed on
their own), and which quantisation parameters of activations it saw (input_scale, k_scale...).

The method comes from `quantization_config.quant_method` when there is a config, else from the names; a
config and names that disagree, or parts of a group that are missing, become `problems` (one line each) and
`refused` weights: the weight is still one entry, named as it would have been, consuming the parts that are
there, so a reader lists it as skipped with the problem as its reason and never analyses its scales or
packed integers as layers of their own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from formats.quantized.awq import AWQ_BITS, AWQParams, awq_encoding
from formats.quantized.bitsandbytes import QUANT_STATE_PREFIX, bnb_encoding
from formats.quantized.compressed_tensors import compressed_encoding
from formats.quantized.gptq import GPTQParams, gptq_encoding, gptq_logical_shape
from formats.quantized.mxfp4 import BLOCKS_SUFFIX, MXFP4_BLOCK, SCALES_SUFFIX, mxfp4_encoding


class Scheme(str, Enum):
    """The stored form of one logical weight."""

    GPTQ = "gptq"
    AWQ = "awq"
    BNB_4BIT = "bnb-4bit"
    BNB_INT8 = "bnb-int8"
    COMPRESSED_PACKED = "compressed-pack-quantized"
    COMPRESSED_NAIVE = "compressed-naive-quantized"
    COMPRESSED_FP8 = "compressed-float-quantized"
    COMPRESSED_NVFP4 = "compressed-nvfp4-pack-quantized"
    MXFP4 = "mxfp4"


class Layout(str, Enum):
    """Orientation of the dequantised array (the unquantised model's)."""

    OUT_IN = "out_in"  # nn.Linear (out, in)
    IN_OUT = "in_out"  # gpt-oss experts (E, in, out)


@dataclass(frozen=True, slots=True)
class StoredTensor:
    """What a reader knows of one stored tensor before reading it: name, shape, safetensors dtype code."""

    name: str
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True, slots=True)
class LogicalWeight:
    """One weight of the unquantised model and the stored tensors it is rebuilt from.

    Attributes:
        name: the unquantised model's name ("model.layers.0.self_attn.q_proj.weight").
        scheme: the stored form.
        parts: role -> stored name ("qweight" -> "...q_proj.qweight"); roles are the dequantiser's
            argument names.
        shape: the float shape when names and shapes give it; None when it is in a small tensor that must be
            read first (bitsandbytes' quant_state JSON, compressed-tensors' weight_shape).
        encoding: what the record says it was dequantised from (`gptq-int4-g128`, `nf4`...).
        layout: orientation of the dequantised array.
        gptq: GPTQ's settings (from the config, else from the parts' shapes); None for other schemes.
        awq: AWQ's settings, likewise.
    """

    name: str
    scheme: Scheme
    parts: Mapping[str, str]
    shape: tuple[int, ...] | None
    encoding: str
    layout: Layout = Layout.OUT_IN
    gptq: GPTQParams | None = None
    awq: AWQParams | None = None


@dataclass(frozen=True, slots=True)
class Refused:
    """A quantised weight whose parts were found but do not form a group.

    Attributes:
        name: the unquantised model's name of the weight.
        parts: role -> stored name, of the parts that are there (the first is the main one).
        reason: why it cannot be rebuilt, in words.
    """

    name: str
    parts: Mapping[str, str]
    reason: str


@dataclass(frozen=True, slots=True)
class QuantPlan:
    """The quantised weights of a checkpoint.

    Attributes:
        method: the quant_method of the config or, without one, the one the names show (None: none).
        weights: one entry per logical weight, in the order its first part is stored.
        consumed: stored name -> the logical weight it is part of; such tensors are never layers.
        activation_params: stored name -> the module whose activations it quantises (input_scale...).
        problems: groups that could not be formed, one line each.
        refused: those groups, each with the parts found (also in `consumed`).
    """

    method: str | None
    weights: tuple[LogicalWeight, ...] = ()
    consumed: Mapping[str, str] = field(default_factory=dict)
    activation_params: Mapping[str, str] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    refused: tuple[Refused, ...] = ()


#: Parameters compressed-tensors and FP8 exporters store for activations (and the KV cache), not weights.
ACTIVATION_SUFFIXES = (
    ".input_scale",
    ".input_zero_point",
    ".input_global_scale",
    ".output_scale",
    ".output_zero_point",
    ".k_scale",
    ".v_scale",
    ".q_scale",
)
_GPTQ_PARTS = {"qweight": ".qweight", "qzeros": ".qzeros", "scales": ".scales", "g_idx": ".g_idx"}
_BNB_NESTED = ("nested_absmax", "nested_quant_map")


def quantization_config(config: Mapping[str, object] | None) -> Mapping[str, object] | None:
    """The quantisation section of a `config.json` (or the section itself when given one)."""
    if not config:
        return None
    if "quant_method" in config:
        return config
    for key in ("quantization_config", "compression_config"):
        section = config.get(key)
        if isinstance(section, Mapping):
            return section
    return None


def quant_method(section: Mapping[str, object] | None) -> str | None:
    """`quant_method`, lower-cased; compressed-tensors' "sparseml" spelling is its old name."""
    if section is None:
        return None
    method = section.get("quant_method")
    if not isinstance(method, str):
        return None
    method = method.lower().replace("_", "-")
    return "compressed-tensors" if method == "sparseml" else method


def _int_setting(section: Mapping[str, object] | None, key: str, default: int) -> int:
    value = section.get(key, default) if section is not None else default
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def gptq_params(section: Mapping[str, object] | None, output_dtype: str = "float16") -> GPTQParams:
    """GPTQParams from a `quant_method: gptq` section (bits 4 and group 128 are the library defaults)."""
    fmt = section.get("checkpoint_format", "gptq") if section is not None else "gptq"
    return GPTQParams(
        bits=_int_setting(section, "bits", 4),
        group_size=_int_setting(section, "group_size", 128),
        checkpoint_format=fmt if isinstance(fmt, str) else "gptq",
        output_dtype=output_dtype,
    )


def compressed_weight_args(section: Mapping[str, object] | None, module: str) -> Mapping[str, object] | None:
    """The `weights` QuantizationArgs of the config group targeting `module`: a group whose targets name
    it (or a `re:` pattern matching it), else the only group that targets Linear layers."""
    groups = section.get("config_groups") if section is not None else None
    if not isinstance(groups, Mapping):
        return None
    linear: list[Mapping[str, object]] = []
    for group in groups.values():
        if not isinstance(group, Mapping) or not isinstance(group.get("weights"), Mapping):
            continue
        targets = group.get("targets", [])
        weights = group["weights"]
        assert isinstance(weights, Mapping)
        for target in targets if isinstance(targets, list) else []:
            if not isinstance(target, str):
                continue
            if target.startswith("re:"):
                try:
                    if re.match(target[3:], module):
                        return weights
                except re.error:
                    continue
            elif target == module or module.endswith("." + target):
                return weights
            elif target == "Linear":
                linear.append(weights)
    return linear[0] if len(linear) == 1 else None


def group_size_of(section: Mapping[str, object] | None, in_features: int, groups: int) -> int:
    """The configured group size, or the one the scales' group count gives (-1: one group per column)."""
    value = section.get("group_size") if section is not None else None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if groups <= 1:
        return -1
    return -(-in_features // groups)


#: The dtype a reference library returns a weight in, from the safetensors code of its scales.
_ROUNDING = {"F16": "float16", "BF16": "bfloat16", "F32": "float32"}


def rounding_of(code: str | None) -> str:
    """The output dtype of a dequantiser whose scales are stored as `code` (float32 when not a float)."""
    return _ROUNDING.get(code or "", "float32")


def _gptq_settings(
    section: Mapping[str, object] | None,
    qweight: StoredTensor,
    parts: Mapping[str, str],
    names: Mapping[str, StoredTensor],
) -> GPTQParams:
    """GPTQ's settings: the config's, and where it says nothing the ones the shapes give (bits from
    qweight's rows over g_idx's length, the group size from the number of scale rows)."""
    scales = names[parts["scales"]]
    params = gptq_params(section, rounding_of(scales.dtype))
    bits = params.bits
    if (section is None or "bits" not in section) and "g_idx" in parts and names[parts["g_idx"]].shape:
        in_features = names[parts["g_idx"]].shape[0]
        if in_features and (qweight.shape[0] * 32) % in_features == 0:
            bits = qweight.shape[0] * 32 // in_features
    in_features = qweight.shape[0] * 32 // bits if len(qweight.shape) == 2 and bits else 0
    groups = scales.shape[0] if scales.shape else 1
    return GPTQParams(
        bits, group_size_of(section, in_features, groups), params.checkpoint_format, params.output_dtype
    )


def _awq_settings(
    section: Mapping[str, object] | None, qweight: StoredTensor, scales: StoredTensor
) -> AWQParams:
    zero_point = section.get("zero_point", True) if section is not None else True
    version = section.get("version", "gemm") if section is not None else "gemm"
    in_features = qweight.shape[0] if len(qweight.shape) == 2 else 0
    return AWQParams(
        group_size_of(section, in_features, scales.shape[0] if scales.shape else 1),
        zero_point is not False,
        version if isinstance(version, str) else str(version),
        rounding_of(scales.dtype),
    )


def _prefixes(names: Mapping[str, StoredTensor], suffix: str) -> list[str]:
    return [name[: -len(suffix)] for name in names if name.endswith(suffix)]


def _is_awq_layout(qweight: StoredTensor, scales: StoredTensor | None) -> bool | None:
    """AWQ packs the output axis (qweight (in, out / 8)), GPTQ the input axis (qweight (in * b / 32, out)):
    the scales' column count, out, tells them apart. None when the shapes say neither."""
    if scales is None or len(qweight.shape) != 2 or len(scales.shape) != 2:
        return None
    if qweight.shape[1] == scales.shape[1]:
        return False
    if qweight.shape[1] * 32 // AWQ_BITS == scales.shape[1]:
        return True
    return None


def plan_quantized(tensors: Sequence[StoredTensor], config: Mapping[str, object] | None = None) -> QuantPlan:
    """Group the stored tensors of a checkpoint into logical quantised weights.

    Args:
        tensors: every stored tensor, in file order.
        config: the checkpoint's parsed `config.json` (or its quantization_config section), if any.
    """
    section = quantization_config(config)
    method = quant_method(section)
    names = {tensor.name: tensor for tensor in tensors}
    weights: list[LogicalWeight] = []
    problems: list[str] = []
    refused: list[Refused] = []
    consumed: dict[str, str] = {}

    def take(weight: LogicalWeight) -> None:
        weights.append(weight)
        for stored in weight.parts.values():
            consumed[stored] = weight.name

    def refuse(name: str, parts: Mapping[str, str], problem: str) -> None:
        present = {role: stored for role, stored in parts.items() if stored in names}
        problems.append(problem)
        refused.append(Refused(name, present, problem.split(": ", 1)[-1]))
        for stored in present.values():
            consumed[stored] = name

    for prefix in _prefixes(names, ".qweight"):
        parts = {role: prefix + suffix for role, suffix in _GPTQ_PARTS.items() if prefix + suffix in names}
        qweight, scales = names[parts["qweight"]], names.get(prefix + ".scales")
        awq_shaped = _is_awq_layout(qweight, scales)
        kind = (
            method
            if method in ("gptq", "awq")
            else ("awq" if awq_shaped else "gptq" if awq_shaped is False else None)
        )
        if kind is None:
            refuse(
                prefix + ".weight",
                parts,
                f"{prefix}.qweight: neither GPTQ nor AWQ shapes (qweight {list(qweight.shape)})",
            )
            continue
        if awq_shaped is not None and awq_shaped != (kind == "awq"):
            refuse(
                prefix + ".weight",
                parts,
                f"{prefix}.qweight: the config says {kind} but the shapes are those of the other",
            )
            continue
        missing = [role for role in ("qzeros", "scales") if role not in parts]
        if missing:
            refuse(
                prefix + ".weight", parts, f"{prefix}.qweight: {kind} weight without {' and '.join(missing)}"
            )
            continue
        if kind == "awq":
            parts.pop("g_idx", None)
            out_features, in_features = qweight.shape[1] * 32 // AWQ_BITS, qweight.shape[0]
            awq_settings = _awq_settings(section, qweight, names[parts["scales"]])
            take(
                LogicalWeight(
                    prefix + ".weight",
                    Scheme.AWQ,
                    parts,
                    (out_features, in_features),
                    awq_encoding(),
                    awq=awq_settings,
                )
            )
        else:
            params = _gptq_settings(section, qweight, parts, names)
            logical = gptq_logical_shape(qweight.shape, params.bits) if len(qweight.shape) == 2 else None
            encoding = gptq_encoding(params)
            take(LogicalWeight(prefix + ".weight", Scheme.GPTQ, parts, logical, encoding, gptq=params))

    for state_name in [name for name in names if f".weight.{QUANT_STATE_PREFIX}" in name]:
        prefix, quant_type = state_name.split(f".{QUANT_STATE_PREFIX}", 1)
        parts = {"packed": prefix, "quant_state": state_name}
        for role in ("absmax", "quant_map", *_BNB_NESTED):
            if f"{prefix}.{role}" in names:
                parts[role] = f"{prefix}.{role}"
        missing = [role for role in ("packed", "absmax", "quant_map") if parts.get(role) not in names]
        if missing or (("nested_absmax" in parts) != ("nested_quant_map" in parts)):
            refuse(
                prefix,
                parts,
                f"{prefix}: bitsandbytes 4-bit weight without {', '.join(missing) or 'its nested parts'}",
            )
            continue
        take(LogicalWeight(prefix, Scheme.BNB_4BIT, parts, None, bnb_encoding(quant_type)))

    for prefix in _prefixes(names, ".SCB"):
        stored = names.get(prefix + ".weight")
        if stored is None or stored.dtype != "I8":
            refuse(
                prefix + ".weight",
                {"scb": prefix + ".SCB"},
                f"{prefix}.SCB: no int8 {prefix}.weight beside it",
            )
            continue
        parts = {"values": prefix + ".weight", "scb": prefix + ".SCB"}
        if prefix + ".weight_format" in names:
            parts["weight_format"] = prefix + ".weight_format"
        take(LogicalWeight(prefix + ".weight", Scheme.BNB_INT8, parts, stored.shape, bnb_encoding("int8")))

    for prefix in _prefixes(names, ".weight_packed"):
        packed = names[prefix + ".weight_packed"]
        args = compressed_weight_args(section, prefix)
        bits = args.get("num_bits", 4) if args is not None else 4
        bits = bits if isinstance(bits, int) and not isinstance(bits, bool) else 4
        if packed.dtype == "U8":
            parts = {
                "packed": packed.name,
                "scale": prefix + ".weight_scale",
                "global_scale": prefix + ".weight_global_scale",
            }
            scheme, fmt = Scheme.COMPRESSED_NVFP4, "nvfp4-pack-quantized"
            shape: tuple[int, ...] | None = (
                (packed.shape[0], packed.shape[1] * 2) if len(packed.shape) == 2 else None
            )
        else:
            parts = {
                "packed": packed.name,
                "scale": prefix + ".weight_scale",
                "shape": prefix + ".weight_shape",
            }
            for role, suffix in (("zero_point", ".weight_zero_point"), ("g_idx", ".weight_g_idx")):
                if prefix + suffix in names:
                    parts[role] = prefix + suffix
            scheme, fmt, shape = Scheme.COMPRESSED_PACKED, "pack-quantized", None
        missing = [role for role, stored in parts.items() if stored not in names]
        if missing:
            refuse(
                prefix + ".weight",
                parts,
                f"{packed.name}: compressed-tensors weight without {', '.join(missing)}",
            )
            continue
        take(LogicalWeight(prefix + ".weight", scheme, parts, shape, compressed_encoding(fmt, bits)))

    if method == "compressed-tensors":
        for prefix in _prefixes(names, ".weight_scale"):
            stored = names.get(prefix + ".weight")
            if stored is None or prefix + ".weight" in consumed:
                continue
            parts = {"values": stored.name, "scale": prefix + ".weight_scale"}
            if stored.dtype.startswith("F8"):
                take(
                    LogicalWeight(
                        stored.name,
                        Scheme.COMPRESSED_FP8,
                        parts,
                        stored.shape,
                        compressed_encoding("float-quantized", 8),
                    )
                )
            elif stored.dtype in ("I8", "U8"):
                if prefix + ".weight_zero_point" in names:
                    parts["zero_point"] = prefix + ".weight_zero_point"
                take(
                    LogicalWeight(
                        stored.name,
                        Scheme.COMPRESSED_NAIVE,
                        parts,
                        stored.shape,
                        compressed_encoding("naive-quantized", 8),
                    )
                )

    for prefix in _prefixes(names, BLOCKS_SUFFIX):
        blocks, scales = names[prefix + BLOCKS_SUFFIX], names.get(prefix + SCALES_SUFFIX)
        if blocks.dtype != "U8" or len(blocks.shape) < 3:
            continue  # not an MXFP4 pair (some models name other tensors *_blocks)
        if scales is None or scales.shape != blocks.shape[:-1]:
            refuse(
                prefix,
                {"blocks": blocks.name, "scales": prefix + SCALES_SUFFIX},
                f"{blocks.name}: MXFP4 blocks without {prefix}{SCALES_SUFFIX} "
                f"of shape {list(blocks.shape[:-1])}",
            )
            continue
        *lead, out_features, groups, _width = blocks.shape
        stacked = (*lead, groups * MXFP4_BLOCK, out_features)
        parts = {"blocks": blocks.name, "scales": scales.name}
        take(LogicalWeight(prefix, Scheme.MXFP4, parts, stacked, mxfp4_encoding(), Layout.IN_OUT))

    activation = {
        name: name.rsplit(".", 1)[0]
        for name in names
        if name.endswith(ACTIVATION_SUFFIXES) and name not in consumed
    }
    order = {name: position for position, name in enumerate(names)}
    weights.sort(key=lambda weight: min(order[stored] for stored in weight.parts.values()))
    detected = method or (weights[0].scheme.value if weights else None)
    refused.sort(key=lambda weight: min(order[stored] for stored in weight.parts.values()))
    return QuantPlan(detected, tuple(weights), consumed, activation, tuple(problems), tuple(refused))
