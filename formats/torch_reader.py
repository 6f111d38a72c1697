"""Reads PyTorch checkpoints without importing torch or running anything stored in them.

Supported containers, all parsed by our own code:
- zip archives written by `torch.save` since 1.6 (`.pt`, `.pth`, `.bin`, `.ckpt`): `<prefix>/data.pkl` plus
  one record `<prefix>/data/<key>` per storage;
- TorchScript archives written by `torch.jit.save`: the same layout plus `code/` and `constants.pkl`; the
  module's parameters and buffers are the tensors of its data pickle (reported format "torchscript");
- legacy (pre-1.6) files: five pickles back to back (magic number, protocol, system info, the object,
  the storage keys) followed by the storages, each an int64 element count and its bytes;
- Hugging Face sharded checkpoints: a folder (or the index itself) with `*.bin.index.json` naming shards.

Pickles go through `formats._unpickler` (no global is imported or called; code-running globals make the
file unsafe). Storage bytes are memory-mapped when the zip record is stored uncompressed (torch writes
them so, 64-byte aligned) and read through `zipfile` otherwise; a tensor is a strided numpy view over its
storage that honours size, stride and storage offset, checked against the record when the file is opened.

Tensor names are paths in the unpickled object graph, joined with ".":
- a state dict gives its keys ("fc1.weight");
- a whole module pickled with `torch.save(model)` gives its parameters and buffers by attribute path: the
  `_parameters`, `_buffers` and `_modules` levels collapse, so names match `model.state_dict()`;
- a TorchScript module gives its attributes by path, which are the same names;
- a checkpoint dict that wraps the weights under one conventional key (`state_dict` as Lightning writes,
  `model_state_dict`, `model`, `model_state`, `net`, `network`, `weights`) has that key dropped from the
  names, so a Lightning `.ckpt` reads like its model's state dict; other entries keep their full path
  ("optimizer_states.0.state.0.exp_avg"). If dropping the key would make two names equal it is kept.
- tensors under an optimizer state dict (a mapping with `state` and `param_groups`) are listed with
  `skip_reason` "optimizer state" and never analysed.
Tensors that are the same view of the same storage (tied weights) are yielded once, with the other names
as `aliases`.

Non-goals: writing checkpoints, quantized tensors' dequantisation (listed, skipped), sparse/nested tensors
(not listed: they have no dense storage view), and the legacy tar format of torch < 0.4 (refused).
"""

from __future__ import annotations

import dataclasses
import json
import pickletools
import re
import struct
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from formats._binary import numpy_storage_dtype, read_exact, resolve_inside, widen
from formats._unpickler import (
    MAX_OPCODES,
    MAX_PICKLE_BYTES,
    Placeholder,
    StorageRef,
    TensorHandle,
    load_pickle,
    placeholder_name,
)
from formats.errors import (
    CorruptFileError,
    FormatError,
    TensorError,
    UnknownFormatError,
    UnsafeFileError,
    UnsupportedFormatError,
    WWInspectError,
)
from formats.registry import FormatSpec, register
from formats.types import DType, FormatHint, Layout, Reader, TensorInfo, TensorRef, WeightKind

#: Most members a checkpoint zip may list (a 100k-tensor checkpoint has about 100k).
MAX_ZIP_MEMBERS = 2_000_000
#: Deflate cannot compress better than about 1032:1; a larger declared ratio is a zip bomb.
MAX_COMPRESSION_RATIO = 1100
#: Deepest object-graph nesting we follow, and most objects we visit while naming tensors.
MAX_DEPTH = 256
MAX_VISITS = 5_000_000
#: Largest `*.bin.index.json` we parse.
MAX_INDEX_BYTES = 64 << 20

# torch.serialization.MAGIC_NUMBER, and the first pickles of a legacy file as torch writes them.
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001
_LEGACY_MAGIC_BYTES = LEGACY_MAGIC.to_bytes(10, "little")
_ZIP_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
_ZIP_LOCAL_SIGNATURE = b"PK\x03\x04"
_TORCH_MEMBER = re.compile(
    rb"[^/]+/(data\.pkl|data/|\.data/|version|byteorder|code/|constants\.pkl|\.format_version|"
    rb"\.storage_alignment|extra/)"
)
_INDEX_SUFFIX = ".bin.index.json"

