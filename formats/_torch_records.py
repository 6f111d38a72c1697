"""What an unpickled PyTorch pickle is made of, besides plain containers: records and placeholders.

`TorchDType`, `StorageType`, `StorageRef` and `TensorHandle` record what a pickle declares about element
types, storages and tensors (a `TensorHandle` is a strided view of a storage); none of them can be
changed by the pickle once built. `Placeholder` is the inert class every global without a stand-in
becomes: its instances only record what the pickle tells them. The element-type tables are torch's own
(`torch/_utils.py`, `torch/storage.py`).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import NoReturn, TypeVar

from formats.errors import CorruptFileError
from formats.types import DType

MAX_TENSOR_DIMS = 64
#: Most distinct placeholder classes kept across files before the cache is emptied.
MAX_PLACEHOLDER_CLASSES = 40_000


def _corrupt(message: str) -> NoReturn:
    raise CorruptFileError(message)


def _refuse_state(self: object, state: object) -> NoReturn:
    _corrupt("the pickle tries to change the state of a storage, dtype or tensor record")


_Record = TypeVar("_Record", bound=type)


def _sealed(cls: _Record) -> _Record:
    """Make BUILD on a record refuse the file: a frozen dataclass with slots gets a `__setstate__` that
    sets every field it is given, which would let a pickle overwrite validated fields. Applied after
    `@dataclass`, which would otherwise replace an inherited or earlier one."""
    cls.__setstate__ = _refuse_state  # type: ignore[attr-defined]
    return cls


@_sealed
@dataclass(frozen=True, slots=True)
class TorchDType:
    """A torch element type named in a pickle (`torch.float32`, or the dtype of `torch.FloatStorage`)."""

    name: str  # torch's spelling: "float32", "bfloat16", "float8_e4m3fn", "qint8", "uint8"
    dtype: DType
    itemsize: int


@_sealed
@dataclass(frozen=True, slots=True)
class StorageType:
    """A storage class named in a persistent id (`torch.FloatStorage`, `torch.UntypedStorage`)."""

    name: str
    element: TorchDType


@_sealed
@dataclass(frozen=True, slots=True)
class StorageRef:
    """A storage the pickle refers to by key: its bytes live outside the pickle (zip record, file tail).

    Attributes:
        key: the storage key ("0", "1", ... in zip archives; a decimal address in legacy files).
        element: element type the storage was saved with (uint8 for untyped storages).
        numel: elements of `element` the storage holds, as declared by the persistent id.
        base: element offset into the root storage (legacy storage views; 0 otherwise).
        location: the device tag torch recorded ("cpu", "cuda:0"); informational only.
    """

    key: str
    element: TorchDType
    numel: int
    base: int = 0
    location: str = ""

    @property
    def nbytes(self) -> int:
        return self.numel * self.element.itemsize


@_sealed
@dataclass(frozen=True, slots=True, eq=False)
class TensorHandle:
    """A tensor rebuilt from a pickle: a strided view of a storage, in elements of `element`.

    `eq=False` keeps identity semantics, so the same handle reached twice is recognisably the same object.
    """

    storage: StorageRef
    element: TorchDType
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    is_parameter: bool = False
    quantized: bool = False
    negated: bool = False  # torch's "neg" view bit: the stored values are the negatives of the tensor's
    quantizer: Quantizer | None = None  # a quantised tensor's parameters, as `_rebuild_qtensor` got them

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def reach(self) -> int:
        """One past the largest storage element (relative to `offset`) the view touches; 0 when empty."""
        if self.numel == 0:
            return 0
        return 1 + sum((size - 1) * step for size, step in zip(self.shape, self.stride, strict=True))


#: torch's quantisation schemes (`torch.qscheme` values), as a pickle names them (`torch.per_tensor_affine`).
QSCHEMES = frozenset(
    {
        "per_tensor_affine",
        "per_channel_affine",
        "per_channel_affine_float_qparams",
        "per_tensor_symmetric",
        "per_channel_symmetric",
    }
)


@_sealed
@dataclass(frozen=True, slots=True)
class QSchemeRef:
    """A torch quantisation scheme named in a pickle."""

    name: str


@_sealed
@dataclass(frozen=True, slots=True, eq=False)
class Quantizer:
    """The `quantizer_params` of a quantised tensor: its scheme, scale(s), zero point(s) and channel axis.

    Per tensor, `scale` and `zero_point` are numbers; per channel they are tensors of one value per index
    of `axis`, read from their own storages.
    """

    scheme: str
    scale: float | TensorHandle
    zero_point: int | float | TensorHandle
    axis: int | None = None


class Placeholder:
    """An instance of a class (or the result of a call) the pickle names but that is never imported.

    Subclasses are made per global by `_placeholder_class`, so NEWOBJ (which needs a type) works and the
    instance remembers which global it stands for. Every hook the unpickler may call on an instance
    (`__setstate__` for BUILD, `__setitem__` for SETITEM(S), `append`/`extend` for APPEND(S), `__call__`
    for REDUCE on an instance) only records data; none looks anything up or calls anything.
    """

    __slots__ = ("args", "items", "listitems", "state")
    args: tuple[object, ...]
    items: dict[object, object]
    listitems: list[object]
    state: object
    global_name: str = "?"

    def __new__(cls, *args: object, **kwargs: object) -> Placeholder:
        instance = object.__new__(cls)
        instance.args = args
        instance.state = None
        instance.items = {}
        instance.listitems = []
        return instance

    def __init__(self, *args: object, **kwargs: object) -> None:
        """Arguments were recorded by `__new__`; REDUCE calls both, NEWOBJ only `__new__`."""

    def __setstate__(self, state: object) -> None:
        self.state = state

    def __setitem__(self, key: object, value: object) -> None:
        self.items[key] = value

    def append(self, value: object) -> None:
        self.listitems.append(value)

    def extend(self, values: list[object]) -> None:
        if not isinstance(values, list):
            raise CorruptFileError("APPENDS onto a placeholder with something that is not a list")
        self.listitems.extend(values)

    def __call__(self, *args: object, **kwargs: object) -> Placeholder:
        # A REDUCE whose callable is itself a placeholder instance: record it as another inert instance.
        return type(self)(*args)

    def __repr__(self) -> str:
        return f"<placeholder {self.global_name}>"


class PickledDict(OrderedDict):  # type: ignore[type-arg]
    """`collections.OrderedDict` (and other dict types) as rebuilt from a pickle.

    A real `OrderedDict` would take BUILD state through `setattr` on arbitrary names; this subclass takes
    it through `__setstate__` and keeps it aside (torch stores `_metadata` there, which we do not need).
    """

    def __setstate__(self, state: object) -> None:
        self.pickled_state = state


# ----------------------------------------------------------------------------------------------------
# Element types.

_DTYPE_TABLE: dict[str, tuple[DType, int]] = {
    "float64": (DType.F64, 8),
    "float32": (DType.F32, 4),
    "float16": (DType.F16, 2),
    "bfloat16": (DType.BF16, 2),
    "float8_e4m3fn": (DType.F8_E4M3, 1),
    "float8_e5m2": (DType.F8_E5M2, 1),
    "float8_e4m3fnuz": (DType.F8_E4M3_FNUZ, 1),
    "float8_e5m2fnuz": (DType.F8_E5M2_FNUZ, 1),
    "float8_e8m0fnu": (DType.F8_E8M0, 1),
    # Two FP4 values per element; the shape counts bytes, so the values are listed, not widened.
    "float4_e2m1fn_x2": (DType.OTHER, 1),
    "int64": (DType.I64, 8),
    "int32": (DType.I32, 4),
    "int16": (DType.I16, 2),
    "int8": (DType.I8, 1),
    "uint64": (DType.U64, 8),
    "uint32": (DType.U32, 4),
    "uint16": (DType.U16, 2),
    "uint8": (DType.U8, 1),
    "bool": (DType.BOOL, 1),
    "complex32": (DType.COMPLEX, 4),
    "complex64": (DType.COMPLEX, 8),
    "complex128": (DType.COMPLEX, 16),
    "qint8": (DType.I8, 1),
    "quint8": (DType.U8, 1),
    "qint32": (DType.I32, 4),
    "quint4x2": (DType.U8, 1),
    "quint2x4": (DType.U8, 1),
    "bits8": (DType.OTHER, 1),
    "bits16": (DType.OTHER, 2),
    "bits1x8": (DType.OTHER, 1),
    "bits2x4": (DType.OTHER, 1),
    "bits4x2": (DType.OTHER, 1),
}
# torch's aliases (`torch.float` is `torch.float32`), as they may appear as globals.
_DTYPE_ALIASES = {
    "double": "float64",
    "float": "float32",
    "half": "float16",
    "long": "int64",
    "int": "int32",
    "short": "int16",
    "cfloat": "complex64",
    "cdouble": "complex128",
    "chalf": "complex32",
}
# The legacy typed storage classes and the element type each holds (torch.storage's own table).
_STORAGE_CLASSES = {
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
    "QInt8Storage": "qint8",
    "QUInt8Storage": "quint8",
    "QInt32Storage": "qint32",
    "QUInt4x2Storage": "quint4x2",
    "QUInt2x4Storage": "quint2x4",
    # Untyped storages count bytes.
    "UntypedStorage": "uint8",
}


def is_dtype_name(name: str) -> bool:
    """True for torch's names of element types (`float32`) and their aliases (`float`)."""
    return name in _DTYPE_TABLE or name in _DTYPE_ALIASES


