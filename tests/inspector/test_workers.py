"""The fork pool: results in order, errors at their turn, crashed workers, no process left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from inspector.workers import WorkerCrashedError, ordered_map, resolve_jobs, usable_cpus
from tests.conftest import ROOT, child_processes


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


def _slow(seconds: float, then: Callable[[int], object]) -> Callable[[int], object]:
    def job(index: int) -> object:
        time.sleep(seconds)
        return then(index)

    return job


def test_results_come_in_item_order_from_several_processes() -> None:
    before = _children()
    costs = [float(i % 7) for i in range(40)]  # started in another order than they are yielded
    results = list(ordered_map(_slow(0.01, lambda i: (i * i, os.getpid())), costs, jobs=3))
    assert [square for square, _ in results] == [i * i for i in range(40)]  # type: ignore[misc]
    assert len({pid for _, pid in results}) >= 2  # type: ignore[misc]
    assert _wait_for_no_children(before) == set()


def test_the_job_may_be_a_closure_and_children_run_their_setup() -> None:
    state = {"where": "parent"}

    def setup() -> None:
        state["where"] = "child"

    results = list(ordered_map(_slow(0.01, lambda i: state["where"]), [1.0] * 30, jobs=2, child_setup=setup))
    assert set(results) == {"parent", "child"}
    assert state["where"] == "parent"


def test_a_child_whose_setup_fails_leaves_its_share_to_the_others() -> None:
    def setup() -> None:
        raise OSError("cannot open the file again")

    results = list(
        ordered_map(_slow(0.005, lambda i: (i, os.getpid())), [1.0] * 12, jobs=3, child_setup=setup)
    )
    assert [i for i, _ in results] == list(range(12))  # type: ignore[misc]
    assert {pid for _, pid in results} == {os.getpid()}  # type: ignore[misc]


@pytest.mark.parametrize("where", ["parent", "child"])
def test_an_error_is_raised_at_its_turn_after_the_items_before_it(where: str) -> None:
    before = _children()
    me = os.getpid()

    def job(index: int) -> int:
        time.sleep(0.01)
        here = "parent" if os.getpid() == me else "child"
        if index == 5 or (index > 5 and here == where):
            raise ValueError(f"item {index} is bad in the {here}")
        return index

    received: list[int] = []
    with pytest.raises(ValueError, match="item 5 is bad"):
        for value in ordered_map(job, [1.0] * 12, jobs=2):
            received.append(value)
    assert received == [0, 1, 2, 3, 4]
    assert _wait_for_no_children(before) == set()


def test_a_killed_worker_is_a_typed_error_not_a_hang() -> None:
    before = _children()
    me = os.getpid()

    def job(index: int) -> int:
        time.sleep(0.01)
        if os.getpid() != me:
            os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's out-of-memory killer would
        return index

    with pytest.raises(WorkerCrashedError, match="worker process died"):
        list(ordered_map(job, [1.0] * 8, jobs=2))
    assert _wait_for_no_children(before) == set()


def test_unpicklable_results_and_errors_still_reach_the_parent() -> None:
    me = os.getpid()

    def job(index: int) -> object:
        time.sleep(0.01)
        if os.getpid() != me:
            raise ValueError(lambda: index)  # a lambda does not pickle
        return index

    with pytest.raises((ValueError, RuntimeError)):
        list(ordered_map(job, [1.0] * 10, jobs=2))


def test_a_caller_that_stops_early_stops_the_running_workers() -> None:
    before = _children()
    started = time.monotonic()
    me = os.getpid()

    def job(index: int) -> int:
        time.sleep(30.0 if os.getpid() != me and index > 0 else 0.0)  # the children get stuck
        return index

    results = ordered_map(job, [3.0, 2.0, 1.0, 1.0], jobs=3)
    assert next(results) == 0
    results.close()
    assert _wait_for_no_children(before) == set()
    assert time.monotonic() - started < 15.0


def test_no_file_descriptor_is_left_open() -> None:
    before = set(os.listdir("/proc/self/fd"))
    assert list(ordered_map(_slow(0.005, lambda i: i), [1.0] * 10, jobs=3)) == list(range(10))
    with pytest.raises(ZeroDivisionError):
        list(ordered_map(_slow(0.005, lambda i: 1 // 0 if i == 4 else i), [1.0] * 10, jobs=3))
    assert set(os.listdir("/proc/self/fd")) == before


def test_children_die_with_a_killed_parent(tmp_path: Path) -> None:
    # A parent process that forks workers stuck in a 60 s item, then is killed outright.
    script = tmp_path / "parent.py"
    script.write_text(
        "import os, sys, time\n"
        "from inspector.workers import ordered_map\n"
        "me = os.getpid()\n"
        "def job(i):\n"
        "    if os.getpid() != me:\n"
        "        os.write(1, f'{os.getpid()}\\n'.encode())  # one write: the children's lines never mix\n"
        "        time.sleep(60)\n"
        "    else:\n"
        "        time.sleep(60)\n"
        "    return i\n"
        "list(ordered_map(job, [1.0] * 4, jobs=3))\n"
    )
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert parent.stdout is not None
    workers = {int(parent.stdout.readline()), int(parent.stdout.readline())}
    parent.kill()
    parent.wait(timeout=10)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)


def test_a_failed_fork_leaves_the_work_to_the_processes_there_are(monkeypatch: pytest.MonkeyPatch) -> None:
    forks: list[int] = []
    real_fork = os.fork

    def fork_once() -> int:
        if forks:
            raise BlockingIOError(11, "Resource temporarily unavailable")  # EAGAIN, as fork reports it
        forks.append(1)
        return real_fork()

    monkeypatch.setattr(os, "fork", fork_once)
    before = set(os.listdir("/proc/self/fd"))
    results = list(ordered_map(_slow(0.005, lambda i: i), [1.0] * 12, jobs=4))
    assert results == list(range(12))
    assert forks == [1]
    assert set(os.listdir("/proc/self/fd")) == before


def test_many_open_descriptors_do_not_break_the_wait() -> None:
    # select.select cannot watch descriptors above 1023; the pool must not depend on it
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"the hard limit on open files ({hard}) is too low for this test")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        assert list(ordered_map(_slow(0.01, lambda i: i), [1.0] * 6, jobs=2)) == list(range(6))
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_jobs_zero_means_one_per_cpu_idle_or_not(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_jobs(0) == min(usable_cpus(), 8)
    monkeypatch.setattr(os, "getloadavg", lambda: (50.0, 50.0, 50.0))
    assert resolve_jobs(0) == min(usable_cpus(), 8)  # under load processes of one BLAS thread hold up best
    assert resolve_jobs(3) == 3
    with pytest.raises(ValueError, match="jobs must be"):
        resolve_jobs(-1)