# Keys under which checkpoints conventionally keep the model's weights, in order of preference.
_WEIGHT_KEYS = ("state_dict", "model_state_dict", "model", "model_state", "net", "network", "weights")
_OPTIMIZER_SKIP = "optimizer state (not a weight)"

# torch.nn classes and what their weights are; the key is the class name without its module.
_MODULE_KINDS: dict[str, WeightKind] = {
    **dict.fromkeys(
        ("Linear", "LazyLinear", "NonDynamicallyQuantizableLinear", "Bilinear"), WeightKind.DENSE
    ),
    **dict.fromkeys(
        (
            "Conv1d",
            "Conv2d",
            "Conv3d",
            "ConvTranspose1d",
            "ConvTranspose2d",
            "ConvTranspose3d",
            "LazyConv1d",
            "LazyConv2d",
            "LazyConv3d",
        ),
        WeightKind.CONV,
    ),
    **dict.fromkeys(("Embedding", "EmbeddingBag"), WeightKind.EMBEDDING),
    **dict.fromkeys(("LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell"), WeightKind.RECURRENT),
    **dict.fromkeys(
        (
            "LayerNorm",
            "BatchNorm1d",
            "BatchNorm2d",
            "BatchNorm3d",
            "GroupNorm",
            "InstanceNorm1d",
            "InstanceNorm2d",
            "InstanceNorm3d",
            "RMSNorm",
            "SyncBatchNorm",
            "LocalResponseNorm",
        ),
        WeightKind.NORM,
    ),
    "MultiheadAttention": WeightKind.DENSE,
}


# ----------------------------------------------------------------------------------------------------
# Where storage bytes live.


@dataclass(frozen=True, slots=True)
class _Record:
    """The bytes of one storage: a byte range of the file, or a compressed zip member.

    Attributes:
        label: for messages, "archive/data/3" or "legacy storage '9418...'".
        nbytes: size of the stored bytes.
        offset: absolute file offset of the first byte when the bytes are stored as they are.
        member: the zip member to decompress when they are not.
    """

    label: str
    nbytes: int
    offset: int | None
    member: str | None = None


@dataclass(frozen=True, slots=True)
class _Found:
    """A tensor reached in the object graph, with what its owner says about it."""

    name: str
    handle: TensorHandle
    optimizer: bool
    owner: str | None  # global name of the module class that holds it, when it is a module's attribute
    attribute: str  # the last name component ("weight", "bias", "running_mean")
    groups: int


@dataclass(frozen=True, slots=True)
class _Entry:
    """One tensor to yield: its info and where to read it."""

    info: TensorInfo
    handle: TensorHandle
    record: _Record


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as exc:
        raise CorruptFileError(f"cannot read the file: {exc.strerror or exc}", path=path) from exc


# ----------------------------------------------------------------------------------------------------
# Zip archives (torch.save >= 1.6, torch.jit.save).


@dataclass(frozen=True, slots=True)
class _Archive:
    root: object
    storages: dict[str, StorageRef]
    records: dict[str, _Record]
    prefix: str
    torchscript: bool


def _check_member(info: zipfile.ZipInfo, file_size: int, path: Path) -> None:
    """Refuse members whose declared sizes cannot be true of this file, and encrypted members."""
    name = info.filename
    if info.flag_bits & 0x1:
        raise UnsupportedFormatError(f"zip member {name!r} is encrypted", path=path)
    if info.compress_type == zipfile.ZIP_STORED:
        if info.compress_size != info.file_size:
            raise CorruptFileError(
                f"zip member {name!r} is stored uncompressed but declares {info.file_size} bytes "
                f"and {info.compress_size} compressed bytes",
                path=path,
            )
    elif info.file_size > max(info.compress_size, 1) * MAX_COMPRESSION_RATIO:
        raise UnsafeFileError(
            f"zip member {name!r} declares {info.file_size} bytes from {info.compress_size} compressed "
            f"bytes, a ratio no real compressor reaches (zip bomb)",
            path=path,
        )
    if info.header_offset + info.compress_size > file_size:
        raise CorruptFileError(
            f"zip member {name!r} declares {info.compress_size} bytes at {info.header_offset:#x}, "
            f"past the end of the {file_size}-byte file",
            path=path,
        )


