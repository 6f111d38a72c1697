"""One safetensors file's header, parsed and validated against the file before any tensor is read.

File layout (https://github.com/huggingface/safetensors, "Format"): an 8-byte little-endian u64 `N`,
`N` bytes of UTF-8 JSON mapping tensor names to `{"dtype", "shape", "data_offsets": [begin, end]}` plus
an optional `"__metadata__"` string map, then the data buffer; offsets are relative to the buffer.

Checked here: the length against its cap and the file; strict JSON (`formats._json`); every entry's
dtype, shape and byte range against the buffer; no overlapping ranges (identical ranges must agree on
dtype and shape: they are aliases). Gaps between tensors, or bytes after the last, are tolerated with a
warning: the reference writer packs tensors contiguously and its loader refuses anything else
(MetadataIncompleteBuffer), but unused bytes do no harm to reading.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from formats._binary import ITEMSIZE, MAX_ELEMENTS, read_head
from formats._json import parse_strict_json
from formats._lfs import is_pointer, pointer_error
from formats._messages import quote_name, short_value
from formats.errors import CorruptFileError, UnknownFormatError
from formats.skip_reasons import not_floating_point, not_supported
from formats.types import DType

#: Largest header we parse; the reference implementation's `MAX_HEADER_SIZE` (safetensors/src/tensor.rs).
MAX_HEADER_BYTES = 100_000_000
#: Largest number of tensors in one file; headers under the byte cap can still list millions of
#: entries to make parsing slow (the "header bloat" proof of concept), so the count is capped too.
MAX_ENTRIES = 1_000_000
#: numpy 1.x's dimension limit; no real weight comes near it.
MAX_DIMS = 32
#: Bytes of the header length that starts every file.
LENGTH_BYTES = 8
#: Bytes of a file that is not safetensors shown in the message (its first line, when it is text).
SHOWN_START = 48


@dataclass(frozen=True, slots=True)
class StoredType:
    """A safetensors dtype code and what we make of it."""

    dtype: DType
    bits: int  # per element; F4/F6 pack below a byte, which is why this is bits, not bytes
    skip_reason: str | None  # set when values of this type are never analysed


#: The codes of the format (safetensors 0.8's `Dtype`, 22 variants) that name a fixed-width type of ours.
_FIXED_CODES: dict[str, DType] = {
    **{
        dtype.value: dtype
        for dtype in ITEMSIZE
        if dtype.value
        in {
            "BOOL",
            "U8",
            "I8",
            "F8_E5M2",
            "F8_E4M3",
            "F8_E8M0",
            "I16",
            "U16",
            "F16",
            "BF16",
            "I32",
            "U32",
            "F32",
            "F64",
            "I64",
            "U64",
        }
    },
    # safetensors spells the "finite, unsigned zero" FP8 variants without the underscore.
    "F8_E4M3FNUZ": DType.F8_E4M3_FNUZ,
    "F8_E5M2FNUZ": DType.F8_E5M2_FNUZ,
}


def _stored_type_table() -> dict[str, StoredType]:
    table: dict[str, StoredType] = {}
    for code, dtype in _FIXED_CODES.items():
        reason = None if dtype.is_float else not_floating_point(code)
        table[code] = StoredType(dtype, ITEMSIZE[dtype] * 8, reason)
    # Valid codes that are listed but never decoded: complex numbers, and the packed FP4/FP6 codes, whose
    # order of elements inside a byte the format does not state (nor does the reference implementation).
    table["C64"] = StoredType(DType.COMPLEX, 64, "C64 values are complex, not real")
    for name, bits in (("F6_E2M3", 6), ("F6_E3M2", 6), ("F4", 4)):
        table[name] = StoredType(
            DType.OTHER, bits, not_supported(name) + ": the format does not fix how they pack into bytes"
        )
    return table


def undefined_type(code: object) -> StoredType:
    """A dtype code the format does not define: listed, never read, its byte range not size-checked."""
    return StoredType(
        DType.OTHER, 0, f"dtype {short_value(code)} is not one safetensors defines; the tensor is not read"
    )


STORED_TYPES = _stored_type_table()


@dataclass(frozen=True, slots=True)
class File:
    """Where one safetensors file's data buffer starts, and how big the file was when it was opened."""

    path: Path
    label: str  # the file name shown in origins and messages (as the index spells it)
    size: int
    data_start: int  # 8 + header length


@dataclass(frozen=True, slots=True)
class Entry:
    """One tensor as its file's header declares it; offsets are relative to the data buffer."""

    name: str
    code: str
    stored: StoredType
    shape: tuple[int, ...]
    begin: int
    end: int
    file: File = field(repr=False, compare=False)

    @property
    def nbytes(self) -> int:
        return self.end - self.begin

    @property
    def offset(self) -> int:
        """Absolute position of the first byte in the file."""
        return self.file.data_start + self.begin


