"""Reads PyTorch checkpoints without importing torch or running anything stored in them.

Supported inputs, all parsed by our own code:
- zip archives written by `torch.save` since 1.6 (`.pt`, `.pth`, `.bin`, `.ckpt`), TorchScript archives
  written by `torch.jit.save` (reported format "torchscript"), and legacy (pre-1.6) files: containers
  in `formats._torch_archive`, pickles through `formats._unpickler` (no global is imported or called;
  code-running globals make the file unsafe);
- Hugging Face sharded checkpoints: a folder (or the index itself) with `*.bin.index.json` naming
  shards, read with the rules shared with sharded safetensors (`formats._hf_shards`).

Tensor names are paths in the unpickled object graph (`formats._torch_names`, which also says what the
owning module's class tells about each tensor). Tensors that are the same view of the same storage (tied
weights) are yielded once, with the other names as `aliases`. Storage bytes are memory-mapped when the
zip record is stored uncompressed (torch writes them so, 64-byte aligned) and read through `zipfile`
otherwise; a tensor is a strided numpy view over its storage that honours size, stride and storage offset,
checked against the record when the file is opened.

Quantised tensors (qint8, quint8, qint32; per tensor and per channel) keep the quantizer parameters
`_rebuild_qtensor` received and are dequantised on read as `Tensor.dequantize()` does
(`formats.quantized.torch_quantized`); dtype QUANTIZED, encoding `torch-qint8[-per-channel]`.

Non-goals: writing checkpoints, sparse/nested tensors (not listed: they have no dense storage view),
torch.ao packed parameters (`_packed_params`: placeholders, not tensors), and the legacy tar format of
torch < 0.4 (refused).
"""

from __future__ import annotations

import dataclasses
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from formats._binary import numpy_storage_dtype, read_head, widen
from formats._hf_shards import ShardContents, find_index, open_shards, read_index
from formats._lazy_reader import LazyReader
from formats._messages import MAX_METADATA_CHARS, MAX_METADATA_ENTRIES
from formats._torch_archive import (
    Archive,
    Record,
    looks_like_legacy,
    looks_like_zip_checkpoint,
    open_legacy_archive,
    open_zip_archive,
)
from formats._torch_names import Found, hint_for, name_tensors, skip_reason_for
from formats._torch_records import Placeholder, Quantizer, TensorHandle, placeholder_name
from formats._zip import EMPTY_ZIP_MAGIC, ZIP_ERRORS, ZIP_MAGIC
from formats.errors import CorruptFileError, TensorError, UnknownFormatError, UnsupportedFormatError
from formats.quantized.torch_quantized import QScheme, TorchQuantizer, dequantize_torch, torch_encoding
from formats.registry import FormatSpec, register
from formats.skip_reasons import not_floating_point
from formats.types import DType, Reader, TensorInfo, TensorRef

_INDEX_SUFFIX = ".bin.index.json"
#: Bytes read to recognise a container: the tar header's "ustar" magic sits at 257.
_HEAD_BYTES = 512
_TAR_MAGIC_AT = 257


@dataclass(frozen=True, slots=True)
class _Entry:
    """One tensor to yield: its info and where to read it (and its quantizer's scale and zero points)."""

    info: TensorInfo
    handle: TensorHandle
    record: Record
    params: tuple[tuple[TensorHandle, Record], ...] = ()


def _view_key(handle: TensorHandle) -> tuple[object, ...]:
    storage = handle.storage
    return (storage.key, storage.base, handle.element.name, handle.offset, handle.shape, handle.stride)


