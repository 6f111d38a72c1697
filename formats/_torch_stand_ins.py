"""Our own versions of the functions and types a PyTorch pickle names, handed to the unpickler.

`torch.save` writes tensors as calls to rebuild functions (`torch._utils._rebuild_tensor_v2` and friends)
over storages named by persistent ids. Here are exactly those, rebuilding `TensorHandle`s after checking
their arguments (a wrong type is a corrupt file, never a reason to call something else), and inert
versions of the builtins and containers pickles use (sets, OrderedDict, bytes). None of them imports,
calls or looks up anything the file names; `stand_in` hands them out, and `formats._pickle_policy`
decides which globals get one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import NoReturn

from formats._binary import MAX_ELEMENTS
from formats._torch_records import (
    QSCHEMES,
    PickledDict,
    Placeholder,
    QSchemeRef,
    Quantizer,
    StorageRef,
    TensorHandle,
    TorchDType,
    is_dtype_name,
    placeholder_class,
    storage_type,
    torch_dtype,
)
from formats.errors import CorruptFileError

#: Most dimensions a rebuilt tensor may declare.
MAX_TENSOR_DIMS = 64


def _corrupt(message: str) -> NoReturn:
    raise CorruptFileError(message)


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
    quantizer: Quantizer | None = None,
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
        quantizer=quantizer,
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


def _quantizer(params: object) -> Quantizer | None:
    """`quantizer_params` as torch pickles them (torch/_tensor.py `_reduce_ex_internal`):
    `(per_tensor_affine, scale, zero_point)` or `(per_channel_affine[_float_qparams], scales, zero_points,
    axis)`. Another scheme (none is saved today) gives None: the tensor is listed, not read."""
    if not isinstance(params, tuple) or not params or not isinstance(params[0], QSchemeRef):
        _corrupt("a quantized tensor's parameters do not start with a torch qscheme")
    scheme = params[0].name
    if scheme == "per_tensor_affine":
        if len(params) != 3 or type(params[1]) is not float or type(params[2]) is not int:
            _corrupt("per_tensor_affine parameters are not (scale: float, zero_point: int)")
        return Quantizer(scheme, params[1], params[2])
    if scheme in ("per_channel_affine", "per_channel_affine_float_qparams"):
        if (
            len(params) != 4
            or not isinstance(params[1], TensorHandle)
            or not isinstance(params[2], TensorHandle)
            or type(params[3]) is not int
        ):
            _corrupt(f"{scheme} parameters are not (scales: tensor, zero_points: tensor, axis: int)")
        return Quantizer(scheme, params[1], params[2], params[3])
    return None


def _rebuild_qtensor(
    storage: object,
    storage_offset: object,
    size: object,
    stride: object,
    quantizer_params: object = None,
    *rest: object,
) -> TensorHandle:
    quantizer = _quantizer(quantizer_params)
    return _make_handle(storage, storage_offset, size, stride, None, quantized=True, quantizer=quantizer)


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
    if module == "torch" and is_dtype_name(name):
        return torch_dtype(name)
    if module == "torch" and name in QSCHEMES:
        return QSchemeRef(name)
    return None
