"""Reads GGUF files (llama.cpp, v2 and v3) with our own parser over a memory map; no `gguf` package needed.

Layout (ggml's docs/gguf.md): magic "GGUF", u32 version, u64 tensor count, u64 metadata count; the
metadata key/value pairs (u64-length strings, typed scalars and arrays); the tensor table (name, u32
dimension count, u64 dimensions with the fastest-varying first, u32 GGML type, u64 offset relative to the
data section); then the data section, starting at the next multiple of `general.alignment` (default 32).

Everything in the header is validated before a tensor is listed: counts and lengths against the bytes
left, the alignment (a power of two), dimensions (at most 4, the element count capped), first dimensions
that are whole blocks, offsets aligned and inside the file, no overlapping tensors, no duplicate names or
keys. A type id without a known size (never defined, or removed from ggml) skips that tensor with a
reason; the rest of the file is still read. GGUF lists dimensions fastest-varying first;
`TensorInfo.shape` reverses them to numpy's order, so a (n_embd -> n_ff) projection stored as [n_embd,
n_ff] reads as (n_ff, n_embd), i.e. (out, in). `read()` widens F16/BF16 to float32 and dequantises block
types (`formats._gguf_quants`) one group
of rows at a time, so no intermediate larger than a row group is ever built.

Roles and kinds come from llama.cpp's tensor names: `token_embd` is the embedding, `output` the output
projection, `blk.N.attn_*` attention, `blk.N.ffn_*` MLP, and `ffn_*_exps` the stacked experts of a
mixture-of-experts layer (3-D: experts x out x in).

Non-goals: writing GGUF, big-endian files (refused), and the quantisation types without a dequantiser
(listed with their type name as `encoding`; `read()` raises `TensorError`).
"""

from __future__ import annotations

import itertools
import math
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from formats._binary import MAX_ELEMENTS, describe_offset, file_size_of, numpy_storage_dtype, widen
from formats._gguf_quants import GGML_TYPES, GGMLType
from formats._lazy_reader import LazyReader
from formats._model_structure import structure_of_gguf
from formats.errors import CorruptFileError, TensorError, UnsupportedFormatError
from formats.registry import FormatSpec, register
from formats.types import DType, FormatHint, Layout, Role, TensorInfo, WeightKind

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
#: Caps that keep a hostile header from costing unbounded time or memory before it is found out.
MAX_TENSORS = 1 << 20
MAX_METADATA = 1 << 20
MAX_KEY_BYTES = 1 << 16
MAX_STRING_BYTES = 1 << 26
MAX_ARRAY_DEPTH = 4
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_ALIGNMENT = 1 << 20
#: Elements per row group while dequantising (about 16 MB of float32 plus the block intermediates).
ROW_GROUP_ELEMENTS = 1 << 22
#: Arrays longer than this are summarised in `metadata()` instead of spelled out.
METADATA_ARRAY_PREVIEW = 16
#: Characters of one metadata value kept in `metadata()`.
METADATA_VALUE_CHARS = 500
#: The fixed part of the header: magic, version, tensor count, metadata count.
MIN_FILE_BYTES = 24

# GGUF metadata value types (gguf.md, "gguf_metadata_value_type").
(
    _UINT8,
    _INT8,
    _UINT16,
    _INT16,
    _UINT32,
    _INT32,
    _FLOAT32,
    _BOOL,
    _STRING,
    _ARRAY,
    _UINT64,
    _INT64,
    _FLOAT64,
) = range(13)
_SCALARS: dict[int, tuple[str, str]] = {
    _UINT8: ("<B", "uint8"),
    _INT8: ("<b", "int8"),
    _UINT16: ("<H", "uint16"),
    _INT16: ("<h", "int16"),
    _UINT32: ("<I", "uint32"),
    _INT32: ("<i", "int32"),
    _FLOAT32: ("<f", "float32"),
    _BOOL: ("<?", "bool"),
    _UINT64: ("<Q", "uint64"),
    _INT64: ("<q", "int64"),
    _FLOAT64: ("<d", "float64"),
}

_PLAIN_DTYPES: dict[str, DType] = {
    "F32": DType.F32,
    "F16": DType.F16,
    "BF16": DType.BF16,
    "F64": DType.F64,
    "I8": DType.I8,
    "I16": DType.I16,
    "I32": DType.I32,
    "I64": DType.I64,
}


