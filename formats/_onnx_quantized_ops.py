"""ONNX operators that consume a quantised weight themselves, as the last transform of its chain.

QLinearMatMul and QLinearConv take the weight's scale and zero point as inputs; MatMulInteger and
ConvInteger take its zero point, the scale being applied by the Mul after the integer product (found by
`formats._onnx_graph`); com.microsoft MatMulNBits takes block-quantised packed bits with their scales, zero
points and g_idx; com.microsoft GatherBlockQuantized is a block-quantised embedding table. The reported
weight is what the unquantised model held (MatMulNBits: the (K, N) MatMul weight; the others: the
weight's own shape), dequantised on read by `formats.quantized.onnx_ops`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from formats._onnx_slots import DEFAULT_DOMAINS, MS_DOMAIN, attr_int
from formats._onnx_tensor import INT4, UINT4, UINT8
from formats.quantized import onnx_ops
from formats.quantized._common import fail

if TYPE_CHECKING:
    import onnx

    from formats._onnx_chains import Constant

#: Operators whose weight input is quantised, and which input that is.
QUANTIZED_WEIGHT_INPUT: dict[str, int] = {
    "MatMulNBits": 1,
    "GatherBlockQuantized": 0,
    **{op: inputs[0] for op, inputs in onnx_ops.INTEGER_OPERATOR_INPUTS.items()},
}
#: The com.microsoft ones among them.
MS_QUANTIZED_OPS = frozenset({"MatMulNBits", "GatherBlockQuantized"})


@dataclass(frozen=True, slots=True)
class QuantizedOperand:
    """The consumer's own dequantisation of its weight input.

    Attributes:
        op: the operator.
        attrs: its integer attributes that matter (K, N, bits, block_size, quantize_axis).
        code: the stored weight's ONNX element type.
        scale, zero_point, g_idx: the constants the operator reads besides the weight (None: absent).
    """

    op: str
    attrs: tuple[tuple[str, int], ...]
    code: int
    scale: Constant | None
    zero_point: Constant | None = None
    g_idx: Constant | None = None

    def attr(self, name: str, default: int) -> int:
        return dict(self.attrs).get(name, default)

    @property
    def nbits(self) -> onnx_ops.MatMulNBitsAttrs:
        return onnx_ops.MatMulNBitsAttrs(
            self.attr("K", 0), self.attr("N", 0), self.attr("bits", 4), self.attr("block_size", 32)
        )

    @property
    def packed_table(self) -> bool:
        """GatherBlockQuantized over uint8 bytes that hold several values each."""
        return self.code == UINT8 and self.attr("bits", 4) < 8

    def shape(self, shape: tuple[int, ...]) -> tuple[int, ...] | None:
        if self.op == "MatMulNBits":
            attrs = self.nbits
            return (attrs.K, attrs.N) if attrs.K > 0 and attrs.N > 0 else None
        if self.op == "GatherBlockQuantized" and self.packed_table and shape:
            return (*shape[:-1], shape[-1] * (8 // self.attr("bits", 4)))
        return shape

    def encoding(self) -> str:
        if self.op == "MatMulNBits":
            return onnx_ops.matmul_nbits_encoding(self.nbits)
        if self.op == "GatherBlockQuantized":
            return onnx_ops.gather_block_quantized_encoding(self.attr("bits", 4), self.attr("block_size", 32))
        stored = {UINT4: "uint4", INT4: "int4"}.get(self.code)
        dtype: np.dtype[Any] = np.dtype(np.int8 if self.code == 3 else np.uint8)
        return (
            onnx_ops.integer_weight_encoding(self.op, dtype)
            if stored is None
            else f"{self.op.lower()}-{stored}"
        )

    def apply(
        self,
        name: str,
        values: npt.NDArray[Any],
        load: Callable[[Constant], npt.NDArray[Any]],
    ) -> npt.NDArray[np.floating]:
        """The float weight from the stored values and the operator's other constants."""
        scale = load(self.scale) if self.scale is not None else None
        zero = load(self.zero_point) if self.zero_point is not None else None
        if scale is None:
            raise fail(name, f"{self.op} has no constant scale for its weight")
        if self.op == "MatMulNBits":
            g_idx = load(self.g_idx) if self.g_idx is not None else None
            return onnx_ops.dequantize_matmul_nbits(name, self.nbits, values, scale, zero, g_idx)
        if self.op == "GatherBlockQuantized":
            return onnx_ops.dequantize_gather_block_quantized(
                name,
                values,
                scale,
                zero,
                bits=self.attr("bits", 4),
                block_size=self.attr("block_size", 32),
                quantize_axis=self.attr("quantize_axis", 1),
                packed=self.packed_table,
            )
        return onnx_ops.dequantize_integer_weight(name, self.op, values, scale, zero)


def quantized_operand(
    node: onnx.NodeProto,
    index: int,
    code: int,
    param: Callable[[int], Constant | None],
    integer_scale: Callable[[], Constant | None],
) -> QuantizedOperand | None:
    """The dequantisation operator `node` applies to its input `index`, when that is its quantised weight:
    QLinear* take the scale and zero point as inputs 4 and 5, MatMulInteger/ConvInteger only the zero
    point (input 3; `integer_scale` finds the Mul that applies the scale), MatMulNBits and
    GatherBlockQuantized (com.microsoft) their scales, zero points and g_idx as inputs 2, 3 and 4.

    Args:
        node: the consumer.
        index: which of its inputs the weight is.
        code: the weight's element type as the consumer sees it.
        param: the constant at one of the node's inputs (None when absent or computed).
        integer_scale: the weight scale of an integer product.
    """
    op = node.op_type
    weight_index = QUANTIZED_WEIGHT_INPUT.get(op)
    in_domain = node.domain == MS_DOMAIN if op in MS_QUANTIZED_OPS else node.domain in DEFAULT_DOMAINS
    if weight_index is None or index != weight_index or not in_domain:
        return None
    if op in MS_QUANTIZED_OPS:
        wanted = ("K", "N", "bits", "block_size", "quantize_axis")
        present = {attribute.name for attribute in node.attribute}
        attrs = tuple((name, attr_int(node, name, 0)) for name in wanted if name in present)
        g_idx = param(4) if op == "MatMulNBits" else None
        return QuantizedOperand(op, attrs, code, param(2), param(3), g_idx)
    if op in ("QLinearMatMul", "QLinearConv"):
        return QuantizedOperand(op, (), code, param(4), param(5))
    return QuantizedOperand(op, (), code, integer_scale(), param(3))
