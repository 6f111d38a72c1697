"""Shape-only and selecting operators between an ONNX weight and its consumer, as chain transforms.

Exporters reshape and cut weights on the way to the layer that uses them: an LSTM's 2-D weight gains its
num_directions axis through `Unsqueeze`, a fused QKV weight is `Split` (or `Slice`d, or `Gather`ed) into
the three projections, a constant is `Reshape`d, `Flatten`ed or `Expand`ed to the consumer's rank. Each
such node is followed when what it needs besides the weight is constant (axes, a target shape, split
sizes, slice bounds, gather indices): `Reshape` covers Unsqueeze, Squeeze, Reshape and Flatten (the same
values in another shape), `Broadcast` is Expand, and `Slices` (Slice, one output of Split) and `Take`
(Gather) select part of the weight. Semantics follow the ONNX operator reference (onnx/docs/Operators.md);
`shape` gives the output shape for an input shape, or None when the node's constants do not fit it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from formats._onnx_slots import attr_int, attr_ints
from formats._onnx_tensor import INTEGER_CODES

if TYPE_CHECKING:
    import onnx

#: Operators that only change the shape of their first input.
SHAPE_OPS = frozenset({"Unsqueeze", "Squeeze", "Reshape", "Flatten", "Expand"})
#: Operators that select part of their first input.
SELECT_OPS = frozenset({"Slice", "Split", "Gather"})
#: Most values a constant that shapes or selects may hold (axes, bounds, indices) for it to be followed.
MAX_SHAPE_VALUES = 4096


def small_ints(tensor: onnx.TensorProto) -> tuple[tuple[int, ...], bool] | None:
    """The values of a small integer tensor (axes, a shape, bounds, indices) and whether it is a scalar;
    None when it is not integers, is stored externally (shapes are always embedded) or is too large."""
    from onnx import numpy_helper

    shape = tuple(int(dim) for dim in tensor.dims)
    count = math.prod(shape)
    if tensor.data_type not in INTEGER_CODES or tensor.data_location == 1 or count > MAX_SHAPE_VALUES:
        return None
    if len(shape) > 1:
        return None
    try:
        values = numpy_helper.to_array(tensor).reshape(-1)
    except (ValueError, TypeError):
        return None
    if values.size != count:
        return None
    return tuple(int(value) for value in values), len(shape) == 0


def _axis(axis: int, rank: int) -> int | None:
    return axis + rank if -rank <= axis < 0 else (axis if 0 <= axis < rank else None)


@dataclass(frozen=True, slots=True)
class Reshape:
    """Unsqueeze (insert axes), Squeeze (drop size-1 axes), Reshape (a constant target) or Flatten."""

    op: str
    spec: tuple[int, ...] | None  # axes, the target shape, or (axis,); None: Squeeze every size-1 axis
    allowzero: bool = False

    def shape(self, shape: tuple[int, ...]) -> tuple[int, ...] | None:
        rank = len(shape)
        if self.op == "Unsqueeze":
            axes = self.spec or ()
            out_rank = rank + len(axes)
            wanted = {_axis(axis, out_rank) for axis in axes}
            if None in wanted or len(wanted) != len(axes):
                return None
            source = iter(shape)
            return tuple(1 if position in wanted else next(source) for position in range(out_rank))
        if self.op == "Squeeze":
            if self.spec is None:
                return tuple(dim for dim in shape if dim != 1)
            dropped = {_axis(axis, rank) for axis in self.spec}
            if None in dropped or any(shape[axis] != 1 for axis in dropped if axis is not None):
                return None
            return tuple(dim for position, dim in enumerate(shape) if position not in dropped)
        if self.op == "Flatten":
            axis = (self.spec or (1,))[0]
            axis = axis + rank if axis < 0 else axis
            if not 0 <= axis <= rank:
                return None
            return (math.prod(shape[:axis]), math.prod(shape[axis:]))
        return self._reshaped(shape)

    def _reshaped(self, shape: tuple[int, ...]) -> tuple[int, ...] | None:
        target = list(self.spec or ())
        for position, dim in enumerate(target):
            if dim == 0 and not self.allowzero:
                if position >= len(shape):
                    return None
                target[position] = shape[position]
        if target.count(-1) > 1 or any(dim < -1 for dim in target):
            return None
        total = math.prod(shape)
        if -1 in target:
            known = math.prod(dim for dim in target if dim != -1)
            if known == 0 or total % known:
                return None
            target[target.index(-1)] = total // known
        return tuple(target) if math.prod(target) == total else None


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Expand: the values broadcast to a constant shape (numpy's rules, as ONNX's Expand states)."""

    target: tuple[int, ...]

    def shape(self, shape: tuple[int, ...]) -> tuple[int, ...] | None:
        try:
            return tuple(int(dim) for dim in np.broadcast_shapes(shape, self.target))
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class Slices:
    """Slice, or one output of Split: per axis, `[start:stop:step]` (ONNX clamps as Python does)."""

    op: str
    cuts: tuple[tuple[int, int, int, int], ...]  # (axis, start, stop, step)

    def _resolved(self, shape: tuple[int, ...]) -> list[slice] | None:
        index = [slice(None)] * len(shape)
        for axis, start, stop, step in self.cuts:
            position = _axis(axis, len(shape))
            if position is None or step == 0:
                return None
            index[position] = slice(start, stop, step)
        return index

    def shape(self, shape: tuple[int, ...]) -> tuple[int, ...] | None:
        index = self._resolved(shape)
        if index is None:
            return None
        return tuple(len(range(*cut.indices(dim))) for cut, dim in zip(index, shape, strict=True))

    def apply(self, values: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
        index = self._resolved(tuple(values.shape))
        assert index is not None  # checked when planned
        return values[tuple(index)]


@dataclass(frozen=True, slots=True)
class Take:
    """Gather with constant indices: `np.take(values, indices, axis)`; a scalar index drops the axis."""

    axis: int
    indices: tuple[int, ...]
    scalar: bool

    def shape(self, shape: tuple[int, ...]) -> tuple[int, ...] | None:
        axis = _axis(self.axis, len(shape))
        if axis is None or any(not -shape[axis] <= index < shape[axis] for index in self.indices):
            return None
        middle = () if self.scalar else (len(self.indices),)
        return (*shape[:axis], *middle, *shape[axis + 1 :])

    def apply(self, values: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
        indices = np.asarray(self.indices[0] if self.scalar else self.indices, dtype=np.int64)
        return np.take(values, indices, axis=self.axis)


@dataclass(frozen=True, slots=True)
class SplitPart:
    """One output of a Split node: the part of its input between two offsets along `axis`."""

    axis: int
    sizes: tuple[int, ...] | None  # the `split` sizes; None: equal parts
    outputs: int
    output: int

    def cut(self, shape: tuple[int, ...]) -> Slices | None:
        return split_cut(self.axis, self.sizes, self.outputs, self.output, shape)

    def shape(self, shape: tuple[int, ...]) -> tuple[int, ...] | None:
        cut = self.cut(shape)
        return cut.shape(shape) if cut is not None else None

    def apply(self, values: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
        cut = self.cut(tuple(values.shape))
        assert cut is not None  # checked when planned
        return cut.apply(values)


def split_cut(
    axis: int, sizes: tuple[int, ...] | None, outputs: int, output: int, shape: tuple[int, ...]
) -> Slices | None:
    """The part of a Split's input that its output `output` holds.

    Args:
        axis: the split axis.
        sizes: the `split` sizes (input or attribute); None for equal parts (`num_outputs` or the number of
            outputs: ceil(dim / n) each, the last one smaller, as opset 18 states).
        outputs: how many outputs the node has.
        output: which one.
        shape: the input's shape (to resolve equal parts).
    """
    position = _axis(axis, len(shape))
    if position is None:
        return None
    if sizes is None:
        chunk = -(-shape[position] // max(outputs, 1))
        sizes = tuple(min(chunk, max(shape[position] - chunk * part, 0)) for part in range(outputs))
    if output >= len(sizes) or sum(sizes) != shape[position] or any(size < 0 for size in sizes):
        return None
    start = sum(sizes[:output])
    return Slices("Split", ((position, start, start + sizes[output], 1),))


def slice_cuts(
    starts: tuple[int, ...],
    ends: tuple[int, ...],
    axes: tuple[int, ...] | None,
    steps: tuple[int, ...] | None,
) -> Slices | None:
    """A Slice node's bounds as `Slices`; None when the lists do not line up."""
    axes = axes if axes is not None else tuple(range(len(starts)))
    steps = steps if steps is not None else (1,) * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        return None
    return Slices("Slice", tuple(zip(axes, starts, ends, steps, strict=True)))


ShapeOp = Reshape | Broadcast | Slices | SplitPart | Take
_PAST = {"Unsqueeze": "unsqueezed", "Squeeze": "squeezed", "Reshape": "reshaped", "Flatten": "flattened"}


def describe(transform: ShapeOp) -> str:
    """The transform in words, for `TensorInfo.encoding`."""
    if isinstance(transform, Reshape):
        return _PAST[transform.op]
    if isinstance(transform, Broadcast):
        return f"expanded to {list(transform.target)}"
    if isinstance(transform, Slices):
        cuts = ", ".join(f"axis {axis} [{start}:{stop}:{step}]" for axis, start, stop, step in transform.cuts)
        return f"{transform.op.lower()} {cuts}"
    if isinstance(transform, SplitPart):
        return f"part {transform.output} of {transform.outputs} split on axis {transform.axis}"
    shown = transform.indices[0] if transform.scalar else list(transform.indices[:8])
    return f"gathered {shown} on axis {transform.axis}"


def apply_shape(transform: ShapeOp, values: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
    """The transform applied to the values (checked to fit when planned)."""
    if isinstance(transform, Reshape):
        shape = transform.shape(tuple(values.shape))
        assert shape is not None
        return values.reshape(shape)
    if isinstance(transform, Broadcast):
        return np.broadcast_to(values, transform.shape(tuple(values.shape)) or values.shape)
    return transform.apply(values)


def shape_link(
    node: onnx.NodeProto,
    output: str,
    ints: Callable[[str], tuple[tuple[int, ...], bool] | None],
) -> ShapeOp | None:
    """What a shape-only or selecting node does to its first input on the way to its output `output`, when
    the operands it needs are constant; None when they are computed at run time (not followed).

    Args:
        node: an Unsqueeze, Squeeze, Reshape, Flatten, Expand, Slice, Split or Gather node.
        output: which of its outputs the consumer reads (a Split has several).
        ints: the values of a small integer constant of the graph, and whether it is a scalar; None when
            the name is not one.
    """
    op = node.op_type

    def operand(position: int) -> tuple[int, ...] | None:
        found = ints(node.input[position]) if len(node.input) > position else None
        return found[0] if found is not None else None

    def present(position: int) -> bool:
        return len(node.input) > position and bool(node.input[position])

    if op in ("Unsqueeze", "Squeeze"):
        axes = attr_ints(node, "axes")
        if axes is None and present(1):
            axes = operand(1)
            if axes is None:
                return None
        if op == "Unsqueeze" and not axes:
            return None
        return Reshape(op, axes)
    if op == "Reshape":
        target = operand(1)
        return Reshape(op, target, bool(attr_int(node, "allowzero", 0))) if target is not None else None
    if op == "Flatten":
        return Reshape(op, (attr_int(node, "axis", 1),))
    if op == "Expand":
        target = operand(1)
        return Broadcast(target) if target is not None else None
    if op == "Slice":
        if attr_ints(node, "starts") is not None:  # opset < 10: bounds are attributes
            bounds = attr_ints(node, "starts") or (), attr_ints(node, "ends") or ()
            return slice_cuts(*bounds, attr_ints(node, "axes"), None)
        starts, ends = operand(1), operand(2)
        axes = operand(3) if present(3) else None
        steps = operand(4) if present(4) else None
        if starts is None or ends is None or (present(3) and axes is None) or (present(4) and steps is None):
            return None
        return slice_cuts(starts, ends, axes, steps)
    if op == "Split":
        sizes = attr_ints(node, "split")
        if sizes is None and present(1):
            sizes = operand(1)
            if sizes is None:
                return None
        outputs = attr_int(node, "num_outputs", len(node.output))
        return SplitPart(attr_int(node, "axis", 0), sizes, outputs, list(node.output).index(output))
    if op == "Gather":
        found = ints(node.input[1]) if len(node.input) > 1 else None
        if found is None:
            return None  # a lookup with run-time indices: the Gather is the consumer (an embedding)
        indices, scalar = found
        if not scalar and len(indices) == 0:
            return None
        return Take(attr_int(node, "axis", 0), indices, scalar)
    return None