@dataclass(frozen=True, slots=True)
class ArraySummary:
    """A metadata array too long to keep: its element type and length."""

    element: str
    count: int

    def __str__(self) -> str:
        return f"[{self.count} x {self.element}]"


@dataclass(frozen=True, slots=True)
class _Tensor:
    name: str
    shape: tuple[int, ...]  # numpy order
    ggml: GGMLType
    offset: int  # absolute file offset
    nbytes: int


class _Cursor:
    """Bounded little-endian reads over the memory-mapped header."""

    def __init__(self, buffer: npt.NDArray[np.uint8], path: Path) -> None:
        self.buffer = buffer
        self.size = int(buffer.shape[0])
        self.position = 0
        self.path = path

    def remaining(self) -> int:
        return self.size - self.position

    def take(self, count: int, what: str) -> npt.NDArray[np.uint8]:
        if count < 0 or count > self.remaining():
            raise CorruptFileError(
                f"{what} needs {count} bytes at {self.position:#x} but the file has {self.remaining()} left",
                path=self.path,
            )
        start = self.position
        self.position += count
        return self.buffer[start : self.position]

    def unpack(self, form: str, what: str) -> int | float | bool:
        size = struct.calcsize(form)
        (value,) = struct.unpack(form, self.take(size, what).tobytes())
        return value  # type: ignore[no-any-return]

    def u32(self, what: str) -> int:
        return int(self.unpack("<I", what))

    def u64(self, what: str) -> int:
        return int(self.unpack("<Q", what))

    def skip_strings(self, count: int, what: str) -> None:
        """Step over `count` strings, reading only their lengths (a tight loop: vocabularies are long)."""
        buffer, position, size = self.buffer.data, self.position, self.size
        unpack = struct.Struct("<Q").unpack_from
        for _ in range(count):
            if position + 8 > size:
                break
            (length,) = unpack(buffer, position)
            position += 8 + length
            if position > size:
                break
        else:
            self.position = position
            return
        raise CorruptFileError(f"{what} runs past the end of the file", path=self.path)

    def string(self, what: str, limit: int = MAX_STRING_BYTES) -> str:
        length = self.u64(f"the length of {what}")
        if length > min(limit, self.remaining()):
            raise CorruptFileError(
                f"{what} declares {length} bytes at {self.position:#x}; "
                f"{min(limit, self.remaining())} are possible there",
                path=self.path,
            )
        raw = self.take(length, what).tobytes()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CorruptFileError(f"{what} is not valid UTF-8", path=self.path) from exc


def _value(cursor: _Cursor, value_type: int, what: str, depth: int = 0) -> object:
    """One metadata value; long arrays are skipped over and summarised, short ones kept."""
    if value_type in _SCALARS:
        form, _name = _SCALARS[value_type]
        return cursor.unpack(form, what)
    if value_type == _STRING:
        return cursor.string(what)
    if value_type != _ARRAY:
        raise CorruptFileError(f"{what} has an unknown value type {value_type}", path=cursor.path)
    if depth >= MAX_ARRAY_DEPTH:
        raise CorruptFileError(f"{what} nests arrays deeper than {MAX_ARRAY_DEPTH}", path=cursor.path)
    element_type = cursor.u32(f"the element type of {what}")
    count = cursor.u64(f"the length of {what}")
    if element_type in _SCALARS:
        form, name = _SCALARS[element_type]
        size = struct.calcsize(form)
        if count > cursor.remaining() // size:
            raise CorruptFileError(
                f"{what} declares {count} {name} values; only {cursor.remaining()} bytes are left",
                path=cursor.path,
            )
        values = cursor.take(count * size, what)
        if count > METADATA_ARRAY_PREVIEW:
            return ArraySummary(name, count)
        return [value for (value,) in struct.iter_unpack(form, values.tobytes())]
    # Strings and nested arrays take at least 8 bytes (a u64 length) each.
    if element_type not in (_STRING, _ARRAY):
        raise CorruptFileError(f"{what} has an unknown element type {element_type}", path=cursor.path)
    if count > cursor.remaining() // 8:
        raise CorruptFileError(
            f"{what} declares {count} elements; only {cursor.remaining()} bytes are left", path=cursor.path
        )
    if element_type == _STRING:
        # Tokenizer vocabularies hold 100k+ strings: walk the lengths without decoding the long ones.
        kept = [
            cursor.string(f"element {position} of {what}")
            for position in range(min(count, METADATA_ARRAY_PREVIEW))
        ]
        if count <= METADATA_ARRAY_PREVIEW:
            return kept
        cursor.skip_strings(count - METADATA_ARRAY_PREVIEW, what)
        return ArraySummary("string", count)
    items = [_value(cursor, _ARRAY, f"element {position} of {what}", depth + 1) for position in range(count)]
    return items if count <= METADATA_ARRAY_PREVIEW else ArraySummary("array", count)


