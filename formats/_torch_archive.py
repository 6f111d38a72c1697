"""Where a PyTorch checkpoint keeps its pickle and its storages: zip archives and legacy files.

- Zip archives written by `torch.save` since 1.6 (`.pt`, `.pth`, `.bin`, `.ckpt`) and by `torch.jit.save`:
  `<prefix>/data.pkl` plus one record `<prefix>/data/<key>` per storage, `<prefix>/byteorder`, and for
  TorchScript `code/` and `constants.pkl`. Members are checked by `formats._zip`; a stored record is read
  in place at the offset its local header gives, a compressed one through zipfile's reader. The other
  pickles `torch.jit.load` would unpickle (`constants.pkl`, the `.debug_pkl` source maps) go through the
  same policy as data.pkl, though nothing of them is used.
- Legacy files (torch.save before 1.6, or `_use_new_zipfile_serialization=False`): five pickles back to
  back (magic number, protocol, system info, the object, the storage keys) followed by the storages, each
  an int64 element count and its bytes.

Either way the result is an `Archive`: the unpickled root object, the storages it references, and where
each storage's bytes are (`Record`). Nothing here names tensors or reads tensor bytes.
"""

from __future__ import annotations

import re
import struct
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from formats._binary import file_size_of, read_exact
from formats._pickle_policy import unknown_warning
from formats._torch_records import StorageRef
from formats._unpickler import MAX_PICKLE_BYTES, load_pickle, read_next_pickle
from formats._zip import checked_members, first_member_name, open_archive, read_member, stored_offset
from formats.errors import CorruptFileError, UnknownFormatError, UnsupportedFormatError

# torch.serialization.MAGIC_NUMBER, and the first pickles of a legacy file as torch writes them.
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001
_LEGACY_MAGIC_BYTES = LEGACY_MAGIC.to_bytes(10, "little")
# The same number as protocol 0 writes it, in decimal text.
_LEGACY_MAGIC_TEXT = str(LEGACY_MAGIC).encode()
#: Largest byteorder record: "little" or "big", maybe with a newline.
MAX_BYTEORDER_BYTES = 16

# Members a torch archive writes; the first member of the zip is one of them.
_TORCH_MEMBER = re.compile(
    rb"[^/]+/(data\.pkl|data/|\.data/|version|byteorder|code/|constants\.pkl|\.format_version|"
    rb"\.storage_alignment|extra/)"
)
_DATA_PICKLE = re.compile(r"[^/]+/data\.pkl")
# The other pickles of an archive that torch.jit.load unpickles.
_OTHER_PICKLES = (".pkl", ".debug_pkl")


@dataclass(frozen=True, slots=True)
class Record:
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
class Archive:
    """An unpickled checkpoint and where its storages' bytes are.

    Attributes:
        root: the unpickled object (a state dict, a module placeholder, a checkpoint dict...).
        storages: every storage the pickle references, by key.
        records: where the bytes of each storage the file holds are, by key.
        prefix: the zip archive's folder name ("archive"); "" for legacy files.
        torchscript: written by `torch.jit.save`.
        warnings: one line per pickle naming globals outside the allow-list (`formats._pickle_policy`).
    """

    root: object
    storages: dict[str, StorageRef]
    records: dict[str, Record]
    prefix: str
    torchscript: bool
    warnings: tuple[str, ...] = ()

    @property
    def container(self) -> str:
        """ "torchscript", "zip" or "legacy"."""
        return "torchscript" if self.torchscript else ("zip" if self.prefix else "legacy")

    def storage_label(self, key: str) -> str:
        """Where storage `key` would be, for messages."""
        return f"{self.prefix}/data/{key}" if self.prefix else f"legacy storage {key!r}"


def looks_like_zip_checkpoint(head: bytes) -> bool:
    """A zip whose first member is a torch archive record (from the first bytes of the file)."""
    first_name = first_member_name(head)
    return first_name is not None and _TORCH_MEMBER.match(first_name) is not None


def looks_like_legacy(head: bytes) -> bool:
    """The legacy magic number as the first pickle (binary protocols, or protocol 0's decimal text)."""
    return _LEGACY_MAGIC_BYTES in head[:16] or _LEGACY_MAGIC_TEXT in head[:40]


