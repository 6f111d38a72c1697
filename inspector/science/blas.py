"""How many threads BLAS may use, through threadpoolctl (optional: without it, BLAS keeps its default).

One controller per process: building one scans every loaded shared library (a few milliseconds), and a
forked child inherits it along with the thread count its parent set.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any


@functools.lru_cache(maxsize=1)
def controller() -> Any:
    """threadpoolctl's controller of the loaded BLAS libraries, or None without threadpoolctl."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


def limited(threads: int) -> contextlib.AbstractContextManager[Any]:
    """A context in which BLAS uses at most `threads` threads (restored on leaving it)."""
    blas = controller()
    if blas is None:
        return contextlib.nullcontext()
    return blas.limit(limits=threads, user_api="blas")  # type: ignore[no-any-return]
