"""Where an ONNX `TensorProto`'s values live, checked before use, and how to turn them into numbers.

A tensor's bytes are in one of three places: embedded `raw_data` (already in memory once the protobuf is
parsed), one of the typed repeated fields (`float_data`, `int32_data`... written by `onnx.helper`), or an
external file named by its `external_data` entries (ONNX IR spec, docs/ExternalData.md). `locate()` checks
a tensor's declared size against the bytes actually present, resolving and bounds-checking external files
without reading them; `load_values()` then produces a numpy array on demand, memory-mapping only the byte
range of an external tensor. Nothing here knows about graphs or layers.
"""

from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from formats._binary import element_count, unpack_nibbles, widen, widen_fp4_e2m1
from formats._paths import resolve_confined
from formats.errors import CorruptFileError, TensorError, UnsupportedFormatError
from formats.types import DType

if TYPE_CHECKING:
    import onnx

# TensorProto.DataType codes (onnx/onnx.proto3). Kept as plain ints so this module imports without onnx.
FLOAT, UINT8, INT8, UINT16, INT16, INT32, INT64, STRING, BOOL = 1, 2, 3, 4, 5, 6, 7, 8, 9
FLOAT16, DOUBLE, UINT32, UINT64, COMPLEX64, COMPLEX128, BFLOAT16 = 10, 11, 12, 13, 14, 15, 16
FLOAT8E4M3FN, FLOAT8E4M3FNUZ, FLOAT8E5M2, FLOAT8E5M2FNUZ, UINT4, INT4 = 17, 18, 19, 20, 21, 22
FLOAT4E2M1, FLOAT8E8M0, UINT2, INT2, FLOAT6E2M3, FLOAT6E3M2 = 23, 24, 25, 26, 27, 28

#: TensorProto.DataLocation.EXTERNAL
EXTERNAL = 1


@dataclass(frozen=True, slots=True)
class ElementType:
    """One ONNX element type: its wwinspect dtype, its ONNX spelling, and how it is stored raw.

    Attributes:
        dtype: the wwinspect `DType`.
        onnx_name: the lower-case ONNX name, used in `TensorInfo.encoding` and messages.
        storage: numpy dtype of one stored element in `raw_data` (little-endian); None when packed.
        bits: bits per element (4 for the packed int4/uint4 types).
    """

    dtype: DType
    onnx_name: str
    storage: str | None
    bits: int


ELEMENT_TYPES: dict[int, ElementType] = {
    FLOAT: ElementType(DType.F32, "float32", "<f4", 32),
    UINT8: ElementType(DType.U8, "uint8", "u1", 8),
    INT8: ElementType(DType.I8, "int8", "i1", 8),
    UINT16: ElementType(DType.U16, "uint16", "<u2", 16),
    INT16: ElementType(DType.I16, "int16", "<i2", 16),
    INT32: ElementType(DType.I32, "int32", "<i4", 32),
    INT64: ElementType(DType.I64, "int64", "<i8", 64),
    BOOL: ElementType(DType.BOOL, "bool", "u1", 8),
    FLOAT16: ElementType(DType.F16, "float16", "<f2", 16),
    DOUBLE: ElementType(DType.F64, "float64", "<f8", 64),
    UINT32: ElementType(DType.U32, "uint32", "<u4", 32),
    UINT64: ElementType(DType.U64, "uint64", "<u8", 64),
    COMPLEX64: ElementType(DType.COMPLEX, "complex64", "<c8", 64),
    COMPLEX128: ElementType(DType.COMPLEX, "complex128", "<c16", 128),
    BFLOAT16: ElementType(DType.BF16, "bfloat16", "<u2", 16),
    FLOAT8E4M3FN: ElementType(DType.F8_E4M3, "float8e4m3fn", "u1", 8),
    FLOAT8E4M3FNUZ: ElementType(DType.F8_E4M3_FNUZ, "float8e4m3fnuz", "u1", 8),
    FLOAT8E5M2: ElementType(DType.F8_E5M2, "float8e5m2", "u1", 8),
    FLOAT8E5M2FNUZ: ElementType(DType.F8_E5M2_FNUZ, "float8e5m2fnuz", "u1", 8),
    UINT4: ElementType(DType.U4, "uint4", None, 4),
    INT4: ElementType(DType.I4, "int4", None, 4),
    FLOAT4E2M1: ElementType(DType.F4_E2M1, "float4e2m1", None, 4),
    FLOAT8E8M0: ElementType(DType.F8_E8M0, "float8e8m0", "u1", 8),
    UINT2: ElementType(DType.OTHER, "uint2", None, 2),
    INT2: ElementType(DType.OTHER, "int2", None, 2),
    FLOAT6E2M3: ElementType(DType.OTHER, "float6e2m3", None, 6),
    FLOAT6E3M2: ElementType(DType.OTHER, "float6e3m2", None, 6),
}
#: Codes TensorProto.DataType defines that hold no numbers (UNDEFINED, STRING) or that we list but never
#: read; a code outside ELEMENT_TYPES and these is not an ONNX element type at all.
UNDEFINED = 0