def _checked_record(name: str, handle: TensorHandle, archive: Archive, path: Path) -> tuple[Record, int]:
    """The storage record of `handle` and the byte its view starts at, after checking the view fits."""
    storage = handle.storage
    record = archive.records.get(storage.key)
    if record is None:
        raise CorruptFileError(
            f"tensor {name!r} uses storage {archive.storage_label(storage.key)}, "
            "which the file does not hold",
            path=path,
        )
    storage_bytes = (storage.base + storage.numel) * storage.element.itemsize
    if storage_bytes > record.nbytes:
        raise CorruptFileError(
            f"storage {record.label} declares {storage.numel} {storage.element.name} elements "
            f"({storage_bytes} bytes) but holds {record.nbytes} bytes",
            path=path,
        )
    itemsize = handle.element.itemsize
    start = storage.base * storage.element.itemsize + handle.offset * itemsize
    end = start + handle.reach * itemsize
    if handle.numel and end > storage_bytes:
        raise CorruptFileError(
            f"tensor {name!r} (offset {handle.offset}, size {list(handle.shape)}, stride "
            f"{list(handle.stride)}) reaches byte {end} of storage {record.label}, which holds "
            f"{storage_bytes} bytes",
            path=path,
        )
    return record, start


def _quantizer_handles(handle: TensorHandle) -> tuple[TensorHandle, ...]:
    quantizer = handle.quantizer
    if quantizer is None:
        return ()
    return tuple(part for part in (quantizer.scale, quantizer.zero_point) if isinstance(part, TensorHandle))


def _entry(item: Found, archive: Archive, path: Path) -> _Entry:
    """The info for one tensor, after checking its view against the storage record that holds it."""
    handle = item.handle
    itemsize = handle.element.itemsize
    record, start = _checked_record(item.name, handle, archive, path)
    params = tuple(
        (part, _checked_record(f"{item.name} (quantizer)", part, archive, path)[0])
        for part in _quantizer_handles(handle)
    )
    origin = (
        f"{record.label} @ {record.offset + start:#x}"
        if record.offset is not None
        else f"{record.label} (compressed) + {start}"
    )
    dtype = handle.element.dtype
    encoding = handle.element.name if (dtype in (DType.OTHER, DType.COMPLEX) or handle.quantized) else None
    if handle.quantizer is not None:
        dtype, encoding = DType.QUANTIZED, torch_encoding(handle.element.name, handle.quantizer.scheme)
    info = TensorInfo(
        name=item.name,
        shape=handle.shape,
        dtype=dtype,
        nbytes=handle.numel * itemsize,
        origin=origin,
        encoding=encoding,
        hint=hint_for(item),
        skip_reason=skip_reason_for(item),
    )
    return _Entry(info, handle, record, params)


def _build_entries(archive: Archive, path: Path) -> list[_Entry]:
    """One entry per distinct view, in first-reference order; the other names of a view become aliases.

    A view reached both through optimizer state and elsewhere (a pickled optimizer object holds the very
    parameters of the model) is named by its first non-optimizer path, so the weight is analysed.
    """
    found = name_tensors(archive.root, path)
    primaries: list[Found] = []
    by_view: dict[tuple[object, ...], int] = {}
    aliases: list[list[str]] = []
    seen_names: set[str] = set()
    for item in found:
        if item.name in seen_names:
            raise CorruptFileError(f"two different tensors are both named {item.name!r}", path=path)
        seen_names.add(item.name)
        key = _view_key(item.handle)
        position = by_view.get(key)
        if position is None:
            by_view[key] = len(primaries)
            primaries.append(item)
            aliases.append([])
        elif primaries[position].optimizer and not item.optimizer:
            aliases[position].insert(0, primaries[position].name)
            primaries[position] = item
        else:
            aliases[position].append(item.name)
    entries = [_entry(item, archive, path) for item in primaries]
    return [
        _Entry(_with_aliases(entry.info, tuple(names)), entry.handle, entry.record, entry.params)
        for entry, names in zip(entries, aliases, strict=True)
    ]


def _with_aliases(info: TensorInfo, names: tuple[str, ...]) -> TensorInfo:
    return dataclasses.replace(info, aliases=names) if names else info


