"""What the restricted unpickler builds instead of the globals a PyTorch pickle names.

`torch.save` writes tensors as calls to rebuild functions (`torch._utils._rebuild_tensor_v2` and friends)
over storages named by persistent ids, with dtypes and storage classes as globals. Here are our own
versions of exactly those: records of what a pickle declares (`TorchDType`, `StorageType`, `StorageRef`,
`TensorHandle`: a strided view of a storage, checked for sane sizes), the rebuild functions that make
them, inert versions of the builtins and containers pickles use (sets, OrderedDict, bytes), and
`Placeholder`, the inert class every other global becomes: its instances only record what the pickle
tells them. None of them imports, calls or looks up anything the file names.

Which global gets which of these is decided by `formats._pickle_policy`; `stand_in` hands out ours.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import NoReturn, TypeVar

from formats._binary import MAX_ELEMENTS
from formats.errors import CorruptFileError
from formats.types import DType

#: Most dimensions a rebuilt tensor may declare.
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

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def reach(self) -> int:
        """One past the largest storage element (relative to `offset`) the view touches; 0 when empty."""
        if self.numel == 0:
            return 0
        return 1 + sum((size - 1) * step for size, step in zip(self.shape, self.stride, strict=True))


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
    "float8_e4m3fnuz": (DType.OTHER, 1),
    "float8_e5m2fnuz": (DType.OTHER, 1),
    "float8_e8m0fnu": (DType.OTHER, 1),
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


def torch_dtype(name: str) -> TorchDType:
    """The `TorchDType` for torch's name of an element type (aliases accepted)."""
    canonical = _DTYPE_ALIASES.get(name, name)
    dtype, itemsize = _DTYPE_TABLE[canonical]
    return TorchDType(canonical, dtype, itemsize)


# ----------------------------------------------------------------------------------------------------
# Stand-ins for the allow-listed globals. Each validates its arguments' types before using them; a wrong
# type is a corrupt file, never a reason to call something else.


