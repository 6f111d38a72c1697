"""Find the weights of an ONNX model from its graph: which constants feed which layers, and how.

weightwatcher treats every initializer as a layer and guesses its type from its rank. Real exports break
that: weights sit in `Constant` nodes and in If/Loop/Scan subgraphs, reach their layer through
Transpose, Cast or DequantizeLinear, carry names the exporter made up (`onnx::MatMul_123`, `val_7`), or
pack several matrices into one tensor (LSTM/GRU/RNN directions). This module walks the main graph and
every subgraph, resolves each node input back to the constant it comes from, and describes, for every
constant that is a weight, the matrix its consumer sees. It plans; `formats.onnx_reader` reads.

What each operator input is comes from `formats._onnx_slots`, the chains between a constant and its
consumer from `formats._onnx_chains`, and reported names from `formats._onnx_names`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from formats._onnx_chains import (
    Cast,
    Constant,
    Dequantize,
    SelectDirection,
    Transform,
    Transpose,
    Use,
    check_transforms,
    describe_transforms,
    final_code,
    presented_shape,
    selection,
)
from formats._onnx_functions import functions_of, inline_functions
from formats._onnx_names import (
    Names,
    aliases_of,
    base_name,
    consumer_base,
    direction_aliases,
    is_generated_name,
)
from formats._onnx_quantized_ops import QuantizedOperand, quantized_operand
from formats._onnx_shape_ops import SELECT_OPS, SHAPE_OPS, shape_link, small_ints
from formats._onnx_slots import DEFAULT_DOMAINS, MS_DOMAIN, SlotRole, attr_int, attr_ints, classify_slot
from formats._onnx_tensor import FLOAT_CODES

if TYPE_CHECKING:
    import onnx

#: Deepest chain of Identity/Cast/Transpose/DequantizeLinear followed from a consumer back to a constant.
MAX_CHAIN = 16
#: Deepest nesting of subgraphs walked (protobuf itself refuses messages nested 100 deep).
MAX_GRAPH_DEPTH = 64
#: Longest metadata string parsed for the torch exporter's module scopes.
MAX_METADATA_CHARS = 65536


class _Scope:
    """The names visible in one graph: its constants, the nodes producing its values, and its parent's."""

    def __init__(self, parent: _Scope | None, path: str) -> None:
        self.parent = parent
        self.path = path
        self.constants: dict[str, Constant] = {}
        self.producers: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}  # value name -> nodes of this graph reading it
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


_CHAIN_OPS = frozenset({"Identity", "Cast", "Transpose", "DequantizeLinear"}) | SHAPE_OPS | SELECT_OPS


