"""Restricted unpickling of PyTorch pickles: the object graph, never importing or calling what it names.

`torch.save` writes a pickle whose tensors are calls to rebuild functions (`torch._utils._rebuild_tensor_v2`
and friends) over storages referenced by persistent ids. `load_pickle` rebuilds that graph with
`SafeUnpickler`, a `pickle.Unpickler` whose `find_class` never imports. What each global becomes is
decided by `formats._pickle_policy`, in three tiers: allowed globals are our own stand-ins
(`formats._torch_stand_ins`: a rebuilt tensor is a `TensorHandle` that records storage, offset, size and
stride; inert builtins and containers) or inert `Placeholder`s of known-safe value types; dangerous ones
(that would run code, touch files or the network if the file were loaded the usual way) are a refusal
(`UnsafeFileError`); unknown ones become placeholders too, listed in `unknown_globals` for the report's
warnings, or a refusal under `--strict-pickles`. Nothing named in the file is ever imported, called or
looked up as an attribute.

Before the unpickler sees the bytes, `prescan` walks the opcode stream with `pickletools.genops` (a parser
that executes nothing) to bound the opcode count and memo indices and to refuse opcodes we have no use for;
so a stream that is broken or hostile is refused before any object is built (the "nullifAI" lesson: a
payload that runs before the stream errors).

Non-goals: reading tensor bytes (see `formats.torch_reader`), deciding names (the reader walks the graph),
and running anything a pickle asks for, ever.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import re
from pathlib import Path
from typing import BinaryIO

from formats._binary import MAX_ELEMENTS, read_exact
from formats._messages import describe_exception
from formats._pickle_policy import (
    Tier,
    dangerous_refusal,
    decide,
    normalise,
    refusal,
    strict_refusal,
    unknown_is_refused,
)
from formats._torch_records import StorageRef, StorageType, placeholder_class
from formats._torch_stand_ins import stand_in
from formats.errors import CorruptFileError, UnsafeFileError, WWInspectError

__all__ = [
    "MAX_OPCODES",
    "MAX_PICKLE_BYTES",
    "SafeUnpickler",
    "load_pickle",
    "prescan",
    "read_next_pickle",
    "refusal",
]

#: Largest pickle we unpickle (data.pkl of a real checkpoint is kilobytes to a few megabytes).
MAX_PICKLE_BYTES = 1 << 30
#: Most opcodes we accept in one pickle; a 100k-tensor checkpoint needs about 3 million.
MAX_OPCODES = 50_000_000
#: Most distinct globals one pickle may name (each becomes a small class).
MAX_GLOBALS = 10_000
#: Longest module or attribute name we look at.
MAX_GLOBAL_NAME = 512
#: Longest storage key (zip record names are "0", "1"...; legacy keys are decimal addresses).
MAX_STORAGE_KEY = 128

# Opcodes that real torch pickles never contain and that only widen what a file can ask of us:
# the extension registry (EXT*) resolves integers to globals outside find_class's arguments, and the
# protocol-0 string persistent id is a second spelling of BINPERSID that torch does not write.
_REFUSED_OPCODES = frozenset({"EXT1", "EXT2", "EXT4", "PERSID"})
_MEMO_OPCODES = frozenset({"PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET"})
_STORAGE_KEY = re.compile(r"[A-Za-z0-9_.\-]+")


def _is_storage_key(key: object) -> bool:
    return (
        isinstance(key, str) and 0 < len(key) <= MAX_STORAGE_KEY and _STORAGE_KEY.fullmatch(key) is not None
    )


class SafeUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` whose globals are stand-ins, placeholders or refusals, and never imports."""

    def __init__(self, data: bytes, *, what: str, path: Path | None, legacy: bool = False) -> None:
        super().__init__(io.BytesIO(data), encoding="latin1")
        self._what = what
        self._path = path
        self._legacy = legacy
        self._globals_seen: set[str] = set()
        self._strict = unknown_is_refused()
        #: Globals outside the allow-list that became placeholders, in first-seen order.
        self.unknown_globals: list[str] = []
        #: Every storage the pickle referenced, by key, in first-reference order.
        self.storages: dict[str, StorageRef] = {}
        #: Classes named by legacy 'module' persistent ids (whole-module pickles).
        self.globals_named: list[str] = []

    def find_class(self, module: str, name: str) -> object:
        if not isinstance(module, str) or not isinstance(name, str):
            raise CorruptFileError(f"{self._what} names a global that is not text", path=self._path)
        if len(module) > MAX_GLOBAL_NAME or len(name) > MAX_GLOBAL_NAME:
            raise CorruptFileError(
                f"{self._what} names a global longer than {MAX_GLOBAL_NAME} characters", path=self._path
            )
        module, name = normalise(module, name)
        full = f"{module}.{name}"
        decision = decide(module, name)
        if decision.tier is Tier.DANGEROUS:
            raise UnsafeFileError(dangerous_refusal(full, self._what, decision), path=self._path)
        if decision.tier is Tier.UNKNOWN:
            if self._strict:
                raise UnsafeFileError(strict_refusal(full, self._what), path=self._path)
            if full not in self._globals_seen:
                self.unknown_globals.append(full)
        self._globals_seen.add(full)
        if len(self._globals_seen) > MAX_GLOBALS:
            raise CorruptFileError(f"{self._what} names more than {MAX_GLOBALS} globals", path=self._path)
        ours = stand_in(module, name)
        return ours if ours is not None else placeholder_class(full)

    def persistent_load(self, pid: object) -> object:
        if not isinstance(pid, tuple) or not pid:
            raise CorruptFileError(f"{self._what} has a persistent id that is not a tuple", path=self._path)
        typename = pid[0].decode("ascii", "replace") if isinstance(pid[0], bytes) else pid[0]
        if typename == "module" and self._legacy and len(pid) == 4:
            # Legacy whole-module pickles persist the module's class with its source code; the class is a
            # placeholder already (it went through find_class), and the source is never looked at.
            return pid[1]
        if typename != "storage":
            raise CorruptFileError(
                f"{self._what} has an unknown persistent id {str(typename)[:40]!r}", path=self._path
            )
        if self._legacy:
            if len(pid) != 6:
                raise CorruptFileError(f"{self._what} has a malformed storage id", path=self._path)
            _, storage_type, key, location, numel, view = pid
        else:
            if len(pid) != 5:
                raise CorruptFileError(f"{self._what} has a malformed storage id", path=self._path)
            _, storage_type, key, location, numel = pid
            view = None
        if isinstance(location, bytes):
            location = location.decode("ascii", "replace")
        if not isinstance(storage_type, StorageType):
            raise CorruptFileError(f"{self._what} names a storage of an unknown type", path=self._path)
        if not _is_storage_key(key):
            raise CorruptFileError(
                f"{self._what} has an invalid storage key {str(key)[:40]!r}", path=self._path
            )
        if type(numel) is not int or not 0 <= numel <= MAX_ELEMENTS:
            raise CorruptFileError(f"storage {key!r} declares an invalid size {numel!r}", path=self._path)
        root = self.storages.get(key)
        if root is None:
            root = StorageRef(key, storage_type.element, numel, 0, str(location)[:64])
            self.storages[key] = root
        if view is None:
            return root
        # Legacy storage views: (view key, element offset, element count) inside the root storage.
        if (
            not isinstance(view, tuple)
            or len(view) != 3
            or type(view[1]) is not int
            or type(view[2]) is not int
            or view[1] < 0
            or view[2] < 0
        ):
            raise CorruptFileError(f"storage {key!r} has a malformed view", path=self._path)
        if view[1] + view[2] > root.numel:
            raise CorruptFileError(
                f"storage view {view[1]}+{view[2]} lies outside storage {key!r} of {root.numel} elements",
                path=self._path,
            )
        return StorageRef(key, root.element, view[2], view[1], root.location)


