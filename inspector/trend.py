"""`wwinspect trend CKPT...`: checkpoints of one training run, each layer's alpha, phase and MP soft rank
against the checkpoint order.

HTSR reads training as a movement of each layer's spectrum: alpha falls from the random-like values of
initialisation towards the heavy-tailed 2..4 as correlations are learned, the MP soft rank (lambda_+ over
lambda_max: how much of the top of the spectrum the random bulk still explains) falls as spikes and a tail
separate from the bulk, and a layer whose alpha goes below 2 is over-fitting. One checkpoint shows where a
layer is; a series shows where it is going.

The checkpoints are analysed as one fleet (`inspector.fleet.analyze_paths`: one queue of work for every
file, a Dask cluster with `--scheduler`, the eigenvalue cache with `--cache`), in the order given: a quoted
glob or a folder comes in natural order (`step-200` before `step-1000`). Layers are matched by name (and
slice, in per-slice mode), in the order they first appear.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from inspector.fleet import TaskRunner, analyze_paths
from inspector.options import AnalysisOptions
from inspector.records import LayerRecord, ModelReport, Phase, Status


@dataclass(frozen=True, slots=True)
class TrendPoint:
    """One layer in one checkpoint: analysed (with its numbers, some perhaps undefined) or failed."""

    status: Status
    alpha: float | None = None
    phase: Phase | None = None
    mp_softrank: float | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class LayerTrend:
    """One layer across the checkpoints: a point per checkpoint, None where it was absent or skipped."""

    label: str
    points: tuple[TrendPoint | None, ...]

    def alphas(self) -> list[float | None]:
        return [point.alpha if point is not None else None for point in self.points]


@dataclass(frozen=True, slots=True)
class Trend:
    """The checkpoints' reports, in the order given, and every measured layer's course through them."""

    reports: tuple[ModelReport, ...]
    layers: tuple[LayerTrend, ...]

    @property
    def checkpoints(self) -> tuple[str, ...]:
        return tuple(report.path for report in self.reports)

    @property
    def readable(self) -> bool:
        return all(report.error is None for report in self.reports)


def _label(record: LayerRecord) -> str:
    return record.name if record.slice_index is None else f"{record.name}[{record.slice_index}]"


def _point(record: LayerRecord) -> TrendPoint:
    metrics = record.metrics
    return TrendPoint(
        status=record.status,
        alpha=metrics.alpha if metrics is not None else None,
        phase=record.phase,
        mp_softrank=metrics.mp_softrank if metrics is not None else None,
        reason=record.reason,
    )


def build_trend(reports: Sequence[ModelReport]) -> Trend:
    """Each measured (analysed or failed) layer's points across `reports`, layers in first-seen order."""
    order: dict[str, None] = {}
    found: list[dict[str, TrendPoint]] = []
    for report in reports:
        points: dict[str, TrendPoint] = {}
        for record in report.layers:
            if record.status is Status.SKIPPED:
                continue
            label = _label(record)
            order.setdefault(label)
            points.setdefault(label, _point(record))
        found.append(points)
    layers = tuple(LayerTrend(label, tuple(points.get(label) for points in found)) for label in order)
    return Trend(reports=tuple(reports), layers=layers)


def trend_paths(
    paths: Sequence[Path],
    options: AnalysisOptions,
    *,
    jobs: int = 1,
    cache: Path | None = None,
    runner: TaskRunner | None = None,
) -> Trend:
    """Analyse the checkpoints (as one fleet) and follow their layers.

    Raises:
        UsageError: the cache folder cannot be created (before anything is read).
    """
    return build_trend(analyze_paths(paths, options, jobs=jobs, cache=cache, runner=runner))