def _is_chain_node(node: onnx.NodeProto) -> bool:
    """A node a weight may pass through on the way to its consumer (whether its other inputs are
    constant, which following it needs, is checked when the chain is resolved)."""
    if node.op_type == "DequantizeLinear":
        return node.domain in DEFAULT_DOMAINS or node.domain == MS_DOMAIN
    return node.op_type in _CHAIN_OPS and node.domain in DEFAULT_DOMAINS


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
        self.functions = functions_of(model)

    # -- walking ------------------------------------------------------------------------------------

    def walk(self) -> None:
        """Collect every constant and every use of one, depth first through subgraphs."""
        self._walk_graph(self.model.graph, None, "main", 0)

    def _register(self, constant: Constant) -> None:
        self.constants[id(constant)] = constant
        self.uses.setdefault(id(constant), [])

    def _walk_graph(self, graph: onnx.GraphProto, parent: _Scope | None, path: str, depth: int) -> None:
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
        nodes = inline_functions(list(graph.node), self.functions, self.notes)
        for node in nodes:
            for name in node.input:
                if name:
                    scope.consumers.setdefault(name, []).append(node)
            if node.op_type == "Constant" and node.domain in DEFAULT_DOMAINS and node.output:
                produced = _constant_node_tensor(node)
                label = node.name or node.output[0]
                if produced is not None:
                    constant = Constant(
                        node.output[0], produced, f"Constant node {label!r}{where_suffix}", from_node=True
                    )
                    scope.constants[node.output[0]] = constant
                    self._register(constant)
                    continue
            for output in node.output:
                if output:
                    scope.producers[output] = node
        for position, node in enumerate(nodes):
            if node.op_type == "Constant" and node.domain in DEFAULT_DOMAINS:
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
            if (
                index == 0
                and _is_chain_node(node)
                and (
                    node.op_type not in SHAPE_OPS | SELECT_OPS
                    or self._link(node, node.output[0], scope) is not None
                )
            ):
                # The chain is followed from the node at its end; a dangling chain leaves the constant
                # unused, which is how it is then reported.
                continue
            resolved = self._resolve(name, scope)
            if resolved is None:
                continue
            constant, transforms, chain_names = resolved
            shape = presented_shape(constant.shape, transforms)
            code = final_code(constant.code, transforms)
            slot = classify_slot(node, index, shape, code)
            operand = self._quantized_operand(node, index, scope, constant, transforms)
            if operand is not None:
                transforms = (*transforms, operand)
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
            link = self._link(node, name, scope)
            if link is None:
                return None
            if node.op_type == "Identity":
                names.append(name)
            elif not isinstance(link, bool):
                transforms.append(link)
            name = node.input[0]
        return None

    def _link(self, node: onnx.NodeProto, output: str, scope: _Scope) -> Transform | bool | None:
        """What chain node `node` does to its first input on the way to its output `output`: a transform,
        True for Identity, or None when it cannot be followed (a cast to integers, a shape or index that
        is computed at run time)."""
        op = node.op_type
        if op == "Identity":
            return True
        if op == "Transpose":
            return Transpose(attr_ints(node, "perm"))
        if op == "Cast":
            to = attr_int(node, "to", 0)
            # A cast to integers is index or shape arithmetic, not a weight.
            return Cast(to) if to in FLOAT_CODES else None
        if op == "DequantizeLinear":
            scale = self._plain_constant(node.input[1] if len(node.input) > 1 else "", scope)
            has_zero = len(node.input) > 2 and bool(node.input[2])
            zero = self._plain_constant(node.input[2], scope) if has_zero else None
            if scale is None or (has_zero and zero is None):
                return None
            label = (
                "DequantizeLinear" if node.domain in DEFAULT_DOMAINS else f"{node.domain}.DequantizeLinear"
            )
            return Dequantize(scale, zero, attr_int(node, "axis", 1), attr_int(node, "block_size", 0), label)
        return shape_link(node, output, lambda name: self._ints(name, scope))

    def _ints(self, name: str, scope: _Scope) -> tuple[tuple[int, ...], bool] | None:
        """The values of a small integer constant of the graph (axes, a shape, bounds, indices)."""
        constant = self._plain_constant(name, scope)
        return small_ints(constant.tensor) if constant is not None and constant.sparse_shape is None else None

    def _quantized_operand(
        self,
        node: onnx.NodeProto,
        index: int,
        scope: _Scope,
        constant: Constant,
        transforms: tuple[Transform, ...],
    ) -> QuantizedOperand | None:
        """The consumer's own dequantisation of its weight input, when `node` is a quantised operator."""

        def param(position: int) -> Constant | None:
            present = len(node.input) > position and bool(node.input[position])
            return self._plain_constant(node.input[position], scope) if present else None

        return quantized_operand(
            node,
            index,
            final_code(constant.code, transforms),
            param,
            lambda: self._integer_scale(node, scope, constant),
        )

    def _integer_scale(self, node: onnx.NodeProto, scope: _Scope, weight: Constant) -> Constant | None:
        """The weight scale of a MatMulInteger/ConvInteger: quantize_dynamic writes
        `Mul(Cast(product), Mul(x_scale, w_scale))`; the constant factor is the weight's. Without that
        pattern, the constant onnxruntime names `<weight>_scale` when the weight is `<weight>_quantized`."""
        frontier, seen = [node.output[0]] if node.output else [], 0
        while frontier and seen < MAX_CHAIN:
            value = frontier.pop()
            seen += 1
            for consumer in scope.consumers.get(value, []):
                if consumer.op_type == "Cast" and consumer.output:
                    frontier.append(consumer.output[0])
                elif consumer.op_type == "Mul" and len(consumer.input) == 2:
                    other = consumer.input[1] if consumer.input[0] == value else consumer.input[0]
                    found = self._float_factor(other, scope)
                    if found is not None:
                        return found
        stem = weight.name.removesuffix("_quantized")
        if stem != weight.name:
            return self._plain_constant(stem + "_scale", scope)
        return None

    def _float_factor(self, name: str, scope: _Scope) -> Constant | None:
        """A float constant `name`, or the one constant float factor of the Mul producing `name`."""
        direct = self._plain_constant(name, scope)
        if direct is not None:
            return direct if direct.code in FLOAT_CODES else None
        producer = scope.lookup(name)
        if producer is None or isinstance(producer, Constant) or producer.op_type != "Mul":
            return None
        factors = [self._plain_constant(part, scope) for part in producer.input if part]
        floats = [factor for factor in factors if factor is not None and factor.code in FLOAT_CODES]
        return floats[0] if len(floats) == 1 else None

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
        names = Names(
            {constant.name for constant in self.constants.values() if not is_generated_name(constant.name)}
        )
        # Used constants in the order of first use (graph order, subgraphs where their node is), then
        # constants nothing uses, in the order they are defined.
        for key in [*self.order, *(key for key in self.constants if key not in self.order)]:
            yield from self._plan_constant(self.constants[key], self.uses[key], names)

    def _plan_constant(self, constant: Constant, uses: list[Use], names: Names) -> Iterator[Planned]:
        weight_uses = [
            use for use in uses if use.slot.role in (SlotRole.WEIGHT, SlotRole.BIAS, SlotRole.NORM)
        ]
        if not weight_uses:
            if not self._is_plain_weight(constant, uses):
                return
            use = next((u for u in uses if u.slot.role is SlotRole.UNKNOWN), None)
            transforms = use.transforms if use is not None else ()
            if is_generated_name(constant.name) and use is not None:
                name = names.claim(consumer_base(use) + ".const", own=False)
            else:
                name = names.claim(constant.name, own=True)
            yield Planned(
                name=name,
                constant=constant,
                transforms=transforms,
                shape=presented_shape(constant.shape, transforms),
                use=use,
                aliases=aliases_of(name, uses, constant, use),
                skip_reason=self._sparse_reason(constant),
                encoding=describe_transforms(constant, transforms),
            )
            return

        # Uses that select different parts of the constant (the outputs of a Split, Slices, Gathers) read
        # different tensors: one each, named after its consumer; uses of the same part share one.
        groups: dict[tuple[Transform, ...], list[Use]] = {}
        for use in weight_uses:
            groups.setdefault(selection(use.transforms), []).append(use)
        for selected, group in groups.items():
            yield from self._plan_uses(constant, group, names, by_consumer=bool(selected))

    def _plan_uses(
        self, constant: Constant, weight_uses: list[Use], names: Names, *, by_consumer: bool
    ) -> Iterator[Planned]:
        """The tensor (or, for LSTM/GRU/RNN weights, one per direction) that `weight_uses` all read."""
        primary = weight_uses[0]
        shape = presented_shape(constant.shape, primary.transforms)
        skip = (
            primary.slot.skip_reason or self._sparse_reason(constant) or check_transforms(constant, primary)
        )
        if by_consumer:
            base, own = consumer_base(primary) + primary.slot.suffix, False
        else:
            base, own = base_name(constant, primary, names)
        if primary.slot.split_directions and len(shape) == 3 and skip is None:
            count = shape[0]
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
                    aliases=direction_aliases(name, index, count, weight_uses[1:], constant),
                    encoding=describe_transforms(constant, transforms),
                )
            return
        name = names.claim(base, own=own)
        yield Planned(
            name=name,
            constant=constant,
            transforms=primary.transforms,
            shape=shape,
            use=primary,
            aliases=aliases_of(name, weight_uses, constant, primary),
            skip_reason=skip,
            encoding=describe_transforms(constant, primary.transforms),
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


def _constant_node_tensor(node: onnx.NodeProto) -> onnx.TensorProto | None:
    """The tensor a Constant node outputs, when it is numeric (value, value_float(s), value_int(s))."""
    from onnx.helper import make_tensor

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