def prescan(data: bytes, *, what: str, path: Path | None) -> None:
    """Parse the opcode stream without executing it; refuse what no torch pickle needs.

    Raises:
        CorruptFileError: malformed stream, too many opcodes, a memo index beyond the opcode count, or an
            opcode we refuse (extension registry, protocol-0 persistent ids).
    """
    count = 0
    try:
        for opcode, argument, _position in pickletools.genops(data):
            count += 1
            if count > MAX_OPCODES:
                raise CorruptFileError(f"{what} has more than {MAX_OPCODES} pickle opcodes", path=path)
            if opcode.name in _REFUSED_OPCODES:
                raise CorruptFileError(
                    f"{what} uses the pickle opcode {opcode.name}, which torch never writes", path=path
                )
            if opcode.name in _MEMO_OPCODES and (
                type(argument) is not int or not 0 <= argument <= MAX_OPCODES
            ):
                raise CorruptFileError(f"{what} uses an out-of-range pickle memo index", path=path)
            if opcode.name == "PROTO" and (
                type(argument) is not int or not 0 <= argument <= pickle.HIGHEST_PROTOCOL
            ):
                raise CorruptFileError(f"{what} claims pickle protocol {argument}", path=path)
    except WWInspectError:
        raise
    except Exception as exc:  # genops reports every malformation as ValueError/EOFError/... with words
        raise CorruptFileError(
            f"{what} is not a well-formed pickle ({describe_exception(exc)})", path=path
        ) from exc


def load_pickle(
    data: bytes, *, what: str, path: Path | None, legacy: bool = False
) -> tuple[object, SafeUnpickler]:
    """Rebuild the object graph of one pickle.

    Returns:
        The root object and the unpickler (whose `storages` lists every storage referenced).

    Raises:
        UnsafeFileError: the pickle names a refused global.
        CorruptFileError: the pickle is malformed or asks for something inconsistent.
    """
    if len(data) > MAX_PICKLE_BYTES:
        raise CorruptFileError(
            f"{what} is {len(data)} bytes, more than the limit {MAX_PICKLE_BYTES}", path=path
        )
    prescan(data, what=what, path=path)
    unpickler = SafeUnpickler(data, what=what, path=path, legacy=legacy)
    try:
        root = unpickler.load()
    except WWInspectError as exc:
        if exc.path is None:
            exc.path = path
        raise
    except RecursionError as exc:
        raise CorruptFileError(f"{what} nests objects too deeply", path=path) from exc
    except MemoryError as exc:
        raise CorruptFileError(f"{what} asks for more memory than is available", path=path) from exc
    except Exception as exc:  # the unpickler's own errors: bad stack, wrong types for an opcode, ...
        raise CorruptFileError(
            f"{what} could not be unpickled ({describe_exception(exc)})", path=path
        ) from exc
    return root, unpickler


def read_next_pickle(handle: BinaryIO, what: str, path: Path) -> bytes:
    """The bytes of the pickle starting at the handle's position, found by parsing (not running) it.

    Legacy torch files are pickles back to back; their boundaries are known only by parsing each.
    """
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
            f"{what} is not a well-formed pickle ({describe_exception(exc)})", path=path
        ) from exc
    end = handle.tell()
    handle.seek(start)
    return read_exact(handle, end - start, what=what, path=path)
