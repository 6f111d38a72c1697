"""The eigenvalue cache of `--cache DIR`: an unchanged layer's eigenvalues are read back instead of solved.

What is cached: the output of `EigenBackend.eigenvalues` / `eigenvalues_batch`, the only expensive step of a
layer (the Gram product and the eigensolver, with the SVD fallback when the Gram route is unreliable). The
fits, MP bulk, phases and records are recomputed from those eigenvalues on every run, so a hit produces
exactly the numbers of a miss (the cached float64 bytes are the computed ones) and the report is the same
with and without the cache.

The key (`EigenCache.key`) is a SHA-256 over
  - the matrix handed to the backend: its dtype, shape and bytes as read. Everything the analysis settings
    do before the eigensolve (orientation, conv slices, fused parts, heads, LoRA merges, the shuffled copy of
    `--randomize` with its seed) is already in those bytes, so no list of "settings that change eigenvalues"
    has to be kept in step with `AnalysisOptions`;
  - the backend itself (`repr` of a dataclass backend, else its name): route, device and precision;
  - the source of `inspector/science/` (digested once per process), so a change to the eigenvalue code
    never reads an answer of the old code.
SHA-256 because it is in the standard library and the fastest of its hashes here (about 0.9 GB/s on the
project's machine, against 0.74 for BLAKE2b): the hash pass is the whole cost of a hit.

Sharing: several processes (`--jobs` workers, parallel CI jobs, a Dask cluster on one file system) may use
one folder at once. An entry is written to a temporary file in its final folder and renamed over the entry
(`os.replace`, atomic on POSIX and Windows), so a reader sees a whole entry or none. Each entry carries its
key and a digest of its contents; a truncated, corrupt or foreign file is a miss, recomputed and
overwritten. Writing is best effort: a full disk or a read-only folder costs the speed-up, never the run.

Size: at most `MAX_BYTES` (256 MiB, about 8,000 layers of 4096 eigenvalues). A hit refreshes the entry's
modification time; `prune` (run once at the end of each run) deletes the least recently used entries
until the folder is back under 80% of the bound, and leftover temporary files of killed processes.

The folder gets a `CACHEDIR.TAG` (https://bford.info/cachedir/, so backup tools skip it) and a
`.gitignore` of `*`, as `.pytest_cache`, `.mypy_cache` and `.ruff_cache` do, so that
`--cache .wwinspect_cache` in a repository (the pre-commit hook's setting) is never committed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import struct
import tempfile
import time
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from inspector.errors import UsageError
from inspector.science.eigen import EigenBackend, FloatArray

#: The most the entries of one cache folder may hold after a run, in bytes.
MAX_BYTES = 256 * 1024 * 1024
#: `prune` brings the folder back under this share of MAX_BYTES, so that it does not run on every write.
PRUNE_TO = 0.8
#: Temporary files older than this (seconds) belong to a process that died while writing.
STALE_TEMP_SECONDS = 3600.0

#: The entries' folder inside the cache folder; a new layout gets a new name and leaves the old one unread.
LAYOUT = "eigenvalues-v1"
_MAGIC = b"WWIEIG1\n"
_SUFFIX = ".eig"
_TEMP_PREFIX = ".tmp-"
_DIGEST = 32  # bytes of SHA-256
_HEADER = struct.Struct("<8s32sI")  # magic, key, number of dimensions; then the dimensions as uint64
_DIM = struct.Struct("<Q")
_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n# This folder is wwinspect's eigenvalue cache (--cache).\n"
)


@lru_cache(maxsize=1)
def code_digest() -> bytes:
    """A digest of the eigenvalue code's source (every module of inspector/science), computed once."""
    hasher = hashlib.sha256()
    science = Path(__file__).parent / "science"
    for source in sorted(science.glob("*.py")):
        hasher.update(source.name.encode())
        hasher.update(source.read_bytes())
    return hasher.digest()