def _stored_offset(handle: BinaryIO, info: zipfile.ZipInfo, file_size: int, path: Path) -> int:
    """Absolute offset of a stored member's bytes, from its local header, checked against the central one.

    The local header may carry a different name or extra field than the central directory; readers that
    trust different copies disagree about what a file holds, so a mismatch is refused.
    """
    handle.seek(info.header_offset)
    raw = read_exact(handle, _ZIP_LOCAL_HEADER.size, what=f"the zip header of {info.filename!r}", path=path)
    signature, *_rest, name_length, extra_length = _ZIP_LOCAL_HEADER.unpack(raw)
    if signature != _ZIP_LOCAL_SIGNATURE:
        raise CorruptFileError(
            f"zip member {info.filename!r} has no local header at {info.header_offset:#x}", path=path
        )
    local_name = read_exact(handle, name_length, what=f"the zip header of {info.filename!r}", path=path)
    if local_name.decode("utf-8", "replace") != info.filename and local_name.decode("cp437") != info.filename:
        raise CorruptFileError(
            f"zip member {info.filename!r} is named differently in its local header", path=path
        )
    offset: int = info.header_offset + _ZIP_LOCAL_HEADER.size + int(name_length) + int(extra_length)
    if offset + info.file_size > file_size:
        raise CorruptFileError(
            f"zip member {info.filename!r} ({info.file_size} bytes at {offset:#x}) runs past the end of "
            f"the {file_size}-byte file",
            path=path,
        )
    return offset


