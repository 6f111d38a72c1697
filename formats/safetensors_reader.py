"""Reads safetensors files and sharded safetensors checkpoints with our own parser, one tensor at a time.

The job: parse and validate the header of every file (length, JSON, dtypes, shapes, byte ranges) when the
reader opens, then read each tensor's bytes only when its `read()` is called, into a fresh buffer that
the caller drops after the layer. Non-goals: writing files, slicing tensors, and importing the
`safetensors` package (its Rust core maps the whole file; we want the resident set to stay near the
largest tensor, and we want our own, stricter validation of untrusted headers).

File layout (https://github.com/huggingface/safetensors, "Format"): an 8-byte little-endian u64 `N`,
`N` bytes of UTF-8 JSON mapping tensor names to `{"dtype", "shape", "data_offsets": [begin, end]}` plus
an optional `"__metadata__"` string map, then the data buffer; offsets are relative to the buffer.

Decisions documented here because they shape what `tensors()` yields:
- Order: the header's key order for one file (the writer emits offset order); a sharded checkpoint
  follows its index's `weight_map` in the order the JSON lists it, not sorted.
- Two names with the same byte range, dtype and shape are one tensor with `aliases` (hand-made files
  only: safetensors refuses to save shared storage). The same range with another dtype or shape is an
  overlap and the file is refused.
- FP8 weights (F8_E4M3 / F8_E5M2) are multiplied by their scale tensor on read: `<name>_scale_inv`
  (DeepSeek-V3 128x128 blocks; the stored value is the multiplier despite its name) or `<name>_scale`
  (per-tensor or per-channel). The scale tensors a weight consumes are NOT yielded: they are not
  weights, and listing them would put a layer-shaped tensor of block maxima into the analysis.
  An FP8 weight without a scale is yielded with a `skip_reason` naming the missing tensor.
- Integer, bool, complex and microscaling (F4/F6/F8_E8M0) tensors are yielded with a `skip_reason`
  and never read.
- Gaps between tensors or bytes after the last one are tolerated with a warning (`Reader.warnings`);
  overlapping ranges are refused.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from formats._binary import (
    ITEMSIZE,
    MAX_ELEMENTS,
    describe_offset,
    numpy_storage_dtype,
    read_array_at,
    resolve_inside,
    widen,
)
from formats.errors import (
    CorruptFileError,
    FormatError,
    TensorError,
    UnknownFormatError,
    UnsafeFileError,
    UnsupportedFormatError,
)
from formats.registry import FormatSpec, register
from formats.types import DType, FormatHint, Layout, Reader, TensorInfo, TensorRef

#: Largest header we parse; the reference implementation's `MAX_HEADER_SIZE` (safetensors/src/tensor.rs).
MAX_HEADER_BYTES = 100_000_000
#: Largest number of tensors in one file; headers under the byte cap can still list millions of
#: entries to make parsing slow (the "header bloat" proof of concept), so the count is capped too.
MAX_ENTRIES = 1_000_000
#: Largest `*.safetensors.index.json` we parse (real ones are well under 1 MB even for 1T-parameter models).
MAX_INDEX_BYTES = 100_000_000
#: numpy 1.x's dimension limit; no real weight comes near it.
MAX_DIMS = 32
#: The fine-grained FP8 block size of DeepSeek-V3 and Qwen3-FP8 (`weight_block_size: [128, 128]`); used
#: when a scale grid's shape allows it, because a partial last block makes the size ambiguous otherwise.
FP8_BLOCK = 128
#: Suffixes that name the scale of an FP8 weight, in order of preference.
FP8_SCALE_SUFFIXES = ("_scale_inv", "_scale")
#: Longest piece of a name quoted in a message, so a hostile megabyte-long name cannot flood stderr.
_NAME_IN_MESSAGE = 120

_INDEX_SUFFIX = ".safetensors.index.json"
_SHARD_NAME = re.compile(r"(?P<stem>.+)-(?P<part>\d+)-of-(?P<total>\d+)\.safetensors")


@dataclass(frozen=True, slots=True)
class _StoredType:
    """A safetensors dtype code and what we make of it."""

    dtype: DType
    bits: int  # per element; F4/F6 pack below a byte, which is why this is bits, not bytes
    skip_reason: str | None  # set when values of this type are never analysed


def _stored_type_table() -> dict[str, _StoredType]:
    table: dict[str, _StoredType] = {}
    for code, size in ITEMSIZE.items():
        reason = None if code.is_float else f"{code.value} values are not floating point"
        table[code.value] = _StoredType(code, size * 8, reason)
    # Newer codes of the format (safetensors >= 0.6): microscaling element types and complex numbers.
    # They are valid files, so they are listed, but wwinspect does not decode them.
    table["C64"] = _StoredType(DType.COMPLEX, 64, "C64 values are complex, not real")
    for name, bits in (("F8_E8M0", 8), ("F6_E2M3", 6), ("F6_E3M2", 6), ("F4", 4)):
        table[name] = _StoredType(DType.OTHER, bits, f"{name} values are not supported")
    return table


_STORED_TYPES = _stored_type_table()
_FP8 = frozenset({DType.F8_E4M3, DType.F8_E5M2})


def _quote(name: str) -> str:
    """A name as it appears in messages: repr-escaped (one line, no control characters) and shortened."""
    if len(name) > _NAME_IN_MESSAGE:
        return repr(name[:_NAME_IN_MESSAGE]) + f"... ({len(name)} characters)"
    return repr(name)


# --------------------------------------------------------------------------------------------------
# Header parsing
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _File:
    """Where one safetensors file's data buffer starts, and how big the file was when it was opened."""

    path: Path
    label: str  # the file name shown in origins and messages (as the index spells it)
    size: int
    data_start: int  # 8 + header length