def torch_dtype(name: str) -> TorchDType:
    """The `TorchDType` for torch's name of an element type (aliases accepted)."""
    canonical = _DTYPE_ALIASES.get(name, name)
    dtype, itemsize = _DTYPE_TABLE[canonical]
    return TorchDType(canonical, dtype, itemsize)


_PLACEHOLDER_CLASSES: dict[str, type[Placeholder]] = {}


def placeholder_class(global_name: str) -> type[Placeholder]:
    cls = _PLACEHOLDER_CLASSES.get(global_name)
    if cls is None:
        if len(_PLACEHOLDER_CLASSES) >= MAX_PLACEHOLDER_CLASSES:
            # A shared cache across files: forget old entries rather than grow without bound.
            _PLACEHOLDER_CLASSES.clear()
        cls = type("Placeholder", (Placeholder,), {"__slots__": (), "global_name": global_name})
        _PLACEHOLDER_CLASSES[global_name] = cls
    return cls


def placeholder_name(value: object) -> str | None:
    """The global a placeholder instance stands for, or None when `value` is not a placeholder."""
    return type(value).global_name if isinstance(value, Placeholder) else None


def storage_type(module: str, name: str) -> StorageType | None:
    """The storage class `module.name` names (`torch.FloatStorage`, `torch.storage.UntypedStorage`)."""
    if module == "torch" and name in _STORAGE_CLASSES:
        return StorageType(name, torch_dtype(_STORAGE_CLASSES[name]))
    if name == "UntypedStorage" and module in ("torch", "torch.storage"):
        return StorageType("UntypedStorage", torch_dtype("uint8"))
    return None
