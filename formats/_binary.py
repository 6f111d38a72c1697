"""Byte-level helpers shared by readers: bounded reads, checked arithmetic and dtype widening.

Sizes are computed with Python ints (`math.prod`), never numpy integer arrays, so a hostile shape
cannot wrap around. Widening goes to float32 for 16- and 8-bit floats and keeps float64 as it is.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from formats.errors import CorruptFileError, TensorError
from formats.skip_reasons import not_floating_point
from formats.types import DType

#: How the stored bytes of each fixed-width dtype are viewed before widening (little-endian; BF16 and
#: FP8 as unsigned integers of their width, since numpy has no such float types).
_STORAGE: dict[DType, str] = {
    DType.F64: "<f8",
    DType.F32: "<f4",
    DType.F16: "<f2",
    DType.BF16: "<u2",
    DType.F8_E4M3: "u1",
    DType.F8_E5M2: "u1",
    DType.F8_E4M3_FNUZ: "u1",
    DType.F8_E5M2_FNUZ: "u1",
    DType.F8_E8M0: "u1",
    DType.I64: "<i8",
    DType.I32: "<i4",
    DType.I16: "<i2",
    DType.I8: "i1",
    DType.U64: "<u8",
    DType.U32: "<u4",
    DType.U16: "<u2",
    DType.U8: "u1",
    DType.BOOL: "u1",
}
#: The ml_dtypes type that gives each 8-bit float its values.
_FP8: dict[DType, str] = {
    DType.F8_E4M3: "float8_e4m3fn",
    DType.F8_E5M2: "float8_e5m2",
    DType.F8_E4M3_FNUZ: "float8_e4m3fnuz",
    DType.F8_E5M2_FNUZ: "float8_e5m2fnuz",
    DType.F8_E8M0: "float8_e8m0fnu",
}
#: The 16 values of an FP4 E2M1 nibble (OCP Microscaling spec 5.3.3): sign, 2 exponent bits, 1 mantissa.
FP4_E2M1_VALUES = np.array(
    [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0],
    dtype=np.float32,
)
#: Bytes per element for the fixed-width dtypes.
ITEMSIZE: dict[DType, int] = {dtype: np.dtype(code).itemsize for dtype, code in _STORAGE.items()}

#: Largest number of elements we accept in one tensor's declared shape (2**40, about a trillion).
MAX_ELEMENTS = 1 << 40


def element_count(shape: tuple[int, ...], *, what: str, path: Path | None = None) -> int:
    """Return the number of elements of `shape`, refusing negative or absurd dimensions."""
    if any(not isinstance(dim, int) or dim < 0 for dim in shape):
        raise CorruptFileError(f"tensor {what!r} has an invalid shape {list(shape)}", path=path)
    count = math.prod(shape)
    if count > MAX_ELEMENTS:
        raise CorruptFileError(
            f"tensor {what!r} declares {count} elements, more than the limit {MAX_ELEMENTS}", path=path
        )
    return count


def read_exact(handle: BinaryIO, size: int, *, what: str, path: Path | None = None) -> bytes:
    """Read exactly `size` bytes or raise `CorruptFileError` naming what was being read."""
    data = handle.read(size)
    if len(data) != size:
        raise CorruptFileError(f"file ends inside {what}: wanted {size} bytes, got {len(data)}", path=path)
    return data


def widen(raw: npt.NDArray[Any], dtype: DType) -> npt.NDArray[np.floating]:
    """Turn stored float elements into float32 (float64 stays float64).

    `raw` holds the stored elements with a numpy dtype of the same width (uint16 for BF16, uint8 for
    F8) or the native float dtype. Integer and other dtypes are refused with a `TensorError`.
    """
    if dtype is DType.F64 or dtype is DType.F32:
        native = np.dtype(_STORAGE[dtype])
        as_stored: npt.NDArray[np.floating] = raw if raw.dtype == native else raw.view(native)
        return as_stored
    if dtype is DType.F16:
        return raw.view("<f2").astype(np.float32)
    if dtype is DType.BF16:
        # bfloat16 is the top half of a float32: shift the 16 stored bits into the high half.
        bits = raw.view("<u2").astype(np.uint32) << 16
        return bits.view(np.float32)
    if dtype in _FP8:
        import ml_dtypes

        fp8 = getattr(ml_dtypes, _FP8[dtype])
        widened: npt.NDArray[np.float32] = raw.view("u1").view(fp8).astype(np.float32)
        return widened
    raise TensorError(not_floating_point(dtype.value))


def unpack_nibbles(
    packed: npt.NDArray[np.uint8], count: int, *, high_first: bool = False
) -> npt.NDArray[np.uint8]:
    """Split bytes holding two 4-bit codes each into one code per byte, `count` of them.

    ONNX (INT4, UINT4, FLOAT4E2M1) puts the first element in the low nibble; `high_first` is the other
    order, for formats that define it so.
    """
    flat = packed.reshape(-1)
    out = np.empty(flat.size * 2, dtype=np.uint8)
    first, second = (flat >> 4, flat & 0x0F) if high_first else (flat & 0x0F, flat >> 4)
    out[0::2] = first
    out[1::2] = second
    return out[:count]


def widen_fp4_e2m1(codes: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """FP4 E2M1 codes (one per byte, 0..15) as float32 values."""
    widened: npt.NDArray[np.float32] = FP4_E2M1_VALUES[codes & 0x0F]
    return widened


def as_floats(values: npt.NDArray[Any], *, what: str) -> npt.NDArray[np.floating]:
    """`values` as the analysis takes them: float32 or float64 as they are, float16 widened to float32.

    Raises:
        TensorError: the values are not floating point (`what` names the tensor in the message).
    """
    if values.dtype == np.float16:
        return values.astype(np.float32)
    if values.dtype == np.float32 or values.dtype == np.float64:
        floats: npt.NDArray[np.floating] = values
        return floats
    raise TensorError(f"{what}: {not_floating_point(str(values.dtype))}")


def numpy_storage_dtype(dtype: DType) -> np.dtype[Any]:
    """The numpy dtype used to view stored bytes of `dtype` before widening (little-endian)."""
    return np.dtype(_STORAGE[dtype])


def describe_offset(file_name: str, offset: int) -> str:
    """Origin text for messages: `model.safetensors @ 0x3c0000`."""
    return f"{file_name} @ {offset:#x}"


def read_head(path: Path, size: int) -> bytes:
    """The first `size` bytes of `path` (fewer when the file is shorter), for recognising its format."""
    try:
        with path.open("rb") as handle:
            return handle.read(size)
    except OSError as exc:
        raise CorruptFileError(f"cannot read the file: {exc.strerror or exc}", path=path) from exc


def file_size_of(path: Path) -> int:
    """The size of `path` in bytes; a file that cannot be looked at is a `CorruptFileError`."""
    try:
        return path.stat().st_size
    except OSError as exc:
        raise CorruptFileError(f"cannot read the file: {exc.strerror or exc}", path=path) from exc


def read_array_at(
    handle: BinaryIO, offset: int, nbytes: int, *, what: str, path: Path | None = None
) -> npt.NDArray[np.uint8]:
    """Read `nbytes` at absolute `offset` into a fresh uint8 array, without an intermediate `bytes` copy.

    The array is the only memory the read costs (no memory map stays behind), which keeps the resident
    set at one tensor. `readinto` may return short counts for very large reads (Linux caps one read at
    about 2 GiB), so it is called until the buffer is full or the file ends.

    Raises:
        CorruptFileError: the file ends before `offset + nbytes`.
    """
    buffer = np.empty(nbytes, dtype=np.uint8)
    view = buffer.data.cast("B")
    handle.seek(offset)
    filled = 0
    while filled < nbytes:
        count = handle.readinto(view[filled:])  # type: ignore[attr-defined]
        if not count:
            raise CorruptFileError(
                f"file ends inside {what}: wanted {nbytes} bytes at {offset:#x}, got {filled}", path=path
            )
        filled += count
    return buffer
