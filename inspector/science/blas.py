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
import math
import os
import time
from collections.abc import Iterator
from typing import Any

#: Linux's 1-minute load average decays as exp(-t / 60 s) (kernel/sched/loadavg.c).
_LOAD_TIME_CONSTANT_S = 60.0

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


class _OwnLoad:
    """This process's share of the load average: its CPU use (all its threads), averaged over time the way the
    kernel averages the load, so a long run does not mistake its own BLAS threads for other processes.

    Without it, one wwinspect process with two BLAS threads on an idle 2-CPU machine drove the load average to
    about 2 within a minute and then saw no idle CPU: every later matrix ran on one thread.
    """

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._wall = time.monotonic()
        self._cpu = time.process_time()
        self._cpus = 0.0

    def cpus(self) -> float:
        """CPUs this process kept busy, exponentially averaged like the 1-minute load average."""
        wall, cpu, pid = time.monotonic(), time.process_time(), os.getpid()
        if pid != self._pid or cpu < self._cpu:  # a forked child: its CPU clock starts afresh
            self._pid, self._wall, self._cpu, self._cpus = pid, wall, cpu, 0.0
            return 0.0
        elapsed = wall - self._wall
        if elapsed > 0.0:
            decay = math.exp(-elapsed / _LOAD_TIME_CONSTANT_S)
            rate = (cpu - self._cpu) / elapsed
            self._cpus = self._cpus * decay + rate * (1.0 - decay)
            self._wall, self._cpu = wall, cpu
        return self._cpus


_own_load = _OwnLoad()


def idle_cpus() -> int:
    """Usable CPUs that other processes are not already keeping busy, at least 1.

    The 1-minute load average counts the runnable threads of the whole machine, this process's included once
    it has run a while; less this process's own averaged CPU use (`_OwnLoad`), its share of the machine's
    CPUs, taken from ours, is what the others leave us.
    """
    usable = usable_cpus()
    try:
        load = os.getloadavg()[0]
    except OSError:  # no load average on this platform
        return usable
    others = max(0.0, load - _own_load.cpus())
    busy = min(1.0, others / max(1, os.cpu_count() or usable))
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