def backend_identity(backend: EigenBackend) -> str:
    """What of the backend decides its eigenvalues: every field of a dataclass backend, else its name."""
    if dataclasses.is_dataclass(backend):
        return f"{type(backend).__module__}.{type(backend).__qualname__}:{backend!r}"
    return f"{type(backend).__module__}.{type(backend).__qualname__}:{backend.name}"


class EigenCache:
    """One cache folder; safe to use from several processes at once (see the module's docstring)."""

    def __init__(self, folder: Path, max_bytes: int | None = None) -> None:
        self.folder = folder
        self.entries = folder / LAYOUT
        self.max_bytes = MAX_BYTES if max_bytes is None else max_bytes

    def prepare(self) -> None:
        """Create the folder with its tag files, before anything is read.

        Raises:
            UsageError: the folder cannot be created or is a file.
        """
        if self.folder.exists() and not self.folder.is_dir():
            raise UsageError(f"--cache {self.folder}: is a file, not a folder")
        try:
            self.entries.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"--cache {self.folder}: cannot create the folder ({exc.strerror})") from None
        for name, text in (("CACHEDIR.TAG", _TAG), (".gitignore", "# created by wwinspect --cache\n*\n")):
            target = self.folder / name
            if not target.exists():
                with contextlib.suppress(OSError):
                    target.write_text(text, encoding="utf-8")

    def key(self, backend: EigenBackend, kind: str, array: npt.NDArray[Any]) -> bytes:
        """The key of `backend`'s eigenvalues of `array` (`kind`: "one" matrix or a "batch")."""
        hasher = hashlib.sha256()
        hasher.update(code_digest())
        for part in (backend_identity(backend), kind, array.dtype.str, repr(array.shape)):
            hasher.update(part.encode())
            hasher.update(b"\0")
        if array.flags.c_contiguous:
            hasher.update(b"C")
            hasher.update(array.data)
        elif array.flags.f_contiguous:  # a transposed view: its transpose's bytes, tagged, without a copy
            hasher.update(b"F")
            hasher.update(array.T.data)
        else:
            hasher.update(b"C")
            hasher.update(np.ascontiguousarray(array).data)
        return hasher.digest()

    def _path(self, key: bytes) -> Path:
        name = key.hex()
        return self.entries / name[:2] / f"{name}{_SUFFIX}"

    def load(self, key: bytes, shape: tuple[int, ...]) -> FloatArray | None:
        """The entry for `key` if it is whole, uncorrupted and of `shape`; None otherwise (a miss)."""
        path = self._path(key)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        values = _decode(data, key, shape)
        if values is not None:
            with contextlib.suppress(OSError):
                os.utime(path)  # least recently used goes first when pruning
        return values

    def store(self, key: bytes, values: FloatArray) -> None:
        """Write the entry atomically; any failure leaves the cache as it was."""
        path = self._path(key)
        data = _encode(key, np.ascontiguousarray(values, dtype="<f8"))
        temp: str | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temp = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=path.parent)
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            os.replace(temp, path)
            temp = None
        except OSError:
            pass  # best effort: the run goes on without this entry
        finally:
            if temp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temp)

    def prune(self) -> None:
        """Delete stale temporary files, then the least recently used entries while over the bound."""
        now = time.time()
        entries: list[tuple[float, int, Path]] = []
        try:
            folders = list(self.entries.iterdir())
        except OSError:
            return
        for folder in folders:
            try:
                files = list(folder.iterdir()) if folder.is_dir() else []
            except OSError:
                continue
            for path in files:
                try:
                    stat = path.stat()
                except OSError:
                    continue  # deleted by another process meanwhile
                if path.name.startswith(_TEMP_PREFIX):
                    if now - stat.st_mtime > STALE_TEMP_SECONDS:
                        with contextlib.suppress(OSError):
                            path.unlink()
                    continue
                entries.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in entries)
        if total <= self.max_bytes:
            return
        for _, size, path in sorted(entries):
            if total <= self.max_bytes * PRUNE_TO:
                break
            with contextlib.suppress(OSError):
                path.unlink()
            total -= size


