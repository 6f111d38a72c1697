"""The forked worker pool: results in order, errors at their turn, crashed workers, no process left behind."""

from __future__ import annotations

import os
import signal
import time

import pytest

from inspector.workers import WorkerCrashedError, ordered_map, resolve_jobs, usable_cpus
from tests.conftest import child_processes


def _square_and_pid(value: int) -> tuple[int, int]:
    return value * value, os.getpid()


def _fail_at(value: int, bad: int) -> int:
    if value == bad:
        raise ValueError(f"item {value} is bad")
    return value


def _die_at(value: int, bad: int) -> int:
    if value == bad:
        os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's out-of-memory killer would
    return value


def _sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def _children() -> set[int]:
    return child_processes(os.getpid())


def _wait_for_no_children(before: set[int], timeout: float = 10.0) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = _children() - before
        if not left:
            return left
        time.sleep(0.05)
    return _children() - before


def test_results_come_in_item_order_from_other_processes() -> None:
    before = _children()
    values = list(range(20))
    costs = [float(v % 7) for v in values]  # started in another order than they are yielded
    results = list(ordered_map(_square_and_pid, [(v,) for v in values], costs, jobs=2))
    assert [square for square, _ in results] == [v * v for v in values]
    assert os.getpid() not in {pid for _, pid in results}
    assert _wait_for_no_children(before) == set()


def test_an_error_is_raised_at_its_turn_after_the_items_before_it() -> None:
    before = _children()
    received: list[int] = []
    with pytest.raises(ValueError, match="item 5 is bad"):
        for value in ordered_map(_fail_at, [(v, 5) for v in range(12)], [1.0] * 12, jobs=2):
            received.append(value)
    assert received == [0, 1, 2, 3, 4]
    assert _wait_for_no_children(before) == set()


def test_a_killed_worker_is_a_typed_error_not_a_hang() -> None:
    before = _children()
    with pytest.raises(WorkerCrashedError, match="worker process died"):
        list(ordered_map(_die_at, [(v, 3) for v in range(8)], [1.0] * 8, jobs=2))
    assert _wait_for_no_children(before) == set()


def test_a_caller_that_stops_early_stops_the_running_workers() -> None:
    before = _children()
    started = time.monotonic()
    results = ordered_map(_sleep, [(0.0,), (30.0,), (30.0,)], [2.0, 1.0, 1.0], jobs=2)
    assert next(results) == 0.0
    results.close()  # both workers are in the middle of a 30 s item
    assert _wait_for_no_children(before) == set()
    assert time.monotonic() - started < 15.0


def test_one_cost_per_item() -> None:
    with pytest.raises(ValueError, match="one cost per item"):
        list(ordered_map(_sleep, [(0.0,)], [], jobs=2))


def test_jobs_zero_means_one_per_cpu() -> None:
    assert resolve_jobs(0) == min(usable_cpus(), 8)
    assert resolve_jobs(3) == 3
    with pytest.raises(ValueError, match="jobs must be"):
        resolve_jobs(-1)
