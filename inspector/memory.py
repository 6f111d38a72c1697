"""Tensors already in memory as a `Reader`: a mapping of names to numpy arrays or torch tensors (a
`state_dict`), or a `torch.nn.Module`, so the Python API analyses them exactly as it analyses a file.

torch is never imported here: a torch object is recognised by its type's module name, and what it offers
(`named_modules`, `detach`, `numpy`) is used through its own methods. For a module, each parameter's
layer kind comes from the class of the module that owns it (Linear, Conv2d, Embedding, LayerNorm, LSTM...),
and its registered buffers (running statistics, an STFT basis, position ids) are listed as buffers, not
analysed: they are not trained weights.

Names that share their values (tied embeddings) are analysed once, the others listed as aliases, as the
file readers do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from formats.types import DType, FormatHint, Layout, Reader, TensorInfo, TensorRef, WeightKind

#: numpy element types and the reader contract's.
_DTYPES: dict[str, DType] = {
    "float64": DType.F64,
    "float32": DType.F32,
    "float16": DType.F16,
    "bfloat16": DType.BF16,
    "int64": DType.I64,
    "int32": DType.I32,
    "int16": DType.I16,
    "int8": DType.I8,
    "uint64": DType.U64,
    "uint32": DType.U32,
    "uint16": DType.U16,
    "uint8": DType.U8,
    "bool": DType.BOOL,
    "complex64": DType.COMPLEX,
    "complex128": DType.COMPLEX,
}
#: Why a module's buffer is not analysed (the words `inspector.render.view` files under "not a weight").
BUFFER_REASON = "a registered buffer (not a trained weight)"

#: Module classes (by name) and the kind of weight their `weight` is.
_MODULE_KINDS: dict[str, WeightKind] = {
    "Linear": WeightKind.DENSE,
    "LazyLinear": WeightKind.DENSE,
    "Bilinear": WeightKind.DENSE,
    "Conv1d": WeightKind.CONV,
    "Conv2d": WeightKind.CONV,
    "Conv3d": WeightKind.CONV,
    "ConvTranspose1d": WeightKind.CONV,
    "ConvTranspose2d": WeightKind.CONV,
    "ConvTranspose3d": WeightKind.CONV,
    "Embedding": WeightKind.EMBEDDING,
    "EmbeddingBag": WeightKind.EMBEDDING,
    "LSTM": WeightKind.RECURRENT,
    "GRU": WeightKind.RECURRENT,
    "RNN": WeightKind.RECURRENT,
    "LSTMCell": WeightKind.RECURRENT,
    "GRUCell": WeightKind.RECURRENT,
    "RNNCell": WeightKind.RECURRENT,
    "MultiheadAttention": WeightKind.DENSE,
}
_NORM_MARKERS = ("Norm", "norm")


def is_torch(value: object) -> bool:
    """Whether `value` is a torch object (its class comes from the torch package), without importing torch."""
    return any(cls.__module__.split(".")[0] == "torch" for cls in type(value).__mro__)


def _dtype_name(value: Any) -> str:
    dtype = value.dtype
    return str(dtype).removeprefix("torch.")


def _as_numpy(value: Any) -> np.ndarray:
    """float32 or float64 values of an array or tensor (widened from float16 and bfloat16)."""
    if is_torch(value):
        tensor = value.detach()
        if tensor.dtype.is_floating_point and tensor.dtype.itemsize < 4:
            tensor = tensor.float()
        return np.asarray(tensor.cpu().numpy())
    array = np.asarray(value)
    if array.dtype.kind == "f" and array.dtype.itemsize < 4:
        return array.astype(np.float32)
    return array


def _storage_key(value: Any) -> tuple[Any, ...]:
    """Values sharing this key are the same weights (tied), whatever their names."""
    if is_torch(value):
        return ("torch", value.data_ptr(), tuple(value.shape), tuple(value.stride()), str(value.dtype))
    array = np.asarray(value)
    return ("numpy", array.__array_interface__["data"][0], array.shape, array.strides, array.dtype.str)


def _hint(owner: Any, parameter: str) -> FormatHint:
    """What the owning module's class says about one of its parameters."""
    cls = type(owner).__name__
    # A subclass (NonDynamicallyQuantizableLinear, a user's Linear) is read as the class it extends.
    kind = next((_MODULE_KINDS[c.__name__] for c in type(owner).__mro__ if c.__name__ in _MODULE_KINDS), None)
    if parameter.startswith("bias") or parameter.endswith("_bias") or parameter.startswith("bias_"):
        return FormatHint(kind=WeightKind.BIAS, op=cls)
    if kind is None and any(marker in cls for marker in _NORM_MARKERS):
        return FormatHint(kind=WeightKind.NORM, op=cls)
    if kind is WeightKind.CONV:
        groups = int(getattr(owner, "groups", 1) or 1)
        in_channels = int(getattr(owner, "in_channels", 0) or 0)
        if groups > 1 and groups == in_channels:
            return FormatHint(kind=WeightKind.DEPTHWISE_CONV, op=cls, groups=groups, layout=Layout.OUT_IN)
        return FormatHint(kind=kind, op=cls, groups=groups, layout=Layout.OUT_IN)
    if kind is not None:
        return FormatHint(kind=kind, op=cls, layout=Layout.OUT_IN)
    return FormatHint(op=cls)


