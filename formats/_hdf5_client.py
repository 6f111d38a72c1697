"""The parent's side of the HDF5 worker process: start it, ask it things, and survive its death.

See `formats._hdf5_worker` for why libhdf5 only ever runs in a child process. Every request has a
deadline; a worker that crashes (killed by a signal), exits, or misses its deadline is killed and the
request raises `CorruptFileError`, which the CLI reports as exit code 3 in one line.
"""

from __future__ import annotations

import json
import os
import select
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from formats.errors import CorruptFileError, MissingDependencyError

_WORKER = Path(__file__).with_name("_hdf5_worker.py")

#: Seconds the worker may take to walk a file. `WWINSPECT_HDF5_TIMEOUT` overrides it.
OPEN_TIMEOUT = 120.0
#: Seconds per read, plus one second per `READ_BYTES_PER_SECOND` bytes of the dataset.
READ_TIMEOUT = 60.0
READ_BYTES_PER_SECOND = 100 * 1024 * 1024
#: Longest JSON message accepted from the worker.
MAX_MESSAGE_BYTES = 512 * 1024 * 1024

# The worker runs with `python -I` (no current folder, no PYTHONPATH, no user site on its path: a model's
# folder must not be able to plant an `h5py.py`), then gets the parent's path minus '' (the current
# folder) so it finds the same numpy and h5py, then runs the worker script by path.
_BOOTSTRAP = (
    "import json, runpy, sys; sys.path[:] = json.loads(sys.argv[1]); "
    "runpy.run_path(sys.argv[2], run_name='__main__')"
)


def _timeout(default: float) -> float:
    text = os.environ.get("WWINSPECT_HDF5_TIMEOUT", "")
    try:
        return float(text) if text else default
    except ValueError:
        return default


class WorkerClient:
    """One worker process serving one HDF5 file.

    Args:
        path: the model file, for messages.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            import h5py  # noqa: F401 - only checks that the worker will find it
        except ImportError as exc:
            raise MissingDependencyError(
                "reading HDF5/Keras files needs the h5py package", path=path, hint="pip install h5py"
            ) from exc
        search_path = [entry for entry in sys.path if entry]
        self._process: subprocess.Popen[bytes] | None = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            [sys.executable, "-I", "-c", _BOOTSTRAP, json.dumps(search_path), str(_WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )

    # -- requests -----------------------------------------------------------------------------------

    def open(self, file: Path, member: str | None, window: tuple[int, int] | None) -> dict[str, Any]:
        """Ask the worker to open the file (or a zip member) and return its catalogue."""
        reply = self._request(
            {"op": "open", "path": str(file), "member": member, "window": list(window) if window else None},
            _timeout(OPEN_TIMEOUT),
            what="walking the HDF5 file",
        )
        catalogue = reply.get("catalogue")
        if not isinstance(catalogue, dict):
            raise CorruptFileError("the HDF5 worker sent no catalogue", path=self.path)
        return catalogue

    def read(self, dataset: str, max_bytes: int) -> npt.NDArray[np.generic]:
        """Ask the worker for one dataset's values (chunked, compressed or compact storage)."""
        deadline = _timeout(READ_TIMEOUT) + max_bytes / READ_BYTES_PER_SECOND
        reply = self._request(
            {"op": "read", "dataset": dataset, "max_bytes": max_bytes},
            deadline,
            what=f"reading dataset {dataset!r}",
            payload=True,
        )
        payload = reply.pop("_payload", b"")
        try:
            dtype = np.dtype(str(reply["dtype"]))
            shape = tuple(int(dim) for dim in reply["shape"])
            return np.frombuffer(payload, dtype=dtype).reshape(shape)
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptFileError(
                f"the HDF5 worker sent an unusable array for {dataset!r}", path=self.path
            ) from exc

    def close(self) -> None:
        """Stop the worker (politely, then firmly)."""
        process, self._process = self._process, None
        if process is None:
            return
        try:
            if process.poll() is None and process.stdin is not None:
                process.stdin.write(b'{"op": "close"}\n')
                process.stdin.flush()
                process.stdin.close()
                process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            pass
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()

    def __del__(self) -> None:
        self.close()

    # -- plumbing -----------------------------------------------------------------------------------

    def _request(
        self, message: dict[str, Any], timeout: float, *, what: str, payload: bool = False
    ) -> dict[str, Any]:
        process = self._process
        if process is None or process.stdin is None or process.stdout is None:
            raise CorruptFileError(f"the HDF5 worker is no longer running ({what})", path=self.path)
        deadline = time.monotonic() + timeout
        try:
            process.stdin.write(json.dumps(message).encode("utf-8") + b"\n")
            process.stdin.flush()
            reply = json.loads(self._frame(deadline, what, MAX_MESSAGE_BYTES))
            if payload and reply.get("ok"):
                reply["_payload"] = self._frame(deadline, what, message.get("max_bytes", 0))
        except (BrokenPipeError, ConnectionError, OSError, ValueError) as exc:
            raise self._died(what, exc) from None
        if not isinstance(reply, dict):
            raise CorruptFileError(f"the HDF5 worker sent a malformed reply while {what}", path=self.path)
        if not reply.get("ok"):
            raise CorruptFileError(
                f"the HDF5 library cannot read this file ({reply.get('error')})", path=self.path
            )
        return reply

    def _frame(self, deadline: float, what: str, limit: int) -> bytes:
        (length,) = struct.unpack("<Q", self._exact(8, deadline, what))
        if length > max(limit, 0):
            raise CorruptFileError(
                f"the HDF5 worker sent {length} bytes while {what}, more than expected", path=self.path
            )
        return self._exact(length, deadline, what)

    def _exact(self, size: int, deadline: float, what: str) -> bytes:
        process = self._process
        assert process is not None and process.stdout is not None
        stream = process.stdout
        chunks: list[bytes] = []
        remaining = size
        while remaining > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._timed_out(what)
            # select() waits on pipes only on POSIX; elsewhere the read blocks and the deadline is checked
            # between chunks (a hang inside libhdf5 there is only cut by the user).
            if os.name == "posix":
                ready, _, _ = select.select([stream], [], [], left)
                if not ready:
                    raise self._timed_out(what)
            chunk = os.read(stream.fileno(), min(remaining, 1 << 20))
            if not chunk:
                raise self._died(what, None)
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def _timed_out(self, what: str) -> CorruptFileError:
        self._kill()
        return CorruptFileError(
            f"the HDF5 library did not finish {what} in time; the file is probably crafted to hang it",
            path=self.path,
        )

    def _died(self, what: str, exc: BaseException | None) -> CorruptFileError:
        code = self._kill()
        if code is not None and code < 0:
            detail = f"killed by signal {-code}"
        elif code is not None:
            detail = f"exit status {code}"
        else:
            detail = str(exc) if exc else "no reply"
        return CorruptFileError(
            f"the HDF5 library crashed while {what} ({detail}); the file is corrupt", path=self.path
        )

    def _kill(self) -> int | None:
        process, self._process = self._process, None
        if process is None:
            return None
        if process.poll() is None:
            try:
                process.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for stream in (process.stdin, process.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        return process.returncode
