"""The only code that hands an untrusted HDF5 file to libhdf5; it runs in a child process.

libhdf5 has had a steady stream of memory-safety bugs on crafted files (CVE-2025-2915, -6750, -6816,
-7069, -2309, -44905...), and a crash or an endless loop inside C code cannot be caught in the process
that runs it. Fuzzing our own Keras fixtures found a file on which reading one attribute never returns.
So `formats.hdf5_reader` starts this script as a separate Python process and talks to it over pipes: the
worker walks the file once and sends back a catalogue of groups, attributes and datasets (including the
byte offset of each contiguous dataset, which the parent then reads itself), and reads chunked or
compact datasets on request. A crash or a timeout in here becomes exit code 3 in the parent.

This file imports only the standard library, numpy and h5py: the parent runs it by path with
`runpy.run_path` under `python -I`, so neither the current folder nor the `formats` package is on its
import path. Messages are framed as an 8-byte little-endian length followed by UTF-8 JSON; an array is a
JSON header followed by a second frame of raw bytes. Nothing is pickled.

Requests (one JSON object per line on stdin):
    {"op": "open", "path": str, "member": str | null, "window": [start, size] | null}
    {"op": "read", "dataset": str, "max_bytes": int}
    {"op": "close"}
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import struct
import sys
import zipfile
from typing import Any, BinaryIO

#: Objects (groups + datasets + links) walked before giving up on a file.
MAX_OBJECTS = 1_000_000
#: Deepest group nesting walked.
MAX_DEPTH = 256
#: Longest attribute value kept (Keras stores its model config as one string attribute).
MAX_ATTRIBUTE_BYTES = 64 * 1024 * 1024
#: Longest array attribute kept, in elements (layer_names, weight_names).
MAX_ATTRIBUTE_ITEMS = 1_000_000


class _Window(io.RawIOBase):
    """A read-only, seekable view of `size` bytes of `handle` starting at `start` (a stored zip member)."""

    def __init__(self, handle: BinaryIO, start: int, size: int) -> None:
        super().__init__()
        self._handle = handle
        self._start = start
        self._size = size
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        wanted = min(len(view), max(0, self._size - self._position))
        if wanted == 0:
            return 0
        self._handle.seek(self._start + self._position)
        data = self._handle.read(wanted)
        view[: len(data)] = data
        self._position += len(data)
        return len(data)


def _plain(value: Any) -> Any:
    """An attribute value as JSON: strings decoded, small arrays as lists, anything else described."""
    import numpy as np

    if isinstance(value, bytes):
        return value[:MAX_ATTRIBUTE_BYTES].decode("utf-8", "replace")
    if isinstance(value, str):
        return value[:MAX_ATTRIBUTE_BYTES]
    if isinstance(value, np.ndarray):
        if value.size > MAX_ATTRIBUTE_ITEMS:
            return {"unread": f"array attribute of {value.size} elements"}
        if value.dtype.kind in "OSU":
            return [_plain(item) for item in value.reshape(-1).tolist()]
        if value.dtype.kind in "biuf":
            return value.reshape(-1).tolist() if value.ndim else value.item()
        return {"unread": f"attribute of type {value.dtype}"}
    if isinstance(value, np.generic):
        return value.item() if value.dtype.kind in "biuf" else str(value)
    if isinstance(value, bool | int | float) or value is None:
        return value
    return {"unread": f"attribute of type {type(value).__name__}"}


def _attributes(obj: Any) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key in obj.attrs:
        try:
            result[str(key)] = _plain(obj.attrs[key])
        except (OSError, TypeError, ValueError, KeyError) as exc:
            result[str(key)] = {"unread": f"cannot read attribute: {exc}"}
    return result


def _dataset(dataset: Any) -> dict[str, Any]:
    import h5py

    entry: dict[str, Any] = {
        "shape": [int(dim) for dim in dataset.shape] if dataset.shape is not None else None
    }
    dtype = dataset.dtype
    entry["dtype"] = dtype.str if dtype.kind in "biuf" and dtype.fields is None else None
    entry["dtype_text"] = str(dtype)
    plist = dataset.id.get_create_plist()
    layout = plist.get_layout()
    entry["layout"] = {
        h5py.h5d.CONTIGUOUS: "contiguous",
        h5py.h5d.COMPACT: "compact",
        h5py.h5d.CHUNKED: "chunked",
    }.get(layout, "virtual" if dataset.is_virtual else f"layout {layout}")
    entry["virtual"] = bool(dataset.is_virtual)
    entry["external_files"] = int(plist.get_external_count())
    entry["filters"] = int(plist.get_nfilters())
    entry["storage"] = int(dataset.id.get_storage_size())
    offset = dataset.id.get_offset()
    entry["offset"] = int(offset) if offset is not None else None
    return entry


def catalogue(root: Any) -> dict[str, Any]:
    """Walk every group from the root once: attributes, datasets, and links (never followed)."""
    import h5py

    groups: dict[str, Any] = {}
    datasets: dict[str, Any] = {}
    links: dict[str, Any] = {}
    notes: list[str] = []
    broken: list[str] = []
    seen: dict[tuple[int, int], str] = {}
    count = 0

    def key_of(obj: Any) -> tuple[int, int]:
        info = h5py.h5o.get_info(obj.id)
        return (int(info.fileno), int(info.addr))

    # An explicit stack (not recursion) with a seen-set of object addresses: hard links can form cycles.
    stack: list[tuple[str, Any, int]] = [("/", root, 0)]
    seen[key_of(root)] = "/"
    while stack:
        path, group, depth = stack.pop()
        # The object header address: libhdf5 allocates headers in creation order, which is the only
        # trace of the order Keras wrote its layers in (links are listed by name).
        groups[path] = {"attrs": _attributes(group), "members": [], "addr": key_of(group)[1]}
        names = list(group.keys())
        children: list[tuple[str, Any, int]] = []
        for name in names:
            count += 1
            if count > MAX_OBJECTS:
                raise OverflowError(f"more than {MAX_OBJECTS} objects in the file")
            child_path = f"{path.rstrip('/')}/{name}"
            groups[path]["members"].append(name)
            link = group.get(name, getlink=True)
            if isinstance(link, h5py.SoftLink):
                links[child_path] = {"type": "soft", "target": str(link.path)}
                continue
            if isinstance(link, h5py.ExternalLink):
                # Never followed: it names another file, possibly outside the model's folder.
                links[child_path] = {"type": "external", "file": str(link.filename), "target": str(link.path)}
                continue
            try:
                obj = group[name]
            except (KeyError, OSError, ValueError) as exc:
                broken.append(f"{child_path} cannot be opened ({exc})")
                continue
            key = key_of(obj)
            if key in seen:
                links[child_path] = {"type": "hard", "target": seen[key]}
                continue
            seen[key] = child_path
            if isinstance(obj, h5py.Dataset):
                datasets[child_path] = _dataset(obj)
                datasets[child_path]["addr"] = key[1]
            elif isinstance(obj, h5py.Group):
                if depth + 1 > MAX_DEPTH:
                    notes.append(f"{child_path}: nested deeper than {MAX_DEPTH} groups, not walked")
                    continue
                children.append((child_path, obj, depth + 1))
        # Depth first, in the file's link order.
        stack.extend(reversed(children))
    return {"groups": groups, "datasets": datasets, "links": links, "notes": notes, "broken": broken}


class _Channel:
    """Framed messages on a private copy of stdout; fd 1 itself is pointed at stderr so that anything a
    library prints cannot corrupt the protocol."""

    def __init__(self) -> None:
        self._out = os.fdopen(os.dup(1), "wb", buffering=0)
        os.dup2(2, 1)

    def send(self, message: dict[str, Any], payload: bytes | memoryview | None = None) -> None:
        body = json.dumps(message).encode("utf-8")
        self._out.write(struct.pack("<Q", len(body)) + body)
        if payload is not None:
            self._out.write(struct.pack("<Q", len(payload)))
            self._out.write(payload)


def _open(request: dict[str, Any]) -> tuple[Any, list[Any]]:
    import h5py

    keep: list[Any] = []
    path = request["path"]
    member = request.get("member")
    window = request.get("window")
    if member is None:
        return h5py.File(path, "r"), keep
    handle = open(path, "rb")  # noqa: SIM115 - lives as long as the worker
    keep.append(handle)
    if window is not None:
        fileobj: Any = _Window(handle, int(window[0]), int(window[1]))
    else:
        # A compressed member: zipfile's reader is seekable (by re-reading from the start when needed).
        archive = zipfile.ZipFile(handle)
        keep.append(archive)
        fileobj = archive.open(member)
    keep.append(fileobj)
    return h5py.File(fileobj, "r"), keep


#: Address space a read may add on top of the dataset's own bytes (numpy, libhdf5's chunk cache, one
#: chunk being inflated). A filter that inflates one chunk far past its size fails to allocate instead.
READ_HEADROOM_BYTES = 96 << 20


def _address_space() -> int | None:
    """Bytes of address space this process maps now (Linux /proc); None where that cannot be read."""
    try:
        with open("/proc/self/statm", "rb") as handle:
            pages = int(handle.read().split()[0])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


@contextlib.contextmanager
def _memory_bound(nbytes: int) -> Any:
    """Cap this process's address space for one read: what it maps now, twice the dataset, a headroom.

    libhdf5's deflate filter grows its output buffer until a chunk's stream ends, so one chunk that stores
    a megabyte can inflate to gigabytes whatever the chunk's declared size (a decompression bomb the
    parent cannot see in the sizes it is sent). With the soft limit set, the allocation fails, libhdf5
    reports an error and the parent gets one line; the limit is lifted again after the read.
    """
    try:
        import resource
    except ImportError:
        yield
        return
    current = _address_space()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if current is None:
        yield
        return
    bound = current + 2 * nbytes + READ_HEADROOM_BYTES
    if hard != resource.RLIM_INFINITY:
        bound = min(bound, hard)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (bound, hard))
    except (ValueError, OSError):
        yield
        return
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def serve() -> None:
    """Answer requests until `close` or end of input."""
    try:
        import resource

        # A crash should not leave a core file of a process holding model weights.
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, ValueError, OSError):
        pass
    channel = _Channel()
    import h5py
    import numpy as np

    h5file: Any = None
    keep: list[Any] = []
    for line in sys.stdin:
        request = json.loads(line)
        op = request.get("op")
        try:
            if op == "open":
                h5file, keep = _open(request)
                channel.send({"ok": True, "catalogue": catalogue(h5file)})
            elif op == "read":
                dataset = h5file[request["dataset"]]
                if not isinstance(dataset, h5py.Dataset):
                    raise KeyError(f"{request['dataset']} is not a dataset")
                nbytes = int(np.prod(dataset.shape, dtype=object)) * dataset.dtype.itemsize
                if nbytes > int(request["max_bytes"]):
                    raise OverflowError(
                        f"dataset needs {nbytes} bytes, more than the limit {request['max_bytes']}"
                    )
                try:
                    with _memory_bound(nbytes):
                        values = np.ascontiguousarray(dataset[()])
                except (OSError, MemoryError) as exc:
                    # Said once here, because libhdf5 only reports that "the filter returned failure".
                    raise OSError(
                        f"{exc}; the read was held to {nbytes} bytes plus {READ_HEADROOM_BYTES >> 20} MiB, "
                        "and a chunk that inflates past its size (a decompression bomb) fails this way"
                    ) from None
                channel.send(
                    {"ok": True, "dtype": values.dtype.str, "shape": list(values.shape)},
                    values.data.cast("B") if values.nbytes else b"",
                )
            elif op == "close":
                channel.send({"ok": True})
                break
            else:
                channel.send({"ok": False, "error": f"unknown request {op!r}"})
        except (
            OSError,
            KeyError,
            ValueError,
            TypeError,
            OverflowError,
            RuntimeError,
            MemoryError,
            zipfile.BadZipFile,
        ) as exc:
            channel.send({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
    if h5file is not None:
        h5file.close()
    for item in reversed(keep):
        with contextlib.suppress(Exception):  # shutting down; nothing useful to report
            item.close()


if __name__ == "__main__":
    serve()
