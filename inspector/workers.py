"""Items of work shared between this process and forked children, results yielded in item order.

Why processes and not threads: the analysis is dominated by LAPACK's symmetric eigensolver, and two threads
of one process run it no faster than one (measured on the project's 2-core machine: 60 solves of 384 x 384
took 0.55 s in one thread and 0.52 s in two, with BLAS limited to one thread each), while two processes
take 0.37 s. Why fork: a forked child starts in milliseconds with numpy and the analysis code already
imported, where a spawned one would pay the 0.3 s of imports again. Fork is used only on Linux, where it is
the native start method; elsewhere the caller stays in one process (`can_fork`).

How: the item numbers, costliest first (longest processing time first, so that one large layer does not
finish last), are written to a pipe before forking. This process and `jobs - 1` children take the next
number from that pipe whenever they are free (a 4-byte read from a pipe is atomic), so the load balances
itself. A child runs `child_setup` once (to open its own file handles: nothing holding a file position,
a memory map or a helper process may be shared with the parent) and sends each result back, pickled, on
a pipe of its own. Only results are pickled, never the job, so `job` may be any closure. The parent
collects the children's results between its own items and yields everything in item order.

Children ignore Ctrl-C and end when the work runs out; the parent kills them if it stops early (an error,
Ctrl-C, or a caller that stops asking). A child that dies without its results is a `WorkerCrashedError`.
Each process runs BLAS with `usable_cpus() // jobs` threads at most, so the processes never oversubscribe
the cores (and fewer under load, inspector/science/blas.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pickle
import select
import signal
import struct
import sys
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from inspector.errors import InspectError
from inspector.science import blas
from inspector.science.blas import usable_cpus as usable_cpus  # re-exported: callers ask workers

Result = TypeVar("Result")

#: The default number of processes (`--jobs 0`) never exceeds this: every process holds one layer in memory.
MAX_DEFAULT_JOBS = 8

_ITEM = struct.Struct("<I")  # an item number on the task pipe
_FRAME = struct.Struct("<Q")  # the length of one pickled result on a result pipe
# Pipes are grown to 1 MiB (Linux's default limit for unprivileged processes): the task pipe must hold every
# item number before the fork, and a child must not block on a full result pipe while the parent is busy
# with an item of its own.
_PIPE_BYTES = 1 << 20
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


class WorkerCrashedError(InspectError):
    """A worker process died without sending its results (killed for memory, or a crash in native code)."""


def resolve_jobs(requested: int) -> int:
    """Processes for `--jobs`: 0 means one per usable CPU (at most MAX_DEFAULT_JOBS), idle or not.

    Not fewer under load: processes of one BLAS thread each are what holds up there (see
    inspector/science/blas.py); one process with BLAS on every CPU was 5x slower at load average 6-10.
    """
    if requested < 0:
        raise ValueError(f"jobs must be >= 0, not {requested}")
    return requested if requested > 0 else min(usable_cpus(), MAX_DEFAULT_JOBS)


def can_fork() -> bool:
    """True where forked workers are safe: Linux (macOS forbids fork after its system frameworks load)."""
    return sys.platform.startswith("linux")


@dataclass
class _Child:
    """The parent's view of one child: its pid, its result pipe and the bytes read from it so far."""

    pid: int
    fd: int
    buffer: bytearray = field(default_factory=bytearray)
    open: bool = True
    reaped: bool = False  # once reaped, its pid may belong to another process: never signal it again


@dataclass
class _Outcome(Generic[Result]):
    """One item's result, or the exception its job raised."""

    value: Result | None = None
    error: BaseException | None = None


