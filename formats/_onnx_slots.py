"""What each input of an ONNX operator is, as far as weights go: the operator knowledge of the reader.

For every operator wwinspect models (Conv, Gemm, MatMul, LSTM/GRU/RNN, Gather, the quantised and
com.microsoft fused variants, the normalisations, PReLU) `classify_slot` says whether an input is a
weight, a bias, a normalisation parameter or not a weight at all, and for weights their kind, layout,
groups and the suffix that names them. Operator semantics follow the ONNX operator reference
(onnx/docs/Operators.md) and onnxruntime's contrib operators (docs/ContribOperators.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from formats._onnx_tensor import FLOAT_CODES
from formats.types import Layout, Role, WeightKind

if TYPE_CHECKING:
    import onnx

DEFAULT_DOMAINS = frozenset({"", "ai.onnx"})
MS_DOMAIN = "com.microsoft"


class SlotRole(str, Enum):
    """What an operator input is, as far as weights go."""

    WEIGHT = "weight"  # a matrix or kernel the layer multiplies by
    BIAS = "bias"  # added after the product; a vector
    NORM = "norm"  # normalisation scale/shift/statistics
    NOT_WEIGHT = "not_weight"  # shapes, indices, quantisation parameters, initial states
    UNKNOWN = "unknown"  # an input of an operator we do not model (Add, Mul, Concat...)


@dataclass(frozen=True, slots=True)
class Slot:
    """How a consumer uses one constant input.

    Attributes:
        role: weight, bias, norm, not a weight, or unknown.
        kind: the layer kind of a weight slot.
        layout: axis order of the operand as the consumer sees it.
        suffix: appended to the consumer's name when the constant's own name is generated.
        skip_reason: a fact only ONNX knows that keeps the weight from being read (an operator-quantised
            weight); what the kind alone rules out (biases, norms, depthwise kernels) is worded by
            `formats.skip_reasons` from the kind and groups.
        groups: convolution groups.
        split_directions: LSTM/GRU/RNN W and R: the leading axis holds one matrix per direction.
        role_hint: network role where the operator says so (Gather on a table is an embedding).
    """

    role: SlotRole
    kind: WeightKind | None = None
    layout: Layout = Layout.UNKNOWN
    suffix: str = ""
    skip_reason: str | None = None
    groups: int = 1
    split_directions: bool = False
    role_hint: Role | None = None


_UNKNOWN_SLOT = Slot(SlotRole.UNKNOWN)
_NOT_WEIGHT = Slot(SlotRole.NOT_WEIGHT)


def attr_int(node: onnx.NodeProto, name: str, default: int) -> int:
    for attribute in node.attribute:
        if attribute.name == name:
            return int(attribute.i)
    return default


def attr_ints(node: onnx.NodeProto, name: str) -> tuple[int, ...] | None:
    for attribute in node.attribute:
        if attribute.name == name:
            return tuple(int(value) for value in attribute.ints)
    return None


# Inputs of common operators that are never weights (shapes, axes, indices, bounds, states, q-params).
_NOT_WEIGHT_INPUTS: dict[str, frozenset[int]] = {
    "Reshape": frozenset({1}),
    "Expand": frozenset({1}),
    "Tile": frozenset({1}),
    "Slice": frozenset({1, 2, 3, 4}),
    "Squeeze": frozenset({1}),
    "Unsqueeze": frozenset({1}),
    "Pad": frozenset({1, 2, 3}),
    "Resize": frozenset({1, 2, 3}),
    "Upsample": frozenset({1}),
    "Split": frozenset({1}),
    "Clip": frozenset({1, 2}),
    "TopK": frozenset({1}),
    "OneHot": frozenset({1, 2}),
    "ConstantOfShape": frozenset({0}),
    "Range": frozenset({0, 1, 2}),
    "ReduceSum": frozenset({1}),
    "ReduceMean": frozenset({1}),
    "ReduceMax": frozenset({1}),
    "ReduceMin": frozenset({1}),
    "ReduceProd": frozenset({1}),
    "ReduceL2": frozenset({1}),
    "ScatterND": frozenset({1}),
    "GatherND": frozenset({1}),
    "GatherElements": frozenset({1}),
    "QuantizeLinear": frozenset({1, 2}),
    "DequantizeLinear": frozenset({1, 2}),
    "DynamicQuantizeLinear": frozenset(),
    "Loop": frozenset({0, 1}),
    "If": frozenset({0}),
    "Trilu": frozenset({1}),
    "CumSum": frozenset({1}),
    "NonMaxSuppression": frozenset({2, 3, 4}),
}


def classify_slot(node: onnx.NodeProto, index: int, shape: tuple[int, ...], code: int) -> Slot:
    """Say what input `index` of `node` is, given the operand's shape as the node sees it."""
    op = node.op_type
    domain = node.domain
    if domain not in DEFAULT_DOMAINS and domain != MS_DOMAIN:
        return _UNKNOWN_SLOT
    if domain == MS_DOMAIN and op not in (
        "FusedConv",
        "FusedGemm",
        "FusedMatMul",
        "MatMulNBits",
        "GatherBlockQuantized",
    ):
        return _UNKNOWN_SLOT if op != "DequantizeLinear" else _NOT_WEIGHT

    if op in ("Conv", "FusedConv", "ConvTranspose"):
        if index == 1:
            groups = max(1, attr_int(node, "group", 1))
            # Conv W is (M, C/group, *k); ConvTranspose W is (C, M/group, *k). Depthwise: one input channel
            # per group in Conv, one output channel per group in ConvTranspose.
            per_group = shape[1] if len(shape) > 1 else 0
            if groups > 1 and per_group == 1:
                return Slot(
                    SlotRole.WEIGHT, WeightKind.DEPTHWISE_CONV, Layout.OUT_IN, ".weight", groups=groups
                )
            # ConvTranspose stores (in, out, *k); the (in, out) slices have the singular values of the
            # (out, in) slices, so the spectrum is the same read either way.
            return Slot(SlotRole.WEIGHT, WeightKind.CONV, Layout.OUT_IN, ".weight", groups=groups)
        if index == 2:
            return Slot(SlotRole.BIAS, WeightKind.BIAS, suffix=".bias")
        return _UNKNOWN_SLOT

    if op in ("Gemm", "FusedGemm"):
        if index == 0:
            layout = Layout.IN_OUT if attr_int(node, "transA", 0) else Layout.OUT_IN
            return Slot(SlotRole.WEIGHT, WeightKind.DENSE, layout, ".weight_a")
        if index == 1:
            layout = Layout.OUT_IN if attr_int(node, "transB", 0) else Layout.IN_OUT
            return Slot(SlotRole.WEIGHT, WeightKind.DENSE, layout, ".weight")
        if index == 2:
            return Slot(SlotRole.BIAS, WeightKind.BIAS, suffix=".bias")
        return _UNKNOWN_SLOT

    if op in ("MatMul", "FusedMatMul"):
        if index > 1:
            return _UNKNOWN_SLOT
        # Y = A @ B: a constant B is (in, out); a constant A multiplies from the left, (out, in).
        transposed = attr_int(node, "transB" if index == 1 else "transA", 0) if op == "FusedMatMul" else 0
        if index == 1:
            layout = Layout.OUT_IN if transposed else Layout.IN_OUT
        else:
            layout = Layout.IN_OUT if transposed else Layout.OUT_IN
        kind = WeightKind.EXPERTS if len(shape) > 2 else WeightKind.DENSE
        return Slot(SlotRole.WEIGHT, kind, layout, ".weight" if index == 1 else ".weight_a")

    if op == "MatMulNBits" and domain == MS_DOMAIN:
        # B is dequantised to the (K, N) = (in, out) weight the unquantised MatMul had.
        if index == 1:
            return Slot(SlotRole.WEIGHT, WeightKind.DENSE, Layout.IN_OUT, ".weight")
        return _NOT_WEIGHT
    if op == "GatherBlockQuantized" and domain == MS_DOMAIN:
        if index == 0:
            return Slot(
                SlotRole.WEIGHT, WeightKind.EMBEDDING, Layout.UNKNOWN, ".weight", role_hint=Role.EMBEDDING
            )
        return _NOT_WEIGHT

    if op in ("LSTM", "GRU", "RNN"):
        if index in (1, 2):
            return Slot(
                SlotRole.WEIGHT,
                WeightKind.RECURRENT,
                Layout.OUT_IN,
                ".W" if index == 1 else ".R",
                split_directions=True,
            )
        if index == 3:
            return Slot(SlotRole.BIAS, WeightKind.BIAS, suffix=".B")
        if op == "LSTM" and index == 7:
            return Slot(SlotRole.BIAS, WeightKind.BIAS, suffix=".P")  # peephole weights: vectors
        return _NOT_WEIGHT  # sequence_lens, initial_h, initial_c

    if op == "Gather":
        if index == 0 and code in FLOAT_CODES and len(shape) == 2 and attr_int(node, "axis", 0) == 0:
            return Slot(
                SlotRole.WEIGHT, WeightKind.EMBEDDING, Layout.UNKNOWN, ".weight", role_hint=Role.EMBEDDING
            )
        # Gathering from an integer table, or with constant indices, is shape arithmetic.
        return _NOT_WEIGHT

    if op in ("MatMulInteger", "ConvInteger", "QLinearMatMul", "QLinearConv"):
        weight_index = {"MatMulInteger": 1, "ConvInteger": 1, "QLinearMatMul": 3, "QLinearConv": 3}[op]
        if index == weight_index:
            kind = WeightKind.CONV if "Conv" in op else WeightKind.DENSE
            layout = Layout.OUT_IN if "Conv" in op else Layout.IN_OUT
            return Slot(SlotRole.WEIGHT, kind, layout, ".weight")
        if op == "QLinearConv" and index == 8:
            return Slot(SlotRole.BIAS, WeightKind.BIAS, suffix=".bias")
        return _NOT_WEIGHT

    if op in ("LayerNormalization", "InstanceNormalization", "GroupNormalization", "RMSNormalization"):
        if index in (1, 2):
            return Slot(SlotRole.NORM, WeightKind.NORM, suffix=".weight" if index == 1 else ".bias")
        return _UNKNOWN_SLOT
    if op == "BatchNormalization":
        if 1 <= index <= 4:
            suffix = (".weight", ".bias", ".running_mean", ".running_var")[index - 1]
            return Slot(SlotRole.NORM, WeightKind.NORM, suffix=suffix)
        return _UNKNOWN_SLOT
    if op == "PRelu" and index == 1:
        return Slot(SlotRole.NORM, WeightKind.OTHER, suffix=".slope")  # PReLU slopes: per channel

    if index in _NOT_WEIGHT_INPUTS.get(op, frozenset()):
        return _NOT_WEIGHT
    return _UNKNOWN_SLOT
