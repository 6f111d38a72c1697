"""Reads Keras weights from HDF5 files (`.h5`, `.weights.h5`) and `.keras` archives, safely and lazily.

Three pieces: `formats._hdf5_worker` is the only code that gives the file to libhdf5, in a child process
(crashes and endless loops in libhdf5 become exit code 3, see that module); `formats._hdf5_keras` turns
the worker's catalogue into named weights with layer information; this module opens `.keras` zips,
checks every byte range and reads tensors.

Reading: a contiguous, unfiltered dataset (what Keras writes) is read by this process directly from the
file at the offset the catalogue gives, after checking it lies inside the file (or inside the stored zip
member); chunked, compressed or compact datasets are read by the worker. Either way one tensor is read
per `read()`, into a fresh array.

`.keras` archives are read in place, never extracted: every member name is checked by the rule all
archives share (`formats._zip.check_member_name`: absolute paths, `..`, backslashes and NUL bytes raise
`UnsafeFileError`; duplicates `CorruptFileError`), `config.json` is parsed as plain JSON for
layer classes (never deserialised: Lambda layers and custom objects are reported in `metadata()` and
never run), and the `model.weights.h5` member is opened through a window on the archive when stored,
or through zipfile's reader when compressed.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from formats._binary import as_floats, element_count, file_size_of, read_array_at, read_head
from formats._decode_budget import Budget
from formats._hdf5_client import WorkerClient
from formats._hdf5_keras import (
    KerasLayout,
    Weight,
    describe,
    detect_layout,
    keras2_weights,
    keras3_weights,
    plain_weights,
)
from formats._hdf5_links import resolve_links
from formats._keras_config import config_order, layer_classes, model_name, parse_config, unsafe_objects
from formats._lazy_reader import LazyReader
from formats._zip import (
    ZIP_ERRORS,
    ZIP_MAGIC,
    checked_members,
    open_archive,
    read_member,
    stored_offset,
)
from formats.errors import CorruptFileError, UnsafeFileError, UnsupportedFormatError
from formats.registry import FormatSpec, register
from formats.skip_reasons import not_a_matrix, not_floating_point
from formats.types import DType, TensorInfo

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
KERAS_WEIGHTS_MEMBER = "model.weights.h5"
#: Largest `config.json` read from a `.keras` archive, and largest `metadata.json`.
MAX_CONFIG_BYTES = 64 * 1024 * 1024
MAX_METADATA_BYTES = 1 << 20
#: A chunked or compressed dataset may declare at most this many times the file's size (a compression
#: ratio no real weights reach); more means unwritten chunks that would read as a wall of fill values.
MAX_EXPANSION = 1024

_FLOAT_DTYPES: dict[str, DType] = {"f2": DType.F16, "f4": DType.F32, "f8": DType.F64}
_INT_DTYPES: dict[str, DType] = {
    "i1": DType.I8,
    "i2": DType.I16,
    "i4": DType.I32,
    "i8": DType.I64,
    "u1": DType.U8,
    "u2": DType.U16,
    "u4": DType.U32,
    "u8": DType.U64,
    "b1": DType.BOOL,
}


@dataclass(frozen=True, slots=True)
class _Entry:
    """A weight to yield and how to read it."""

    info: TensorInfo
    dataset: str  # path inside the HDF5 file
    numpy_dtype: str  # as stored, with byte order ("<f4")
    stored_shape: tuple[int, ...]
    offset: int | None  # absolute offset in the container file for direct reads; None: ask the worker
    nbytes: int


@dataclass(frozen=True, slots=True)
class _Container:
    """Where the HDF5 bytes are: a plain file, or a member of a `.keras` zip."""

    file: Path
    member: str | None = None
    window: tuple[int, int] | None = None  # (start, size) of a stored member in `file`
    size: int = 0  # size of the HDF5 image (the member's, or the file's)

    @property
    def base(self) -> int | None:
        """Offset of the HDF5 image in `file`; None when it is compressed (no direct reads)."""
        if self.member is None:
            return 0
        return self.window[0] if self.window is not None else None


class HDF5Reader(LazyReader[_Entry]):
    """Keras weights from an HDF5 file or a `.keras` archive.

    Attributes:
        warnings: what the user should hear about that did not stop the reading (links not followed).
        bytes_materialized: tensor bytes read so far; tests check laziness with it.
    """

    format_name = "hdf5"

    def __init__(
        self,
        path: Path,
        catalogue: Mapping[str, Any],
        client: WorkerClient,
        container: _Container,
        config: Any | None,
        extra_metadata: Mapping[str, str],
    ) -> None:
        super().__init__(path, (), {})  # entries, metadata and warnings are planned below
        self._client: WorkerClient | None = client
        self._container = container
        broken = catalogue.get("broken") or []
        if broken:
            # An object the library cannot open is damage to the file, not a detail of one tensor.
            raise CorruptFileError(f"the HDF5 structure is damaged: {broken[0]}", path=path)
        groups = catalogue.get("groups", {})
        root_attrs = groups.get("/", {}).get("attrs", {})
        layout = detect_layout(catalogue)
        if (
            config is None
            and layout is KerasLayout.KERAS2_MODEL
            and isinstance(root_attrs.get("model_config"), str)
        ):
            try:
                config = parse_config(root_attrs["model_config"])
            except ValueError:
                config = None
        classes = layer_classes(config) if config is not None else {}
        notes = [str(note) for note in catalogue.get("notes", [])]
        # The one link rule (formats._hdf5_links): external links out of the folder are refused here,
        # soft links to datasets become second names, the rest are listed with a reason.
        links = resolve_links(catalogue, path.parent, path)
        catalogue = {**catalogue, "links": links.links}
        self._unfollowed = links.unfollowed
        notes.extend(links.notes)
        if layout is KerasLayout.KERAS3:
            weights = keras3_weights(catalogue, classes, config_order(config) if config is not None else {})
        elif layout in (KerasLayout.KERAS2_MODEL, KerasLayout.KERAS2_WEIGHTS):
            base = "/model_weights" if layout is KerasLayout.KERAS2_MODEL else "/"
            weights, more = keras2_weights(catalogue, base, classes, model_name(config))
            notes.extend(more)
        else:
            weights = plain_weights(catalogue)
        self.warnings = tuple(notes)
        self._metadata = self._describe_model(layout, root_attrs, config, extra_metadata)
        self._entries = self._plan(weights, catalogue)
        if self._client is not None and all(
            entry.offset is not None or entry.info.skip_reason is not None for entry in self._entries
        ):
            # Everything can be read directly: no reason to keep libhdf5 running.
            self._client.close()
            self._client = None

    def _release(self) -> None:
        """Stop the worker process, if one is still running."""
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- planning -----------------------------------------------------------------------------------

    def _describe_model(
        self, layout: KerasLayout, root_attrs: Mapping[str, Any], config: Any, extra: Mapping[str, str]
    ) -> dict[str, str]:
        names = {
            KerasLayout.KERAS3: "keras3 .keras" if self._container.member else "keras3 .weights.h5",
            KerasLayout.KERAS2_MODEL: "keras2 .h5 (full model)",
            KerasLayout.KERAS2_WEIGHTS: "keras2 .h5 (weights only)",
            KerasLayout.PLAIN: "hdf5 (not a Keras layout)",
        }
        meta = {"keras.layout": names[layout]}
        for key in ("keras_version", "backend"):
            value = root_attrs.get(key)
            if isinstance(value, str):
                meta[f"keras.{key}"] = value
        if isinstance(config, dict):
            if isinstance(config.get("class_name"), str):
                meta["keras.model_class"] = config["class_name"]
            name = model_name(config)
            if name:
                meta["keras.model_name"] = name
            lambdas, custom = unsafe_objects(config)
            if lambdas:
                meta["keras.lambda_layers"] = ", ".join(lambdas)
            if custom:
                meta["keras.custom_objects"] = ", ".join(custom)
        meta.update(extra)
        return meta

    def _plan(self, weights: list[Weight], catalogue: Mapping[str, Any]) -> list[_Entry]:
        datasets: Mapping[str, Any] = catalogue.get("datasets", {})
        links: Mapping[str, Any] = catalogue.get("links", {})
        entries: list[_Entry] = []
        by_dataset: dict[str, int] = {}
        for weight in weights:
            dataset_path = weight.dataset
            link = links.get(dataset_path)
            if isinstance(link, dict) and link.get("type") == "hard":
                dataset_path = str(link.get("target"))
            dataset = datasets.get(dataset_path)
            if dataset is None:
                reason = self._unfollowed.get(dataset_path)
                if reason is not None:
                    entries.append(self._unfollowed_entry(weight, dataset_path, reason))
                continue
            if dataset_path in by_dataset:
                # The same dataset under two names (shared weights): analysed once, the other name listed.
                index = by_dataset[dataset_path]
                first = entries[index]
                info = first.info
                entries[index] = _replace_info(first, aliases=(*info.aliases, weight.name))
                continue
            by_dataset[dataset_path] = len(entries)
            entries.append(self._entry(weight, dataset_path, dataset))
        return entries

    def _unfollowed_entry(self, weight: Weight, link_path: str, reason: str) -> _Entry:
        """A weight that is a link not followed: listed, with the reason, never read."""
        info = TensorInfo(
            name=weight.name,
            shape=(),
            dtype=DType.OTHER,
            nbytes=0,
            origin=self._origin(link_path, None),
            hint=describe(weight, ())[0],
            stored_name=weight.stored_name or (link_path if weight.name != link_path.lstrip("/") else None),
            skip_reason=reason,
        )
        return _Entry(info, link_path, "", (), None, 0)

    def _entry(self, weight: Weight, dataset_path: str, dataset: Mapping[str, Any]) -> _Entry:
        what = f"dataset {dataset_path!r}"
        if dataset.get("virtual") or dataset.get("external_files"):
            # Both make libhdf5 read bytes from other files, possibly anywhere on the disk.
            kind = "a virtual dataset" if dataset.get("virtual") else "external raw-data files"
            raise UnsafeFileError(f"{what} takes its values from {kind}; refused", path=self.path)
        raw_shape = dataset.get("shape")
        numpy_dtype = dataset.get("dtype")
        skip: str | None = None
        if raw_shape is None:
            shape: tuple[int, ...] = ()
            skip = "dataset has no dataspace (null)"
        else:
            shape = tuple(int(dim) for dim in raw_shape)
        count = element_count(shape, what=dataset_path, path=self.path)
        if numpy_dtype is None:
            dtype = DType.OTHER
            itemsize = 0
            skip = skip or f"{dataset.get('dtype_text', 'unknown')} values are not analysed"
        else:
            code = str(numpy_dtype)[1:]
            dtype = _FLOAT_DTYPES.get(code) or _INT_DTYPES.get(code) or DType.OTHER
            itemsize = np.dtype(str(numpy_dtype)).itemsize
            if not dtype.is_float:
                skip = skip or not_floating_point(dtype.value)
        nbytes = count * itemsize
        # A type the catalogue gives no numpy dtype for (complex, strings, compounds) has no size to check
        # its storage against; it is skipped above and never read.
        offset = self._direct_offset(dataset, nbytes, what) if itemsize else None
        hint, presented = describe(weight, shape)
        # What the kind rules out (biases, norms, depthwise kernels) is worded once, for every format.
        skip = skip or not_a_matrix(hint, presented)
        if skip is None and dataset.get("storage", 0) == 0 and nbytes > 0:
            skip = "dataset has no stored values (never written)"
        info = TensorInfo(
            name=weight.name,
            shape=presented,
            dtype=dtype,
            nbytes=nbytes,
            origin=self._origin(dataset_path, offset),
            encoding=f"folded from {list(shape)}" if presented != shape else None,
            hint=hint,
            stored_name=weight.stored_name
            or (dataset_path if weight.name != dataset_path.lstrip("/") else None),
            skip_reason=skip,
        )
        return _Entry(info, dataset_path, str(numpy_dtype), shape, offset, nbytes)

    def _direct_offset(self, dataset: Mapping[str, Any], nbytes: int, what: str) -> int | None:
        """Absolute file offset to read a contiguous dataset from, checked; None to ask the worker."""
        container = self._container
        storage = int(dataset.get("storage") or 0)
        limit = MAX_EXPANSION * max(container.size, 1) + (1 << 20)
        if nbytes > limit and nbytes > storage:
            raise CorruptFileError(
                f"{what} declares {nbytes} bytes of values but the file has {container.size}; "
                "its dimensions are not credible",
                path=self.path,
            )
        offset = dataset.get("offset")
        base = container.base
        if dataset.get("layout") != "contiguous" or dataset.get("filters"):
            # Filtered chunks (gzip, lzf, shuffle...) and chunks never written (read as fill values) yield
            # more bytes than they store: the declared size must fit the budget of the stored bytes
            # before the worker inflates anything. Nothing stored at all is a skip, never read.
            if storage > 0:
                Budget(what, storage, self.path).check_declared(nbytes)
            return None
        if offset is None or base is None:
            return None
        if storage != nbytes:
            raise CorruptFileError(
                f"{what} is stored in {storage} bytes but its shape and type need {nbytes}", path=self.path
            )
        if int(offset) + nbytes > container.size:
            raise CorruptFileError(
                f"{what} ends at byte {int(offset) + nbytes} but the HDF5 data has {container.size} bytes",
                path=self.path,
            )
        return base + int(offset)

    def _origin(self, dataset_path: str, offset: int | None) -> str:
        where = f"{self._container.member}:" if self._container.member else ""
        at = f" @ {offset:#x}" if offset is not None else ""
        return f"{self.path.name}: {where}{dataset_path}{at}"

    # -- reading ------------------------------------------------------------------------------------

    def _fetch(self, entry: _Entry) -> npt.NDArray[np.floating]:
        info = entry.info
        if entry.offset is not None:
            try:
                with self._container.file.open("rb", buffering=0) as handle:
                    raw = read_array_at(
                        handle, entry.offset, entry.nbytes, what=f"dataset {entry.dataset!r}", path=self.path
                    )
            except OSError as exc:
                raise CorruptFileError(
                    f"cannot read dataset {entry.dataset!r}: {exc.strerror or exc}", path=self.path
                ) from None
            values = raw.view(np.dtype(entry.numpy_dtype)).reshape(entry.stored_shape)
        else:
            # The worker is stopped early only when every entry can be read directly, and on close().
            assert self._client is not None
            values = self._client.read(entry.dataset, entry.nbytes)
            if values.shape != entry.stored_shape:
                raise CorruptFileError(
                    f"dataset {entry.dataset!r} changed shape while reading", path=self.path
                )
        self.bytes_materialized += entry.nbytes
        if values.dtype.byteorder == ">":
            values = values.astype(values.dtype.newbyteorder("<"))
        if values.shape != info.shape:
            values = values.reshape(info.shape)
        return as_floats(values, what=f"dataset {entry.dataset!r}")


def _replace_info(entry: _Entry, *, aliases: tuple[str, ...]) -> _Entry:
    new_info = dataclasses.replace(entry.info, aliases=aliases)
    return _Entry(new_info, entry.dataset, entry.numpy_dtype, entry.stored_shape, entry.offset, entry.nbytes)


# ----------------------------------------------------------------------------------------------------
# `.keras` archives.


def _open_keras(path: Path) -> HDF5Reader:
    file_size = file_size_of(path)
    with open_archive(path, what=".keras archive") as archive:
        members = checked_members(archive, file_size, path)  # names that escape are refused there
        if KERAS_WEIGHTS_MEMBER not in members:
            others = sorted(name for name in members if "weights" in name)
            raise UnsupportedFormatError(
                f"this .keras archive has no {KERAS_WEIGHTS_MEMBER}"
                + (
                    f" (it has {', '.join(others)}; sharded or npz weights are not supported)"
                    if others
                    else ""
                ),
                path=path,
            )
        config: Any = None
        extra: dict[str, str] = {}
        if "config.json" in members:
            try:
                config = json.loads(read_member(archive, members["config.json"], MAX_CONFIG_BYTES, path))
            except (ValueError, RecursionError) as exc:
                raise CorruptFileError(f"config.json is not valid JSON: {exc}", path=path) from None
        if "metadata.json" in members:
            try:
                metadata = json.loads(
                    read_member(archive, members["metadata.json"], MAX_METADATA_BYTES, path)
                )
            except (ValueError, RecursionError):
                metadata = None
            if isinstance(metadata, dict):
                for key in ("keras_version", "date_saved"):
                    if isinstance(metadata.get(key), str):
                        extra[f"keras.{key}"] = metadata[key]
        weights_info = members[KERAS_WEIGHTS_MEMBER]
        window: tuple[int, int] | None = None
        if weights_info.compress_type == zipfile.ZIP_STORED:
            with path.open("rb") as handle:
                start = stored_offset(handle, weights_info, file_size, path)
                handle.seek(start)
                if handle.read(len(HDF5_MAGIC)) != HDF5_MAGIC:
                    raise CorruptFileError(
                        f"{KERAS_WEIGHTS_MEMBER} in the archive is not an HDF5 file", path=path
                    )
            window = (start, weights_info.file_size)
    container = _Container(path, KERAS_WEIGHTS_MEMBER, window, weights_info.file_size)
    return _open_with_worker(path, container, config, extra)


def _open_with_worker(path: Path, container: _Container, config: Any, extra: Mapping[str, str]) -> HDF5Reader:
    client = WorkerClient(path)
    try:
        catalogue = client.open(container.file, container.member, container.window)
        return HDF5Reader(path, catalogue, client, container, config, extra)
    except BaseException:
        client.close()
        raise


def open_hdf5(path: Path) -> HDF5Reader:
    """Open a Keras `.h5` / `.weights.h5` file or a `.keras` archive.

    Raises:
        CorruptFileError: not HDF5, inconsistent byte ranges, or libhdf5 crashed or hung on the file.
        UnsafeFileError: external links out of the model's folder, virtual or external-storage datasets,
            zip member names that escape (`formats._zip`).
        UnsupportedFormatError: a `.keras` archive without `model.weights.h5`.
        MissingDependencyError: h5py is not installed.
    """
    head = read_head(path, len(HDF5_MAGIC))
    if head.startswith(ZIP_MAGIC):
        return _open_keras(path)
    return _open_with_worker(path, _Container(path, None, None, file_size_of(path)), None, {})


def _is_keras_zip(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except ZIP_ERRORS:
        return False
    return "config.json" in names and (KERAS_WEIGHTS_MEMBER in names or "metadata.json" in names)


def sniff_hdf5(head: bytes, path: Path) -> bool:
    """HDF5's signature, or a zip whose members are a Keras 3 archive's (torch zips are not claimed)."""
    if head.startswith(HDF5_MAGIC):
        return True
    return head.startswith(ZIP_MAGIC) and _is_keras_zip(path)


register(
    FormatSpec(
        name="hdf5",
        suffixes=frozenset({".h5", ".hdf5", ".keras", ".weights.h5"}),
        sniff=sniff_hdf5,
        opener=open_hdf5,
    )
)