FLOAT_CODES = frozenset(
    {FLOAT, FLOAT16, DOUBLE, BFLOAT16, FLOAT8E4M3FN, FLOAT8E5M2}
    | {FLOAT8E4M3FNUZ, FLOAT8E5M2FNUZ, FLOAT4E2M1, FLOAT8E8M0}
)
#: Element types whose values can be turned into real numbers (floats, and integers to dequantise).
NUMERIC_CODES = FLOAT_CODES | {UINT8, INT8, UINT16, INT16, INT32, INT64, UINT32, UINT64, UINT4, INT4}
INTEGER_CODES = NUMERIC_CODES - FLOAT_CODES
#: Float types stored in a width numpy has no float for: widened to float32 on read.
_WIDENED = frozenset(
    {DType.BF16, DType.F8_E4M3, DType.F8_E5M2, DType.F8_E4M3_FNUZ, DType.F8_E5M2_FNUZ, DType.F8_E8M0}
)
_WIDENED_CODES = frozenset(
    {BFLOAT16, FLOAT8E4M3FN, FLOAT8E5M2, FLOAT8E4M3FNUZ, FLOAT8E5M2FNUZ, FLOAT8E8M0, FLOAT4E2M1}
)
INTEGER_CODES = NUMERIC_CODES - FLOAT_CODES


def element_type(code: int) -> ElementType:
    """The element type for an ONNX data type code; strings and codes ONNX does not define map to OTHER."""
    if code == STRING:
        return ElementType(DType.OTHER, "string", None, 0)
    return ELEMENT_TYPES.get(code, ElementType(DType.OTHER, f"onnx type {code}", None, 0))


def is_defined(code: int) -> bool:
    """True for the element types TensorProto.DataType defines (strings included, UNDEFINED not)."""
    return code in ELEMENT_TYPES or code == STRING


def undefined_type_reason(code: int) -> str:
    """Why a tensor whose data_type ONNX does not define is listed but never read."""
    if code == UNDEFINED:
        return "element type UNDEFINED (0): the tensor has no values to read"
    return f"element type {code} is not one ONNX defines; its size is unknown, so it is not read"


def stored_nbytes(code: int, count: int) -> int:
    """Bytes that `count` elements of type `code` occupy in `raw_data` or an external file."""
    bits = element_type(code).bits
    return (count * bits + 7) // 8 if bits else 0


class Storage(str, Enum):
    """Where a tensor's values are."""

    RAW = "raw"  # embedded raw_data bytes
    TYPED = "typed"  # a typed repeated field (float_data, int32_data...)
    EXTERNAL = "external"  # a byte range of another file next to the model


@dataclass(frozen=True, slots=True)
class Located:
    """A tensor whose declared shape has been checked against the bytes that hold it.

    Attributes:
        shape: dims of the tensor.
        code: ONNX element type code.
        storage: where the values are.
        nbytes: bytes the values occupy (packed size for 4-bit types; 0 for typed fields we do not size).
        file: the external file, resolved inside the model's folder (None unless external).
        offset: byte offset inside `file` (0 unless external).
    """

    shape: tuple[int, ...]
    code: int
    storage: Storage
    nbytes: int
    file: Path | None = None
    offset: int = 0

    @property
    def count(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)