def _open_zip(path: Path) -> _Archive:
    file_size = _file_size(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise CorruptFileError(f"not a readable zip archive ({exc})", path=path) from exc
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_ZIP_MEMBERS:
            raise CorruptFileError(
                f"the zip lists {len(infos)} members, more than {MAX_ZIP_MEMBERS}", path=path
            )
        names = [info.filename for info in infos]
        if len(set(names)) != len(names):
            duplicate = next(name for name in names if names.count(name) > 1)
            raise CorruptFileError(f"the zip lists member {duplicate!r} twice", path=path)
        for info in infos:
            _check_member(info, file_size, path)
        pickles = [name for name in names if re.fullmatch(r"[^/]+/data\.pkl", name)]
        if not pickles:
            raise UnknownFormatError(
                "a zip archive without <prefix>/data.pkl: not a PyTorch checkpoint", path=path
            )
        if len(pickles) > 1:
            listed = ", ".join(repr(name) for name in pickles[:3])
            raise CorruptFileError(
                f"the zip holds {len(pickles)} PyTorch archives ({listed}); a checkpoint has one", path=path
            )
        prefix = pickles[0].split("/", 1)[0]
        by_name = {info.filename: info for info in infos}
        byteorder = by_name.get(f"{prefix}/byteorder")
        if byteorder is not None:
            if byteorder.file_size > 16:
                raise CorruptFileError("the byteorder record is not 'little' or 'big'", path=path)
            try:
                order = archive.read(byteorder).strip()
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
                raise CorruptFileError(f"cannot read {byteorder.filename} ({exc})", path=path) from exc
            if order != b"little":
                raise UnsupportedFormatError(f"a {order[:8]!r}-endian checkpoint is not supported", path=path)
        pickle_info = by_name[pickles[0]]
        if pickle_info.file_size > MAX_PICKLE_BYTES:
            raise CorruptFileError(
                f"{pickles[0]} declares {pickle_info.file_size} bytes, more than {MAX_PICKLE_BYTES}",
                path=path,
            )
        try:
            data = archive.read(pickle_info)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise CorruptFileError(f"cannot read {pickles[0]} ({exc})", path=path) from exc
        root, unpickler = load_pickle(data, what=pickles[0], path=path)
        records: dict[str, _Record] = {}
        with path.open("rb") as handle:
            for key in unpickler.storages:
                member = f"{prefix}/data/{key}"
                record_info = by_name.get(member)
                if record_info is None:
                    continue  # reported when a tensor needs it, with the tensor's name
                if record_info.compress_type == zipfile.ZIP_STORED:
                    offset = _stored_offset(handle, record_info, file_size, path)
                    records[key] = _Record(member, record_info.file_size, offset)
                else:
                    records[key] = _Record(member, record_info.file_size, None, member)
        torchscript = f"{prefix}/constants.pkl" in by_name or any(
            name.startswith(f"{prefix}/code/") for name in names
        )
    return _Archive(root, unpickler.storages, records, prefix, torchscript)


# ----------------------------------------------------------------------------------------------------
# Legacy files (torch.save before 1.6, or `_use_new_zipfile_serialization=False`).


def _next_pickle(handle: BinaryIO, what: str, path: Path) -> bytes:
    """The bytes of the pickle starting at the handle's position, found by parsing (not running) it."""
    start = handle.tell()
    count = 0
    try:
        for _opcode, _argument, _position in pickletools.genops(handle):
            count += 1
            if count > MAX_OPCODES or handle.tell() - start > MAX_PICKLE_BYTES:
                raise CorruptFileError(f"{what} is larger than the limits for a pickle", path=path)
    except WWInspectError:
        raise
    except Exception as exc:  # genops reports malformed streams as ValueError/EOFError with words
        raise CorruptFileError(
            f"{what} is not a well-formed pickle ({type(exc).__name__}: {exc})"[:300], path=path
        ) from exc
    end = handle.tell()
    handle.seek(start)
    return read_exact(handle, end - start, what=what, path=path)


def _open_legacy(path: Path) -> _Archive:
    file_size = _file_size(path)
    with path.open("rb") as handle:
        magic, _ = load_pickle(
            _next_pickle(handle, "the legacy magic number", path), what="the legacy header", path=path
        )
        if magic != LEGACY_MAGIC:
            raise UnknownFormatError(
                "a pickle that is not a PyTorch checkpoint (wrong magic number)", path=path
            )
        protocol, _ = load_pickle(
            _next_pickle(handle, "the legacy protocol version", path), what="the legacy header", path=path
        )
        if protocol != LEGACY_PROTOCOL_VERSION:
            raise UnsupportedFormatError(
                f"legacy checkpoint protocol {protocol!r} is not supported", path=path
            )
        sys_info, _ = load_pickle(
            _next_pickle(handle, "the legacy system info", path), what="the legacy header", path=path
        )
        if isinstance(sys_info, Mapping) and sys_info.get("little_endian") is False:
            raise UnsupportedFormatError("a big-endian legacy checkpoint is not supported", path=path)
        root, unpickler = load_pickle(
            _next_pickle(handle, "the checkpoint pickle", path),
            what="the checkpoint pickle",
            path=path,
            legacy=True,
        )
        keys, _ = load_pickle(
            _next_pickle(handle, "the storage key list", path), what="the storage key list", path=path
        )
        if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
            raise CorruptFileError("the legacy storage key list is not a list of keys", path=path)
        if len(set(keys)) != len(keys):
            raise CorruptFileError("the legacy storage key list names a storage twice", path=path)
        records: dict[str, _Record] = {}
        offset = handle.tell()
        for key in keys:
            storage = unpickler.storages.get(key)
            if storage is None:
                raise CorruptFileError(f"legacy storage {key!r} is listed but never used", path=path)
            handle.seek(offset)
            (numel,) = struct.unpack(
                "<q", read_exact(handle, 8, what=f"the size of storage {key!r}", path=path)
            )
            if numel != storage.numel:
                raise CorruptFileError(
                    f"legacy storage {key!r} holds {numel} elements where the pickle declares "
                    f"{storage.numel}",
                    path=path,
                )
            nbytes = numel * storage.element.itemsize
            if offset + 8 + nbytes > file_size:
                raise CorruptFileError(
                    f"legacy storage {key!r} ({nbytes} bytes at {offset + 8:#x}) runs past the end of the "
                    f"{file_size}-byte file",
                    path=path,
                )
            records[key] = _Record(f"legacy storage {key!r}", nbytes, offset + 8)
            offset += 8 + nbytes
    return _Archive(root, unpickler.storages, records, "", False)


# ----------------------------------------------------------------------------------------------------
# Naming: walk the object graph.


def _component(key: object, position: int) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, (int, float)) and not isinstance(key, bool):
        return str(key)
    return f"[{position}]"