def _int_tuple(value: object, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(type(item) is int for item in value):
        _corrupt(f"tensor {what} is not a tuple of integers")
    if len(value) > MAX_TENSOR_DIMS:
        _corrupt(f"tensor {what} has {len(value)} dimensions")
    return tuple(value)


def _make_handle(
    storage: object,
    offset: object,
    size: object,
    stride: object,
    element: TorchDType | None,
    metadata: object = None,
    quantized: bool = False,
) -> TensorHandle:
    if not isinstance(storage, StorageRef):
        _corrupt("a tensor is rebuilt over something that is not a storage")
    if type(offset) is not int or offset < 0:
        _corrupt(f"tensor storage offset {offset!r} is not a non-negative integer")
    shape = _int_tuple(size, "size")
    strides = _int_tuple(stride, "stride")
    if len(shape) != len(strides):
        _corrupt(f"tensor size {list(shape)} and stride {list(strides)} differ in length")
    if any(dim < 0 for dim in shape):
        _corrupt(f"tensor size {list(shape)} has a negative dimension")
    if any(step < 0 for step in strides):
        _corrupt(f"tensor stride {list(strides)} is negative")
    if math.prod(shape) > MAX_ELEMENTS:
        _corrupt(f"tensor size {list(shape)} declares more than {MAX_ELEMENTS} elements")
    handle = TensorHandle(
        storage=storage,
        element=element or storage.element,
        offset=offset,
        shape=shape,
        stride=strides,
        quantized=quantized,
        negated=isinstance(metadata, Mapping) and metadata.get("neg") is True,
    )
    if offset + handle.reach > MAX_ELEMENTS * 16:
        _corrupt(f"tensor offset {offset} and stride {list(strides)} overflow any storage")
    return handle


def _rebuild_tensor(storage: object, storage_offset: object, size: object, stride: object) -> TensorHandle:
    return _make_handle(storage, storage_offset, size, stride, None)


def _rebuild_tensor_v2(
    storage: object,
    storage_offset: object,
    size: object,
    stride: object,
    requires_grad: object = False,
    backward_hooks: object = None,
    metadata: object = None,
) -> TensorHandle:
    return _make_handle(storage, storage_offset, size, stride, None, metadata)


def _rebuild_tensor_v3(
    storage: object,
    storage_offset: object,
    size: object,
    stride: object,
    requires_grad: object,
    backward_hooks: object,
    dtype: object,
    metadata: object = None,
) -> TensorHandle:
    # Untyped storages count bytes; the tensor's element type comes as its own argument.
    if not isinstance(dtype, TorchDType):
        _corrupt("_rebuild_tensor_v3 was given a dtype that is not a torch dtype")
    return _make_handle(storage, storage_offset, size, stride, dtype, metadata)


def _rebuild_qtensor(
    storage: object, storage_offset: object, size: object, stride: object, *rest: object
) -> TensorHandle:
    return _make_handle(storage, storage_offset, size, stride, None, quantized=True)


def _rebuild_parameter(
    data: object, requires_grad: object = True, backward_hooks: object = None, state: object = None
) -> object:
    return replace(data, is_parameter=True) if isinstance(data, TensorHandle) else data


def _rebuild_device_tensor_from_cpu_tensor(data: object, *rest: object) -> object:
    return data


class _StandIn:
    """One of our functions, as `find_class` hands it to the unpickler.

    The wrapper has no `__dict__` and refuses BUILD, so a pickle cannot set attributes (`__defaults__`,
    say) on the function objects that later files would use.
    """

    __slots__ = ("function", "global_name")

    def __init__(self, global_name: str, function: Callable[..., object]) -> None:
        self.global_name = global_name
        self.function = function

    def __call__(self, *args: object, **kwargs: object) -> object:
        return self.function(*args, **kwargs)

    def __setstate__(self, state: object) -> NoReturn:
        _corrupt(f"the pickle tries to change the state of {self.global_name}")

    def __repr__(self) -> str:
        return f"<stand-in {self.global_name}>"


def _rebuild_from_type_v2(func: object, new_type: object, args: object, state: object) -> object:
    # Tensor subclasses (Parameter, Buffer, user subclasses) reduce to (inner rebuild, type, args, state):
    # only our own rebuild functions are ever called; the subclass itself is irrelevant to the values.
    if isinstance(func, _StandIn) and func.function in _TENSOR_FUNCTIONS:
        if not isinstance(args, tuple):
            _corrupt("_rebuild_from_type_v2 arguments are not a tuple")
        return func(*args)
    return placeholder_class("torch._tensor._rebuild_from_type_v2")(func, new_type, args, state)


_TENSOR_FUNCTIONS: frozenset[Callable[..., object]] = frozenset(
    {_rebuild_tensor, _rebuild_tensor_v2, _rebuild_tensor_v3, _rebuild_qtensor, _rebuild_parameter}
)


def _torch_size(values: object = ()) -> tuple[int, ...]:
    return _int_tuple(values, "size")


def _get_layout(name: object) -> str:
    if not isinstance(name, str):
        _corrupt("torch.serialization._get_layout was given something that is not a name")
    return name


def _inert_set(values: object = ()) -> set[object]:
    if not isinstance(values, (list, tuple, set, frozenset)):
        _corrupt("a set is built from something that is not a list")
    return set(values)


def _inert_frozenset(values: object = ()) -> frozenset[object]:
    return frozenset(_inert_set(values))


def _inert_dict(*args: object, **kwargs: object) -> PickledDict:
    # OrderedDict(), defaultdict(factory) and Counter() all arrive here; a default factory is dropped,
    # never called. Pairs are accepted only as a list of 2-tuples.
    result = PickledDict()
    for arg in args:
        if (
            isinstance(arg, list) and all(isinstance(pair, tuple) and len(pair) == 2 for pair in arg)
        ) or isinstance(arg, dict):
            result.update(arg)
    return result


def _inert_list(values: object = ()) -> list[object]:
    if not isinstance(values, (list, tuple)):
        _corrupt("a list is built from something that is not a list")
    return list(values)


def _codecs_encode(text: object, encoding: object = "utf-8") -> bytes:
    # Protocol 2 writes bytes as _codecs.encode(str, "latin1"); nothing else is accepted.
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "latin_1"):
        _corrupt("_codecs.encode is used for something other than bytes")
    return text.encode("latin-1")


