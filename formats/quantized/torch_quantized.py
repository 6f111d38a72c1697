"""PyTorch quantised tensors (torch.qint8, torch.quint8, torch.qint32) as `torch.save` pickles them.

`torch._utils._rebuild_qtensor(storage, offset, size, stride, quantizer_params, ...)` receives the integer
storage and `quantizer_params`:
- `(torch.per_tensor_affine, scale: float, zero_point: int)`;
- `(torch.per_channel_affine, scales: Tensor[float64], zero_points: Tensor[int64], axis: int)`;
- `(torch.per_channel_affine_float_qparams, scales, zero_points: Tensor[float], axis)` (embedding bags).
`Tensor.dequantize()` returns float32: (q - zero_point) * scale, per tensor with the scale rounded to float32
first, per channel in double (the float64 scales) rounded once at the end (checked bit for bit in
tests/formats/test_quantized_ops.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np
import numpy.typing as npt

from formats.quantized._common import Floats, fail
from formats.quantized.affine import dequantize_affine


class QScheme(str, Enum):
    """torch's qscheme names, as the pickle spells the `torch.qscheme` global's argument."""

    PER_TENSOR_AFFINE = "per_tensor_affine"
    PER_CHANNEL_AFFINE = "per_channel_affine"
    PER_CHANNEL_AFFINE_FLOAT_QPARAMS = "per_channel_affine_float_qparams"


@dataclass(frozen=True, slots=True)
class TorchQuantizer:
    """The quantizer parameters of one quantised tensor, converted to numpy by the reader."""

    scheme: QScheme
    scale: npt.NDArray[np.float64]
    zero_point: npt.NDArray[np.generic]
    axis: int | None = None


def dequantize_torch(weight: str, values: npt.NDArray[np.integer], quantizer: TorchQuantizer) -> Floats:
    """What `Tensor.dequantize()` returns for the quantised tensor with these integers and parameters.

    Raises:
        TensorError: a per-channel scheme without an axis, or parameters of the wrong size.
    """
    if quantizer.scheme is QScheme.PER_TENSOR_AFFINE:
        if quantizer.scale.size != 1 or quantizer.zero_point.size != 1:
            raise fail(weight, "a per-tensor quantizer has more than one scale or zero point")
        return dequantize_affine(
            weight, values, quantizer.scale.astype(np.float32), quantizer.zero_point.astype(np.int64), None
        )
    if quantizer.axis is None:
        raise fail(weight, f"a {quantizer.scheme.value} quantizer has no axis")
    return dequantize_affine(
        weight,
        values,
        quantizer.scale.astype(np.float64),
        quantizer.zero_point,
        quantizer.axis,
        compute=np.float64,
    )


def torch_encoding(dtype_name: str, scheme: QScheme | str) -> str:
    """`torch-qint8` (per tensor) or `torch-qint8-per-channel`."""
    suffix = "" if QScheme(scheme) is QScheme.PER_TENSOR_AFFINE else "-per-channel"
    return f"torch-{dtype_name}{suffix}"
