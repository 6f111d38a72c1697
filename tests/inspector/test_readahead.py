"""Read-ahead: the next item is read while the current one is used, in order, never more than one ahead."""

from __future__ import annotations

import threading
import time
import weakref

import pytest

from inspector.readahead import read_ahead


class Payload:
    """A value whose liveness weakrefs can watch."""

    def __init__(self, number: int) -> None:
        self.number = number


def test_values_come_in_order_and_the_next_is_read_during_the_current() -> None:
    events: list[str] = []
    lock = threading.Lock()

    def read(number: int) -> Payload:
        with lock:
            events.append(f"read {number} on {threading.current_thread().name.split('_')[0]}")
        return Payload(number)

    seen = []
    for taken in read_ahead([0, 1, 2], read):
        value = taken.value()
        time.sleep(0.05)  # the work on item i: item i + 1 is read meanwhile
        with lock:
            events.append(f"used {value.number}")
        seen.append(value.number)
        del value
    assert seen == [0, 1, 2]
    assert events.index("read 1 on wwinspect-read") < events.index("used 0")
    assert events.index("read 2 on wwinspect-read") < events.index("used 1")
    assert all("wwinspect-read" in event for event in events if event.startswith("read"))


def test_at_most_two_values_are_alive_at_once() -> None:
    alive: weakref.WeakSet[Payload] = weakref.WeakSet()
    most = 0

    def read(number: int) -> Payload:
        nonlocal most
        payload = Payload(number)
        alive.add(payload)
        most = max(most, len(alive))
        return payload

    for taken in read_ahead(list(range(20)), read):
        value = taken.value()
        most = max(most, len(alive))
        time.sleep(0.002)
        del value
    assert most <= 2


def test_a_read_error_is_raised_at_its_turn() -> None:
    def read(number: int) -> int:
        if number == 1:
            raise ValueError("bad tensor")
        return number

    taken = iter(read_ahead([0, 1, 2], read))
    assert next(taken).value() == 0
    second = next(taken)
    with pytest.raises(ValueError, match="bad tensor"):
        second.value()
    assert next(taken).value() == 2


def test_stopping_early_ends_the_thread() -> None:
    reads: list[int] = []
    before = set(threading.enumerate())
    iterator = read_ahead(list(range(10)), lambda number: reads.append(number) or number)
    assert next(iterator).value() == 0
    iterator.close()
    time.sleep(0.05)
    assert len(reads) <= 2
    assert not [
        thread for thread in set(threading.enumerate()) - before if thread.name.startswith("wwinspect-read")
    ]
