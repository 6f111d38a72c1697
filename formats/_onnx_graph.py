"""Find the weights of an ONNX model from its graph: which constants feed which layers, and how.

weightwatcher treats every initializer as a layer and guesses its type from its rank. Real exports break
that: weights sit in `Constant` nodes and in If/Loop/Scan subgraphs, reach their layer through
Transpose, Cast or DequantizeLinear, carry names the exporter made up (`onnx::MatMul_123`, `val_7`), or
pack several matrices into one tensor (LSTM/GRU/RNN directions). This module walks the main graph and
every subgraph, resolves each node input back to the constant it comes from, and describes, for every
constant that is a weight, the matrix its consumer sees. It plans; `formats.onnx_reader` reads.

Scope of the chain following: Identity, Cast (to a float type), Transpose and DequantizeLinear (default
and com.microsoft domains), in any order. Anything else between a constant and its consumer (Reshape,
Mul by a scale...) means the consumer's operand is computed, not a stored weight.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from formats._onnx_tensor import FLOAT_CODES, INTEGER_CODES, element_type
from formats.types import Layout, Role, WeightKind

if TYPE_CHECKING:
    import onnx

#: Deepest chain of Identity/Cast/Transpose/DequantizeLinear followed from a consumer back to a constant.
MAX_CHAIN = 16
#: Deepest nesting of subgraphs walked (protobuf itself refuses messages nested 100 deep).
MAX_GRAPH_DEPTH = 64
#: Longest metadata string parsed for the torch exporter's module scopes.
MAX_METADATA_CHARS = 65536

_DEFAULT_DOMAINS = frozenset({"", "ai.onnx"})
_MS_DOMAIN = "com.microsoft"

# Names exporters generate for tensors they create (constant folding, fused or transposed weights). A
# weight with such a name is named after the node that consumes it instead, keeping the stored name.
_GENERATED_NAME = re.compile(
    r"""^(?:
        onnx::.*                                  # torch.onnx TorchScript exporter: onnx::MatMul_123
      | (?:.*/)?Constant(?:_\d+)?(?:_output_0)?   # Constant nodes: Constant_42, /lstm/Constant_3_output_0
      | _?val_\d+ | .*_val_\d+                    # torch.onnx dynamo exporter / onnxscript: val_7, _val_3
      | \d+                                       # bare value numbers
      | _v_\d+ | const_fold_opt__\d+              # onnxscript / tf2onnx constant folding
      | (?:initializer|const)_?\d+
    )$""",
    re.VERBOSE,
)


def is_generated_name(name: str) -> bool:
    """True for names an exporter made up rather than took from the model (`onnx::MatMul_12`, `val_7`)."""
    return not name or _GENERATED_NAME.match(name) is not None


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
        skip_reason: why the tensor is listed but not analysed (depthwise kernels, vectors).
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


# ----------------------------------------------------------------------------------------------------
# Transforms between a stored constant and the operand its consumer sees.


@dataclass(frozen=True, slots=True)
class Transpose:
    """A Transpose node; `perm` None reverses the axes (the operator's default)."""

    perm: tuple[int, ...] | None

    def shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        perm = self.perm if self.perm is not None else tuple(reversed(range(len(shape))))
        return tuple(shape[axis] for axis in perm)


@dataclass(frozen=True, slots=True)
class Cast:
    """A Cast node to the ONNX element type `to`."""

    to: int


@dataclass(frozen=True, slots=True)
class Dequantize:
    """A DequantizeLinear node: y = (x - zero_point) * scale, per tensor, per axis or per block."""

    scale: Constant
    zero_point: Constant | None
    axis: int
    block_size: int
    op: str  # "DequantizeLinear" or "com.microsoft.DequantizeLinear"


@dataclass(frozen=True, slots=True)
class SelectDirection:
    """Take index `index` of the leading (num_directions) axis of an LSTM/GRU/RNN weight."""

    index: int
    count: int

    def shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return shape[1:]


Transform = Transpose | Cast | Dequantize | SelectDirection


def presented_shape(shape: tuple[int, ...], transforms: tuple[Transform, ...]) -> tuple[int, ...]:
    """The shape the consumer sees after `transforms` (applied in order, source first)."""
    for transform in transforms:
        if isinstance(transform, Transpose | SelectDirection):
            shape = transform.shape(shape)
    return shape


# ----------------------------------------------------------------------------------------------------
# Constants and scopes.


@dataclass(frozen=True, slots=True)
class Constant:
    """A constant value of the model: an initializer, a Constant node's value, or a sparse initializer.

    Attributes:
        name: the value's name in its graph (a Constant node's output name).
        tensor: the TensorProto holding the values (for sparse ones, the `values` part).
        where: for messages, "initializer" or "Constant node 'x'", plus the graph path when not main.
        from_node: True for Constant nodes, False for initializers.
        sparse_shape: the dense shape of a sparse initializer; None when dense.
    """

    name: str
    tensor: onnx.TensorProto = field(compare=False, repr=False)
    where: str
    from_node: bool = False
    sparse_shape: tuple[int, ...] | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        if self.sparse_shape is not None:
            return self.sparse_shape
        return tuple(int(dim) for dim in self.tensor.dims)

    @property
    def code(self) -> int:
        return int(self.tensor.data_type)


class _Scope:
    """The names visible in one graph: its constants, the nodes producing its values, and its parent's."""

    def __init__(self, parent: _Scope | None, path: str) -> None:
        self.parent = parent
        self.path = path
        self.constants: dict[str, Constant] = {}
        self.producers: dict[str, onnx.NodeProto] = {}
        self.runtime: set[str] = set()  # graph inputs without an initializer: values known only at run time

    def lookup(self, name: str) -> Constant | onnx.NodeProto | None:
        """Innermost definition of `name`: a constant, the node producing it, or None (run-time value)."""
        scope: _Scope | None = self
        while scope is not None:
            if name in scope.constants:
                return scope.constants[name]
            if name in scope.producers:
                return scope.producers[name]
            if name in scope.runtime:
                return None
            scope = scope.parent
        return None


# ----------------------------------------------------------------------------------------------------
# What each operator input is.


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    for attribute in node.attribute:
        if attribute.name == name:
            return int(attribute.i)
    return default


def _attr_ints(node: onnx.NodeProto, name: str) -> tuple[int, ...] | None:
    for attribute in node.attribute:
        if attribute.name == name:
            return tuple(int(value) for value in attribute.ints)
    return None


def _attr_str(node: onnx.NodeProto, name: str, default: str) -> str:
    for attribute in node.attribute:
        if attribute.name == name:
            return attribute.s.decode("utf-8", "replace")
    return default


_BIAS = "bias: a vector, not a matrix"
_DEPTHWISE = "one filter per channel, not a matrix"
_NORM = "normalisation parameter: a vector, not a matrix"

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
    if domain not in _DEFAULT_DOMAINS and domain != _MS_DOMAIN:
        return _UNKNOWN_SLOT
    if domain == _MS_DOMAIN and op not in ("FusedConv", "FusedGemm", "FusedMatMul", "MatMulNBits"):
        return _UNKNOWN_SLOT if op != "DequantizeLinear" else _NOT_WEIGHT

    if op in ("Conv", "FusedConv", "ConvTranspose"):
        if index == 1:
            groups = max(1, _attr(node, "group", 1))
            # Conv W is (M, C/group, *k); ConvTranspose W is (C, M/group, *k). Depthwise: one input channel
            # per group in Conv, one output channel per group in ConvTranspose.
            per_group = shape[1] if len(shape) > 1 else 0
            if groups > 1 and per_group == 1:
                return Slot(
                    SlotRole.WEIGHT,
                    WeightKind.DEPTHWISE_CONV,
                    Layout.OUT_IN,
                    ".weight",
                    skip_reason=f"depthwise convolution kernel (groups={groups}): {_DEPTHWISE}",
                    groups=groups,
                )
            # ConvTranspose stores (in, out, *k); the (in, out) slices have the singular values of the
            # (out, in) slices, so the spectrum is the same read either way.
            return Slot(SlotRole.WEIGHT, WeightKind.CONV, Layout.OUT_IN, ".weight", groups=groups)
        if index == 2:
            return Slot(SlotRole.BIAS, WeightKind.BIAS, suffix=".bias", skip_reason=_BIAS)
        return _UNKNOWN_SLOT

    if op in ("Gemm", "FusedGemm"):
        if index == 0:
            layout = Layout.IN_OUT if _attr(node, "transA", 0) else Layout.OUT_IN
            return Slot(SlotRole.WEIGHT, WeightKind.DENSE, layout, ".weight_a")
        if index == 1:
            layout = Layout.OUT_IN if _attr(node, "transB", 0) else Layout.IN_OUT
            return Slot(SlotRole.WEIGHT, WeightKind.DENSE, layout, ".weight")
        if index == 2:
            return Slot(SlotRole.BIAS, WeightKind.BIAS, suffix=".bias", skip_reason=_BIAS)
        return _UNKNOWN_SLOT

    if op in ("MatMul", "FusedMatMul"):
        if index > 1:
            return _UNKNOWN_SLOT
        # Y = A @ B: a constant B is (in, out); a constant A multiplies from the left, (out, in).
        transposed = _attr(node, "transB" if index == 1 else "transA", 0) if op == "FusedMatMul" else 0
        if index == 1:
            layout = Layout.OUT_IN if transposed else Layout.IN_OUT
        else:
            layout = Layout.IN_OUT if transposed else Layout.OUT_IN
        kind = WeightKind.EXPERTS if len(shape) > 2 else WeightKind.DENSE
        return Slot(SlotRole.WEIGHT, kind, layout, ".weight" if index == 1 else ".weight_a")

    if op == "MatMulNBits" and domain == _MS_DOMAIN:
        if index == 1:
            return Slot(
                SlotRole.WEIGHT,
                WeightKind.DENSE,
                Layout.OUT_IN,
                ".weight",
                skip_reason="com.microsoft MatMulNBits block-quantised weight: not supported yet",
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
            return Slot(SlotRole.BIAS, WeightKind.BIAS, suffix=".B", skip_reason=_BIAS)
        if op == "LSTM" and index == 7:
            return Slot(
                SlotRole.BIAS,
                WeightKind.BIAS,
                suffix=".P",
                skip_reason="peephole weights: vectors, not a matrix",
            )
        return _NOT_WEIGHT  # sequence_lens, initial_h, initial_c

    if op == "Gather":
        if index == 0 and code in FLOAT_CODES and len(shape) == 2 and _attr(node, "axis", 0) == 0:
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
            return Slot(
                SlotRole.WEIGHT,
                kind,
                layout,
                ".weight",
                skip_reason=f"integer weight of {op}: operator-quantised weights are not dequantised yet",
            )
        if op == "QLinearConv" and index == 8:
            return Slot(SlotRole.BIAS, WeightKind.BIAS, suffix=".bias", skip_reason=_BIAS)
        return _NOT_WEIGHT

    if op in ("LayerNormalization", "InstanceNormalization", "GroupNormalization", "RMSNormalization"):
        if index in (1, 2):
            return Slot(
                SlotRole.NORM, WeightKind.NORM, suffix=".weight" if index == 1 else ".bias", skip_reason=_NORM
            )
        return _UNKNOWN_SLOT
    if op == "BatchNormalization":
        if 1 <= index <= 4:
            suffix = (".weight", ".bias", ".running_mean", ".running_var")[index - 1]
            return Slot(SlotRole.NORM, WeightKind.NORM, suffix=suffix, skip_reason=_NORM)
        return _UNKNOWN_SLOT
    if op == "PRelu" and index == 1:
        return Slot(
            SlotRole.NORM, WeightKind.OTHER, suffix=".slope", skip_reason="PReLU slopes: not a matrix"
        )

    if index in _NOT_WEIGHT_INPUTS.get(op, frozenset()):
        return _NOT_WEIGHT
    return _UNKNOWN_SLOT


# ----------------------------------------------------------------------------------------------------
# The plan.


@dataclass(frozen=True, slots=True)
class Use:
    """One consumer of one constant, after following the chain between them.

    Attributes:
        constant: the stored constant.
        transforms: what happens to the values on the way (source first).
        node: the consuming node.
        node_label: the consumer's name, or `op_type#index` within its graph when unnamed.
        graph: path of the consumer's graph ("main", "main/node_cond__0.then_branch").
        index: which input of the consumer.
        slot: what that input is.
        chain_names: names of Identity outputs along the chain (aliases torch makes for shared weights).
    """

    constant: Constant
    transforms: tuple[Transform, ...]
    node: onnx.NodeProto = field(repr=False)
    node_label: str
    graph: str
    index: int
    slot: Slot
    chain_names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Planned:
    """One tensor the reader will yield: a stored constant as one consumer sees it.

    Attributes:
        name: the name reported.
        constant: where the values come from.
        transforms: applied on read (source first).
        shape: the shape after the transforms.
        use: the consumer the layer information comes from; None for constants no modelled op uses.
        aliases: other names for the same values (other consumers, Identity aliases).
        skip_reason: why the tensor is listed but not analysed.
        encoding: how the values were transformed, in words; None when read as stored.
    """

    name: str
    constant: Constant
    transforms: tuple[Transform, ...]
    shape: tuple[int, ...]
    use: Use | None
    aliases: tuple[str, ...] = ()
    skip_reason: str | None = None
    encoding: str | None = None


_CHAIN_OPS = frozenset({"Identity", "Cast", "Transpose", "DequantizeLinear"})


def _is_chain_node(node: onnx.NodeProto) -> bool:
    if node.op_type == "DequantizeLinear":
        return node.domain in _DEFAULT_DOMAINS or node.domain == _MS_DOMAIN
    return node.op_type in _CHAIN_OPS and node.domain in _DEFAULT_DOMAINS


class GraphWalker:
    """Walks a model's graphs once and plans the tensors to yield.

    Args:
        model: the parsed ModelProto (external data not loaded).
    """

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.uses: dict[int, list[Use]] = {}  # keyed by id() of the Constant, in first-use order
        self.constants: dict[int, Constant] = {}
        self.order: dict[int, None] = {}  # constant ids in the order they are first used
        self.notes: list[str] = []
        self.subgraph_count = 0

    # -- walking ------------------------------------------------------------------------------------

    def walk(self) -> None:
        """Collect every constant and every use of one, depth first through subgraphs."""
        self._walk_graph(self.model.graph, None, "main", 0)

    def _register(self, constant: Constant) -> None:
        self.constants[id(constant)] = constant
        self.uses.setdefault(id(constant), [])

    def _walk_graph(self, graph: onnx.GraphProto, parent: _Scope | None, path: str, depth: int) -> None:
        from onnx import helper

        if depth > MAX_GRAPH_DEPTH:
            self.notes.append(f"subgraphs nested deeper than {MAX_GRAPH_DEPTH} were not walked")
            return
        scope = _Scope(parent, path)
        if depth > 0:
            self.subgraph_count += 1
        where_suffix = "" if path == "main" else f" in {path}"
        for tensor in graph.initializer:
            constant = Constant(tensor.name, tensor, f"initializer{where_suffix}")
            scope.constants[tensor.name] = constant
            self._register(constant)
        for sparse in graph.sparse_initializer:
            constant = Constant(
                sparse.values.name,
                sparse.values,
                f"sparse initializer{where_suffix}",
                sparse_shape=tuple(int(dim) for dim in sparse.dims),
            )
            scope.constants[sparse.values.name] = constant
            self._register(constant)
        for value in graph.input:
            if value.name not in scope.constants:
                scope.runtime.add(value.name)
        for node in graph.node:
            if node.op_type == "Constant" and node.domain in _DEFAULT_DOMAINS and node.output:
                tensor = _constant_node_tensor(node, helper)
                label = node.name or node.output[0]
                if tensor is not None:
                    constant = Constant(
                        node.output[0], tensor, f"Constant node {label!r}{where_suffix}", from_node=True
                    )
                    scope.constants[node.output[0]] = constant
                    self._register(constant)
                    continue
            for output in node.output:
                if output:
                    scope.producers[output] = node
        for position, node in enumerate(graph.node):
            if node.op_type == "Constant" and node.domain in _DEFAULT_DOMAINS:
                continue
            label = node.name or f"{node.op_type}#{position}"
            if path != "main" and not node.name:
                label = f"{path}/{label}"
            self._record_uses(node, label, scope, path)
            for attribute in node.attribute:
                # AttributeProto.GRAPH = 5, GRAPHS = 10: If branches, Loop and Scan bodies.
                if attribute.type == 5:
                    self._walk_graph(attribute.g, scope, f"{path}/{label}.{attribute.name}", depth + 1)
                elif attribute.type == 10:
                    for number, subgraph in enumerate(attribute.graphs):
                        self._walk_graph(
                            subgraph, scope, f"{path}/{label}.{attribute.name}[{number}]", depth + 1
                        )

    def _record_uses(self, node: onnx.NodeProto, label: str, scope: _Scope, path: str) -> None:
        for index, name in enumerate(node.input):
            if not name:
                continue
            if _is_chain_node(node) and index == 0:
                # The chain is followed from the node at its end; a dangling chain leaves the constant
                # unused, which is how it is then reported.
                continue
            resolved = self._resolve(name, scope)
            if resolved is None:
                continue
            constant, transforms, chain_names = resolved
            shape = presented_shape(constant.shape, transforms)
            code = _final_code(constant.code, transforms)
            slot = classify_slot(node, index, shape, code)
            use = Use(constant, transforms, node, label, path, index, slot, chain_names)
            self.order.setdefault(id(constant), None)
            self.uses[id(constant)].append(use)

    def _resolve(
        self, name: str, scope: _Scope
    ) -> tuple[Constant, tuple[Transform, ...], tuple[str, ...]] | None:
        """Follow `name` back through chain nodes to a constant; None if it is computed at run time."""
        transforms: list[Transform] = []
        names: list[str] = []
        for _ in range(MAX_CHAIN):
            found = scope.lookup(name)
            if found is None:
                return None
            if isinstance(found, Constant):
                return found, tuple(reversed(transforms)), tuple(names)
            node = found
            if not _is_chain_node(node) or not node.input or not node.input[0]:
                return None
            if node.op_type == "Identity":
                names.append(name)
            if node.op_type == "Transpose":
                transforms.append(Transpose(_attr_ints(node, "perm")))
            elif node.op_type == "Cast":
                to = _attr(node, "to", 0)
                if to not in FLOAT_CODES:
                    return None  # a cast to integers is index or shape arithmetic, not a weight
                transforms.append(Cast(to))
            elif node.op_type == "DequantizeLinear":
                scale = self._plain_constant(node.input[1] if len(node.input) > 1 else "", scope)
                zero = (
                    self._plain_constant(node.input[2], scope)
                    if len(node.input) > 2 and node.input[2]
                    else None
                )
                if scale is None or (len(node.input) > 2 and node.input[2] and zero is None):
                    return None
                op = (
                    "DequantizeLinear"
                    if node.domain in _DEFAULT_DOMAINS
                    else f"{node.domain}.DequantizeLinear"
                )
                transforms.append(
                    Dequantize(scale, zero, _attr(node, "axis", 1), _attr(node, "block_size", 0), op)
                )
            name = node.input[0]
        return None

    def _plain_constant(self, name: str, scope: _Scope) -> Constant | None:
        """A constant reached through Identity nodes only (quantisation scales and zero points)."""
        for _ in range(MAX_CHAIN):
            if not name:
                return None
            found = scope.lookup(name)
            if found is None or isinstance(found, Constant):
                return found
            if found.op_type != "Identity" or not found.input:
                return None
            name = found.input[0]
        return None

    # -- planning -----------------------------------------------------------------------------------

    def plan(self) -> Iterator[Planned]:
        """Yield the tensors to report, in the order their constants are first used or defined."""
        names = _Names(
            {constant.name for constant in self.constants.values() if not is_generated_name(constant.name)}
        )
        # Used constants in the order of first use (graph order, subgraphs where their node is), then
        # constants nothing uses, in the order they are defined.
        for key in [*self.order, *(key for key in self.constants if key not in self.order)]:
            yield from self._plan_constant(self.constants[key], self.uses[key], names)

    def _plan_constant(self, constant: Constant, uses: list[Use], names: _Names) -> Iterator[Planned]:
        weight_uses = [
            use for use in uses if use.slot.role in (SlotRole.WEIGHT, SlotRole.BIAS, SlotRole.NORM)
        ]
        if not weight_uses:
            if not self._is_plain_weight(constant, uses):
                return
            use = next((u for u in uses if u.slot.role is SlotRole.UNKNOWN), None)
            transforms = use.transforms if use is not None else ()
            if is_generated_name(constant.name) and use is not None:
                name = names.claim(_consumer_base(use) + ".const", own=False)
            else:
                name = names.claim(constant.name, own=True)
            yield Planned(
                name=name,
                constant=constant,
                transforms=transforms,
                shape=presented_shape(constant.shape, transforms),
                use=use,
                aliases=_aliases(name, uses, constant, use),
                skip_reason=self._sparse_reason(constant),
                encoding=_describe(constant, transforms),
            )
            return

        primary = weight_uses[0]
        shape = presented_shape(constant.shape, primary.transforms)
        skip = (
            primary.slot.skip_reason or self._sparse_reason(constant) or _check_transforms(constant, primary)
        )
        if primary.slot.split_directions and len(shape) == 3 and skip is None:
            count = shape[0]
            base, own = _base_name(constant, primary, names)
            for index in range(count):
                name = (
                    base if count == 1 else f"{base}.{('forward', 'reverse')[index] if count == 2 else index}"
                )
                name = names.claim(name, own=own and count == 1)
                transforms = (*primary.transforms, SelectDirection(index, count))
                yield Planned(
                    name=name,
                    constant=constant,
                    transforms=transforms,
                    shape=shape[1:],
                    use=primary,
                    aliases=_direction_aliases(name, index, count, weight_uses[1:], constant),
                    encoding=_describe(constant, transforms),
                )
            return
        base, own = _base_name(constant, primary, names)
        name = names.claim(base, own=own)
        yield Planned(
            name=name,
            constant=constant,
            transforms=primary.transforms,
            shape=shape,
            use=primary,
            aliases=_aliases(name, weight_uses, constant, primary),
            skip_reason=skip,
            encoding=_describe(constant, primary.transforms),
        )

    @staticmethod
    def _is_plain_weight(constant: Constant, uses: list[Use]) -> bool:
        """A constant no modelled operator uses as a weight: report it if it looks like a parameter.

        Stored floats with at least two elements that are initializers (parameters added or multiplied
        in: positional embeddings, decomposed norms) are reported; Constant nodes, which exporters use
        for masks and arithmetic, are not, and neither is anything used only as a shape or index.
        """
        if constant.from_node or constant.code not in FLOAT_CODES:
            return False
        if uses and all(use.slot.role is SlotRole.NOT_WEIGHT for use in uses):
            return False
        count = 1
        for dim in constant.shape:
            count *= dim
        return len(constant.shape) >= 1 and count >= 2

    @staticmethod
    def _sparse_reason(constant: Constant) -> str | None:
        if constant.sparse_shape is not None:
            return "sparse initializer: sparse tensors are not read"
        return None


def _constant_node_tensor(node: onnx.NodeProto, helper: object) -> onnx.TensorProto | None:
    """The tensor a Constant node outputs, when it is numeric (value, value_float(s), value_int(s))."""
    make_tensor = helper.make_tensor  # type: ignore[attr-defined]
    for attribute in node.attribute:
        if attribute.name == "value":
            return attribute.t
        if attribute.name == "value_float":
            return make_tensor(node.output[0], 1, [], [attribute.f])
        if attribute.name == "value_floats":
            return make_tensor(node.output[0], 1, [len(attribute.floats)], list(attribute.floats))
        if attribute.name == "value_int":
            return make_tensor(node.output[0], 7, [], [attribute.i])
        if attribute.name == "value_ints":
            return make_tensor(node.output[0], 7, [len(attribute.ints)], list(attribute.ints))
    return None


def _final_code(code: int, transforms: tuple[Transform, ...]) -> int:
    for transform in transforms:
        if isinstance(transform, Cast):
            code = transform.to
        elif isinstance(transform, Dequantize):
            code = transform.scale.code
    return code


def _check_transforms(constant: Constant, use: Use) -> str | None:
    """Why the chain cannot be applied to this constant (a bad perm, mismatched scales), else None."""
    shape = constant.shape
    for transform in use.transforms:
        if isinstance(transform, Transpose):
            if transform.perm is not None and sorted(transform.perm) != list(range(len(shape))):
                return f"Transpose perm {list(transform.perm)} does not fit a tensor of shape {list(shape)}"
            shape = transform.shape(shape)
        elif isinstance(transform, Dequantize):
            reason = dequantize_problem(shape, transform)
            if reason is not None:
                return reason
        elif isinstance(transform, Cast) and constant.code not in FLOAT_CODES | INTEGER_CODES:
            return f"{element_type(constant.code).onnx_name} values cannot be cast to numbers here"
    if constant.code not in FLOAT_CODES and not any(isinstance(t, Dequantize | Cast) for t in use.transforms):
        return f"{element_type(constant.code).onnx_name} values are not floating point"
    return None


def dequantize_problem(shape: tuple[int, ...], transform: Dequantize) -> str | None:
    """Why a DequantizeLinear's scale and zero point do not fit `shape`; None when they do."""
    scale_shape = transform.scale.shape
    if transform.scale.code not in FLOAT_CODES:
        return f"{transform.op} scale is {element_type(transform.scale.code).onnx_name}, not a float"
    zero = transform.zero_point
    if zero is not None and zero.shape != scale_shape:
        return (
            f"{transform.op} zero point shape {list(zero.shape)} differs from scale shape {list(scale_shape)}"
        )
    scale_count = 1
    for dim in scale_shape:
        scale_count *= dim
    if transform.block_size == 0 and scale_count == 1 and len(scale_shape) <= 1:
        return None
    rank = len(shape)
    axis = transform.axis + rank if transform.axis < 0 else transform.axis
    if not 0 <= axis < rank:
        return f"{transform.op} axis {transform.axis} is outside a tensor of rank {rank}"
    if transform.block_size == 0:
        if scale_shape != (shape[axis],):
            return (
                f"{transform.op} scale shape {list(scale_shape)} does not match axis {axis} of {list(shape)}"
            )
        return None
    if transform.block_size < 0:
        return f"{transform.op} block_size {transform.block_size} is negative"
    blocks = -(-shape[axis] // transform.block_size)
    expected = (*shape[:axis], blocks, *shape[axis + 1 :])
    if scale_shape != expected:
        return (
            f"{transform.op} blocked scale shape {list(scale_shape)} does not match {list(shape)} with "
            f"block_size {transform.block_size} on axis {axis}"
        )
    return None


def _describe(constant: Constant, transforms: tuple[Transform, ...]) -> str | None:
    """The transforms in words, for `TensorInfo.encoding`; None when the values are read as stored."""
    parts: list[str] = []
    stored = element_type(constant.code).onnx_name
    for transform in transforms:
        if isinstance(transform, Dequantize):
            scale_count = 1
            for dim in transform.scale.shape:
                scale_count *= dim
            if transform.block_size:
                granularity = f"blocked (block_size {transform.block_size}, axis {transform.axis})"
            elif scale_count == 1:
                granularity = "per-tensor"
            else:
                granularity = f"per-channel (axis {transform.axis})"
            zero = "" if transform.zero_point is not None else ", no zero point"
            parts.append(f"{stored} {granularity}{zero} dequantized by {transform.op}")
        elif isinstance(transform, Cast):
            parts.append(f"cast to {element_type(transform.to).onnx_name}")
        elif isinstance(transform, Transpose):
            perm = list(transform.perm) if transform.perm is not None else "reversed"
            parts.append(f"transposed {perm}")
        elif isinstance(transform, SelectDirection):
            parts.append(f"direction {transform.index} of {transform.count}")
    return "; ".join(parts) or None


# ----------------------------------------------------------------------------------------------------
# Names.


def _torch_module_name(node: onnx.NodeProto, slot: Slot) -> str | None:
    """The torch parameter name the dynamo exporter recorded for a folded weight, if it is clear.

    torch.onnx (dynamo) stores the module path of each node in `pkg.torch.onnx.name_scopes` and the FX
    call in `pkg.torch.onnx.fx_node`, whose arguments name parameters as `%p_<path with dots as _>`.
    A weight it constant-folded (a transposed Linear weight becomes `val_86`) keeps only this trace.
    """
    properties = {prop.key: prop.value for prop in node.metadata_props}
    scopes_text = properties.get("pkg.torch.onnx.name_scopes", "")
    fx_text = properties.get("pkg.torch.onnx.fx_node", "")
    if (
        not scopes_text
        or not fx_text
        or len(scopes_text) > MAX_METADATA_CHARS
        or len(fx_text) > MAX_METADATA_CHARS
    ):
        return None
    try:
        scopes = ast.literal_eval(scopes_text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    if not isinstance(scopes, list) or len(scopes) < 2 or not all(isinstance(s, str) for s in scopes):
        return None
    module = scopes[-2]
    prefix = module.replace(".", "_") + "_" if module else ""
    tokens = dict.fromkeys(re.findall(r"%p_([A-Za-z0-9_]+)", fx_text))
    candidates = [
        (f"{module}.{token[len(prefix) :]}" if module else token)
        for token in tokens
        if token.startswith(prefix) and len(token) > len(prefix)
    ]
    wanted = "bias" if slot.role is SlotRole.BIAS else "weight"
    matching = [name for name in candidates if wanted in name.rsplit(".", 1)[-1]]
    if slot.role is SlotRole.WEIGHT:
        matching = [name for name in matching if "bias" not in name.rsplit(".", 1)[-1]]
    return matching[0] if len(matching) == 1 else None


def _consumer_base(use: Use) -> str:
    return use.node_label


class _Names:
    """Reported names: the constants' own names are reserved, so a derived name never takes one."""

    def __init__(self, reserved: set[str]) -> None:
        self.reserved = reserved
        self.used: set[str] = set()

    def is_free(self, name: str) -> bool:
        return name not in self.reserved and name not in self.used

    def claim(self, name: str, *, own: bool) -> str:
        """Take `name` (a constant's own name only clashes with names already used), else `name_1`..."""
        if name not in self.used and (own or name not in self.reserved):
            self.used.add(name)
            return name
        number = 1
        while not self.is_free(f"{name}_{number}"):
            number += 1
        self.used.add(f"{name}_{number}")
        return f"{name}_{number}"


def _base_name(constant: Constant, use: Use, names: _Names) -> tuple[str, bool]:
    """The reported name and whether it is the constant's own: its own unless the exporter generated
    it, else the torch parameter the exporter recorded, an Identity alias, or the consumer's name."""
    if not is_generated_name(constant.name):
        return constant.name, True
    if not use.slot.split_directions:
        torch_name = _torch_module_name(use.node, use.slot)
        if torch_name is not None and names.is_free(torch_name):
            return torch_name, False
    # An Identity output with a real name: the consumer refers to the weight by that name.
    for value_name in use.chain_names:
        if not is_generated_name(value_name) and value_name not in names.used:
            return value_name, False
    return _consumer_base(use) + use.slot.suffix, False


def _aliases(name: str, uses: list[Use], constant: Constant, primary: Use | None) -> tuple[str, ...]:
    """Other names of the same values: real-named Identity outputs on the way to a consumer (torch
    deduplicates equal parameters that way) and, for generated names, what other consumers call it."""
    aliases: list[str] = []
    for use in uses:
        aliases.extend(alias for alias in use.chain_names if not is_generated_name(alias))
        if use is not primary and is_generated_name(constant.name) and use.slot.role is not SlotRole.UNKNOWN:
            aliases.append(_consumer_base(use) + use.slot.suffix)
    return tuple(alias for alias in dict.fromkeys(aliases) if alias != name)


def _direction_aliases(
    name: str, index: int, count: int, uses: list[Use], constant: Constant
) -> tuple[str, ...]:
    if not is_generated_name(constant.name):
        return ()
    aliases = []
    for use in uses:
        base = _consumer_base(use) + use.slot.suffix
        aliases.append(
            base if count == 1 else f"{base}.{('forward', 'reverse')[index] if count == 2 else index}"
        )
    return tuple(alias for alias in dict.fromkeys(aliases) if alias != name)
