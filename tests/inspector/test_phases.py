"""The phase classifier: the rule table on hand-made evidence, the likelihood-ratio test, boundaries, and a
few synthetic matrices through the whole measurement (the full suite is tests/science/test_phase_suite.py)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from inspector.options import AnalysisOptions, Device, MPMethod
from inspector.records import AlphaLabel, LayerMetrics, Phase
from inspector.science.eigen import make_backend
from inspector.science.metrics import measure_layer
from inspector.science.phases import _power_law_vs_exponential, label

# An MP bulk of 500 eigenvalues with lambda_+ = 100 and s_TW = 1: the evidence below is set by hand.
BASE = LayerMetrics(
    num_evals=500,
    lambda_max=101.0,
    alpha=4.0,
    near_zero_fraction=0.0,
    mp_lambda_plus=100.0,
    mp_tw_scale=1.0,
    mp_bulk_ks=0.004,
    mp_bulk_ks_null=0.008,
    lambda_max_tw=1.0,
    num_outliers=0,
    num_separated_spikes=0,
    near_edge_share=0.0,
    tail_decades=math.log10(1.01),
    tail_lr=None,
    xmin_over_edge=0.8,
)


def evidence(**changes: float | int | None) -> LayerMetrics:
    metrics = replace(BASE, **changes)  # type: ignore[arg-type]
    if "tail_decades" in changes and "lambda_max" not in changes:
        metrics = replace(metrics, lambda_max=100.0 * 10.0 ** float(changes["tail_decades"] or 0.0))
    # lambda_+ = 100 and s_TW = 1: lambda_max in TW units above the edge
    return replace(metrics, lambda_max_tw=float(metrics.lambda_max or 0.0) - 100.0)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"near_zero_fraction": 0.4}, Phase.RANK_COLLAPSE),
        ({}, Phase.RANDOM_LIKE),
        # MP bulk, a few outliers just above the edge (lambda_max 1.15 lambda_+)
        ({"num_outliers": 3, "near_edge_share": 0.006, "tail_decades": math.log10(1.15)}, Phase.BLEEDING_OUT),
        # MP bulk, 3 spikes out to 4 lambda_+, one of them below 2 lambda_+
        (
            {"num_outliers": 3, "num_separated_spikes": 3, "near_edge_share": 0.002, "tail_decades": 0.6},
            Phase.BULK_PLUS_SPIKES,
        ),
        # the trained-MLP pattern: 15 strong spikes on 64 eigenvalues, reaching 15 lambda_+, PL "preferred"
        (
            {
                "num_evals": 64,
                "num_outliers": 15,
                "num_separated_spikes": 15,
                "near_edge_share": 2 / 64,
                "tail_decades": math.log10(15.0),
                "tail_lr": 3.0,
                "mp_bulk_ks": 0.04,
                "mp_bulk_ks_null": 0.045,
            },
            Phase.BULK_PLUS_SPIKES,
        ),
        # MP-like bulk, a continuous run (8% of the eigenvalues below 2 lambda_+) ending at 2.5 lambda_+
        (
            {
                "num_outliers": 50,
                "num_separated_spikes": 40,
                "near_edge_share": 0.08,
                "tail_decades": 0.4,
                "tail_lr": 1.5,
            },
            Phase.BULK_DECAY,
        ),
        # the same run reaching 30 lambda_+ with a power law preferred
        (
            {
                "num_outliers": 80,
                "num_separated_spikes": 70,
                "near_edge_share": 0.08,
                "tail_decades": math.log10(30.0),
                "tail_lr": 2.5,
            },
            Phase.HEAVY_TAILED,
        ),
        # ... but with the exponential preferred
        (
            {
                "num_outliers": 80,
                "num_separated_spikes": 70,
                "near_edge_share": 0.08,
                "tail_decades": math.log10(30.0),
                "tail_lr": -2.5,
            },
            Phase.BULK_DECAY,
        ),
        # no MP bulk: the tail counted from xmin (0.2 lambda_+) reaches 1.7 decades, power law preferred
        (
            {
                "num_outliers": 20,
                "num_separated_spikes": 15,
                "mp_bulk_ks": 0.3,
                "near_edge_share": 0.02,
                "tail_decades": 1.0,
                "xmin_over_edge": 0.2,
                "tail_lr": 2.0,
            },
            Phase.HEAVY_TAILED,
        ),
        # no MP bulk, short reach: bulk-decay (the old rules called any good power-law fit heavy-tailed)
        (
            {
                "num_outliers": 40,
                "num_separated_spikes": 30,
                "mp_bulk_ks": 0.03,
                "near_edge_share": 0.06,
                "tail_decades": 0.45,
                "xmin_over_edge": 0.5,
                "tail_lr": 0.5,
                "alpha": 2.5,
            },
            Phase.BULK_DECAY,
        ),
    ],
)
def test_rules(changes: dict[str, float | int | None], expected: Phase) -> None:
    assert label(evidence(**changes)).phase is expected


def test_label_also_gives_the_alpha_label_and_none_without_evidence() -> None:
    assert label(BASE).alpha_label is AlphaLabel.WELL_TRAINED
    assert label(replace(BASE, alpha=7.0)).alpha_label is AlphaLabel.UNDER_TRAINED
    unmeasured = LayerMetrics(num_evals=5, alpha=1.5)
    assert label(unmeasured).phase is None and label(unmeasured).alpha_label is AlphaLabel.OVER_TRAINED
    assert label(replace(BASE, num_evals=10)).phase is None  # a 10-class head: no bulk to speak of


def test_a_boundary_names_both_neighbouring_phases() -> None:
    clear = label(evidence(num_outliers=3, num_separated_spikes=3, near_edge_share=0.002, tail_decades=0.6))
    assert clear.phase is Phase.BULK_PLUS_SPIKES and clear.neighbour is None and clear.confidence == 1.0
    # 4.2% of the eigenvalues in the near-edge run: just past the 4% line between spikes and a run
    edge = label(evidence(num_outliers=30, num_separated_spikes=20, near_edge_share=0.042, tail_decades=0.5))
    assert edge.phase is Phase.BULK_DECAY and edge.neighbour is Phase.BULK_PLUS_SPIKES
    assert edge.confidence is not None and 0.5 <= edge.confidence < 0.6
    assert edge.rule is not None


def test_likelihood_ratio_prefers_the_law_that_made_the_data() -> None:
    rng = np.random.default_rng(0)
    pareto = 1.0 + (1.0 - rng.random(400)) ** (-1.0 / 1.5) - 1.0  # alpha = 2.5 above 1
    exponential = 1.0 + rng.exponential(0.5, 400)
    lr_pl, p_pl = _power_law_vs_exponential(np.sort(pareto), 1.0)
    lr_exp, p_exp = _power_law_vs_exponential(np.sort(exponential), 1.0)
    assert lr_pl is not None and lr_pl > 2.0 and p_pl is not None and p_pl < 0.05
    assert lr_exp is not None and lr_exp < -2.0 and p_exp is not None and p_exp < 0.05
    assert _power_law_vs_exponential(np.array([1.5, 2.0, 3.0]), 1.0) == (None, None)  # too few points


def _phase(W: np.ndarray) -> Phase | None:
    N, M = W.shape
    metrics = measure_layer(
        [W], N=N, M=M, scale=1.0, options=AnalysisOptions(), backend=make_backend(Device.CPU)
    )
    return label(metrics).phase


def test_synthetic_matrices_land_in_their_phases() -> None:
    rng = np.random.default_rng(3)
    N, M = 800, 400
    Q = N / M

    def spiked(count: int, strength: float) -> np.ndarray:
        W = rng.standard_normal((N, M)) / math.sqrt(N)
        for _ in range(count):
            u, v = rng.standard_normal(N), rng.standard_normal(M)
            W += strength * np.outer(u / np.linalg.norm(u), v / np.linalg.norm(v))
        return W

    assert _phase(rng.standard_normal((N, M))) is Phase.RANDOM_LIKE
    assert _phase(rng.uniform(-1, 1, (N, M))) is Phase.RANDOM_LIKE
    assert _phase(spiked(5, 2.5 * Q**-0.25)) is Phase.BULK_PLUS_SPIKES
    assert _phase(rng.pareto(1.5, (N, M)) * rng.choice([-1.0, 1.0], (N, M))) is Phase.HEAVY_TAILED
    assert _phase(rng.standard_normal((N, 100)) @ rng.standard_normal((100, M))) is Phase.RANK_COLLAPSE


def test_bleeding_out_sits_between_random_and_spikes() -> None:
    rng = np.random.default_rng(11)
    N, M = 1000, 500
    W = rng.standard_normal((N, M)) / math.sqrt(N)
    for _ in range(5):
        u, v = rng.standard_normal(N), rng.standard_normal(M)
        W += 1.1 * (N / M) ** -0.25 * np.outer(u / np.linalg.norm(u), v / np.linalg.norm(v))
    assert _phase(W) is Phase.BLEEDING_OUT


def test_graded_signal_is_bulk_decay_not_heavy_tailed() -> None:
    # The phase issue's bulk-decay: MP noise plus a signal of rank 20% of M whose strengths fall through the
    # BBP threshold; a continuous run of outliers to ~2.5 lambda_+ (the old rules said heavy-tailed).
    rng = np.random.default_rng(5)
    N, M = 1024, 512
    Q = N / M
    r = M // 5
    s_max = 2.1 * Q**-0.25
    U, _ = np.linalg.qr(rng.standard_normal((N, r)))
    V, _ = np.linalg.qr(rng.standard_normal((M, r)))
    W = rng.standard_normal((N, M)) / math.sqrt(N) + (U * (s_max * (1.0 - np.arange(r) / r))) @ V.T
    assert _phase(W) is Phase.BULK_DECAY


def test_the_phase_is_read_from_the_quantile_fit_whatever_the_reported_mp_fit() -> None:
    # --mp-fit kde changes the reported MP numbers (weightwatcher's fit), not the evidence of the phase.
    rng = np.random.default_rng(21)
    N, M = 600, 300
    W = rng.standard_normal((N, M)) / math.sqrt(N)
    u, v = rng.standard_normal(N), rng.standard_normal(M)
    W += 2.5 * (N / M) ** -0.25 * np.outer(u / np.linalg.norm(u), v / np.linalg.norm(v))
    backend = make_backend(Device.CPU)
    default = measure_layer([W], N=N, M=M, scale=1.0, options=AnalysisOptions(), backend=backend)
    kde = measure_layer(
        [W], N=N, M=M, scale=1.0, options=AnalysisOptions(mp_method=MPMethod.KDE), backend=backend
    )
    assert kde.mp_sigma != default.mp_sigma
    assert label(kde) == label(default)
    assert label(default).phase is Phase.BULK_PLUS_SPIKES
