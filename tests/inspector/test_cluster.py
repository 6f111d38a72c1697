"""`--scheduler ADDRESS`: the same work on a Dask cluster (a `distributed.LocalCluster` here), the same
report as the local run; an address that is wrong is a usage error before anything is read."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inspector import fleet
from inspector.cluster import DaskRunner, connect
from inspector.errors import UsageError
from inspector.fleet import analyze_paths
from inspector.options import AnalysisOptions
from inspector.render.json import report_dict
from tests.conftest import FIXTURES, run_cli
from tests.inspector.test_fleet import SMALL, _large, _Log
from tests.inspector.test_parallel_pipeline import assert_same

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """A cluster of two worker threads in this process, on Dask's in-process transport (inproc://): no
    process to start, no socket."""
    cluster = distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    )
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


def _reports(paths: list[Path], **kwargs: Any) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
    log = _Log()
    reports = analyze_paths(
        paths, AnalysisOptions(), progress=log.progress, on_file=log.on_file, hooks=log.hooks(), **kwargs
    )
    return [report_dict(report) for report in reports], log.calls


def test_the_cluster_reports_what_the_local_run_reports(
    scheduler: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07garbage")
    monkeypatch.setattr(fleet, "WHOLE_FILE_BYTES", 300_000)  # the generated file goes tensor by tensor
    paths = [*SMALL, broken, _large(tmp_path / "large.safetensors", 3)]
    local, local_calls = _reports(paths, jobs=1)
    runner = connect(scheduler)
    try:
        remote, remote_calls = _reports(paths, jobs=1, runner=runner)
    finally:
        runner.close()
    assert "error" in local[len(SMALL)]
    assert_same(local, remote)
    assert remote_calls == local_calls


def test_the_flag_gives_the_local_json_report(scheduler: str) -> None:
    path = FIXTURES / "digits_mlp.safetensors"
    local = run_cli(path, "--json", "--jobs", "1")
    remote = run_cli(path, "--json", "--scheduler", scheduler)
    assert local.exit_code == remote.exit_code == 0
    local_report, remote_report = json.loads(local.stdout), json.loads(remote.stdout)
    assert_same(local_report["reports"], remote_report["reports"])
    assert local_report["settings"] == remote_report["settings"]


def test_the_cluster_uses_the_cache(scheduler: str, tmp_path: Path) -> None:
    runner = connect(scheduler)
    try:
        first = [
            report_dict(r) for r in analyze_paths(SMALL[:2], AnalysisOptions(), runner=runner, cache=tmp_path)
        ]
    finally:
        runner.close()
    assert list(tmp_path.glob("eigenvalues-v1/*/*.eig"))
    again = [report_dict(r) for r in analyze_paths(SMALL[:2], AnalysisOptions(), cache=tmp_path)]
    assert first == again


def test_no_scheduler_at_the_address_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="no Dask scheduler answered"):
        connect("tcp://127.0.0.1:1", timeout=1.0)  # port 1: nothing listens there


def test_a_malformed_address_is_a_usage_error() -> None:
    result = run_cli(FIXTURES / "digits_mlp.safetensors", "--scheduler", "nonsense://x:y")
    assert result.exit_code == 2
    assert result.stderr.startswith("wwinspect: error: --scheduler") and result.stderr.count("\n") == 1


def test_without_distributed_the_flag_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(UsageError, match="distributed") as caught:
        connect("tcp://127.0.0.1:8786")
    assert caught.value.hint is not None and "wwinspect[dask]" in caught.value.hint


def test_the_runner_cancels_what_is_left_when_stopped(scheduler: str) -> None:
    runner = connect(scheduler)
    try:
        tasks = [fleet.FleetTask(path, cost=1.0) for path in SMALL]
        results = runner.run(tasks, AnalysisOptions(), fleet.make_backend(AnalysisOptions().device), False)
        first = next(results)
        assert first.report is not None and first.report.path == str(SMALL[0])
        results.close()
    finally:
        runner.close()
    assert isinstance(runner, DaskRunner)