def _attributes(value: Placeholder) -> dict[str, object]:
    """The attribute dict a placeholder received through BUILD (dict state, or (dict, slots) state)."""
    state = value.state
    merged: dict[str, object] = {}
    parts = state if isinstance(state, tuple) and len(state) == 2 else (state,)
    for part in parts:
        if isinstance(part, dict):
            merged.update((key, item) for key, item in part.items() if isinstance(key, str))
    return merged


def _is_module(attributes: Mapping[str, object]) -> bool:
    return isinstance(attributes.get("_parameters"), dict) and isinstance(attributes.get("_modules"), dict)


def _is_torchscript_object(value: Placeholder) -> bool:
    return (placeholder_name(value) or "").startswith("__torch__.")


def _groups(attributes: Mapping[str, object]) -> int:
    groups = attributes.get("groups")
    return groups if type(groups) is int and groups > 0 else 1


def _walk(root: object, path: Path) -> list[_Found]:
    """Every tensor reachable from `root`, in pickle order, named by its path (see the module docstring)."""
    found: list[_Found] = []
    visits = 0
    # Frames: (value, name parts, optimizer flag, owner class, groups, ancestors' ids).
    stack: list[tuple[object, tuple[str, ...], bool, str | None, int, tuple[int, ...]]] = [
        (root, (), False, None, 1, ())
    ]
    while stack:
        value, parts, optimizer, owner, groups, ancestors = stack.pop()
        visits += 1
        if visits > MAX_VISITS:
            raise CorruptFileError(f"the pickled object graph has more than {MAX_VISITS} paths", path=path)
        if isinstance(value, TensorHandle):
            found.append(_Found(".".join(parts), value, optimizer, owner, parts[-1] if parts else "", groups))
            continue
        if id(value) in ancestors:
            continue  # a cycle: the object contains itself
        if len(ancestors) >= MAX_DEPTH:
            raise CorruptFileError(
                f"the pickled object graph nests deeper than {MAX_DEPTH} levels", path=path
            )
        inner = (*ancestors, id(value))
        children: list[tuple[object, tuple[str, ...], bool, str | None, int]] = []
        if isinstance(value, dict):
            is_optimizer = optimizer or ("state" in value and "param_groups" in value)
            for position, (key, item) in enumerate(value.items()):
                children.append((item, (*parts, _component(key, position)), is_optimizer, None, 1))
        elif isinstance(value, (list, tuple)):
            for position, item in enumerate(value):
                children.append((item, (*parts, str(position)), optimizer, None, 1))
        elif isinstance(value, Placeholder):
            attributes = _attributes(value)
            cls = placeholder_name(value)
            # A pickled optimizer object (not its state dict) keeps the same two attributes.
            optimizer = optimizer or ("state" in attributes and "param_groups" in attributes)
            if _is_module(attributes):
                # torch.nn.Module.__dict__: parameters, buffers, then child modules (state_dict() order).
                module_groups = _groups(attributes)
                for container in ("_parameters", "_buffers"):
                    members = attributes.get(container)
                    if isinstance(members, dict):
                        for key, item in members.items():
                            if isinstance(key, str):
                                children.append((item, (*parts, key), optimizer, cls, module_groups))
                submodules = attributes["_modules"]
                assert isinstance(submodules, dict)  # _is_module checked it
                for key, item in submodules.items():
                    if isinstance(key, str):
                        children.append((item, (*parts, key), optimizer, None, 1))
            else:
                # TorchScript objects and other pickled instances: every attribute, then any items.
                module_owner = cls if _is_torchscript_object(value) else None
                object_groups = _groups(attributes)
                for key, item in attributes.items():
                    children.append((item, (*parts, key), optimizer, module_owner, object_groups))
                for position, (key, item) in enumerate(value.items.items()):
                    children.append((item, (*parts, _component(key, position)), optimizer, None, 1))
                for position, item in enumerate(value.listitems):
                    children.append((item, (*parts, str(position)), optimizer, None, 1))
        for child, child_parts, child_optimizer, child_owner, child_groups in reversed(children):
            stack.append((child, child_parts, child_optimizer, child_owner, child_groups, inner))
    return found