@dataclass(frozen=True, slots=True)
class Header:
    """One parsed and validated safetensors file."""

    file: File
    entries: tuple[Entry, ...]  # header order
    metadata: Mapping[str, str]
    warnings: tuple[str, ...]


def _as_int(value: object) -> int | None:
    # bool is an int subclass in Python, but `true` is not a dimension.
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _parse_shape(raw_shape: object, quoted: str, path: Path) -> tuple[int, ...]:
    if not isinstance(raw_shape, list):
        raise CorruptFileError(f"tensor {quoted}: shape {short_value(raw_shape)} is not a list", path=path)
    if len(raw_shape) > MAX_DIMS:
        raise CorruptFileError(
            f"tensor {quoted}: shape has {len(raw_shape)} dimensions, more than {MAX_DIMS}", path=path
        )
    dims = [_as_int(dim) for dim in raw_shape]
    if any(dim is None or dim < 0 for dim in dims):
        raise CorruptFileError(
            f"tensor {quoted}: shape {short_value(raw_shape)} holds a negative or non-integer dimension",
            path=path,
        )
    shape = tuple(dim for dim in dims if dim is not None)
    # A zero dimension makes the count 0 whatever the others say, but numpy still refuses to build an
    # empty array whose other dimensions multiply past its index range, so bound those as well.
    nonzero = math.prod(dim for dim in shape if dim)
    if nonzero > MAX_ELEMENTS:
        raise CorruptFileError(
            f"tensor {quoted}: shape {short_value(raw_shape)} declares more than {MAX_ELEMENTS} elements",
            path=path,
        )
    return shape


