"""Restricted unpickling of PyTorch pickles: the object graph, never importing or calling what it names.

`torch.save` writes a pickle whose tensors are calls to rebuild functions (`torch._utils._rebuild_tensor_v2`
and friends) over storages referenced by persistent ids. `load_pickle` rebuilds that graph with
`SafeUnpickler`, a `pickle.Unpickler` whose `find_class` never imports: the rebuild functions, storage
types and dtypes are our own stand-ins (a rebuilt tensor is a `TensorHandle` that records storage, offset,
size and stride), a handful of inert builtins and containers map to safe equivalents, globals that would
run code if the file were loaded the usual way raise `UnsafeFileError`, and every other global becomes an
inert `Placeholder` class whose instances only record what the pickle tells them (constructor arguments,
BUILD state, items). Nothing named in the file is ever imported, called or looked up as an attribute.

Before the unpickler sees the bytes, `prescan` walks the opcode stream with `pickletools.genops` (a parser
that executes nothing) to bound the opcode count and memo indices and to refuse opcodes we have no use for;
so a stream that is broken or hostile is refused before any object is built (the "nullifAI" lesson: a
payload that runs before the stream errors).

Non-goals: reading tensor bytes (see `formats.torch_reader`), deciding names (the reader walks the graph),
and running anything a pickle asks for, ever.
"""

from __future__ import annotations

import _compat_pickle
import io
import math
import pickle
import pickletools
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NoReturn

from formats.errors import CorruptFileError, UnsafeFileError, WWInspectError
from formats.types import DType

#: Largest pickle we unpickle (data.pkl of a real checkpoint is kilobytes to a few megabytes).
MAX_PICKLE_BYTES = 1 << 30
#: Most opcodes we accept in one pickle; a 100k-tensor checkpoint needs about 3 million.
MAX_OPCODES = 50_000_000
#: Most distinct globals one pickle may name (each becomes a small class).
MAX_GLOBALS = 10_000
#: Longest module or attribute name we look at.
MAX_GLOBAL_NAME = 512
#: Largest element count a tensor view or storage may declare (2**40, as `formats._binary`).
MAX_ELEMENTS = 1 << 40

# Opcodes that real torch pickles never contain and that only widen what a file can ask of us:
# the extension registry (EXT*) resolves integers to globals outside find_class's arguments, and the
# protocol-0 string persistent id is a second spelling of BINPERSID that torch does not write.
_REFUSED_OPCODES = frozenset({"EXT1", "EXT2", "EXT4", "PERSID"})
_MEMO_OPCODES = frozenset({"PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET"})


@dataclass(frozen=True, slots=True)
class TorchDType:
    """A torch element type named in a pickle (`torch.float32`, or the dtype of `torch.FloatStorage`)."""

    name: str  # torch's spelling: "float32", "bfloat16", "float8_e4m3fn", "qint8", "uint8"
    dtype: DType
    itemsize: int

    def __setstate__(self, state: object) -> NoReturn:
        # BUILD on one of our records would otherwise overwrite validated fields (dataclass slots setstate).
        _corrupt("the pickle tries to change the state of a storage, dtype or tensor record")


@dataclass(frozen=True, slots=True)
class StorageType:
    """A storage class named in a persistent id (`torch.FloatStorage`, `torch.UntypedStorage`)."""

    name: str
    element: TorchDType

    def __setstate__(self, state: object) -> NoReturn:
        # BUILD on one of our records would otherwise overwrite validated fields (dataclass slots setstate).
        _corrupt("the pickle tries to change the state of a storage, dtype or tensor record")


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

    def __setstate__(self, state: object) -> NoReturn:
        # BUILD on one of our records would otherwise overwrite validated fields (dataclass slots setstate).
        _corrupt("the pickle tries to change the state of a storage, dtype or tensor record")


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

    def __setstate__(self, state: object) -> NoReturn:
        # BUILD on one of our records would otherwise overwrite validated fields (dataclass slots setstate).
        _corrupt("the pickle tries to change the state of a storage, dtype or tensor record")


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


def _corrupt(message: str) -> NoReturn:
    raise CorruptFileError(message)


