"""How many threads BLAS may use, through threadpoolctl (optional: without it, BLAS keeps its default).

One controller per process: building one scans every loaded shared library (a few milliseconds), and a
forked child inherits it along with the thread count its parent set.

Under load, fewer threads (`idle_cpus`): OpenBLAS threads wait for each other by spinning, so a thread whose
partner the scheduler has put aside burns its share doing nothing. Measured on the project's 2-CPU machine at
load average 6-10 (benchmarks/bench_jobs.py, 4 matrices of 2048 x 2048): one process with BLAS on both CPUs
took 48-218 s where two processes of one thread each took 6-27 s.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from typing import Any

#: The innermost limit in force (None: none). A forked child inherits it with the limit itself, so a
#: nested `limited` can only lower the thread count, never raise it past what the parent allowed.
_ceiling: int | None = None


@functools.lru_cache(maxsize=1)
def controller() -> Any:
    """threadpoolctl's controller of the loaded BLAS libraries, or None without threadpoolctl."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def idle_cpus() -> int:
    """Usable CPUs that other processes are not already keeping busy, at least 1.

    The 1-minute load average counts the runnable processes of the whole machine (this one included, once it
    has run a while); its share of the machine's CPUs, taken from ours, is what the others leave us.
    """
    usable = usable_cpus()
    try:
        load = os.getloadavg()[0]
    except OSError:  # no load average on this platform
        return usable
    busy = min(1.0, load / max(1, os.cpu_count() or usable))
    return max(1, min(usable, int(usable * (1.0 - busy) + 0.5)))


@contextlib.contextmanager
def limited(threads: int) -> Iterator[None]:
    """A context in which BLAS uses at most `threads` threads (and no more than an enclosing limit allows;
    restored on leaving it)."""
    global _ceiling
    previous = _ceiling
    _ceiling = threads if previous is None else min(previous, threads)
    try:
        blas = controller()
        if blas is None:
            yield
        else:
            with blas.limit(limits=_ceiling, user_api="blas"):
                yield
    finally:
        _ceiling = previous


def for_large_problem() -> contextlib.AbstractContextManager[None]:
    """BLAS threads for a problem large enough to use several: one per idle usable CPU."""
    return limited(idle_cpus())