def _parse_entry(name: str, spec: object, file: File) -> Entry:
    """Validate one header entry against the format and the size of the data buffer."""
    path, quoted = file.path, quote_name(name)
    data_size = file.size - file.data_start
    if not isinstance(spec, dict):
        raise CorruptFileError(
            f"tensor {quoted}: header entry {short_value(spec)} is not an object", path=path
        )
    missing = [key for key in ("dtype", "shape", "data_offsets") if key not in spec]
    if missing:
        raise CorruptFileError(f"tensor {quoted}: header entry lacks {', '.join(missing)}", path=path)
    code = spec["dtype"]
    stored = STORED_TYPES.get(code) if isinstance(code, str) else None
    if stored is None:
        # The header still parses, so this is one tensor's problem (PRODUCT.md): it is listed with a
        # reason. A code that is not even a string is a header the format does not allow.
        if not isinstance(code, str):
            raise CorruptFileError(f"tensor {quoted}: dtype {short_value(code)} is not a string", path=path)
        stored = undefined_type(code)
        code = short_value(code).strip('"')  # as shown in the encoding column: escaped and cut
    shape = _parse_shape(spec["shape"], quoted, path)
    offsets = spec["data_offsets"]
    if not isinstance(offsets, list) or len(offsets) != 2 or any(_as_int(item) is None for item in offsets):
        raise CorruptFileError(
            f"tensor {quoted}: data_offsets {short_value(offsets)} is not a pair of integers", path=path
        )
    begin, end = offsets
    if begin > end:
        raise CorruptFileError(
            f"tensor {quoted}: data_offsets {short_value(offsets)} put begin after end", path=path
        )
    if not 0 <= begin <= end <= data_size:
        raise CorruptFileError(
            f"tensor {quoted}: data_offsets {short_value(offsets)} lie outside the {data_size}-byte "
            "data buffer",
            path=path,
        )
    bits = math.prod(shape) * stored.bits
    if stored.bits and (bits % 8 or end - begin != bits // 8):
        raise CorruptFileError(
            f"tensor {quoted}: data_offsets [{begin}, {end}] span {end - begin} bytes "
            f"but shape {list(shape)} of {code} needs {bits / 8:g}",
            path=path,
        )
    return Entry(name=name, code=code, stored=stored, shape=shape, begin=begin, end=end, file=file)


def _check_layout(file: File, entries: tuple[Entry, ...]) -> tuple[str, ...]:
    """Refuse overlapping byte ranges (identical ranges must agree on dtype and shape); report gaps."""
    spans = sorted((entry for entry in entries if entry.nbytes), key=lambda entry: (entry.begin, entry.end))
    covered_to = 0
    gap_bytes = 0
    previous: Entry | None = None
    for entry in spans:
        if previous is not None and (entry.begin, entry.end) == (previous.begin, previous.end):
            if (entry.code, entry.shape) != (previous.code, previous.shape):
                raise CorruptFileError(
                    f"tensors {quote_name(previous.name)} and {quote_name(entry.name)} share bytes "
                    f"[{entry.begin}, {entry.end}) but declare {previous.code} {list(previous.shape)} "
                    f"and {entry.code} {list(entry.shape)}",
                    path=file.path,
                )
            continue  # an alias of `previous`, grouped when the tensors are planned
        if previous is not None and entry.begin < covered_to:
            raise CorruptFileError(
                f"tensors {quote_name(previous.name)} [{previous.begin}, {previous.end}) and "
                f"{quote_name(entry.name)} [{entry.begin}, {entry.end}) overlap",
                path=file.path,
            )
        gap_bytes += entry.begin - covered_to
        covered_to = entry.end
        previous = entry
    gap_bytes += file.size - file.data_start - covered_to
    if not gap_bytes:
        return ()
    return (
        f"{file.label}: {gap_bytes} bytes of the data buffer belong to no tensor (gaps or trailing bytes)",
    )


def _not_safetensors(start: bytes, path: Path) -> None:
    """Raise when a file whose header length makes no sense is not safetensors at all: a Git LFS pointer,
    or any file that does not have the `{` of the JSON header after the length (a text file)."""
    if start[LENGTH_BYTES : LENGTH_BYTES + 1] == b"{":
        return  # safetensors, with a broken length: the caller says what is wrong with it
    head = read_head(path, SHOWN_START)
    if is_pointer(head):
        raise pointer_error(path)
    first = head.split(b"\n", 1)[0]
    text = all(32 <= byte < 127 or byte == 9 for byte in first)
    shown = repr(first.decode("ascii")) if text and first else head[:16].hex(" ")
    raise UnknownFormatError(f"not a safetensors file: it starts with {shown}, not a header", path=path)


def _read_raw_header(path: Path) -> tuple[int, int, bytes]:
    """Return (file size, header length, header bytes) after checking the length against cap and file."""
    try:
        with path.open("rb") as handle:
            file_size = os.fstat(handle.fileno()).st_size
            if file_size < LENGTH_BYTES:
                raise CorruptFileError(
                    f"file is {file_size} bytes, too short for the 8-byte safetensors header length",
                    path=path,
                )
            start = handle.read(LENGTH_BYTES + 1)
            (header_size,) = struct.unpack("<Q", start[:LENGTH_BYTES])
            if header_size > MAX_HEADER_BYTES or LENGTH_BYTES + header_size > file_size:
                _not_safetensors(start, path)  # a text file or a pointer, rather than a broken header
            handle.seek(LENGTH_BYTES)
            if header_size > MAX_HEADER_BYTES:
                raise CorruptFileError(
                    f"header length {header_size} exceeds the limit of {MAX_HEADER_BYTES} bytes", path=path
                )
            if LENGTH_BYTES + header_size > file_size:
                raise CorruptFileError(
                    f"header length {header_size} runs past the end of the {file_size}-byte file", path=path
                )
            raw = handle.read(header_size)
    except OSError as exc:
        raise CorruptFileError(f"cannot read the file: {exc.strerror or exc}", path=path) from None
    if len(raw) != header_size:
        raise CorruptFileError(
            f"file ends inside the header: wanted {header_size} bytes, got {len(raw)}", path=path
        )
    return file_size, header_size, raw


def read_header(path: Path, label: str) -> Header:
    """Parse and validate the header of one safetensors file; reads no tensor bytes.

    Args:
        path: the file.
        label: its name as shown in origins and messages (as an index spells it).
    """
    file_size, header_size, raw = _read_raw_header(path)
    if raw[:1] != b"{":
        raise CorruptFileError(f"header starts with {raw[:1]!r}, not '{{'", path=path)
    header = parse_strict_json(raw, what="header", path=path, max_objects=MAX_ENTRIES + 2)
    if not isinstance(header, dict):
        raise CorruptFileError("header is not a JSON object", path=path)
    file = File(path=path, label=label, size=file_size, data_start=LENGTH_BYTES + header_size)
    metadata = header.pop("__metadata__", None)
    if metadata is None:
        metadata = {}
    elif not isinstance(metadata, dict) or not all(isinstance(value, str) for value in metadata.values()):
        raise CorruptFileError("__metadata__ is not a map of strings to strings", path=path)
    if len(header) > MAX_ENTRIES:
        raise CorruptFileError(
            f"header lists {len(header)} tensors, more than the limit {MAX_ENTRIES}", path=path
        )
    entries = tuple(_parse_entry(name, spec, file) for name, spec in header.items())
    warnings = _check_layout(file, entries)
    return Header(file=file, entries=entries, metadata=metadata, warnings=warnings)


def sniff_header(head: bytes) -> bool:
    """A u64 header length within the cap followed by `{`."""
    if len(head) < LENGTH_BYTES + 1:
        return False
    (header_size,) = struct.unpack("<Q", head[:LENGTH_BYTES])
    return 2 <= header_size <= MAX_HEADER_BYTES and head[LENGTH_BYTES : LENGTH_BYTES + 1] == b"{"