def _grow(fd: int) -> int:
    """Ask for a _PIPE_BYTES pipe buffer; returns the size granted."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
    try:
        return fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)
    except OSError:
        return 4096  # PIPE_BUF, the least any Linux pipe holds


def _next_item(task_fd: int) -> int | None:
    data = os.read(task_fd, _ITEM.size)
    return _ITEM.unpack(data)[0] if data else None


def _frame(index: int, outcome: _Outcome[Any]) -> bytes:
    try:
        payload = pickle.dumps((index, outcome.value, outcome.error), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # an exception that does not pickle still reaches the parent, as text
        error = RuntimeError(f"{type(outcome.error).__name__}: {outcome.error} ({exc})")
        payload = pickle.dumps((index, None, error), protocol=pickle.HIGHEST_PROTOCOL)
    return _FRAME.pack(len(payload)) + payload


def _die_with_parent() -> None:
    """Have the kernel kill this child when its parent dies (killed, or ended by a signal), so that no
    orphan goes on computing layers nobody will read (Linux prctl PR_SET_PDEATHSIG)."""
    parent = os.getppid()
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request was in place
        os._exit(1)


def _run_child(
    job: Callable[[int], Any],
    child_setup: Callable[[], None] | None,
    task_fd: int,
    result_fd: int,
) -> None:
    """A child's whole life; it ends in os._exit and never returns into the parent's code."""
    code = 0
    try:
        _die_with_parent()
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
        # BLAS's thread count needs no setting here: the parent limited it before forking, and a forked
        # process inherits it.
        if child_setup is not None:
            try:
                child_setup()
            except Exception:
                os._exit(0)  # take no items: the parent and the other children do them all
        while (index := _next_item(task_fd)) is not None:
            try:
                outcome: _Outcome[Any] = _Outcome(value=job(index))
            except Exception as exc:
                outcome = _Outcome(error=exc)
            data = memoryview(_frame(index, outcome))
            while data:
                data = data[os.write(result_fd, data) :]
    except BaseException:  # a child must end here whatever happens, never in the parent's code
        code = 1
    finally:
        os._exit(code)


def _drain(children: list[_Child], outcomes: dict[int, _Outcome[Any]], timeout: float | None) -> None:
    """Read whatever the children have sent (waiting up to `timeout` seconds for something, None: forever)."""
    poller = select.poll()  # not select.select, which fails on descriptors above 1023
    for child in children:
        if child.open:
            poller.register(child.fd, select.POLLIN)
    if not any(child.open for child in children):
        return
    ready = {fd for fd, _ in poller.poll(None if timeout is None else int(timeout * 1000))}
    for child in children:
        if child.fd not in ready or not child.open:
            continue
        chunk = os.read(child.fd, _PIPE_BYTES)
        if not chunk:
            child.open = False
            continue
        child.buffer += chunk
        while len(child.buffer) >= _FRAME.size:
            (length,) = _FRAME.unpack_from(child.buffer)
            if len(child.buffer) < _FRAME.size + length:
                break
            payload = bytes(child.buffer[_FRAME.size : _FRAME.size + length])
            del child.buffer[: _FRAME.size + length]
            index, value, error = pickle.loads(payload)  # noqa: S301 - from our own forked child
            outcomes[index] = _Outcome(value=value, error=error)


def _stop(children: list[_Child]) -> None:
    """Kill and reap every child that is still running; close the result pipes."""
    for child in children:
        if not child.reaped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)
    _reap(children)


def _reap(children: list[_Child]) -> None:
    """Wait for every child to end and close its result pipe."""
    for child in children:
        if child.reaped:
            continue
        with contextlib.suppress(ChildProcessError):
            os.waitpid(child.pid, 0)
        with contextlib.suppress(OSError):
            os.close(child.fd)
        child.open = False
        child.reaped = True


def _task_pipe(order: Sequence[int]) -> int:
    """A pipe holding every item number in `order`, its write end already closed; returns the read end."""
    read_end, write_end = os.pipe()
    try:
        if _grow(write_end) < len(order) * _ITEM.size:
            raise ValueError(f"too many items for one pipe: {len(order)}")
        data = memoryview(b"".join(_ITEM.pack(index) for index in order))
        while data:
            data = data[os.write(write_end, data) :]
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)  # the readers see end-of-file once the numbers run out
    return read_end


def _fork_child(
    job: Callable[[int], Any],
    child_setup: Callable[[], None] | None,
    task_read: int,
    children: Sequence[_Child],
) -> _Child:
    result_read, result_write = os.pipe()
    _grow(result_write)
    try:
        pid = os.fork()
    except OSError:
        os.close(result_read)
        os.close(result_write)
        raise
    if pid == 0:  # the child: only its own result pipe's write end and the task pipe stay open
        os.close(result_read)
        for other in children:
            os.close(other.fd)
        _run_child(job, child_setup, task_read, result_write)  # ends with os._exit
    os.close(result_write)
    return _Child(pid=pid, fd=result_read)


def _collect(
    job: Callable[[int], Result], count: int, task_read: int, children: list[_Child]
) -> Generator[Result, None, None]:
    """This process's side: take items while there are any, read the children's results between them,
    and yield every result in item order."""
    outcomes: dict[int, _Outcome[Result]] = {}
    next_index = 0
    own_work_left = True
    while next_index < count:
        while next_index in outcomes:
            outcome = outcomes.pop(next_index)
            if outcome.error is not None:
                raise outcome.error
            yield outcome.value  # type: ignore[misc]
            next_index += 1
        if next_index >= count:
            break
        if own_work_left and (index := _next_item(task_read)) is not None:
            try:
                outcomes[index] = _Outcome(value=job(index))
            except Exception as exc:
                outcomes[index] = _Outcome(error=exc)
            _drain(children, outcomes, timeout=0)
            continue
        own_work_left = False
        if not any(child.open for child in children):
            raise WorkerCrashedError(
                f"a worker process died before sending the results of item {next_index} (killed for "
                "memory, or a crash in native code)",
                hint="re-run with --jobs 1 to analyse in one process",
            )
        _drain(children, outcomes, timeout=None)


def ordered_map(
    job: Callable[[int], Result],
    costs: Sequence[float],
    *,
    jobs: int,
    child_setup: Callable[[], None] | None = None,
) -> Generator[Result, None, None]:
    """`job(i)` for i in range(len(costs)), computed by this process and `jobs - 1` forked children,
    yielded in order of i. `child_setup()` runs once in each child before its first item.

    An exception raised by `job(i)` is raised here when i's turn comes, after the results before it.

    Raises:
        WorkerCrashedError: a child died before sending the results of the items it had taken.
    """
    task_read = _task_pipe(sorted(range(len(costs)), key=lambda i: -costs[i]))
    children: list[_Child] = []
    with blas.limited(max(1, usable_cpus() // jobs)):  # set before forking: the children inherit it
        try:
            for _ in range(jobs - 1):
                try:
                    children.append(_fork_child(job, child_setup, task_read, children))
                except OSError:  # no process to spare (EAGAIN, ENOMEM): go on with those there are
                    break
            yield from _collect(job, len(costs), task_read, children)
            _reap(children)
        finally:
            _stop(children)  # after _reap there is nothing left to stop
            os.close(task_read)