def _scalar_metadata(root: object, archive: Archive) -> dict[str, str]:
    metadata = {"container": archive.container}
    if archive.prefix:
        metadata["archive"] = archive.prefix
    if isinstance(root, dict):
        for key, value in root.items():
            if (
                isinstance(key, str)
                and isinstance(value, (str, int, float, bool))
                and len(metadata) < MAX_METADATA_ENTRIES
            ):
                metadata[key] = str(value)[:MAX_METADATA_CHARS]
    elif isinstance(root, Placeholder):
        metadata["class"] = placeholder_name(root) or ""
    return metadata


class TorchReader(LazyReader[_Entry]):
    """An open PyTorch checkpoint (zip, TorchScript or legacy); tensors are read on demand.

    Memory maps live only inside one `read()`, so closing only marks the reader closed.
    """

    format_name = "pytorch"

    def __init__(self, path: Path, archive: Archive) -> None:
        super().__init__(
            path, _build_entries(archive, path), _scalar_metadata(archive.root, archive), archive.warnings
        )
        self._archive = archive

    @property
    def format(self) -> str:
        """ "torchscript" for `torch.jit.save` archives, "pytorch" otherwise."""
        return "torchscript" if self._archive.torchscript else "pytorch"

    def _fetch(self, entry: _Entry) -> npt.NDArray[np.floating]:
        info, handle = entry.info, entry.handle
        if handle.quantizer is not None:
            return self._dequantized(entry, handle.quantizer)
        if not info.dtype.is_float:
            raise TensorError(not_floating_point(info.dtype.value), path=self.path)
        if handle.numel == 0:
            return np.zeros(handle.shape, dtype=np.float32)
        return self._strided(entry)

    def _dequantized(self, entry: _Entry, quantizer: Quantizer) -> npt.NDArray[np.floating]:
        """What `Tensor.dequantize()` gives: the integers as stored, with the quantizer's parameters."""
        records = {id(handle): record for handle, record in entry.params}

        def values(part: float | int | TensorHandle) -> npt.NDArray[Any]:
            if isinstance(part, TensorHandle):
                return self._elements(part, records[id(part)])
            return np.array([part])

        axis = quantizer.axis
        return dequantize_torch(
            entry.info.name,
            self._elements(entry.handle, entry.record),
            TorchQuantizer(
                QScheme(quantizer.scheme), values(quantizer.scale), values(quantizer.zero_point), axis
            ),
        )

    def _elements(self, handle: TensorHandle, record: Record) -> npt.NDArray[Any]:
        """The stored elements of a view, as a (read-only, strided) numpy array of its storage type."""
        itemsize = handle.element.itemsize
        start = handle.storage.base * handle.storage.element.itemsize + handle.offset * itemsize
        raw = self._record_bytes(record, start, handle.reach * itemsize)
        elements = raw.view(numpy_storage_dtype(handle.element.dtype))
        return np.lib.stride_tricks.as_strided(
            elements,
            shape=handle.shape,
            strides=tuple(step * itemsize for step in handle.stride),
            writeable=False,
        )

    def _strided(self, entry: _Entry) -> npt.NDArray[np.floating]:
        handle = entry.handle
        values = widen(self._elements(handle, entry.record), handle.element.dtype)
        return np.negative(values) if handle.negated else values

    def _record_bytes(self, record: Record, start: int, span: int) -> npt.NDArray[np.uint8]:
        """`span` bytes of a storage from byte `start`: a read-only memory map, or decompressed bytes."""
        if record.offset is not None:
            try:
                return np.memmap(
                    self.path, dtype=np.uint8, mode="r", offset=record.offset + start, shape=(span,)
                )
            except (OSError, ValueError) as exc:
                raise CorruptFileError(f"cannot map {record.label}: {exc}", path=self.path) from exc
        try:
            with zipfile.ZipFile(self.path) as archive, archive.open(record.member or "") as stream:
                stream.seek(start)
                data = stream.read(span)
        except (*ZIP_ERRORS, KeyError) as exc:
            raise CorruptFileError(f"cannot read {record.label} ({exc})", path=self.path) from exc
        if len(data) != span:
            raise CorruptFileError(f"{record.label} ends after {len(data)} of {span} bytes", path=self.path)
        return np.frombuffer(data, dtype=np.uint8)