# ----------------------------------------------------------------------------------------------------
# Names -> roles and kinds (llama.cpp's gguf-py tensor_mapping names).

_BLOCK = r"(?:blk|enc\.blk|dec\.blk)\.\d+\."
_ATTENTION = re.compile(rf"^{_BLOCK}(?:attn|cross_attn)_\w*?(?<!norm)\.(weight|bias)$")
_MLP = re.compile(rf"^{_BLOCK}ffn_\w*?(?<!norm)\.(weight|bias)$")
_EXPERTS = re.compile(rf"^{_BLOCK}ffn_(?:up|down|gate|gate_up)_exps\.weight$")
_NORM = re.compile(r"(?:^|\.|_)(?:\w*_)?norm(?:_\w+)?\.(weight|bias)$")
_EMBEDDING = re.compile(r"^(token_embd|position_embd|token_types|tok_embd|enc\.token_embd)\.weight$")
_OUTPUT = re.compile(r"^output\.weight$")


def _hint(name: str, ndim: int) -> FormatHint:
    """What llama.cpp's naming says about a tensor."""
    role: Role | None = None
    kind: WeightKind | None = None
    if _EMBEDDING.match(name):
        role, kind = Role.EMBEDDING, WeightKind.EMBEDDING
    elif _OUTPUT.match(name):
        role, kind = Role.OUTPUT, WeightKind.DENSE
    elif _NORM.search(name):
        kind = WeightKind.NORM
        role = Role.ATTENTION if ".attn_" in name else (Role.MLP if ".ffn_" in name else None)
    elif _EXPERTS.match(name) and ndim == 3:
        role, kind = Role.MLP, WeightKind.EXPERTS
    elif _ATTENTION.match(name):
        role = Role.ATTENTION
        kind = WeightKind.BIAS if name.endswith(".bias") else WeightKind.DENSE
    elif _MLP.match(name):
        role = Role.MLP
        kind = WeightKind.BIAS if name.endswith(".bias") else WeightKind.DENSE
    elif name.endswith(".bias"):
        kind = WeightKind.BIAS
    layer = name.rsplit(".", 1)[0] if "." in name else None
    return FormatHint(kind=kind, layout=Layout.OUT_IN, role=role, layer_name=layer)


# ----------------------------------------------------------------------------------------------------
# Header.


