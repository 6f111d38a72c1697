"""alpha labels and the per-model summary: what the means cover, and that failed fits never enter them."""

from __future__ import annotations

import math

import pytest

from inspector.records import AlphaLabel, LayerKind, LayerMetrics, LayerRecord, Phase, Status
from inspector.science.phases import alpha_label
from inspector.science.summary import summarize


@pytest.mark.parametrize(
    ("alpha", "label"),
    [
        (1.2, AlphaLabel.OVER_TRAINED),
        (1.9999999, AlphaLabel.OVER_TRAINED),
        (2.0, AlphaLabel.WELL_TRAINED),
        (4.0, AlphaLabel.WELL_TRAINED),
        (6.0, AlphaLabel.WELL_TRAINED),
        (6.0000001, AlphaLabel.UNDER_TRAINED),
        (None, None),
        (math.nan, None),
        (math.inf, None),
    ],
)
def test_alpha_label_bands_are_inclusive_of_two_and_six(
    alpha: float | None, label: AlphaLabel | None
) -> None:
    assert alpha_label(alpha) == label


def record(
    index: int, status: Status, metrics: LayerMetrics | None = None, phase: Phase | None = None
) -> LayerRecord:
    return LayerRecord(
        index=index,
        name=f"layer{index}",
        kind=LayerKind.DENSE,
        role=None,
        shape=(64, 32),
        dtype="F32",
        status=status,
        reason=None if status == Status.ANALYZED else "a reason",
        N=64,
        M=32,
        metrics=metrics,
        phase=phase,
        alpha_label=alpha_label(metrics.alpha) if metrics is not None else None,
    )


def metrics(
    alpha: float | None, lambda_max: float, stable_rank: float, softrank: float | None
) -> LayerMetrics:
    return LayerMetrics(
        num_evals=32,
        lambda_max=lambda_max,
        alpha=alpha,
        alpha_weighted=alpha * math.log10(lambda_max) if alpha is not None else None,
        log_alpha_norm=alpha * 2.0 if alpha is not None else None,
        log_norm=math.log10(lambda_max * stable_rank),
        log_spectral_norm=math.log10(lambda_max),
        stable_rank=stable_rank,
        mp_softrank=softrank,
    )


def test_means_cover_analysed_layers_with_defined_values() -> None:
    records = [
        record(0, Status.ANALYZED, metrics(2.0, 100.0, 10.0, 0.5), Phase.HEAVY_TAILED),
        record(1, Status.ANALYZED, metrics(4.0, 10.0, 20.0, None), Phase.HEAVY_TAILED),
        record(2, Status.ANALYZED, metrics(None, 1000.0, 30.0, 0.1), Phase.RANDOM_LIKE),  # the fit failed
        record(3, Status.SKIPPED),
        record(4, Status.FAILED),
    ]
    summary = summarize(records)
    assert (summary.analyzed, summary.skipped, summary.failed) == (3, 1, 1)
    assert summary.analyzed_with_alpha == 2
    assert summary.mean_alpha == pytest.approx(3.0)  # the failed fit is not a -1 dragging it down
    assert summary.alpha_weighted == pytest.approx((2.0 * 2.0 + 4.0 * 1.0) / 2)
    assert summary.log_alpha_norm == pytest.approx(6.0)
    # Scale metrics are defined for every analysed layer, the fit or not.
    assert summary.log_spectral_norm == pytest.approx((2.0 + 1.0 + 3.0) / 3)
    assert summary.stable_rank == pytest.approx(20.0)
    assert summary.log_norm == pytest.approx(
        (math.log10(1000.0) + math.log10(200.0) + math.log10(30000.0)) / 3
    )
    assert summary.mp_softrank == pytest.approx(0.3)
    assert summary.phase_counts == {"heavy-tailed": 2, "random-like": 1}
    assert summary.alpha_label_counts == {"well-trained": 2}


def test_nothing_analysed_gives_no_means() -> None:
    summary = summarize([record(0, Status.SKIPPED), record(1, Status.FAILED)])
    assert (summary.analyzed, summary.skipped, summary.failed, summary.analyzed_with_alpha) == (0, 1, 1, 0)
    assert summary.mean_alpha is None and summary.log_norm is None and summary.stable_rank is None
    assert summary.phase_counts == {} and summary.alpha_label_counts == {}
