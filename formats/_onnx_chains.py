"""The chain between a stored ONNX constant and the operand its consumer sees.

Exporters put nodes between a weight and the layer that uses it: Identity, Cast (to a float type),
Transpose and DequantizeLinear (default and com.microsoft domains), in any order. This module holds the
constant at the start of such a chain, the transforms along it (what each does to the shape and, on
read, to the values), and the `Use` at its end; `formats._onnx_graph` finds the chains. Anything else
between a constant and its consumer (Reshape, Mul by a scale...) means the consumer's operand is
computed, not a stored weight, and is not followed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from formats._onnx_quantized_ops import QuantizedOperand
from formats._onnx_shape_ops import (
    Broadcast,
    Reshape,
    ShapeOp,
    Slices,
    SplitPart,
    Take,
    apply_shape,
    describe,
)
from formats._onnx_slots import Slot
from formats._onnx_tensor import BFLOAT16, DOUBLE, FLOAT, FLOAT16, FLOAT_CODES, INTEGER_CODES, element_type
from formats.errors import TensorError
from formats.quantized._common import round_to
from formats.quantized.affine import dequantize_affine
from formats.skip_reasons import not_floating_point

if TYPE_CHECKING:
    import onnx


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


Transform = Transpose | Cast | Dequantize | SelectDirection | ShapeOp | QuantizedOperand
#: Transforms that select part of the stored values: each distinct selection is a tensor of its own.
SELECTIONS = (Slices, SplitPart, Take)


def shape_after(transform: Transform, shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """The shape after one transform; None when the transform does not fit that shape."""
    if isinstance(transform, Transpose):
        if transform.perm is not None and sorted(transform.perm) != list(range(len(shape))):
            return None
        return transform.shape(shape)
    if isinstance(transform, Cast | Dequantize):
        return shape
    if isinstance(transform, SelectDirection):
        return shape[1:] if shape and 0 <= transform.index < shape[0] else None
    return transform.shape(shape)


def presented_shape(shape: tuple[int, ...], transforms: tuple[Transform, ...]) -> tuple[int, ...]:
    """The shape the consumer sees after `transforms` (applied in order, source first); where one does
    not fit (`check_transforms` says why), the shape before it."""
    for transform in transforms:
        after = shape_after(transform, shape)
        if after is None:
            return shape
        shape = after
    return shape


def selection(transforms: tuple[Transform, ...]) -> tuple[Transform, ...]:
    """The selecting transforms of a chain: uses with different selections read different tensors."""
    return tuple(transform for transform in transforms if isinstance(transform, SELECTIONS))


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


def final_code(code: int, transforms: tuple[Transform, ...]) -> int:
    for transform in transforms:
        if isinstance(transform, Cast):
            code = transform.to
        elif isinstance(transform, Dequantize):
            code = transform.scale.code
        elif isinstance(transform, QuantizedOperand):
            code = transform.scale.code if transform.scale is not None else FLOAT
    return code


def is_dequantized(transforms: tuple[Transform, ...]) -> bool:
    return any(isinstance(transform, Dequantize | QuantizedOperand) for transform in transforms)


def check_transforms(constant: Constant, use: Use) -> str | None:
    """Why the chain cannot be applied to this constant (a bad perm, mismatched scales), else None."""
    shape = constant.shape
    for transform in use.transforms:
        if isinstance(transform, Dequantize):
            reason = dequantize_problem(shape, transform)
            if reason is not None:
                return reason
        elif isinstance(transform, Cast) and constant.code not in FLOAT_CODES | INTEGER_CODES:
            return f"{element_type(constant.code).onnx_name} values cannot be cast to numbers here"
        if isinstance(transform, QuantizedOperand) and transform.scale is None:
            return f"the scale of this {transform.op} weight is not a constant of the graph"
        after = shape_after(transform, shape)
        if after is None:
            return f"{_transform_name(transform)} does not fit a tensor of shape {list(shape)}"
        shape = after
    if constant.code not in FLOAT_CODES and not any(
        isinstance(t, Dequantize | Cast | QuantizedOperand) for t in use.transforms
    ):
        return not_floating_point(element_type(constant.code).onnx_name)
    return None


def _transform_name(transform: Transform) -> str:
    if isinstance(transform, Transpose):
        perm = list(transform.perm) if transform.perm is not None else "reversed"
        return f"Transpose perm {perm}"
    if isinstance(transform, Reshape | Slices):
        return transform.op
    if isinstance(transform, SplitPart):
        return "Split"
    if isinstance(transform, QuantizedOperand):
        return f"{transform.op}'s attributes"
    return type(transform).__name__.replace("Broadcast", "Expand").replace("Take", "Gather")


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


def describe_transforms(constant: Constant, transforms: tuple[Transform, ...]) -> str | None:
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
        elif isinstance(transform, QuantizedOperand):
            return transform.encoding()  # the consumer's own quantisation names the weight's encoding
        else:
            parts.append(describe(transform))
    return "; ".join(parts) or None


_CAST_TARGETS: dict[int, str] = {FLOAT: "float32", FLOAT16: "float16", DOUBLE: "float64"}


def cast(values: npt.NDArray[np.generic], to: int) -> npt.NDArray[np.floating]:
    """What a Cast node to the float type `to` makes of `values` (bfloat16 rounded as ml_dtypes does)."""
    if to == BFLOAT16:
        import ml_dtypes

        return values.astype(ml_dtypes.bfloat16).astype(np.float32)
    target = _CAST_TARGETS.get(to)
    if target is None:
        raise TensorError(f"Cast to {element_type(to).onnx_name} is not supported")
    return values.astype(target)


def dequantize(
    values: npt.NDArray[np.generic],
    scale: npt.NDArray[np.generic],
    zero_point: npt.NDArray[np.generic] | None,
    transform: Dequantize,
) -> npt.NDArray[np.floating]:
    """DequantizeLinear (opset 10-23): y = (x - zero_point) * scale, per tensor, per axis or per block.

    The rule is `formats.quantized.affine`'s: the subtraction in integers, the product in float32 as
    onnxruntime's kernel does (bit for bit); a float16 scale gives float16, a double scale double.
    """
    problem = dequantize_problem(tuple(values.shape), transform)
    if problem is not None:
        raise TensorError(problem)
    per_tensor = scale.size == 1 and transform.block_size == 0
    axis = None if per_tensor else transform.axis
    double = scale.dtype == np.float64
    result = dequantize_affine(
        transform.op,
        values,  # type: ignore[arg-type]  # integer codes: dequantize_problem and the loader checked them
        scale,  # type: ignore[arg-type]
        zero_point,
        axis,
        compute=np.float64 if double else np.float32,
        block_size=transform.block_size,
        output=np.float64 if double else np.float32,
    )
    return round_to(result, "float16") if scale.dtype == np.float16 else result


def apply_transforms(
    values: npt.NDArray[np.generic],
    transforms: tuple[Transform, ...],
    load: Callable[[Constant], npt.NDArray[np.generic]],
    name: str = "",
) -> npt.NDArray[np.generic]:
    """The consumer's operand from the stored values: `transforms` applied in order, source first.

    `load` gives the values of the constants a DequantizeLinear or a quantised operator reads (scales,
    zero points); `name` is the weight's, for messages.
    """
    for transform in transforms:
        if isinstance(transform, QuantizedOperand):
            values = transform.apply(name, values, load)
        elif isinstance(transform, Reshape | Broadcast | Slices | SplitPart | Take):
            values = apply_shape(transform, values)
        elif isinstance(transform, Dequantize):
            scale = load(transform.scale)
            zero = load(transform.zero_point) if transform.zero_point is not None else None
            values = dequantize(values, scale, zero, transform)
        elif isinstance(transform, Cast):
            values = cast(values, transform.to)
        elif isinstance(transform, Transpose):
            values = np.transpose(values, transform.perm)
        elif isinstance(transform, SelectDirection):
            values = values[transform.index]
    return values