#: Which typed field holds the values of each type, and how many entries `n` elements need there.
def _typed_field(code: int, count: int) -> tuple[str, int] | None:
    if code in (FLOAT,):
        return "float_data", count
    if code == DOUBLE:
        return "double_data", count
    if code == INT64:
        return "int64_data", count
    if code in (UINT32, UINT64):
        return "uint64_data", count
    if code in (UINT4, INT4):
        # onnx packs two 4-bit values into each int32_data entry's low byte (numpy_helper._unpack_4bit).
        return "int32_data", (count + 1) // 2
    if code in (UINT8, INT8, UINT16, INT16, INT32, BOOL, FLOAT16, BFLOAT16, FLOAT8E4M3FN, FLOAT8E5M2):
        return "int32_data", count
    if code in (FLOAT8E4M3FNUZ, FLOAT8E5M2FNUZ, FLOAT8E8M0):
        return "int32_data", count
    if code == FLOAT4E2M1:
        return "int32_data", (count + 1) // 2
    return None


def _external_entries(tensor: onnx.TensorProto) -> dict[str, str]:
    return {entry.key: entry.value for entry in tensor.external_data}


def _parse_int(text: str, *, key: str, what: str, path: Path) -> int:
    try:
        value = int(text)
    except ValueError:
        raise CorruptFileError(
            f"external data {key} {text!r} of {what!r} is not an integer", path=path
        ) from None
    if value < 0:
        raise CorruptFileError(f"external data {key} {value} of {what!r} is negative", path=path)
    return value


def locate(tensor: onnx.TensorProto, *, model_path: Path, what: str) -> Located:
    """Check that `tensor`'s values are where it says and as long as its shape needs; read no values.

    External data is resolved against the model's folder; absolute paths, `..` escapes and symlinks that
    leave the folder raise `UnsafeFileError` (the file is never opened then). Offset and length are checked
    against the size of the external file.

    Raises:
        CorruptFileError: negative or absurd dims, data shorter or longer than the shape needs, a range
            past the end of the external file.
        UnsafeFileError: external data outside the model's folder.
        UnsupportedFormatError: segmented tensors.
    """
    shape = tuple(int(dim) for dim in tensor.dims)
    count = element_count(shape, what=what, path=model_path)
    code = int(tensor.data_type)
    if tensor.HasField("segment"):
        raise UnsupportedFormatError(
            f"tensor {what!r} is stored in segments, which are not supported", path=model_path
        )
    needed = stored_nbytes(code, count)
    defined = is_defined(code)

    if tensor.data_location == EXTERNAL:
        entries = _external_entries(tensor)
        location = entries.get("location", "")
        # The one path rule (formats._paths): absolute paths, `..` escapes and links whose target leaves
        # the folder (or the hub cache's blobs) are refused before anything is opened (CVE-2022-25882,
        # CVE-2024-27318, CVE-2026-27489 in onnx itself).
        file = resolve_confined(
            model_path.parent, location, what=f"external data of tensor {what!r}", path=model_path
        )
        offset = _parse_int(entries.get("offset", "0"), key="offset", what=what, path=model_path)
        if not defined:
            # No size to check the range against; the tensor is listed with a reason and never read.
            return Located(shape, code, Storage.EXTERNAL, 0, file=file, offset=offset)
        try:
            status = os.stat(file)
        except OSError as exc:
            raise CorruptFileError(
                f"external data file {location!r} of tensor {what!r} cannot be opened: {exc.strerror or exc}",
                path=model_path,
            ) from exc
        if not stat.S_ISREG(status.st_mode):
            raise CorruptFileError(
                f"external data {location!r} of tensor {what!r} is not a regular file", path=model_path
            )
        if "length" in entries:
            length = _parse_int(entries["length"], key="length", what=what, path=model_path)
            if length != needed:
                raise CorruptFileError(
                    f"external data length {length} of tensor {what!r} does not match its shape "
                    f"{list(shape)}, which needs {needed} bytes",
                    path=model_path,
                )
        if offset + needed > status.st_size:
            raise CorruptFileError(
                f"external data of tensor {what!r} ends at byte {offset + needed} (offset {offset} + "
                f"{needed} bytes) but {location!r} has only {status.st_size} bytes",
                path=model_path,
            )
        return Located(shape, code, Storage.EXTERNAL, needed, file=file, offset=offset)

    if not defined:
        return Located(shape, code, Storage.RAW if tensor.HasField("raw_data") else Storage.TYPED, 0)
    if tensor.HasField("raw_data"):
        # len() of a protobuf bytes field materialises it once; this is the size check the contract asks
        # for, and embedded tensors are in memory anyway after parsing.
        storage, present, wanted = Storage.RAW, len(tensor.raw_data), needed
        held = "bytes of raw data"
    else:
        storage, field_spec = Storage.TYPED, _typed_field(code, count)
        if field_spec is None:
            return Located(shape, code, storage, needed)
        field_name, wanted = field_spec
        present, held = len(getattr(tensor, field_name)), f"values in {field_name}"
    if present != wanted:
        raise CorruptFileError(
            f"tensor {what!r} holds {present} {held} but its shape {list(shape)} of "
            f"{element_type(code).onnx_name} needs {wanted}",
            path=model_path,
        )
    return Located(shape, code, storage, needed)