def _weights_key(root: object) -> str | None:
    """The conventional key under which a checkpoint dict keeps its model's weights, if it has one."""
    if not isinstance(root, dict):
        return None
    for key in _WEIGHT_KEYS:
        value = root.get(key)
        if isinstance(value, dict) and any(isinstance(item, TensorHandle) for item in value.values()):
            return key
        if isinstance(value, Placeholder) and _is_module(_attributes(value)):
            return key
    return None


def _name_tensors(root: object, path: Path) -> list[_Found]:
    found = _walk(root, path)
    key = _weights_key(root)
    if key is None:
        return found
    prefix = key + "."
    stripped = [
        _Found(item.name[len(prefix) :], item.handle, item.optimizer, item.owner, item.attribute, item.groups)
        if item.name.startswith(prefix)
        else item
        for item in found
    ]
    names = [item.name for item in stripped]
    return stripped if len(set(names)) == len(names) else found


# ----------------------------------------------------------------------------------------------------
# TensorInfo.


def _class_short_name(owner: str) -> str:
    """The class name without its module (`__torch__.torch.nn.modules.linear.___torch_mangle_3.Linear`)."""
    return owner.rsplit(".", 1)[-1]


def _hint(item: _Found) -> FormatHint:
    if item.owner is None:
        return FormatHint(layout=Layout.OUT_IN)
    short = _class_short_name(item.owner)
    module_kind = _MODULE_KINDS.get(short)
    kind: WeightKind | None = module_kind
    if module_kind is WeightKind.NORM:
        kind = WeightKind.NORM
    elif item.attribute == "bias" or item.attribute.startswith("bias_") or item.attribute.endswith("_bias"):
        kind = WeightKind.BIAS
    elif (
        module_kind is WeightKind.CONV
        and item.groups > 1
        and len(item.handle.shape) >= 2
        and (item.handle.shape[1] == 1)
    ):
        kind = WeightKind.DEPTHWISE_CONV
    elif (
        module_kind is not None
        and item.attribute not in ("weight", "in_proj_weight")
        and not (module_kind is WeightKind.RECURRENT and item.attribute.startswith("weight_"))
    ):
        kind = None  # buffers and extra parameters of a known module: let the name and shape decide
    layer_name = item.name.rsplit(".", 1)[0] if "." in item.name else None
    return FormatHint(kind=kind, layout=Layout.OUT_IN, op=short, layer_name=layer_name, groups=item.groups)


def _skip_reason(item: _Found) -> str | None:
    handle = item.handle
    if item.optimizer:
        return _OPTIMIZER_SKIP
    if handle.quantized:
        return f"quantized tensor ({handle.element.name}): its scale and zero point are not read"
    if handle.element.dtype is DType.OTHER:
        return f"{handle.element.name} values are not read"
    return None


def _view_key(handle: TensorHandle) -> tuple[object, ...]:
    storage = handle.storage
    return (storage.key, storage.base, handle.element.name, handle.offset, handle.shape, handle.stride)


def _entry(item: _Found, archive: _Archive, path: Path) -> _Entry:
    """The info for one tensor, after checking its view against the storage record that holds it."""
    handle = item.handle
    storage = handle.storage
    record = archive.records.get(storage.key)
    if record is None:
        where = (
            f"{archive.prefix}/data/{storage.key}" if archive.prefix else f"legacy storage {storage.key!r}"
        )
        raise CorruptFileError(
            f"tensor {item.name!r} uses storage {where}, which the file does not hold", path=path
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
            f"tensor {item.name!r} (offset {handle.offset}, size {list(handle.shape)}, stride "
            f"{list(handle.stride)}) reaches byte {end} of storage {record.label}, which holds "
            f"{storage_bytes} bytes",
            path=path,
        )
    origin = (
        f"{record.label} @ {record.offset + start:#x}"
        if record.offset is not None
        else f"{record.label} (compressed) + {start}"
    )
    dtype = handle.element.dtype
    encoding = handle.element.name if (dtype in (DType.OTHER, DType.COMPLEX) or handle.quantized) else None
    info = TensorInfo(
        name=item.name,
        shape=handle.shape,
        dtype=dtype,
        nbytes=handle.numel * itemsize,
        origin=origin,
        encoding=encoding,
        hint=_hint(item),
        skip_reason=_skip_reason(item),
    )
    return _Entry(info, handle, record)