def _inert_bytearray(value: object = b"", encoding: object = None) -> bytearray:
    if isinstance(value, (bytes, bytearray)):
        return bytearray(value)
    if isinstance(value, str) and encoding in ("latin1", "latin-1", "latin_1"):
        return bytearray(value.encode("latin-1"))
    if isinstance(value, list) and len(value) <= 1 << 20:
        return bytearray(item for item in value if type(item) is int and 0 <= item < 256)
    _corrupt("bytearray is built from something that is not bytes")


def _inert_complex(real: object = 0.0, imag: object = 0.0) -> complex:
    if not isinstance(real, (int, float)) or not isinstance(imag, (int, float)):
        _corrupt("complex is built from something that is not a number")
    return complex(real, imag)


def _inert_slice(*args: object) -> slice:
    return slice(*args[:3])


def _inert_range(*args: object) -> range:
    if not all(type(arg) is int for arg in args) or not 1 <= len(args) <= 3:
        _corrupt("range is built from something that is not integers")
    bounds = [arg for arg in args if isinstance(arg, int)]
    return range(*bounds)


def _identity(value: object = None, *rest: object) -> object:
    return value


def _reconstructor(cls: object, base: object = None, state: object = None) -> object:
    # copyreg._reconstructor (protocols 0 and 1): instantiate `cls` without running its code. Only our
    # placeholder classes can be instantiated; anything else becomes a placeholder of its own.
    if isinstance(cls, type) and issubclass(cls, Placeholder):
        return cls()
    return placeholder_class("copyreg._reconstructor")(cls, base, state)


def _newobj(cls: object, *args: object) -> object:
    if isinstance(cls, type) and issubclass(cls, Placeholder):
        return cls(*args)
    return placeholder_class("copyreg.__newobj__")(cls, *args)


_STAND_IN_FUNCTIONS: dict[str, Callable[..., object]] = {
    "torch._utils._rebuild_tensor": _rebuild_tensor,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2,
    "torch._utils._rebuild_tensor_v3": _rebuild_tensor_v3,
    "torch._utils._rebuild_qtensor": _rebuild_qtensor,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
    "torch._utils._rebuild_device_tensor_from_cpu_tensor": _rebuild_device_tensor_from_cpu_tensor,
    "torch._tensor._rebuild_from_type_v2": _rebuild_from_type_v2,
    "torch.Size": _torch_size,
    "torch.serialization._get_layout": _get_layout,
    # TorchScript's typed containers: each returns its first argument unchanged.
    "torch.jit._pickle.restore_type_tag": _identity,
    "torch.jit._pickle.build_intlist": _inert_list,
    "torch.jit._pickle.build_doublelist": _inert_list,
    "torch.jit._pickle.build_boollist": _inert_list,
    "torch.jit._pickle.build_tensorlist": _inert_list,
    "collections.OrderedDict": _inert_dict,
    "collections.defaultdict": _inert_dict,
    "collections.Counter": _inert_dict,
    "collections.deque": _inert_list,
    "copyreg._reconstructor": _reconstructor,
    "copyreg.__newobj__": _newobj,
    "_codecs.encode": _codecs_encode,
    "builtins.set": _inert_set,
    "builtins.frozenset": _inert_frozenset,
    "builtins.list": _inert_list,
    "builtins.dict": _inert_dict,
    "builtins.bytearray": _inert_bytearray,
    "builtins.complex": _inert_complex,
    "builtins.slice": _inert_slice,
    "builtins.range": _inert_range,
}
_STAND_INS: dict[str, _StandIn] = {name: _StandIn(name, func) for name, func in _STAND_IN_FUNCTIONS.items()}


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


def stand_in(module: str, name: str) -> object | None:
    """Our own object for the global `module.name` (normalised), or None when we have none.

    Rebuild functions, inert builtins and containers are `_StandIn`s; storage classes and dtypes are
    records. Everything else a pickle names becomes a `Placeholder`, if the policy allows it at all.
    """
    full = f"{module}.{name}"
    if full in _STAND_INS:
        return _STAND_INS[full]
    storage = storage_type(module, name)
    if storage is not None:
        return storage
    if module == "torch" and (name in _DTYPE_TABLE or name in _DTYPE_ALIASES):
        return torch_dtype(name)
    return None