class ShardedTorchReader(LazyReader[TensorRef]):
    """A Hugging Face sharded `.bin` checkpoint: the shards' tensors in the index's order."""

    format_name = "pytorch"

    def __init__(
        self,
        path: Path,
        shards: list[TorchReader],
        refs: list[TensorRef],
        metadata: dict[str, str],
        warnings: tuple[str, ...],
    ) -> None:
        super().__init__(path, refs, metadata, warnings)
        self._shards = shards

    def _fetch(self, entry: TensorRef) -> npt.NDArray[np.floating]:
        return entry.read()

    def _release(self) -> None:
        for shard in self._shards:
            shard.close()


def _open_index(index_path: Path) -> ShardedTorchReader:
    index = read_index(index_path)
    readers: list[TorchReader] = []

    def read_shard(shard_path: Path, name: str) -> ShardContents[TensorRef]:
        reader = _open_file(shard_path)
        readers.append(reader)
        if reader.format != "pytorch":
            raise UnsupportedFormatError(f"shard {name!r} is a TorchScript archive", path=index_path)
        items = [((ref.info.name, *ref.info.aliases), ref) for ref in reader.tensors()]
        return ShardContents(items, reader.metadata(), reader.warnings)

    try:
        checkpoint = open_shards(index_path, index.shard_names, index, read_shard)
    except BaseException:
        for reader in readers:
            reader.close()
        raise
    return ShardedTorchReader(index_path, readers, checkpoint.items, checkpoint.metadata, checkpoint.warnings)


def _open_file(path: Path) -> TorchReader:
    head = read_head(path, _HEAD_BYTES)
    if head.startswith((ZIP_MAGIC, EMPTY_ZIP_MAGIC)):
        return TorchReader(path, open_zip_archive(path))
    if looks_like_legacy(head):
        return TorchReader(path, open_legacy_archive(path))
    if head[_TAR_MAGIC_AT : _TAR_MAGIC_AT + 5] == b"ustar":
        raise UnsupportedFormatError("a tar checkpoint from torch < 0.4 is not supported", path=path)
    if not head:
        raise UnknownFormatError("the file is empty", path=path)
    raise UnknownFormatError("not a PyTorch checkpoint: neither a zip archive nor a legacy pickle", path=path)


def open_torch(path: Path) -> Reader:
    """Open a PyTorch checkpoint file, a `*.bin.index.json`, or a folder holding a sharded `.bin` checkpoint.

    Raises:
        UnsafeFileError: a pickle names a code-running global, a zip member is a zip bomb, or an index
            names a file outside its folder.
        CorruptFileError: sizes, offsets, strides or structure are inconsistent with the bytes.
        UnsupportedFormatError: a valid file in a variant we do not read (big-endian, torch < 0.4 tar).
    """
    if path.is_dir():
        index = find_index(path, _INDEX_SUFFIX, ".bin")
        if index is None:
            raise UnknownFormatError("no *.bin.index.json in this folder", path=path)
        return _open_index(index)
    if path.name.lower().endswith(_INDEX_SUFFIX):
        return _open_index(path)
    return _open_file(path)


def sniff_torch(head: bytes, path: Path) -> bool:
    """A zip whose first member is a torch archive record, a legacy torch pickle, or a `.bin` index."""
    if path.name.lower().endswith(_INDEX_SUFFIX):
        return True
    return looks_like_zip_checkpoint(head) or looks_like_legacy(head)


def claims_torch_directory(path: Path) -> bool:
    """A folder is ours when it holds a `*.bin.index.json` and no safetensors index (which is preferred)."""
    return any(path.glob("*" + _INDEX_SUFFIX)) and not any(path.glob("*.safetensors.index.json"))


register(
    FormatSpec(
        name="pytorch",
        suffixes=frozenset({".pt", ".pth", ".bin", ".ckpt", ".pth.tar"}),
        sniff=sniff_torch,
        opener=open_torch,
        claims_directory=claims_torch_directory,
    )
)
