"""BLAS thread limits: fewer threads under load, and a nested limit never raises an enclosing one."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from inspector.science import blas


def blas_threads() -> int:
    controller = blas.controller()
    return min(info["num_threads"] for info in controller.info() if info["user_api"] == "blas")


class FakeClocks:
    """time.monotonic and time.process_time as the test sets them."""

    def __init__(self) -> None:
        self.wall = 1000.0
        self.cpu = 0.0

    def monotonic(self) -> float:
        return self.wall

    def process_time(self) -> float:
        return self.cpu


@pytest.fixture
def clocks(monkeypatch: pytest.MonkeyPatch) -> FakeClocks:
    """The test process's own CPU use, as blas sees it, under the test's control (none so far)."""
    fake = FakeClocks()
    monkeypatch.setattr(blas, "time", fake)
    monkeypatch.setattr(blas, "_own_load", blas._OwnLoad())
    return fake


@pytest.fixture
def four_cpus(monkeypatch: pytest.MonkeyPatch, clocks: FakeClocks) -> None:
    monkeypatch.setattr(blas, "usable_cpus", lambda: 4)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)


@pytest.mark.usefixtures("four_cpus")
@pytest.mark.parametrize(("load", "idle"), [(0.1, 4), (2.0, 2), (3.6, 1), (40.0, 1)])
def test_idle_cpus_follow_the_load_average(monkeypatch: pytest.MonkeyPatch, load: float, idle: int) -> None:
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    assert blas.idle_cpus() == idle


@pytest.mark.usefixtures("four_cpus")
def test_this_process_s_own_threads_are_not_counted_as_load(
    monkeypatch: pytest.MonkeyPatch, clocks: FakeClocks
) -> None:
    # Ten minutes on four BLAS threads: the load average shows 4, all of it this process's own.
    clocks.wall += 600.0
    clocks.cpu += 4 * 600.0
    monkeypatch.setattr(os, "getloadavg", lambda: (4.0, 4.0, 4.0))
    assert blas.idle_cpus() == 4
    # Then another process keeps two CPUs busy while this one goes on at full rate.
    clocks.wall += 600.0
    clocks.cpu += 4 * 600.0
    monkeypatch.setattr(os, "getloadavg", lambda: (6.0, 6.0, 6.0))
    assert blas.idle_cpus() == 2


@pytest.mark.usefixtures("four_cpus")
def test_own_cpu_use_is_averaged_like_the_load_average(clocks: FakeClocks) -> None:
    # A burst of 4 CPUs for 6 s after an idle minute: the 1-minute load has barely moved, and nor has ours.
    clocks.wall += 60.0
    blas.idle_cpus()
    clocks.wall += 6.0
    clocks.cpu += 24.0
    own = blas._own_load.cpus()
    assert own == pytest.approx(4.0 * (1.0 - math.exp(-0.1)))


def test_a_forked_child_starts_its_own_count(monkeypatch: pytest.MonkeyPatch, clocks: FakeClocks) -> None:
    clocks.wall += 600.0
    clocks.cpu += 1200.0
    assert blas._own_load.cpus() > 1.0
    monkeypatch.setattr(os, "getpid", lambda: -1)  # the child's pid, and its CPU clock from zero
    clocks.cpu = 0.5
    assert blas._own_load.cpus() == 0.0


@pytest.mark.usefixtures("four_cpus")
def test_without_a_load_average_every_usable_cpu_is_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> tuple[float, float, float]:
        raise OSError("no load average")

    monkeypatch.setattr(os, "getloadavg", missing)
    assert blas.idle_cpus() == 4


def test_a_nested_limit_only_lowers_the_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    if blas.controller() is None:
        pytest.skip("threadpoolctl is not installed")
    np.ones((2, 2)) @ np.ones((2, 2))  # BLAS loaded
    with blas.limited(1):
        assert blas_threads() == 1
        monkeypatch.setattr(blas, "idle_cpus", lambda: 8)
        with blas.for_large_problem():  # in a worker process: the parent's limit holds
            assert blas_threads() == 1
        assert blas_threads() == 1
    assert blas._ceiling is None
    monkeypatch.setattr(blas, "idle_cpus", lambda: 1)
    with blas.for_large_problem():  # under load: one thread
        assert blas_threads() == 1