def _build_entries(archive: _Archive, path: Path) -> list[_Entry]:
    """One entry per distinct view, in first-reference order; the other names of a view become aliases.

    A view reached both through optimizer state and elsewhere (a pickled optimizer object holds the very
    parameters of the model) is named by its first non-optimizer path, so the weight is analysed.
    """
    found = _name_tensors(archive.root, path)
    primaries: list[_Found] = []
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
        _Entry(_with_aliases(entry.info, tuple(names)), entry.handle, entry.record)
        for entry, names in zip(entries, aliases, strict=True)
    ]


def _with_aliases(info: TensorInfo, names: tuple[str, ...]) -> TensorInfo:
    return dataclasses.replace(info, aliases=names) if names else info


def _scalar_metadata(root: object, archive: _Archive) -> dict[str, str]:
    metadata = {
        "container": "torchscript" if archive.torchscript else ("zip" if archive.prefix else "legacy")
    }
    if archive.prefix:
        metadata["archive"] = archive.prefix
    if isinstance(root, dict):
        for key, value in root.items():
            if isinstance(key, str) and isinstance(value, (str, int, float, bool)) and len(metadata) < 64:
                metadata[key] = str(value)[:200]
    elif isinstance(root, Placeholder):
        metadata["class"] = placeholder_name(root) or ""
    return metadata


# ----------------------------------------------------------------------------------------------------
# The reader.


class TorchReader(Reader):
    """An open PyTorch checkpoint (zip, TorchScript or legacy); tensors are read on demand."""

    format_name = "pytorch"

    def __init__(self, path: Path, archive: _Archive) -> None:
        super().__init__(path)
        self._archive = archive
        self._entries = _build_entries(archive, path)
        self._metadata = _scalar_metadata(archive.root, archive)
        self._closed = False

    @property
    def format(self) -> str:
        """ "torchscript" for `torch.jit.save` archives, "pytorch" otherwise."""
        return "torchscript" if self._archive.torchscript else "pytorch"

    def tensors(self) -> Iterator[TensorRef]:
        for entry in self._entries:
            yield TensorRef(entry.info, partial(self._fetch, entry))

    def metadata(self) -> Mapping[str, str]:
        return dict(self._metadata)

    def close(self) -> None:
        """Mark the reader closed; memory maps live only inside one `read()`, so nothing else is held."""
        self._closed = True

    def _fetch(self, entry: _Entry) -> npt.NDArray[np.floating]:
        if self._closed:
            raise FormatError("reader closed", path=self.path)
        info, handle = entry.info, entry.handle
        if info.skip_reason is not None:
            raise TensorError(f"tensor {info.name!r} is not read: {info.skip_reason}", path=self.path)
        if not info.dtype.is_float:
            raise TensorError(
                f"{info.dtype.value} values are not floating point and are not analysed", path=self.path
            )
        if handle.numel == 0:
            return np.zeros(handle.shape, dtype=np.float32)
        return self._strided(entry)

    def _strided(self, entry: _Entry) -> npt.NDArray[np.floating]:
        handle, record = entry.handle, entry.record
        itemsize = handle.element.itemsize
        start = handle.storage.base * handle.storage.element.itemsize + handle.offset * itemsize
        span = handle.reach * itemsize
        raw = self._record_bytes(record, start, span)
        elements = raw.view(numpy_storage_dtype(handle.element.dtype))
        view = np.lib.stride_tricks.as_strided(
            elements,
            shape=handle.shape,
            strides=tuple(step * itemsize for step in handle.stride),
            writeable=False,
        )
        values = widen(view, handle.element.dtype)
        return np.negative(values) if handle.negated else values

    def _record_bytes(self, record: _Record, start: int, span: int) -> npt.NDArray[np.uint8]:
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
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError) as exc:
            raise CorruptFileError(f"cannot read {record.label} ({exc})", path=self.path) from exc
        if len(data) != span:
            raise CorruptFileError(f"{record.label} ends after {len(data)} of {span} bytes", path=self.path)
        return np.frombuffer(data, dtype=np.uint8)


