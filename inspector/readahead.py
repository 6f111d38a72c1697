"""Read the next tensor while the current one is measured: one background thread, one tensor ahead.

Reading a tensor is file I/O plus decoding (bf16 widening, GGUF dequantisation, decompression), all in numpy
or the OS, which release the GIL; measuring it is LAPACK, which releases it too. So one thread that reads
item i + 1 while the caller measures item i overlaps the two without a second process: on the 1B Llama
layout reading and widening is about a tenth of the time (benchmarks/bench_llm.py).

Bounded to one ahead: the thread starts reading item i + 1 only when the caller has taken item i, and the
caller drops item i - 1 before asking for item i (`ReadAhead` hands each value out once and keeps no
reference to it), so at most two tensors' values are alive at once: the one measured and the one read.
All reads happen on the one thread, in order, so a reader is never used by two threads at once.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

Item = TypeVar("Item")
Value = TypeVar("Value")


@dataclass(slots=True)
class Taken(Generic[Item, Value]):
    """One item with its value, or the exception reading it raised (re-raised by `value()`)."""

    item: Item
    _value: Value | None
    _error: BaseException | None

    def value(self) -> Value:
        """The value, handed out once: the holder keeps no reference to it afterwards."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        value, self._value = self._value, None
        return value  # type: ignore[return-value]


def _read(read: Callable[[Item], Value], item: Item) -> tuple[Value | None, BaseException | None]:
    try:
        return read(item), None
    except Exception as exc:  # handed to the caller at the item's turn, like a read in its own thread
        return None, exc


def read_ahead(
    items: Sequence[Item], read: Callable[[Item], Value]
) -> Generator[Taken[Item, Value], None, None]:
    """`read(item)` for each item in order, each done on a background thread while the caller works on the
    item before it. The caller takes each value with `Taken.value()` and drops it before the next step.

    Stopping early (closing the iterator) waits for the read in flight, then ends the thread.
    """
    if not items:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="wwinspect-read") as pool:
        pending: Future[tuple[Value | None, BaseException | None]] | None = pool.submit(_read, read, items[0])
        try:
            for position, item in enumerate(items):
                assert pending is not None
                value, error = pending.result()
                pending = pool.submit(_read, read, items[position + 1]) if position + 1 < len(items) else None
                taken = Taken(item, value, error)
                del value, error
                yield taken
                del taken
        finally:
            if pending is not None:
                pending.cancel()