def _unpack_4bit(packed: npt.NDArray[np.uint8], count: int, *, signed: bool) -> npt.NDArray[np.integer]:
    """Split packed 4-bit values (first element in the low nibble, ONNX IR spec) into one byte each."""
    out = np.empty(packed.size * 2, dtype=np.uint8)
    out[0::2] = packed & 0x0F
    out[1::2] = packed >> 4
    out = out[:count]
    if signed:
        # Sign-extend: nibbles 8..15 are -8..-1.
        return (out.astype(np.int8) ^ 0x08) - 0x08
    return out


def _decode_raw(raw: npt.NDArray[np.uint8], located: Located) -> npt.NDArray[np.generic]:
    """Turn raw little-endian bytes into numbers: floats as float16/32/64, the rest as integers."""
    code = located.code
    kind = element_type(code)
    if code in (UINT4, INT4):
        return _unpack_4bit(raw, located.count, signed=code == INT4).reshape(located.shape)
    if code == FLOAT4E2M1:
        # Two values per byte, the first in the low nibble (ONNX IR spec, like INT4).
        return widen_fp4_e2m1(unpack_nibbles(raw, located.count)).reshape(located.shape)
    if kind.storage is None or kind.dtype in (DType.OTHER, DType.COMPLEX, DType.BOOL):
        raise TensorError(f"{kind.onnx_name} values are not analysed")
    values = raw.view(kind.storage).reshape(located.shape)
    if kind.dtype in _WIDENED:
        return widen(values, kind.dtype)
    return values


def load_values(tensor: onnx.TensorProto, located: Located) -> npt.NDArray[np.generic]:
    """The tensor's values as numbers: float16/float32/float64 (bfloat16 and float8 widened to float32),
    or integers (int4/uint4 unpacked to one byte each). External data is memory-mapped, range only.

    Raises:
        TensorError: an element type without a numeric meaning here (strings, complex, float4...).
        CorruptFileError: the external file changed since it was checked.
    """
    if located.storage is Storage.EXTERNAL:
        assert located.file is not None
        if located.nbytes == 0:
            raw = np.zeros(0, dtype=np.uint8)
        else:
            try:
                # np.memmap aligns the mapping to a page itself; only this tensor's range is mapped, and the
                # mapping goes away with the last view of it.
                raw = np.memmap(
                    located.file, dtype=np.uint8, mode="r", offset=located.offset, shape=(located.nbytes,)
                )
            except (OSError, ValueError) as exc:
                raise CorruptFileError(
                    f"external data file {located.file.name!r} cannot be mapped: {exc}"
                ) from exc
        return _decode_raw(np.asarray(raw), located)
    if located.storage is Storage.RAW:
        return _decode_raw(np.frombuffer(tensor.raw_data, dtype=np.uint8), located)
    if located.code not in NUMERIC_CODES:
        raise TensorError(f"{element_type(located.code).onnx_name} values are not analysed")
    from onnx import numpy_helper

    try:
        values = numpy_helper.to_array(tensor)
    except (ValueError, TypeError) as exc:
        raise CorruptFileError(f"tensor {tensor.name!r} cannot be decoded: {exc}") from exc
    if located.code in (UINT4, INT4):
        return values.astype(np.int8 if located.code == INT4 else np.uint8)
    if located.code in _WIDENED_CODES:
        return values.astype(np.float32)
    return values