def _encode(key: bytes, values: npt.NDArray[np.float64]) -> bytes:
    body = (
        _HEADER.pack(_MAGIC, key, values.ndim)
        + b"".join(_DIM.pack(size) for size in values.shape)
        + values.tobytes()
    )
    return body + hashlib.sha256(body).digest()


def _decode(data: bytes, key: bytes, shape: tuple[int, ...]) -> FloatArray | None:
    """The values of an entry, or None if it is truncated, corrupt, of another key or of another shape."""
    expected = _HEADER.size + _DIM.size * len(shape) + 8 * int(np.prod(shape)) + _DIGEST
    if len(data) != expected or hashlib.sha256(data[:-_DIGEST]).digest() != data[-_DIGEST:]:
        return None
    magic, stored_key, ndim = _HEADER.unpack_from(data)
    if magic != _MAGIC or stored_key != key or ndim != len(shape):
        return None
    dims = tuple(_DIM.unpack_from(data, _HEADER.size + _DIM.size * i)[0] for i in range(ndim))
    if dims != shape:
        return None
    start = _HEADER.size + _DIM.size * ndim
    values = np.frombuffer(data, dtype="<f8", offset=start, count=int(np.prod(shape))).reshape(shape)
    if not np.all(np.isfinite(values)) or np.any(values < 0.0):
        return None  # eigenvalues of W^T W as the backends return them; anything else is not ours
    return np.array(values, dtype=np.float64)  # a writable copy, as a backend returns


@dataclasses.dataclass(frozen=True, slots=True)
class CachedBackend:
    """A backend that looks its answers up in an `EigenCache` first; same name, same numbers.

    Pickles (for forked workers' results it is never sent; for a Dask cluster it is): it holds only the
    inner backend and the folder, and every lookup opens its own files.
    """

    inner: EigenBackend
    cache: EigenCache

    @property
    def name(self) -> str:
        return self.inner.name

    def eigenvalues(self, matrix: npt.NDArray[np.floating[Any]]) -> FloatArray:
        key = self.cache.key(self.inner, "one", matrix)
        cached = self.cache.load(key, (matrix.shape[1],))
        if cached is not None:
            return cached
        values = self.inner.eigenvalues(matrix)
        self.cache.store(key, values)
        return values

    def eigenvalues_batch(self, matrices: npt.NDArray[np.floating[Any]]) -> FloatArray:
        key = self.cache.key(self.inner, "batch", matrices)
        cached = self.cache.load(key, (matrices.shape[0], matrices.shape[2]))
        if cached is not None:
            return cached
        values = self.inner.eigenvalues_batch(matrices)
        self.cache.store(key, values)
        return values


def with_cache(backend: EigenBackend, folder: Path | None) -> EigenBackend:
    """`backend` behind the cache in `folder` (created now), or `backend` itself when `folder` is None.

    Raises:
        UsageError: the folder cannot be created.
    """
    if folder is None:
        return backend
    cache = EigenCache(folder)
    cache.prepare()
    return CachedBackend(backend, cache)


def unwrapped(backend: EigenBackend) -> EigenBackend:
    """The backend that computes, behind any cache."""
    return backend.inner if isinstance(backend, CachedBackend) else backend


def _prune(backend: EigenBackend) -> None:
    """Bring the backend's cache (if it has one) back under its bound."""
    if isinstance(backend, CachedBackend):
        backend.cache.prune()


@contextlib.contextmanager
def cached(backend: EigenBackend, folder: Path | None) -> Iterator[EigenBackend]:
    """A run's backend: `backend` behind the cache in `folder` (`with_cache`), the folder pruned to its bound
    when the run ends, however it ends.

    Raises:
        UsageError: the folder cannot be created (before the run starts).
    """
    wrapped = with_cache(backend, folder)
    try:
        yield wrapped
    finally:
        _prune(wrapped)