class MemoryReader(Reader):
    """Tensors given as values; `describe` says what they were (a state_dict, a module's class)."""

    format_name = "in-memory"

    def __init__(self, entries: list[tuple[str, Any, FormatHint, str | None]], label: str, kind: str) -> None:
        super().__init__(Path(label))
        self._entries = entries
        self._kind = kind

    @property
    def format(self) -> str:
        return self._kind

    def tensors(self) -> Iterator[TensorRef]:
        seen: dict[tuple[Any, ...], int] = {}
        groups: list[tuple[str, Any, FormatHint, str | None, list[str]]] = []
        for name, value, hint, skip in self._entries:
            key = _storage_key(value)
            if key in seen:
                groups[seen[key]][4].append(name)
                continue
            seen[key] = len(groups)
            groups.append((name, value, hint, skip, []))
        for name, value, hint, skip, aliases in groups:
            dtype = _DTYPES.get(_dtype_name(value), DType.OTHER)
            shape = tuple(int(dim) for dim in value.shape)
            itemsize = int(getattr(value.dtype, "itemsize", 0) or np.dtype("float32").itemsize)
            info = TensorInfo(
                name=name,
                shape=shape,
                dtype=dtype,
                nbytes=int(np.prod(shape, dtype=np.int64)) * itemsize,
                origin="memory",
                hint=hint,
                aliases=tuple(aliases),
                skip_reason=skip,
            )
            yield TensorRef(info, _fetcher(value))


def _fetcher(value: Any) -> Callable[[], np.ndarray]:
    return lambda: _as_numpy(value)


def from_mapping(mapping: Mapping[str, Any], label: str = "state_dict") -> MemoryReader:
    """A reader of a mapping of names to arrays or tensors.

    Raises:
        TypeError: a key is not a string, or a value has no shape and dtype.
    """
    entries: list[tuple[str, Any, FormatHint, str | None]] = []
    for name, value in mapping.items():
        if not isinstance(name, str):
            raise TypeError(f"state_dict keys must be strings, not {type(name).__name__}")
        if not is_torch(value) and (not hasattr(value, "shape") or not hasattr(value, "dtype")):
            raise TypeError(f"{name!r}: {type(value).__name__} is not an array or a tensor")
        entries.append((name, value, FormatHint(), None))
    return MemoryReader(entries, label, "state_dict")


def from_module(module: Any, label: str | None = None) -> MemoryReader:
    """A reader of a `torch.nn.Module`'s parameters (kinds from their modules) and buffers (not analysed)."""
    entries: list[tuple[str, Any, FormatHint, str | None]] = []
    for prefix, owner in module.named_modules():
        for parameter, value in owner.named_parameters(recurse=False):
            if value is None:
                continue
            name = f"{prefix}.{parameter}" if prefix else parameter
            entries.append((name, value, _hint(owner, parameter), None))
        for buffer, value in owner.named_buffers(recurse=False):
            if value is None:
                continue
            name = f"{prefix}.{buffer}" if prefix else buffer
            entries.append((name, value, FormatHint(op=type(owner).__name__), BUFFER_REASON))
    return MemoryReader(entries, label or type(module).__name__, f"torch.nn.Module ({type(module).__name__})")
