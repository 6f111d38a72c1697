"""`wwinspect trend CKPT...`: checkpoints whose weights grow heavier tails step by step, followed per layer
(alpha falls, the soft rank falls, the phase leaves random-like), as a table within 80 columns, JSON, CSV and
a figure; absent layers, unreadable checkpoints and the verb's usage errors."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from safetensors.numpy import save_file

from inspector.options import AnalysisOptions
from inspector.records import Phase, Status
from inspector.render import trend as render
from inspector.render.chars import ASCII, UNICODE
from inspector.trend import build_trend, trend_paths
from tests.conftest import run_cli

SHAPES = {"encoder.fc1.weight": (384, 192), "encoder.fc2.weight": (192, 96), "head.weight": (96, 48)}
# Training as HTSR pictures it: i.i.d. Gaussian weights at initialisation, then entries with heavier and
# heavier tails (Student t with falling degrees of freedom) as correlations are learned.
STEPS = ((100, None), (200, 12.0), (400, 6.0), (800, 4.0), (1600, 3.0), (3200, 2.2))


def _checkpoints(folder: Path, *, drop_head_at: int | None = None) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for step, df in STEPS:
        tensors = {}
        for name, (n, m) in SHAPES.items():
            W = rng.standard_normal((n, m)) if df is None else rng.standard_t(df, size=(n, m))
            if not (name == "head.weight" and step == drop_head_at):
                tensors[name] = (W / np.sqrt(m)).astype(np.float32)
        path = folder / f"step-{step}.safetensors"
        save_file(tensors, str(path))
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("run")
    _checkpoints(folder)
    return folder


def test_the_layers_move_as_training_does(run_folder: Path) -> None:
    result = run_cli("trend", run_folder, "--json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["command"] == "trend"
    # A folder's checkpoints come in natural order: step-200 before step-1000.
    assert [Path(path).name for path in document["checkpoints"]] == [
        f"step-{s}.safetensors" for s, _ in STEPS
    ]
    assert [layer["name"] for layer in document["layers"]] == list(SHAPES)
    for layer in document["layers"][:2]:
        first, last = layer["points"][0], layer["points"][-1]
        assert first["phase"] == Phase.RANDOM_LIKE.value
        assert last["phase"] == Phase.HEAVY_TAILED.value
        assert last["alpha"] < first["alpha"] and 2.0 < last["alpha"] < 4.0
        assert last["mp_softrank"] < 0.25 < 0.9 < first["mp_softrank"]
        assert [point["checkpoint"] for point in layer["points"]] == list(range(len(STEPS)))
    assert len(document["reports"]) == len(STEPS)


def test_the_table_fits_80_columns(run_folder: Path) -> None:
    trend = trend_paths(
        sorted(run_folder.iterdir(), key=lambda p: int(p.stem.split("-")[1])), AnalysisOptions()
    )
    for width in (80, 60):
        console = Console(width=width, file=io.StringIO(), color_system=None, legacy_windows=False)
        with console.capture() as capture:
            console.print(render.trend_view(trend))
        lines = capture.get().splitlines()
        assert max(len(line.rstrip()) for line in lines) <= width
        rows = [line for line in lines if line.lstrip().startswith(("1 ", "2 ", "3 ")) and "weight" in line]
        assert len(rows) == 3
        # The phase letters of the first layer: random-like first, heavy-tailed last.
        letters = next(word for word in rows[0].split() if set(word) <= set("ROSDHCF?."))
        assert letters[0] == "R" and letters[-1] == "H" and len(letters) == len(STEPS)


def test_csv_has_a_row_per_layer_and_checkpoint(run_folder: Path) -> None:
    result = run_cli("trend", run_folder, "--format", "csv")
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == len(SHAPES) * len(STEPS)
    assert {row["status"] for row in rows} == {"analyzed"}


def test_the_figure(run_folder: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    target = tmp_path / "trend.png"
    result = run_cli("trend", run_folder, "-o", target)
    assert result.exit_code == 0, result.stderr
    assert target.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert run_cli("trend", run_folder, "-o", target, "--format", "json").exit_code == 2


def test_a_layer_absent_from_one_checkpoint(tmp_path: Path) -> None:
    paths = _checkpoints(tmp_path, drop_head_at=400)
    trend = trend_paths(paths, AnalysisOptions())
    head = next(layer for layer in trend.layers if layer.label == "head.weight")
    assert head.points[2] is None and all(point is not None for i, point in enumerate(head.points) if i != 2)
    assert render.phase_letters(head.points)[2] == "."
    document = json.loads(render.to_json(trend, AnalysisOptions(), "cpu-gram"))
    assert document["layers"][2]["points"][2] is None


def test_an_unreadable_checkpoint_is_exit_3_and_the_rest_is_followed(
    run_folder: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "step-5000.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    result = run_cli("trend", *sorted(run_folder.iterdir()), broken, "--json")
    assert result.exit_code == 3
    document = json.loads(result.stdout)
    assert "error" in document["reports"][-1] and len(document["layers"]) == len(SHAPES)
    assert all(layer["points"][-1] is None for layer in document["layers"])


def test_usage_errors(run_folder: Path) -> None:
    one = next(run_folder.iterdir())
    for arguments in ((one,), (one, one, "--format", "html"), (run_folder, "--cache", one)):
        result = run_cli("trend", *arguments)
        assert result.exit_code == 2, arguments
        assert result.stderr.startswith("wwinspect: error:") and result.stderr.count("\n") == 1


def test_nothing_measured_is_exit_4(run_folder: Path) -> None:
    assert run_cli("trend", run_folder, "--layer", "nothing.*").exit_code == 4


def test_the_cache_serves_a_growing_series(run_folder: Path, tmp_path: Path) -> None:
    paths = sorted(run_folder.iterdir(), key=lambda p: int(p.stem.split("-")[1]))
    plain = run_cli("trend", *paths, "--json")
    first = run_cli("trend", *paths[:3], "--json", "--cache", tmp_path)
    again = run_cli("trend", *paths, "--json", "--cache", tmp_path)
    assert first.exit_code == again.exit_code == 0
    assert json.loads(again.stdout) == json.loads(plain.stdout)


def test_sampled_points_and_sparklines() -> None:
    assert render.shown_positions(5) == [0, 1, 2, 3, 4]
    shown = render.shown_positions(100, limit=16)
    assert shown[0] == 0 and shown[-1] == 99 and len(shown) == 16
    assert render.alpha_sparkline([2.0, None, 4.0], UNICODE) == "▁ █"
    assert render.alpha_sparkline([3.0, 3.0], ASCII) == "++"  # a constant alpha: the middle level
    assert render.alpha_sparkline([None], UNICODE) == ""


def test_failed_and_skipped_records() -> None:
    from inspector.records import LayerKind, LayerRecord, ModelReport

    def record(status: Status, index: int = 0) -> LayerRecord:
        return LayerRecord(
            index=index, name="w", kind=LayerKind.DENSE, role=None, shape=(4, 4), dtype="F32", status=status
        )

    reports = [
        ModelReport(path="a", format="safetensors", layers=(record(Status.FAILED),)),
        ModelReport(path="b", format="safetensors", layers=(record(Status.SKIPPED),)),
    ]
    trend = build_trend(reports)
    assert len(trend.layers) == 1 and trend.layers[0].points[1] is None
    assert render.phase_letters(trend.layers[0].points) == "F."
