"""BLAS thread limits: fewer threads under load, and a nested limit never raises an enclosing one."""

from __future__ import annotations

import os

import numpy as np
import pytest

from inspector.science import blas


def blas_threads() -> int:
    controller = blas.controller()
    return min(info["num_threads"] for info in controller.info() if info["user_api"] == "blas")


@pytest.fixture
def four_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(blas, "usable_cpus", lambda: 4)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)


@pytest.mark.usefixtures("four_cpus")
@pytest.mark.parametrize(("load", "idle"), [(0.1, 4), (2.0, 2), (3.6, 1), (40.0, 1)])
def test_idle_cpus_follow_the_load_average(monkeypatch: pytest.MonkeyPatch, load: float, idle: int) -> None:
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    assert blas.idle_cpus() == idle


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
