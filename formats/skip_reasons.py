"""Why a tensor is listed but not analysed, worded once for every reader and for the report.

Readers state facts: the kind of weight the format says a tensor is (`FormatHint.kind`: a bias, a norm
parameter, a depthwise kernel and its groups, another operator's parameter and the operator), its
element type and shape. The words for the facts every format shares are here, and both the readers that
list such tensors as not read (ONNX, Keras) and the analysis (`inspector.layers`) take them from here,
so a tensor is described the same way in a reader's `TensorInfo.skip_reason` and in the report.

Facts that only one format knows (optimizer state in a PyTorch checkpoint, an FP8 weight without its
scale tensor, a quantisation scheme without a dequantiser) are worded by their reader; the report shows
a reader's reason unchanged.
"""

from __future__ import annotations

from formats.types import FormatHint, WeightKind

#: Weight kinds that are never a matrix, whatever their shape.
NOT_MATRIX_KINDS = frozenset({WeightKind.DEPTHWISE_CONV, WeightKind.NORM, WeightKind.BIAS, WeightKind.OTHER})
#: Fewest dimensions of a convolution kernel: (out, in, width).
MIN_CONV_DIMS = 3


def not_a_matrix(hint: FormatHint, shape: tuple[int, ...]) -> str | None:
    """Why the format's own layer information rules the tensor out as a matrix; None when it does not.

    Depthwise kernels hold one filter per channel, biases and normalisation parameters are vectors of
    per-channel values (even when stored 2-D), an operator's other parameters (PReLU slopes) are not
    weights it multiplies by, and a convolution weight needs at least (out, in, width).
    """
    kind = hint.kind
    if kind is WeightKind.DEPTHWISE_CONV:
        return f"depthwise convolution kernel (groups={hint.groups}): one filter per channel, not a matrix"
    if kind in (WeightKind.NORM, WeightKind.BIAS):
        return f"{kind.value} parameters, not a weight matrix"
    if kind is WeightKind.OTHER:
        return f"{hint.op or 'this operator'} weight, not a layer matrix"
    if kind is WeightKind.CONV and len(shape) < MIN_CONV_DIMS:
        return f"{len(shape)}-D convolution weight, not a kernel"
    return None


def too_few_dimensions(ndim: int) -> str:
    """A tensor of fewer than two dimensions."""
    return f"{ndim}-D tensor (a bias, scale or scalar), not a matrix"


def too_many_dimensions(ndim: int, kind: str) -> str:
    """A tensor of more than three dimensions that is not a convolution kernel."""
    return f"{ndim}-D {kind} tensor, not a matrix or a stack of matrices"


def not_floating_point(type_name: str) -> str:
    """Integer, boolean or other non-float element types (`type_name` as the format spells it)."""
    return f"{type_name} values are not floating point"


def not_supported(type_name: str) -> str:
    """Float element types that are valid in the format but that wwinspect does not decode."""
    return f"{type_name} values are not supported"