class ShardedTorchReader(Reader):
    """A Hugging Face sharded `.bin` checkpoint: one reader per shard, yielded in the index's shard order."""

    format_name = "pytorch"

    def __init__(self, path: Path, shards: list[TorchReader], metadata: dict[str, str]) -> None:
        super().__init__(path)
        self._shards = shards
        self._metadata = metadata

    def tensors(self) -> Iterator[TensorRef]:
        for shard in self._shards:
            yield from shard.tensors()

    def metadata(self) -> Mapping[str, str]:
        return dict(self._metadata)

    def close(self) -> None:
        for shard in self._shards:
            shard.close()


def _open_index(index_path: Path) -> ShardedTorchReader:
    size = _file_size(index_path)
    if size > MAX_INDEX_BYTES:
        raise CorruptFileError(f"the index is {size} bytes, more than {MAX_INDEX_BYTES}", path=index_path)
    try:
        document = json.loads(index_path.read_bytes())
    except (OSError, ValueError, RecursionError) as exc:
        raise CorruptFileError(f"the index is not valid JSON ({exc})"[:300], path=index_path) from exc
    weight_map = document.get("weight_map") if isinstance(document, dict) else None
    if not isinstance(weight_map, dict) or not all(
        isinstance(name, str) and isinstance(shard, str) for name, shard in weight_map.items()
    ):
        raise CorruptFileError("the index has no weight_map of tensor names to shard files", path=index_path)
    folder = index_path.parent
    shard_names = list(dict.fromkeys(weight_map.values()))
    readers: list[TorchReader] = []
    try:
        for shard_name in shard_names:
            shard_path = resolve_inside(folder, shard_name, what="the index's shard", path=index_path)
            if not shard_path.is_file():
                raise CorruptFileError(
                    f"shard {shard_name!r} named by the index does not exist", path=index_path
                )
            reader = _open_file(shard_path)
            if reader.format != "pytorch":
                raise UnsupportedFormatError(
                    f"shard {shard_name!r} is a TorchScript archive", path=index_path
                )
            readers.append(reader)
            names = {ref.info.name for ref in reader.tensors()}
            names.update(alias for ref in reader.tensors() for alias in ref.info.aliases)
            missing = [
                name for name, owner in weight_map.items() if owner == shard_name and name not in names
            ]
            if missing:
                raise CorruptFileError(
                    f"the index places {missing[0]!r} in {shard_name!r}, which does not hold it",
                    path=index_path,
                )
    except BaseException:
        for reader in readers:
            reader.close()
        raise
    raw_metadata = document.get("metadata")
    metadata = {"shards": str(len(shard_names))}
    if isinstance(raw_metadata, dict):
        metadata.update({str(key): str(value)[:200] for key, value in list(raw_metadata.items())[:64]})
    return ShardedTorchReader(index_path, readers, metadata)


def _find_index(folder: Path) -> Path | None:
    indexes = sorted(path for path in folder.glob("*" + _INDEX_SUFFIX) if not path.name.startswith("."))
    if len(indexes) > 1:
        raise UnsupportedFormatError(
            f"the folder holds {len(indexes)} .bin index files; pass the one to read", path=folder
        )
    return indexes[0] if indexes else None


def _open_file(path: Path) -> TorchReader:
    try:
        with path.open("rb") as handle:
            head = handle.read(512)
    except OSError as exc:
        raise CorruptFileError(f"cannot read the file: {exc.strerror or exc}", path=path) from exc
    if head.startswith(_ZIP_LOCAL_SIGNATURE) or head.startswith(b"PK\x05\x06"):
        return TorchReader(path, _open_zip(path))
    if _LEGACY_MAGIC_BYTES in head[:16] or b"119547037146038801333356" in head[:40]:
        return TorchReader(path, _open_legacy(path))
    if len(head) >= 262 and head[257:262] == b"ustar":
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
        index = _find_index(path)
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
    if head.startswith(_ZIP_LOCAL_SIGNATURE) and len(head) >= 30:
        (name_length,) = struct.unpack_from("<H", head, 26)
        first_name = head[30 : 30 + name_length]
        return _TORCH_MEMBER.match(first_name) is not None
    return _LEGACY_MAGIC_BYTES in head[:16] or b"119547037146038801333356" in head[:40]


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