@dataclass(frozen=True, slots=True)
class _Entry:
    """One tensor as its file's header declares it; offsets are relative to the data buffer."""

    name: str
    code: str
    stored: _StoredType
    shape: tuple[int, ...]
    begin: int
    end: int
    file: _File = field(repr=False, compare=False)

    @property
    def nbytes(self) -> int:
        return self.end - self.begin

    @property
    def offset(self) -> int:
        """Absolute position of the first byte in the file."""
        return self.file.data_start + self.begin


@dataclass(frozen=True, slots=True)
class _Shard:
    """One parsed and validated safetensors file."""

    file: _File
    entries: tuple[_Entry, ...]  # header order
    metadata: Mapping[str, str]
    warnings: tuple[str, ...]


class _DuplicateKeyError(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class _TooManyObjectsError(Exception):
    pass


def _strict_json(text: str, *, max_objects: int) -> Any:
    """`json.loads` that refuses duplicate keys (at any depth) and stops after `max_objects` objects.

    Python's `json` keeps the last of two equal keys, so a file could show one tensor to an auditor and
    another to a loader; the safetensors format forbids duplicates but not every parser checks.
    """
    count = 0

    def build(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal count
        count += 1
        if count > max_objects:
            raise _TooManyObjectsError
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise _DuplicateKeyError(key)
            result[key] = value
        return result

    return json.loads(text, object_pairs_hook=build)


def _parse_json(raw: bytes, *, what: str, path: Path, max_objects: int) -> Any:
    """Decode and parse untrusted JSON, turning every failure into one `CorruptFileError` line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptFileError(f"{what} is not valid UTF-8 (byte {exc.start})", path=path) from None
    try:
        return _strict_json(text, max_objects=max_objects)
    except _DuplicateKeyError as exc:
        raise CorruptFileError(f"{what} repeats the key {_quote(exc.key)}", path=path) from None
    except _TooManyObjectsError:
        raise CorruptFileError(f"{what} has more than {max_objects} JSON objects", path=path) from None
    except json.JSONDecodeError as exc:
        raise CorruptFileError(
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", path=path
        ) from None
    except (ValueError, RecursionError) as exc:
        # ValueError: integers beyond Python's digit limit; RecursionError: absurdly deep nesting.
        reason = (
            "nested too deeply" if isinstance(exc, RecursionError) else "holds a number too large to parse"
        )
        raise CorruptFileError(f"{what} is not usable JSON: it {reason}", path=path) from None


def _as_int(value: object) -> int | None:
    # bool is an int subclass in Python, but `true` is not a dimension.
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _short(value: object) -> str:
    """Compact JSON text of a header value for messages, cut so a hostile value cannot flood stderr."""
    try:
        text = json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError):
        text = type(value).__name__
    return text if len(text) <= 80 else text[:77] + "..."


def _parse_shape(raw_shape: object, quoted: str, path: Path) -> tuple[int, ...]:
    if not isinstance(raw_shape, list):
        raise CorruptFileError(f"tensor {quoted}: shape {_short(raw_shape)} is not a list", path=path)
    if len(raw_shape) > MAX_DIMS:
        raise CorruptFileError(
            f"tensor {quoted}: shape has {len(raw_shape)} dimensions, more than {MAX_DIMS}", path=path
        )
    dims = [_as_int(dim) for dim in raw_shape]
    if any(dim is None or dim < 0 for dim in dims):
        raise CorruptFileError(
            f"tensor {quoted}: shape {_short(raw_shape)} holds a negative or non-integer dimension", path=path
        )
    shape = tuple(dim for dim in dims if dim is not None)
    # A zero dimension makes the count 0 whatever the others say, but numpy still refuses to build an
    # empty array whose other dimensions multiply past its index range, so bound those as well.
    nonzero = math.prod(dim for dim in shape if dim)
    if nonzero > MAX_ELEMENTS:
        raise CorruptFileError(
            f"tensor {quoted}: shape {_short(raw_shape)} declares more than {MAX_ELEMENTS} elements",
            path=path,
        )
    return shape


def _parse_entry(name: str, spec: object, file: _File) -> _Entry:
    """Validate one header entry against the format and the size of the data buffer."""
    path, quoted = file.path, _quote(name)
    data_size = file.size - file.data_start
    if not isinstance(spec, dict):
        raise CorruptFileError(f"tensor {quoted}: header entry {_short(spec)} is not an object", path=path)
    missing = [key for key in ("dtype", "shape", "data_offsets") if key not in spec]
    if missing:
        raise CorruptFileError(f"tensor {quoted}: header entry lacks {', '.join(missing)}", path=path)
    code = spec["dtype"]
    stored = _STORED_TYPES.get(code) if isinstance(code, str) else None
    if stored is None:
        raise CorruptFileError(f"tensor {quoted}: unknown dtype {_short(code)}", path=path)
    shape = _parse_shape(spec["shape"], quoted, path)
    offsets = spec["data_offsets"]
    if not isinstance(offsets, list) or len(offsets) != 2 or any(_as_int(item) is None for item in offsets):
        raise CorruptFileError(
            f"tensor {quoted}: data_offsets {_short(offsets)} is not a pair of integers", path=path
        )
    begin, end = offsets
    if begin > end:
        raise CorruptFileError(
            f"tensor {quoted}: data_offsets {_short(offsets)} put begin after end", path=path
        )
    if not 0 <= begin <= end <= data_size:
        raise CorruptFileError(
            f"tensor {quoted}: data_offsets {_short(offsets)} lie outside the {data_size}-byte data buffer",
            path=path,
        )
    bits = math.prod(shape) * stored.bits
    if bits % 8 or end - begin != bits // 8:
        raise CorruptFileError(
            f"tensor {quoted}: data_offsets [{begin}, {end}] span {end - begin} bytes "
            f"but shape {list(shape)} of {code} needs {bits / 8:g}",
            path=path,
        )
    return _Entry(name=name, code=code, stored=stored, shape=shape, begin=begin, end=end, file=file)


def _check_layout(file: _File, entries: tuple[_Entry, ...]) -> tuple[str, ...]:
    """Refuse overlapping byte ranges (identical ranges must agree on dtype and shape); report gaps."""
    spans = sorted((entry for entry in entries if entry.nbytes), key=lambda entry: (entry.begin, entry.end))
    covered_to = 0
    gap_bytes = 0
    previous: _Entry | None = None
    for entry in spans:
        if previous is not None and (entry.begin, entry.end) == (previous.begin, previous.end):
            if (entry.code, entry.shape) != (previous.code, previous.shape):
                raise CorruptFileError(
                    f"tensors {_quote(previous.name)} and {_quote(entry.name)} share bytes "
                    f"[{entry.begin}, {entry.end}) but declare {previous.code} {list(previous.shape)} "
                    f"and {entry.code} {list(entry.shape)}",
                    path=file.path,
                )
            continue  # an alias of `previous`, grouped when the tensors are planned
        if previous is not None and entry.begin < covered_to:
            raise CorruptFileError(
                f"tensors {_quote(previous.name)} [{previous.begin}, {previous.end}) and "
                f"{_quote(entry.name)} [{entry.begin}, {entry.end}) overlap",
                path=file.path,
            )
        gap_bytes += entry.begin - covered_to
        covered_to = entry.end
        previous = entry
    gap_bytes += file.size - file.data_start - covered_to
    if not gap_bytes:
        return ()
    # The reference writer packs tensors contiguously and its loader refuses anything else
    # (MetadataIncompleteBuffer); unused bytes do no harm to reading, so we only say so.
    return (
        f"{file.label}: {gap_bytes} bytes of the data buffer belong to no tensor (gaps or trailing bytes)",
    )


def _read_header(path: Path) -> tuple[int, int, bytes]:
    """Return (file size, header length, header bytes) after checking the length against cap and file."""
    try:
        with path.open("rb") as handle:
            file_size = os.fstat(handle.fileno()).st_size
            if file_size < 8:
                raise CorruptFileError(
                    f"file is {file_size} bytes, too short for the 8-byte safetensors header length",
                    path=path,
                )
            (header_size,) = struct.unpack("<Q", handle.read(8))
            if header_size > MAX_HEADER_BYTES:
                raise CorruptFileError(
                    f"header length {header_size} exceeds the limit of {MAX_HEADER_BYTES} bytes", path=path
                )
            if 8 + header_size > file_size:
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


def _read_shard(path: Path, label: str) -> _Shard:
    """Parse and validate the header of one safetensors file; reads no tensor bytes."""
    file_size, header_size, raw = _read_header(path)
    if raw[:1] != b"{":
        raise CorruptFileError(f"header starts with {raw[:1]!r}, not '{{'", path=path)
    header = _parse_json(raw, what="header", path=path, max_objects=MAX_ENTRIES + 2)
    if not isinstance(header, dict):
        raise CorruptFileError("header is not a JSON object", path=path)
    file = _File(path=path, label=label, size=file_size, data_start=8 + header_size)
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
    return _Shard(file=file, entries=entries, metadata=metadata, warnings=warnings)


# --------------------------------------------------------------------------------------------------
# FP8 scales
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _ScalePlan:
    """How an FP8 weight is rescaled: which tensor holds the scales and how big each block is."""

    scale: _Entry
    blocks: tuple[int, ...]  # per weight axis; the scale grid has ceil(dim / block) cells along it

    @property
    def per_tensor(self) -> bool:
        return math.prod(self.scale.shape) == 1


def _block_sizes(weight: tuple[int, ...], grid: tuple[int, ...]) -> tuple[int, ...] | None:
    """Block size per axis such that `ceil(dim / block) == cells`, or None if the grid does not tile."""
    if len(grid) != len(weight):
        return None
    blocks = []
    for dim, cells in zip(weight, grid, strict=True):
        if cells == 1:
            blocks.append(max(dim, 1))
        elif cells == 0 or dim == 0:
            return None
        elif -(-dim // FP8_BLOCK) == cells:
            blocks.append(FP8_BLOCK)
        else:
            block = -(-dim // cells)
            if -(-dim // block) != cells:
                return None
            blocks.append(block)
    return tuple(blocks)


def _plan_scale(weight: _Entry, scale: _Entry) -> _ScalePlan | str:
    """The rescaling plan for `weight`, or the reason it cannot be rescaled with `scale`."""
    if not scale.stored.dtype.is_float or scale.stored.dtype in _FP8:
        return f"its scale tensor {_quote(scale.name)} is {scale.code}, not a float type for scales"
    grid = scale.shape
    if math.prod(grid) == 1:
        return _ScalePlan(scale=scale, blocks=tuple(max(dim, 1) for dim in weight.shape))
    if len(grid) == 1 and len(weight.shape) >= 2 and grid[0] == weight.shape[0]:
        grid = (grid[0],) + (1,) * (len(weight.shape) - 1)  # per output channel, stored flat
    blocks = _block_sizes(weight.shape, grid)
    if blocks is None:
        return (
            f"its scale tensor {_quote(scale.name)} of shape {list(scale.shape)} "
            f"does not tile the weight's shape {list(weight.shape)}"
        )
    return _ScalePlan(scale=scale, blocks=blocks)


def _apply_scale(
    values: npt.NDArray[np.float32], scales: npt.NDArray[np.float32], blocks: tuple[int, ...]
) -> None:
    """Multiply `values` in place by `scales`, each scale covering one block of `blocks` elements.

    The scale grid is expanded along every axis but the first and then applied one block-row at a time,
    so the extra memory is one block-row, not a full-size copy of the weight.
    """
    if values.size == 0:
        return
    if scales.size == 1:
        values *= scales.reshape(())
        return
    cells = tuple(-(-dim // block) for dim, block in zip(values.shape, blocks, strict=True))
    grid = scales.reshape(cells)
    for axis in range(1, values.ndim):
        if cells[axis] > 1:
            grid = np.repeat(grid, blocks[axis], axis=axis)[
                (slice(None),) * axis + (slice(0, values.shape[axis]),)
            ]
    if blocks[0] == 1 or cells[0] == 1:
        values *= grid
        return
    for row in range(cells[0]):
        values[row * blocks[0] : (row + 1) * blocks[0]] *= grid[row : row + 1]


# --------------------------------------------------------------------------------------------------
# The reader
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Planned:
    """A tensor to yield: its description plus what reading it involves."""

    info: TensorInfo
    entry: _Entry
    scale: _ScalePlan | None


class SafetensorsReader(Reader):
    """A safetensors file or sharded checkpoint, validated at open, read one tensor at a time.

    Each `read()` opens the tensor's file, checks that it still has the size it had at open, reads the
    tensor's bytes into a fresh array and closes the file. No memory map outlives a call, so file-backed
    pages never pile up in the resident set.

    Attributes:
        warnings: what the user should hear about that did not stop the reading (gaps, unindexed tensors).
        bytes_materialized: tensor bytes read so far (headers excluded); tests check laziness with it.
    """

    format_name = "safetensors"

    def __init__(
        self,
        path: Path,
        order: list[_Entry],
        metadata: Mapping[str, str],
        warnings: tuple[str, ...] = (),
    ) -> None:
        super().__init__(path)
        self._planned = _plan(order)
        self._metadata = dict(metadata)
        self._closed = False
        self.bytes_materialized = 0
        self.warnings = warnings  # reported with the file (table and JSON), not logged

    def tensors(self) -> Iterator[TensorRef]:
        """Yield every weight once, in header (or index) order, without reading tensor bytes."""
        self._check_open()
        for planned in self._planned:
            yield TensorRef(info=planned.info, _fetch=partial(self._fetch, planned))

    def metadata(self) -> Mapping[str, str]:
        """The file's `__metadata__`; for sharded checkpoints the index's `metadata`, then the shards'."""
        return dict(self._metadata)

    def close(self) -> None:
        """Mark the reader closed; no file stays open between reads, so nothing else needs releasing."""
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise FormatError("reader closed", path=self.path)

    def _fetch(self, planned: _Planned) -> npt.NDArray[np.floating]:
        self._check_open()
        info = planned.info
        if info.skip_reason is not None:
            raise TensorError(f"tensor {_quote(info.name)}: {info.skip_reason}")
        values = widen(self._read_raw(planned.entry), planned.entry.stored.dtype)
        if planned.scale is not None:
            scale = planned.scale.scale
            scales = widen(self._read_raw(scale), scale.stored.dtype).astype(np.float32, copy=False)
            _apply_scale(values, scales, planned.scale.blocks)
        return values

    def _read_raw(self, entry: _Entry) -> npt.NDArray[np.generic]:
        """The stored elements of `entry` in a fresh array of its storage dtype and shape."""
        storage = numpy_storage_dtype(entry.stored.dtype)
        if entry.nbytes == 0:
            return np.empty(entry.shape, dtype=storage)
        file, what = entry.file, f"tensor {_quote(entry.name)}"
        try:
            with file.path.open("rb", buffering=0) as handle:
                size_now = os.fstat(handle.fileno()).st_size
                if size_now != file.size:
                    raise CorruptFileError(
                        f"file changed since it was opened ({file.size} bytes then, {size_now} now) "
                        f"while reading {what}",
                        path=file.path,
                    )
                buffer = read_array_at(handle, entry.offset, entry.nbytes, what=what, path=file.path)
        except OSError as exc:
            raise CorruptFileError(f"cannot read {what}: {exc.strerror or exc}", path=file.path) from None
        self.bytes_materialized += entry.nbytes
        return buffer.view(storage).reshape(entry.shape)


def _group_aliases(order: list[_Entry]) -> tuple[list[_Entry], dict[str, list[str]]]:
    """Primary entries in order, and the other names of each (same file, same non-empty byte range)."""
    primary_of: dict[tuple[Path, int, int], _Entry] = {}
    aliases: dict[str, list[str]] = {}
    primaries: list[_Entry] = []
    for entry in order:
        key = (entry.file.path, entry.begin, entry.end)
        if entry.nbytes and key in primary_of:
            aliases[primary_of[key].name].append(entry.name)
            continue
        if entry.nbytes:
            primary_of[key] = entry
        aliases[entry.name] = []
        primaries.append(entry)
    return primaries, aliases


def _pair_scales(primaries: list[_Entry]) -> tuple[dict[str, _ScalePlan | str], set[str]]:
    """For each FP8 weight its scale plan (or why it has none), and the names of the scales consumed."""
    by_name = {entry.name: entry for entry in primaries}
    plans: dict[str, _ScalePlan | str] = {}
    consumed: set[str] = set()
    for entry in primaries:
        if entry.stored.dtype not in _FP8:
            continue
        candidates = [entry.name + suffix for suffix in FP8_SCALE_SUFFIXES]
        scale = next((by_name[name] for name in candidates if name in by_name), None)
        if scale is None:
            plans[entry.name] = (
                f"{entry.code} weight without its scale tensor {_quote(candidates[0])} "
                f"(or {_quote(candidates[1])}), so its values cannot be recovered"
            )
            continue
        consumed.add(scale.name)
        plans[entry.name] = _plan_scale(entry, scale)
    return plans, consumed


def _plan(order: list[_Entry]) -> list[_Planned]:
    """Group aliases, pair FP8 weights with their scales, and describe every tensor to yield."""
    primaries, aliases = _group_aliases(order)
    scale_plans, consumed = _pair_scales(primaries)
    planned: list[_Planned] = []
    for entry in primaries:
        if entry.name in consumed:
            continue
        skip_reason = entry.stored.skip_reason
        encoding = entry.code if entry.stored.dtype in (DType.OTHER, DType.COMPLEX) else None
        plan = scale_plans.get(entry.name)
        if isinstance(plan, str):
            skip_reason = plan
        elif plan is not None:
            scale_name = plan.scale.name.rsplit(".", 1)[-1]  # "weight_scale_inv"
            grid = "per tensor" if plan.per_tensor else "x".join(map(str, plan.blocks)) + " blocks"
            encoding = f"{entry.code} x {scale_name} ({grid})"
        info = TensorInfo(
            name=entry.name,
            shape=entry.shape,
            dtype=entry.stored.dtype,
            nbytes=entry.nbytes,
            origin=describe_offset(entry.file.label, entry.offset),
            encoding=encoding,
            # HF / PyTorch store Linear weights as (out, in); GPT-2's Conv1D is (in, out), which does not
            # change a dense layer's eigenvalues, so the kind is left for the analysis to infer.
            hint=FormatHint(layout=Layout.OUT_IN),
            aliases=tuple(aliases[entry.name]),
            skip_reason=skip_reason,
        )
        planned.append(_Planned(info=info, entry=entry, scale=plan if isinstance(plan, _ScalePlan) else None))
    return planned


# --------------------------------------------------------------------------------------------------
# Opening files, index files and folders
# --------------------------------------------------------------------------------------------------


def _resolve_shard(folder: Path, name: str, *, what: str, path: Path) -> Path:
    """Resolve a shard name inside `folder`, refusing absolute paths, `..` escapes and outward symlinks.

    One exception: in a Hugging Face hub cache (`models--org--name/snapshots/<rev>/`) every file is a
    symlink to `../../blobs/<hash>`. A plain name (no `..`, not absolute) whose link lands in that
    repository's own `blobs/` folder is accepted, because the cache made the link, not the checkpoint.
    """
    try:
        return resolve_inside(folder, name, what=what, path=path)
    except UnsafeFileError:
        plain = (
            not Path(name).is_absolute() and ".." not in Path(name).parts and not name.startswith(("/", "\\"))
        )
        blobs = folder.parent.parent / "blobs"
        if plain and folder.parent.name == "snapshots" and blobs.is_dir():
            target = (folder / name).resolve()
            if blobs.resolve() in target.parents:
                return target
        raise


def _open_shards(
    root: Path,
    names: list[str],
    index: Mapping[str, str] | None,
    metadata: dict[str, str],
) -> SafetensorsReader:
    """Parse every shard named (in order), check them against the index, and order the tensors.

    Args:
        root: the index file or the folder, for messages.
        names: shard file names relative to the folder, in the order their tensors come.
        index: the index's weight_map (tensor name to shard name), whose order is the tensor order; None
            for a folder of numbered shards without an index (shard order, then header order).
        metadata: the index's metadata; the shards' `__metadata__` fills in keys it lacks.
    """
    folder = root if root.is_dir() else root.parent
    resolved: dict[str, Path] = {}
    shards: dict[Path, _Shard] = {}
    for name in names:
        shard_path = _resolve_shard(folder, name, what="shard", path=root)
        resolved[name] = shard_path
        if shard_path in shards:
            continue  # two spellings of one file
        if not shard_path.is_file():
            raise CorruptFileError(f"shard {_quote(name)} named by the checkpoint does not exist", path=root)
        shards[shard_path] = _read_shard(shard_path, name)
    found: dict[str, _Entry] = {}
    for shard in shards.values():
        for entry in shard.entries:
            if entry.name in found:
                raise CorruptFileError(
                    f"tensor {_quote(entry.name)} appears in both {_quote(found[entry.name].file.label)} "
                    f"and {_quote(shard.file.label)}",
                    path=root,
                )
            found[entry.name] = entry
    warnings = [warning for shard in shards.values() for warning in shard.warnings]
    every = [entry for shard in shards.values() for entry in shard.entries]
    if index is None:
        ordered = every
    else:
        ordered = []
        for name, shard_name in index.items():
            listed = found.get(name)
            if listed is None or listed.file.path != resolved[shard_name]:
                raise CorruptFileError(
                    f"the index puts tensor {_quote(name)} in {_quote(shard_name)}, which does not hold it",
                    path=root,
                )
            ordered.append(listed)
        unindexed = [entry for entry in every if entry.name not in index]
        if unindexed:
            ordered.extend(unindexed)
            warnings.append(f"{len(unindexed)} tensors in the shards are missing from the index; listed last")
    for shard in shards.values():
        for key, value in shard.metadata.items():
            metadata.setdefault(key, value)
    return SafetensorsReader(root, ordered, metadata, tuple(warnings))


def _open_index(index_path: Path) -> SafetensorsReader:
    """Open a sharded checkpoint through its `*.safetensors.index.json`."""
    try:
        size = index_path.stat().st_size
        if size > MAX_INDEX_BYTES:
            raise CorruptFileError(
                f"index is {size} bytes, more than the limit {MAX_INDEX_BYTES}", path=index_path
            )
        raw = index_path.read_bytes()
    except OSError as exc:
        raise CorruptFileError(f"cannot read the index: {exc.strerror or exc}", path=index_path) from None
    document = _parse_json(raw, what="index", path=index_path, max_objects=MAX_ENTRIES + 2)
    if not isinstance(document, dict) or not isinstance(document.get("weight_map"), dict):
        raise CorruptFileError("index has no weight_map object", path=index_path)
    weight_map: dict[str, Any] = document["weight_map"]
    bad = next((name for name, shard in weight_map.items() if not isinstance(shard, str)), None)
    if bad is not None:
        raise CorruptFileError(
            f"index maps tensor {_quote(bad)} to something that is not a file name", path=index_path
        )
    raw_metadata = document.get("metadata")
    metadata = (
        {key: value if isinstance(value, str) else _short(value) for key, value in raw_metadata.items()}
        if isinstance(raw_metadata, dict)
        else {}
    )
    # dict.fromkeys keeps the order in which the index first names each shard.
    return _open_shards(index_path, list(dict.fromkeys(weight_map.values())), weight_map, metadata)


def _numbered_shards(folder: Path, files: list[str]) -> list[str]:
    """`files` in shard order if they are exactly the shards `STEM-i-of-n.safetensors`, i = 1..n."""
    matches = [_SHARD_NAME.fullmatch(name) for name in files]
    groups = {(match["stem"], int(match["total"])) for match in matches if match is not None}
    if any(match is None for match in matches) or len(groups) != 1:
        raise UnsupportedFormatError(
            f"the folder holds {len(files)} .safetensors files that are not the numbered shards of one "
            "checkpoint and no *.safetensors.index.json; pass one file or an index",
            path=folder,
        )
    ((_stem, total),) = groups
    numbered = sorted((int(match["part"]), name) for match, name in zip(matches, files, strict=True) if match)
    parts = [part for part, _name in numbered]
    if parts != list(range(1, total + 1)):
        missing = sorted(set(range(1, total + 1)) - set(parts))
        detail = (
            f"shard {missing[0]} of {total} is missing"
            if missing
            else f"shard numbers {parts[:8]} are not 1..{total}"
        )
        raise CorruptFileError(f"incomplete sharded checkpoint: {detail}", path=folder)
    return [name for _part, name in numbered]


def _open_directory(folder: Path) -> SafetensorsReader:
    """A folder holding one index, numbered shards `STEM-0000i-of-0000n.safetensors`, or one file."""
    indexes = sorted(path for path in folder.glob("*" + _INDEX_SUFFIX) if not path.name.startswith("."))
    if len(indexes) == 1:
        return _open_index(indexes[0])
    if len(indexes) > 1:
        listed = ", ".join(_quote(path.name) for path in indexes[:4])
        raise UnsupportedFormatError(
            f"the folder holds {len(indexes)} safetensors index files ({listed}); pass the one to read",
            path=folder,
        )
    files = sorted(path.name for path in folder.glob("*.safetensors") if not path.name.startswith("."))
    if not files:
        raise UnknownFormatError("no .safetensors files in this folder", path=folder)
    # One numbered shard alone ("model-00001-of-00003") is an incomplete checkpoint, not a whole file.
    numbered = len(files) > 1 or _SHARD_NAME.fullmatch(files[0]) is not None
    names = _numbered_shards(folder, files) if numbered else files
    return _open_shards(folder, names, None, {})


def open_safetensors(path: Path) -> SafetensorsReader:
    """Open a safetensors file, a `*.safetensors.index.json`, or a folder holding a checkpoint.

    Raises:
        CorruptFileError: a header, index or byte range is inconsistent with the files.
        UnsafeFileError: an index or folder names a file outside the checkpoint's folder.
        UnsupportedFormatError: a folder whose files do not form one checkpoint.
    """
    if path.is_dir():
        return _open_directory(path)
    if path.name.lower().endswith(_INDEX_SUFFIX):
        return _open_index(path)
    shard = _read_shard(path, path.name)
    return SafetensorsReader(path, list(shard.entries), shard.metadata, shard.warnings)


def sniff_safetensors(head: bytes, path: Path) -> bool:
    """A u64 header length within the cap followed by `{`; an index file is known by its name."""
    if path.name.lower().endswith(_INDEX_SUFFIX):
        return True
    if len(head) < 9:
        return False
    (header_size,) = struct.unpack("<Q", head[:8])
    return 2 <= header_size <= MAX_HEADER_BYTES and head[8:9] == b"{"


def claims_safetensors_directory(path: Path) -> bool:
    """A folder is ours when it holds a safetensors index or any `.safetensors` file."""
    return any(path.glob("*" + _INDEX_SUFFIX)) or any(path.glob("*.safetensors"))


register(
    FormatSpec(
        name="safetensors",
        suffixes=frozenset({".safetensors"}),
        sniff=sniff_safetensors,
        opener=open_safetensors,
        claims_directory=claims_safetensors_directory,
    )
)
