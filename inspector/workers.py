"""Layer analysis spread over forked worker processes, results in file order.

Why processes and not threads: the analysis is dominated by LAPACK's symmetric eigensolver, and two threads
of one process run it no faster than one (measured on the project's 2-core machine: 60 solves of 384 x 384
took 0.55 s in one thread and 0.52 s in two, with BLAS limited to one thread each), while two processes
take 0.37 s. Why fork: a forked worker starts in milliseconds with numpy and the analysis code already
imported, where a spawned one would pay the 0.3 s of imports again. Fork is used only where it is the
platform's native, well-supported start method (Linux); elsewhere the analysis stays in one process.

The pool knows nothing of models: it runs a picklable `job(*arguments)` per item in `jobs` processes,
starting the costliest items first so that one large layer (an embedding) does not finish last, and yields
the results in the items' own order. Each worker runs with `threads` BLAS threads, so that workers times
threads never oversubscribes the cores, and ignores Ctrl-C: the parent handles it and stops the workers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from inspector.errors import InspectError

Result = TypeVar("Result")

#: The default pool size (`--jobs 0`) never exceeds this: every worker holds one layer in memory.
MAX_DEFAULT_JOBS = 8


class WorkerCrashedError(InspectError):
    """A worker process died without an answer (killed for memory, or a crash in native code)."""


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def resolve_jobs(requested: int) -> int:
    """Worker processes for `--jobs`: 0 means one per usable CPU (at most MAX_DEFAULT_JOBS)."""
    if requested < 0:
        raise ValueError(f"jobs must be >= 0, not {requested}")
    return requested if requested > 0 else min(usable_cpus(), MAX_DEFAULT_JOBS)


def can_fork() -> bool:
    """True where forked workers are safe: Linux (macOS forbids fork after its system frameworks load)."""
    return sys.platform.startswith("linux")


_blas_limit: Any = None  # the worker's threadpoolctl limiter, kept alive for the worker's lifetime


def _init_worker(threads: int) -> None:
    global _blas_limit
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(ImportError):
        from threadpoolctl import threadpool_limits

        _blas_limit = threadpool_limits(limits=threads, user_api="blas")


def _stop(executor: ProcessPoolExecutor) -> None:
    """Cancel what has not started and end the workers now, not after their current item."""
    terminate = getattr(executor, "terminate_workers", None)  # Python >= 3.14
    if terminate is not None:
        terminate()
        return
    # Before 3.14 concurrent.futures has no public way to stop running workers; without this an interrupted
    # run would wait for each worker's current layer, minutes for a large one.
    processes = list((getattr(executor, "_processes", None) or {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()


def ordered_map(
    job: Callable[..., Result],
    arguments: Sequence[tuple[Any, ...]],
    costs: Sequence[float],
    *,
    jobs: int,
) -> Generator[Result, None, None]:
    """`job(*arguments[i])` for each i, computed in `jobs` forked processes, yielded in order of i.

    Items start in decreasing `costs` (longest processing time first). An exception raised by an item is
    raised here when its turn comes, after the items before it were yielded; the workers are then stopped.

    Raises:
        WorkerCrashedError: a worker died (the whole pool is unusable after that).
    """
    import multiprocessing

    if len(arguments) != len(costs):
        raise ValueError("one cost per item")
    threads = max(1, usable_cpus() // jobs)
    executor = ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_init_worker,
        initargs=(threads,),
    )
    futures: dict[int, Future[Result]] = {}
    try:
        for index in sorted(range(len(arguments)), key=lambda i: -costs[i]):
            futures[index] = executor.submit(job, *arguments[index])
        for index in range(len(arguments)):
            try:
                result = futures.pop(index).result()
            except BrokenProcessPool as exc:
                raise WorkerCrashedError(
                    "a worker process died while analysing layers (out of memory, or a crash in native code)",
                    hint="re-run with --jobs 1 to analyse in one process",
                ) from exc
            yield result
    finally:
        if futures:  # stopped early: an item failed, Ctrl-C, or the caller stopped asking
            _stop(executor)
        else:
            executor.shutdown(wait=True)