def _int_tuple(value: object, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(type(item) is int for item in value):
        _corrupt(f"tensor {what} is not a tuple of integers")
    if len(value) > 64:
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
    return _placeholder_class("torch._tensor._rebuild_from_type_v2")(func, new_type, args, state)


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
    return _placeholder_class("copyreg._reconstructor")(cls, base, state)


def _newobj(cls: object, *args: object) -> object:
    if isinstance(cls, type) and issubclass(cls, Placeholder):
        return cls(*args)
    return _placeholder_class("copyreg.__newobj__")(cls, *args)


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

# ----------------------------------------------------------------------------------------------------
# The deny-list: globals that run code, touch files, processes or the network, or load further pickles
# when a file is loaded the usual way. The real protection is that nothing named in a file is ever called;
# this list decides which files are reported as unsafe (exit 3) rather than read. Entries match whole
# dotted components: "os" refuses "os.system" and "os.path.join", not "osmnx".

_DENIED_PREFIXES: frozenset[str] = frozenset(
    {
        # processes, code and imports
        "os",
        "posix",
        "nt",
        "subprocess",
        "_posixsubprocess",
        "sys",
        "importlib",
        "_imp",
        "imp",
        "runpy",
        "pkgutil",
        "zipimport",
        "site",
        "sysconfig",
        "code",
        "codeop",
        "compileall",
        "py_compile",
        "types",
        "ast",
        "inspect",
        "gc",
        "ctypes",
        "_ctypes",
        "cffi",
        "multiprocessing",
        "_multiprocessing",
        "concurrent",
        "threading",
        "_thread",
        "signal",
        "asyncio",
        "pty",
        "platform",
        "resource",
        "mmap",
        "fcntl",
        "termios",
        "_frozen_importlib",
        "_frozen_importlib_external",
        # function plumbing that calls whatever it is given
        "operator",
        "_operator",
        "functools",
        "_functools",
        "copy",
        "weakref",
        "contextlib",
        # other pickles and loaders (nested unpickling)
        "pickle",
        "_pickle",
        "cPickle",
        "pickletools",
        "marshal",
        "shelve",
        "dbm",
        "dill",
        "cloudpickle",
        "joblib",
        "yaml",
        "jsonpickle",
        # files, archives and the network
        "io",
        "_io",
        "pathlib",
        "shutil",
        "tempfile",
        "glob",
        "fileinput",
        "linecache",
        "tarfile",
        "zipfile",
        "gzip",
        "bz2",
        "lzma",
        "socket",
        "_socket",
        "ssl",
        "select",
        "selectors",
        "socketserver",
        "http",
        "urllib",
        "urllib2",
        "httplib",
        "ftplib",
        "smtplib",
        "telnetlib",
        "xmlrpc",
        "webbrowser",
        "requests",
        "aiohttp",
        "urllib3",
        "httpx",
        "sqlite3",
        "logging.config",
        # debuggers, profilers and tools that run code strings
        "pdb",
        "bdb",
        "trace",
        "timeit",
        "profile",
        "cProfile",
        "doctest",
        "unittest",
        "idlelib",
        "lib2to3",
        "tkinter",
        "turtle",
        "cgi",
        "cgitb",
        # package managers
        "pip",
        "ensurepip",
        "venv",
        "setuptools",
        "distutils",
        # numpy and torch entry points that load files, build extensions, compile or call native operators
        "numpy.load",
        "numpy.f2py",
        "numpy.testing",
        "numpy.ctypeslib",
        "numpy.distutils",
        "numpy.lib.npyio",
        "numpy.lib.format",
        "torch.load",
        "torch.hub",
        "torch.ops",
        "torch._C",
        "torch._ops",
        "torch.library",
        "torch._library",
        "torch.jit",
        "torch.package",
        "torch.fx",
        "torch.utils.cpp_extension",
        "torch._dynamo",
        "torch._inductor",
        "torch.compile",
        "torch.distributed",
        "torch.multiprocessing",
        "torch.storage._load_from_bytes",
        "torch.serialization",
        "torch.testing",
    }
)
# Modules whose appearance anywhere in a dotted path is refused: protocol 4 resolves `posixpath.os.system`
# by attribute lookup, so the module a chain reaches matters, not only the one it starts from.
_DENIED_ANYWHERE: frozenset[str] = frozenset(
    {
        "os",
        "posix",
        "nt",
        "sys",
        "subprocess",
        "builtins",
        "__builtins__",
        "__builtin__",
        "importlib",
        "runpy",
        "shutil",
        "socket",
        "pty",
        "ctypes",
        "pickle",
        "_pickle",
        "marshal",
        "operator",
        "functools",
        "_io",
    }
)
_BUILTIN_MODULES = frozenset({"builtins", "__builtin__", "__builtins__"})
# builtins that name plain value types: harmless as placeholders. Every other builtin (eval, exec,
# getattr, open, __import__, print, ...) is refused; set/frozenset/dict/... are stand-ins.
_INERT_BUILTINS = frozenset(
    {"object", "int", "float", "str", "bytes", "bool", "tuple", "NoneType", "Ellipsis", "NotImplemented"}
)
# Names under refused modules that are plain values or our own stand-ins.
_ALLOWED_GLOBALS: frozenset[str] = frozenset(
    {
        *_STAND_INS,
        "torch.storage.UntypedStorage",
        "torch.storage.TypedStorage",
        "types.SimpleNamespace",
        "pathlib.Path",
        "pathlib.PosixPath",
        "pathlib.WindowsPath",
        "pathlib.PurePath",
        "pathlib.PurePosixPath",
        "pathlib.PureWindowsPath",
    }
)
# Last components that name a loader, an executor or a file writer, in whatever module.
_DENIED_NAMES = frozenset(
    {
        "eval",
        "exec",
        "execfile",
        "compile",
        "system",
        "popen",
        "spawn",
        "spawnv",
        "spawnve",
        "spawnl",
        "execv",
        "execve",
        "execvp",
        "execvpe",
        "execl",
        "fork",
        "load",
        "loads",
        "load_state_dict_from_url",
        "from_pretrained",
        "import_module",
        "getattr",
        "setattr",
        "delattr",
        "open",
        "urlopen",
        "remove",
        "unlink",
        "rmtree",
        "rmdir",
        "write_text",
        "write_bytes",
        "check_output",
        "check_call",
        "call",
        "run",
        "Popen",
        "breakpoint",
        "input",
        "globals",
        "locals",
        "vars",
        "apply",
        "attrgetter",
        "methodcaller",
        "itemgetter",
        "partial",
        "reduce",
    }
)
_DUNDER = re.compile(r"^__\w+__$")
# Dunder names that are module names rather than attribute lookups.
_DUNDER_MODULES = frozenset({"__main__", "__torch__", "__builtin__", "__mp_main__"})


def _normalise(module: str, name: str) -> tuple[str, str]:
    """Python 2 spellings as Python 3 unpickling maps them (`__builtin__.set` is `builtins.set`)."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def refusal(module: str, name: str) -> str | None:
    """Why the global `module.name` makes a file unsafe, or None when it may be a stand-in or placeholder."""
    full = f"{module}.{name}"
    if full in _ALLOWED_GLOBALS:
        return None
    if module in _BUILTIN_MODULES:
        return None if name in _INERT_BUILTINS else "a builtin that is not a plain value type"
    components = full.split(".")
    for end in range(1, len(components) + 1):
        if ".".join(components[:end]) in _DENIED_PREFIXES:
            return "it runs code, loads other files or touches the system when the file is loaded"
    if any(part in _DENIED_ANYWHERE for part in components[1:]):
        return "its attribute path reaches a module that runs code or touches the system"
    if any(_DUNDER.match(part) and part not in _DUNDER_MODULES for part in components):
        return "it reaches into an object's internals (a dunder attribute)"
    if components[-1] in _DENIED_NAMES:
        return "its name is that of a loader, an executor or a file writer"
    return None


_PLACEHOLDER_CLASSES: dict[str, type[Placeholder]] = {}


def _placeholder_class(global_name: str) -> type[Placeholder]:
    cls = _PLACEHOLDER_CLASSES.get(global_name)
    if cls is None:
        if len(_PLACEHOLDER_CLASSES) >= MAX_GLOBALS * 4:
            # A shared cache across files: forget old entries rather than grow without bound.
            _PLACEHOLDER_CLASSES.clear()
        cls = type("Placeholder", (Placeholder,), {"__slots__": (), "global_name": global_name})
        _PLACEHOLDER_CLASSES[global_name] = cls
    return cls


def placeholder_name(value: object) -> str | None:
    """The global a placeholder instance stands for, or None when `value` is not a placeholder."""
    return type(value).global_name if isinstance(value, Placeholder) else None


# ----------------------------------------------------------------------------------------------------
# The unpickler.


def _is_storage_key(key: object) -> bool:
    return isinstance(key, str) and 0 < len(key) <= 128 and re.fullmatch(r"[A-Za-z0-9_.\-]+", key) is not None


class SafeUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` whose globals are stand-ins, placeholders or refusals, and never imports."""

    def __init__(self, data: bytes, *, what: str, path: Path | None, legacy: bool = False) -> None:
        super().__init__(io.BytesIO(data), encoding="latin1")
        self._what = what
        self._path = path
        self._legacy = legacy
        self._globals_seen: set[str] = set()
        #: Every storage the pickle referenced, by key, in first-reference order.
        self.storages: dict[str, StorageRef] = {}
        #: Classes named by legacy 'module' persistent ids (whole-module pickles).
        self.globals_named: list[str] = []

    def find_class(self, module: str, name: str) -> object:
        if not isinstance(module, str) or not isinstance(name, str):
            raise CorruptFileError(f"{self._what} names a global that is not text", path=self._path)
        if len(module) > MAX_GLOBAL_NAME or len(name) > MAX_GLOBAL_NAME:
            raise CorruptFileError(
                f"{self._what} names a global longer than {MAX_GLOBAL_NAME} characters", path=self._path
            )
        module, name = _normalise(module, name)
        full = f"{module}.{name}"
        reason = refusal(module, name)
        if reason is not None:
            raise UnsafeFileError(
                f"refused pickle global {full!r} in {self._what}: {reason}", path=self._path
            )
        self._globals_seen.add(full)
        if len(self._globals_seen) > MAX_GLOBALS:
            raise CorruptFileError(f"{self._what} names more than {MAX_GLOBALS} globals", path=self._path)
        if full in _STAND_INS:
            return _STAND_INS[full]
        if module == "torch" and name in _STORAGE_CLASSES:
            return StorageType(name, torch_dtype(_STORAGE_CLASSES[name]))
        if full == "torch.storage.UntypedStorage" or full == "torch.UntypedStorage":
            return StorageType("UntypedStorage", torch_dtype("uint8"))
        if module == "torch" and (name in _DTYPE_TABLE or name in _DTYPE_ALIASES):
            return torch_dtype(name)
        return _placeholder_class(full)

    def persistent_load(self, pid: object) -> object:
        if not isinstance(pid, tuple) or not pid:
            raise CorruptFileError(f"{self._what} has a persistent id that is not a tuple", path=self._path)
        typename = pid[0].decode("ascii", "replace") if isinstance(pid[0], bytes) else pid[0]
        if typename == "module" and self._legacy and len(pid) == 4:
            # Legacy whole-module pickles persist the module's class with its source code; the class is a
            # placeholder already (it went through find_class), and the source is never looked at.
            return pid[1]
        if typename != "storage":
            raise CorruptFileError(
                f"{self._what} has an unknown persistent id {str(typename)[:40]!r}", path=self._path
            )
        if self._legacy:
            if len(pid) != 6:
                raise CorruptFileError(f"{self._what} has a malformed storage id", path=self._path)
            _, storage_type, key, location, numel, view = pid
        else:
            if len(pid) != 5:
                raise CorruptFileError(f"{self._what} has a malformed storage id", path=self._path)
            _, storage_type, key, location, numel = pid
            view = None
        if isinstance(location, bytes):
            location = location.decode("ascii", "replace")
        if not isinstance(storage_type, StorageType):
            raise CorruptFileError(f"{self._what} names a storage of an unknown type", path=self._path)
        if not _is_storage_key(key):
            raise CorruptFileError(
                f"{self._what} has an invalid storage key {str(key)[:40]!r}", path=self._path
            )
        if type(numel) is not int or not 0 <= numel <= MAX_ELEMENTS:
            raise CorruptFileError(f"storage {key!r} declares an invalid size {numel!r}", path=self._path)
        root = self.storages.get(key)
        if root is None:
            root = StorageRef(key, storage_type.element, numel, 0, str(location)[:64])
            self.storages[key] = root
        if view is None:
            return root
        # Legacy storage views: (view key, element offset, element count) inside the root storage.
        if (
            not isinstance(view, tuple)
            or len(view) != 3
            or type(view[1]) is not int
            or type(view[2]) is not int
            or view[1] < 0
            or view[2] < 0
        ):
            raise CorruptFileError(f"storage {key!r} has a malformed view", path=self._path)
        if view[1] + view[2] > root.numel:
            raise CorruptFileError(
                f"storage view {view[1]}+{view[2]} lies outside storage {key!r} of {root.numel} elements",
                path=self._path,
            )
        return StorageRef(key, root.element, view[2], view[1], root.location)


def prescan(data: bytes, *, what: str, path: Path | None) -> None:
    """Parse the opcode stream without executing it; refuse what no torch pickle needs.

    Raises:
        CorruptFileError: malformed stream, too many opcodes, a memo index beyond the opcode count, or an
            opcode we refuse (extension registry, protocol-0 persistent ids).
    """
    count = 0
    try:
        for opcode, argument, _position in pickletools.genops(data):
            count += 1
            if count > MAX_OPCODES:
                raise CorruptFileError(f"{what} has more than {MAX_OPCODES} pickle opcodes", path=path)
            if opcode.name in _REFUSED_OPCODES:
                raise CorruptFileError(
                    f"{what} uses the pickle opcode {opcode.name}, which torch never writes", path=path
                )
            if opcode.name in _MEMO_OPCODES and (
                type(argument) is not int or not 0 <= argument <= MAX_OPCODES
            ):
                raise CorruptFileError(f"{what} uses an out-of-range pickle memo index", path=path)
            if opcode.name == "PROTO" and (
                type(argument) is not int or not 0 <= argument <= pickle.HIGHEST_PROTOCOL
            ):
                raise CorruptFileError(f"{what} claims pickle protocol {argument}", path=path)
    except WWInspectError:
        raise
    except Exception as exc:  # genops reports every malformation as ValueError/EOFError/... with words
        raise CorruptFileError(f"{what} is not a well-formed pickle ({_short(exc)})", path=path) from exc


def load_pickle(
    data: bytes, *, what: str, path: Path | None, legacy: bool = False
) -> tuple[object, SafeUnpickler]:
    """Rebuild the object graph of one pickle.

    Returns:
        The root object and the unpickler (whose `storages` lists every storage referenced).

    Raises:
        UnsafeFileError: the pickle names a refused global.
        CorruptFileError: the pickle is malformed or asks for something inconsistent.
    """
    if len(data) > MAX_PICKLE_BYTES:
        raise CorruptFileError(
            f"{what} is {len(data)} bytes, more than the limit {MAX_PICKLE_BYTES}", path=path
        )
    prescan(data, what=what, path=path)
    unpickler = SafeUnpickler(data, what=what, path=path, legacy=legacy)
    try:
        root = unpickler.load()
    except WWInspectError as exc:
        if exc.path is None:
            exc.path = path
        raise
    except RecursionError as exc:
        raise CorruptFileError(f"{what} nests objects too deeply", path=path) from exc
    except MemoryError as exc:
        raise CorruptFileError(f"{what} asks for more memory than is available", path=path) from exc
    except Exception as exc:  # the unpickler's own errors: bad stack, wrong types for an opcode, ...
        raise CorruptFileError(f"{what} could not be unpickled ({_short(exc)})", path=path) from exc
    return root, unpickler


def _short(exc: BaseException) -> str:
    """One line about an exception, for messages: its type and the start of its text."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__
