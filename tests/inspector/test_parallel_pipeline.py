"""Worker processes change the wall-clock time, never the report: every fixture, every format, one process
against two (with the work threshold lowered so that even the small fixtures fork)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from formats.errors import CorruptFileError
from inspector import pipeline, workers
from inspector.fleet import analyze_paths
from inspector.options import AnalysisOptions
from inspector.pipeline import MIN_PARALLEL_WORK
from inspector.render.json import report_dict
from tests.conftest import FIXTURES, load_manifests

MANIFESTS = load_manifests()


def assert_same(serial: Any, parallel: Any, where: str = "report") -> None:
    """Equal, floats to 1e-12 relative: BLAS may sum in another order with another thread count."""
    if isinstance(serial, dict):
        assert serial.keys() == parallel.keys(), where
        for key in serial:
            assert_same(serial[key], parallel[key], f"{where}.{key}")
    elif isinstance(serial, list | tuple):
        assert len(serial) == len(parallel), where
        for position, (left, right) in enumerate(zip(serial, parallel, strict=True)):
            assert_same(left, right, f"{where}[{position}]")
    elif isinstance(serial, float) and not isinstance(serial, bool):
        assert isinstance(parallel, float), where
        assert math.isclose(serial, parallel, rel_tol=1e-12, abs_tol=1e-300), (where, serial, parallel)
    else:
        assert serial == parallel, (where, serial, parallel)


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda manifest: str(manifest["fixture"]))
def test_two_workers_report_what_one_process_reports(manifest: dict[str, Any]) -> None:
    path = FIXTURES / manifest["fixture"]
    options = AnalysisOptions()
    (serial,) = analyze_paths([path], options, jobs=1)
    (parallel,) = analyze_paths([path], options, jobs=2, min_parallel_work=0.0)
    assert_same(report_dict(serial), report_dict(parallel))


def test_options_reach_the_workers() -> None:
    options = AnalysisOptions(randomize=True, seed=7, pool_conv=False)
    path = FIXTURES / "digits_mlp.safetensors"
    (serial,) = analyze_paths([path], options, jobs=1)
    (parallel,) = analyze_paths([path], options, jobs=2, min_parallel_work=0.0)
    assert any(
        layer.metrics is not None and layer.metrics.rand_distance is not None for layer in serial.layers
    )
    assert_same(report_dict(serial), report_dict(parallel))


def test_a_file_error_raised_in_a_worker_becomes_the_files_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # The workers are forked after this patch, so they run it: reading fc2 fails as a corrupt file would.
    original = pipeline.analyze_tensor

    def failing(pending: Any, *args: Any) -> Any:
        if pending.ref.info.name == "fc2.weight":
            raise CorruptFileError("tensor 'fc2.weight' ends past the end of the file")
        return original(pending, *args)

    monkeypatch.setattr(pipeline, "analyze_tensor", failing)
    path = FIXTURES / "digits_mlp.safetensors"
    (serial,) = analyze_paths([path], AnalysisOptions(), jobs=1)
    (parallel,) = analyze_paths([path], AnalysisOptions(), jobs=2, min_parallel_work=0.0)
    assert serial.error is not None and "ends past the end" in serial.error.message
    assert parallel.error == serial.error


def test_only_enough_work_forks(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    original = workers.ordered_map  # the function pipeline imported, before the patch

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["jobs"])
        return original(*args, **kwargs)

    monkeypatch.setattr(pipeline, "ordered_map", counting)
    path = FIXTURES / "digits_mlp.safetensors"  # three layers of a few hundred units: ~1e8 of work
    analyze_paths([path], AnalysisOptions(), jobs=2)
    assert calls == []
    analyze_paths([path], AnalysisOptions(), jobs=1, min_parallel_work=0.0)
    assert calls == []
    analyze_paths([path], AnalysisOptions(), jobs=2, min_parallel_work=0.0)
    assert calls == [2]
    assert MIN_PARALLEL_WORK >= 1e8
