"""Fleets: several paths share one queue of work across the workers, and the reports, their order and the
hooks' calls are those of the sequential run (small files whole, large files tensor by tensor)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from inspector import fleet as fleet_module
from inspector import pipeline
from inspector.fleet import analyze_paths
from inspector.options import AnalysisOptions
from inspector.pipeline import AnalysisHooks
from inspector.records import LayerRecord, ModelReport
from inspector.render.json import report_dict
from tests.conftest import FIXTURES
from tests.inspector.test_parallel_pipeline import assert_same

SMALL = [
    FIXTURES / "digits_mlp.safetensors",
    FIXTURES / "crossformat" / "digits.onnx",
    FIXTURES / "crossformat" / "digits.keras",
    FIXTURES / "tiny_bf16.safetensors",
    FIXTURES / "crossformat" / "digits.gguf",
]


class _Log:
    """Every hook call and progress step, in order, as plain values."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def hooks(self) -> AnalysisHooks:
        return AnalysisHooks(listed=self.listed, record=self.record, finished=self.finished)

    def listed(self, path: Path, file_format: str, count: int) -> None:
        self.calls.append(("listed", str(path), file_format, count))

    def record(self, path: Path, file_format: str, record: LayerRecord) -> None:
        self.calls.append(("record", str(path), file_format, record.name, record.status.value))

    def finished(self, report: ModelReport) -> None:
        self.calls.append(("finished", report.path, report.error))

    def progress(self, name: str, done: int, total: int) -> None:
        self.calls.append(("progress", name, done, total))

    def on_file(self, path: Path) -> None:
        self.calls.append(("file", str(path)))


def _run(paths: list[Path], **kwargs: Any) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
    log = _Log()
    reports = analyze_paths(
        paths, AnalysisOptions(), progress=log.progress, on_file=log.on_file, hooks=log.hooks(), **kwargs
    )
    return [report_dict(report) for report in reports], log.calls


def _large(path: Path, layers: int = 4) -> Path:
    """`layers` matrices of 256 x 128 float32: 131 kB each."""
    rng = np.random.default_rng(layers)
    save_file(
        {f"block{i}.weight": rng.standard_t(4.0, size=(256, 128)).astype(np.float32) for i in range(layers)},
        str(path),
    )
    return path


def test_small_files_share_the_workers_and_report_as_in_sequence() -> None:
    serial, serial_calls = _run(SMALL, jobs=1)
    fleet, fleet_calls = _run(SMALL, jobs=2, min_parallel_work=0.0)
    assert_same(serial, fleet)
    assert fleet_calls == serial_calls


def test_large_files_are_shared_tensor_by_tensor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = [_large(tmp_path / "a.safetensors", 3), *SMALL[1:3], _large(tmp_path / "b.safetensors", 5)]
    monkeypatch.setattr(fleet_module, "WHOLE_FILE_BYTES", 200_000)  # the ONNX and Keras files are ~130 kB
    tasks = [
        task for path in dict.fromkeys(paths) for task in fleet_module.plan_tasks(path, AnalysisOptions())
    ]
    assert (
        sum(task.index is not None for task in tasks) == 8 and sum(task.index is None for task in tasks) == 2
    )
    serial, serial_calls = _run(paths, jobs=1)
    fleet, fleet_calls = _run(paths, jobs=2, min_parallel_work=0.0)
    assert_same(serial, fleet)
    assert fleet_calls == serial_calls


def test_one_queue_forks_once_for_every_file(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    original = fleet_module.ordered_map

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(len(args[1]))
        return original(*args, **kwargs)

    monkeypatch.setattr(fleet_module, "ordered_map", counting)
    _run(SMALL, jobs=2, min_parallel_work=0.0)
    assert calls == [len(SMALL)]
    calls.clear()
    _run(SMALL, jobs=2)  # a few small files: too little work to fork for
    assert calls == []


def test_unreadable_missing_and_repeated_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    large = _large(tmp_path / "large.safetensors")
    monkeypatch.setattr(fleet_module, "WHOLE_FILE_BYTES", 50_000)
    paths = [SMALL[0], broken, large, SMALL[0], large, SMALL[1]]
    serial, serial_calls = _run(paths, jobs=1)
    fleet, fleet_calls = _run(paths, jobs=2, min_parallel_work=0.0)
    assert "error" in serial[1]
    assert_same(serial, fleet)
    assert fleet_calls == serial_calls


def test_a_file_error_while_reading_a_tensor_ends_that_file_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from formats.errors import CorruptFileError

    original = fleet_module.analyze_tensor

    def failing(pending: Any, *args: Any) -> Any:
        if pending.ref.info.name == "block1.weight":
            raise CorruptFileError("tensor 'block1.weight' ends past the end of the file")
        return original(pending, *args)

    monkeypatch.setattr(fleet_module, "analyze_tensor", failing)  # the fleet's tensor tasks
    monkeypatch.setattr(pipeline, "analyze_tensor", failing)  # the sequential run's loop
    monkeypatch.setattr(fleet_module, "WHOLE_FILE_BYTES", 50_000)
    paths = [_large(tmp_path / "a.safetensors"), SMALL[0], _large(tmp_path / "b.safetensors", 6), SMALL[3]]
    serial, serial_calls = _run(paths, jobs=1)
    fleet, fleet_calls = _run(paths, jobs=2, min_parallel_work=0.0)
    assert ["error" in report for report in serial] == [True, False, True, False]
    assert_same(serial, fleet)
    assert fleet_calls == serial_calls