def _parse(path: Path, buffer: npt.NDArray[np.uint8]) -> tuple[int, dict[str, object], list[_Tensor]]:
    cursor = _Cursor(buffer, path)
    if cursor.take(4, "the magic number").tobytes() != GGUF_MAGIC:
        raise CorruptFileError("not a GGUF file (bad magic number)", path=path)
    version = cursor.u32("the version")
    if version == 1:
        raise UnsupportedFormatError(
            "GGUF version 1 (32-bit counts) is not supported; convert to v3", path=path
        )
    if version not in (2, 3):
        swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
        if swapped in (2, 3):
            raise UnsupportedFormatError("a big-endian GGUF file is not supported", path=path)
        raise CorruptFileError(f"unknown GGUF version {version}", path=path)
    tensor_count = cursor.u64("the tensor count")
    metadata_count = cursor.u64("the metadata count")
    # Every metadata pair takes at least 12 bytes (key length + type), every tensor entry 24.
    if tensor_count > min(MAX_TENSORS, cursor.remaining() // 24):
        raise CorruptFileError(
            f"the header declares {tensor_count} tensors, more than the file can hold", path=path
        )
    if metadata_count > min(MAX_METADATA, cursor.remaining() // 12):
        raise CorruptFileError(
            f"the header declares {metadata_count} metadata entries, more than the file can hold", path=path
        )

    metadata: dict[str, object] = {}
    alignment = DEFAULT_ALIGNMENT
    for position in range(metadata_count):
        key = cursor.string(f"metadata key {position}", MAX_KEY_BYTES)
        if key in metadata:
            raise CorruptFileError(f"metadata key {key!r} appears twice", path=path)
        value_type = cursor.u32(f"the type of metadata {key!r}")
        metadata[key] = _value(cursor, value_type, f"metadata {key!r}")
        if key == "general.alignment":
            value = metadata[key]
            if value_type != _UINT32 or not isinstance(value, int) or value <= 0 or value & (value - 1):
                raise CorruptFileError(f"general.alignment {value!r} is not a power of two", path=path)
            if value > MAX_ALIGNMENT:
                raise CorruptFileError(f"general.alignment {value} is larger than {MAX_ALIGNMENT}", path=path)
            alignment = value

    entries: list[tuple[str, tuple[int, ...], GGMLType, int]] = []
    names: set[str] = set()
    for position in range(tensor_count):
        name = cursor.string(f"the name of tensor {position}", MAX_KEY_BYTES)
        if name in names:
            raise CorruptFileError(f"tensor {name!r} is listed twice", path=path)
        names.add(name)
        ndim = cursor.u32(f"the dimension count of {name!r}")
        if not 1 <= ndim <= MAX_DIMS:
            raise CorruptFileError(
                f"tensor {name!r} has {ndim} dimensions; GGUF allows 1 to {MAX_DIMS}", path=path
            )
        dims = [cursor.u64(f"a dimension of {name!r}") for _ in range(ndim)]
        if math.prod(dims) > MAX_ELEMENTS:
            raise CorruptFileError(
                f"tensor {name!r} declares {dims} elements, more than {MAX_ELEMENTS}", path=path
            )
        type_id = cursor.u32(f"the type of {name!r}")
        ggml = GGML_TYPES.get(type_id) or _undefined_type(type_id)
        if dims[0] % ggml.block_size:
            raise CorruptFileError(
                f"tensor {name!r} has rows of {dims[0]} elements, not whole {ggml.name} blocks of "
                f"{ggml.block_size}",
                path=path,
            )
        offset = cursor.u64(f"the offset of {name!r}")
        if offset % alignment:
            raise CorruptFileError(
                f"tensor {name!r} offset {offset} is not a multiple of the alignment {alignment}", path=path
            )
        entries.append((name, tuple(reversed(dims)), ggml, offset))

    data_start = -(-cursor.position // alignment) * alignment
    tensors: list[_Tensor] = []
    for name, shape, ggml, offset in entries:
        nbytes = math.prod(shape) // ggml.block_size * ggml.type_size
        start = data_start + offset
        if start + nbytes > cursor.size:
            raise CorruptFileError(
                f"tensor {name!r} ({nbytes} bytes at {start:#x}) runs past the end of the "
                f"{cursor.size}-byte file",
                path=path,
            )
        tensors.append(_Tensor(name, shape, ggml, start, nbytes))
    ordered = sorted((tensor for tensor in tensors if tensor.nbytes), key=lambda tensor: tensor.offset)
    for before, after in itertools.pairwise(ordered):
        if before.offset + before.nbytes > after.offset:
            raise CorruptFileError(f"tensors {before.name!r} and {after.name!r} overlap", path=path)
    return version, metadata, tensors


#: Type ids ggml once defined and has since removed (ggml.h keeps their numbers reserved).
_REMOVED_TYPES = {4: "Q4_2", 5: "Q4_3", 31: "Q4_0_4_4", 32: "Q4_0_4_8", 33: "Q4_0_8_8"}
_REMOVED_TYPES |= {36: "IQ4_NL_4_4", 37: "IQ4_NL_4_8", 38: "IQ4_NL_8_8"}


def _undefined_type(type_id: int) -> GGMLType:
    """A stand-in for a type id this reader has no size for: its tensor is listed with a reason and never
    read, and its bytes (of unknown length) are not range-checked; the rest of the file still is."""
    name = _REMOVED_TYPES.get(type_id, f"type {type_id}")
    return GGMLType(name, type_id, 1, 0)


def _undefined_reason(ggml: GGMLType) -> str | None:
    if ggml.type_size:
        return None
    if ggml.type_id in _REMOVED_TYPES:
        return f"GGML type {ggml.name} ({ggml.type_id}) was removed from ggml; its layout is not read"
    return f"GGML type id {ggml.type_id} is not one ggml defines; the tensor is not read"


def _stringify(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_stringify(item) for item in value) + "]"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _metadata(metadata: Mapping[str, object]) -> dict[str, str]:
    return {key: _stringify(value)[:METADATA_VALUE_CHARS] for key, value in metadata.items()}


def _info(path: Path, tensor: _Tensor) -> TensorInfo:
    ggml = tensor.ggml
    dtype = DType.QUANTIZED if ggml.is_quantized else _PLAIN_DTYPES.get(ggml.name, DType.OTHER)
    return TensorInfo(
        name=tensor.name,
        shape=tensor.shape,
        dtype=dtype,
        nbytes=tensor.nbytes,
        origin=describe_offset(path.name, tensor.offset),
        encoding=ggml.name,
        hint=_hint(tensor.name, len(tensor.shape)),
        skip_reason=_undefined_reason(ggml),
    )


# ----------------------------------------------------------------------------------------------------
# The reader.


@dataclass(frozen=True, slots=True)
class _Entry:
    info: TensorInfo
    tensor: _Tensor


class GGUFReader(LazyReader[_Entry]):
    """An open GGUF file; the header is parsed on open, tensor bytes are read and dequantised on demand.

    The file stays memory-mapped while the reader is open; `close()` drops the map.
    """

    format_name = "gguf"

    def __init__(self, path: Path) -> None:
        size = file_size_of(path)
        if size < MIN_FILE_BYTES:
            raise CorruptFileError(f"the file is {size} bytes, too short for a GGUF header", path=path)
        try:
            buffer = np.memmap(path, dtype=np.uint8, mode="r")
        except (OSError, ValueError) as exc:
            raise CorruptFileError(f"cannot map the file: {exc}", path=path) from exc
        version, metadata, tensors = _parse(path, buffer)
        super().__init__(
            path, [_Entry(_info(path, tensor), tensor) for tensor in tensors], _metadata(metadata)
        )
        self.version = version
        self._metadata["gguf.version"] = str(version)
        self._map: np.memmap | None = buffer
        self.structure = structure_of_gguf(metadata)

    def _release(self) -> None:
        self._map = None

    def _fetch(self, entry: _Entry) -> npt.NDArray[np.floating]:
        assert self._map is not None  # only close() drops the map, and reads are refused after it
        tensor = entry.tensor
        ggml = tensor.ggml
        raw = self._map[tensor.offset : tensor.offset + tensor.nbytes]
        plain = _PLAIN_DTYPES.get(ggml.name)
        if plain is not None and plain.is_float:
            return widen(raw.view(numpy_storage_dtype(plain)), plain).reshape(tensor.shape)
        if ggml.dequantize is None or ggml.layout is None:
            reason = (
                "integer values are not analysed"
                if ggml.name.startswith("I") and not ggml.is_quantized
                else ("no dequantiser for this type")
            )
            raise TensorError(f"GGUF type {ggml.name} of tensor {tensor.name!r}: {reason}", path=self.path)
        return self._dequantize(tensor, raw)

    def _dequantize(self, tensor: _Tensor, raw: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Block-wise dequantisation, one group of rows at a time, into one float32 result."""
        ggml = tensor.ggml
        assert ggml.dequantize is not None and ggml.layout is not None
        columns = tensor.shape[-1]
        rows = math.prod(tensor.shape[:-1])
        row_bytes = columns // ggml.block_size * ggml.type_size
        out = np.empty((rows, columns), dtype=np.float32)
        group = max(1, ROW_GROUP_ELEMENTS // max(columns, 1))
        # NaN or infinite scales in a hostile block give NaN values, which the analysis reports per layer;
        # numpy's warnings about them would only add stray lines to stderr.
        with np.errstate(invalid="ignore", over="ignore"):
            for first in range(0, rows, group):
                last = min(rows, first + group)
                blocks = raw[first * row_bytes : last * row_bytes].view(ggml.layout)
                out[first:last] = ggml.dequantize(blocks).reshape(last - first, columns)
        return out.reshape(tensor.shape)


def open_gguf(path: Path) -> GGUFReader:
    """Open a GGUF file.

    Raises:
        CorruptFileError: the header is inconsistent with the bytes (see the module docstring).
        UnsupportedFormatError: GGUF v1 or a big-endian file.
    """
    return GGUFReader(path)


def sniff_gguf(head: bytes, path: Path) -> bool:
    """GGUF files start with the ASCII magic "GGUF"."""
    return head[:4] == GGUF_MAGIC


register(FormatSpec(name="gguf", suffixes=frozenset({".gguf"}), sniff=sniff_gguf, opener=open_gguf))