def open_zip_archive(path: Path) -> Archive:
    """Check a torch zip archive's members, unpickle its data.pkl, and locate its storage records."""
    file_size = file_size_of(path)
    with open_archive(path) as archive:
        members = checked_members(archive, file_size, path)
        pickles = [name for name in members if _DATA_PICKLE.fullmatch(name)]
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
        byteorder = members.get(f"{prefix}/byteorder")
        if byteorder is not None:
            if byteorder.file_size > MAX_BYTEORDER_BYTES:
                raise CorruptFileError("the byteorder record is not 'little' or 'big'", path=path)
            order = read_member(archive, byteorder, MAX_BYTEORDER_BYTES, path).strip()
            if order != b"little":
                raise UnsupportedFormatError(f"a {order[:8]!r}-endian checkpoint is not supported", path=path)
        data = read_member(archive, members[pickles[0]], MAX_PICKLE_BYTES, path)
        root, unpickler = load_pickle(data, what=pickles[0], path=path)
        warnings = _unknown_warnings(pickles[0], unpickler.unknown_globals)
        for name, info in members.items():
            if name != pickles[0] and name.startswith(f"{prefix}/") and name.endswith(_OTHER_PICKLES):
                other_data = read_member(archive, info, MAX_PICKLE_BYTES, path)
                _, other = load_pickle(other_data, what=name, path=path)
                warnings += _unknown_warnings(name, other.unknown_globals)
        records: dict[str, Record] = {}
        with path.open("rb") as handle:
            for key in unpickler.storages:
                member = f"{prefix}/data/{key}"
                record_info = members.get(member)
                if record_info is None:
                    continue  # reported when a tensor needs it, with the tensor's name
                if record_info.compress_type == zipfile.ZIP_STORED:
                    offset = stored_offset(handle, record_info, file_size, path)
                    records[key] = Record(member, record_info.file_size, offset)
                else:
                    records[key] = Record(member, record_info.file_size, None, member)
        torchscript = f"{prefix}/constants.pkl" in members or any(
            name.startswith(f"{prefix}/code/") for name in members
        )
    return Archive(root, unpickler.storages, records, prefix, torchscript, warnings)


def _unknown_warnings(what: str, names: list[str]) -> tuple[str, ...]:
    return (unknown_warning(names, what),) if names else ()


def open_legacy_archive(path: Path) -> Archive:
    """Unpickle a legacy file's five pickles and locate the storages that follow them."""
    file_size = file_size_of(path)
    with path.open("rb") as handle:
        magic, _ = load_pickle(
            read_next_pickle(handle, "the legacy magic number", path), what="the legacy header", path=path
        )
        if magic != LEGACY_MAGIC:
            raise UnknownFormatError(
                "a pickle that is not a PyTorch checkpoint (wrong magic number)", path=path
            )
        protocol, _ = load_pickle(
            read_next_pickle(handle, "the legacy protocol version", path), what="the legacy header", path=path
        )
        if protocol != LEGACY_PROTOCOL_VERSION:
            raise UnsupportedFormatError(
                f"legacy checkpoint protocol {protocol!r} is not supported", path=path
            )
        sys_info, _ = load_pickle(
            read_next_pickle(handle, "the legacy system info", path), what="the legacy header", path=path
        )
        if isinstance(sys_info, Mapping) and sys_info.get("little_endian") is False:
            raise UnsupportedFormatError("a big-endian legacy checkpoint is not supported", path=path)
        root, unpickler = load_pickle(
            read_next_pickle(handle, "the checkpoint pickle", path),
            what="the checkpoint pickle",
            path=path,
            legacy=True,
        )
        keys, _ = load_pickle(
            read_next_pickle(handle, "the storage key list", path), what="the storage key list", path=path
        )
        if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
            raise CorruptFileError("the legacy storage key list is not a list of keys", path=path)
        if len(set(keys)) != len(keys):
            raise CorruptFileError("the legacy storage key list names a storage twice", path=path)
        records: dict[str, Record] = {}
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
            records[key] = Record(f"legacy storage {key!r}", nbytes, offset + 8)
            offset += 8 + nbytes
    warnings = _unknown_warnings("the checkpoint pickle", unpickler.unknown_globals)
    return Archive(root, unpickler.storages, records, "", False, warnings)
