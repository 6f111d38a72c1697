"""The phase classifier: table-driven rules, the MP CDF it uses, and synthetic matrices of known phase."""

from __future__ import annotations

import math

import numpy as np
import pytest

from inspector.options import AnalysisOptions, Device
from inspector.records import Phase
from inspector.science.eigen import make_backend
from inspector.science.metrics import measure_layer
from inspector.science.phases import PhaseEvidence, classify, classify_metrics, mp_bulk_threshold

MP_LIKE = 0.005
NOT_MP = 0.2


@pytest.mark.parametrize(
    ("evidence", "near_zero", "alpha", "D", "tail", "expected"),
    [
        (PhaseEvidence(MP_LIKE, 0, 0), 0.5, 3.0, 0.03, 100, Phase.RANK_COLLAPSE),
        (PhaseEvidence(MP_LIKE, 0, 0), 0.0, 7.0, 0.12, 100, Phase.RANDOM_LIKE),
        (PhaseEvidence(MP_LIKE, 3, 0), 0.0, 9.0, 0.11, 100, Phase.BLEEDING_OUT),
        (PhaseEvidence(MP_LIKE, 3, 2), 0.0, 5.0, 0.08, 100, Phase.BULK_PLUS_SPIKES),
        (PhaseEvidence(MP_LIKE, 100, 50), 0.0, 2.5, 0.05, 100, Phase.HEAVY_TAILED),  # too many outliers
        (PhaseEvidence(NOT_MP, 40, 30), 0.0, 2.5, 0.05, 100, Phase.HEAVY_TAILED),
        (PhaseEvidence(NOT_MP, 40, 30), 0.0, 2.5, 0.15, 100, Phase.BULK_DECAY),  # poor power-law fit
        (PhaseEvidence(NOT_MP, 40, 30), 0.0, 8.0, 0.05, 100, Phase.BULK_DECAY),  # alpha uninformative
        (PhaseEvidence(NOT_MP, 40, 30), 0.0, 2.5, 0.05, 5, Phase.BULK_DECAY),  # tail too short
        (PhaseEvidence(None, 0, 0), 0.0, 2.5, 0.05, 50, Phase.HEAVY_TAILED),  # MP could not be fitted
    ],
)
def test_rules(
    evidence: PhaseEvidence, near_zero: float, alpha: float, D: float, tail: int, expected: Phase
) -> None:
    phase = classify(
        evidence=evidence,
        num_evals=500,
        M=500,
        near_zero_fraction=near_zero,
        alpha=alpha,
        D=D,
        num_pl_spikes=tail,
    )
    assert phase is expected


def test_bulk_threshold_shrinks_with_size_to_its_floor() -> None:
    assert mp_bulk_threshold(16) > mp_bulk_threshold(64) > mp_bulk_threshold(256)
    assert mp_bulk_threshold(4096) == pytest.approx(0.02)


def _phase(W: np.ndarray) -> Phase | None:
    N, M = W.shape
    metrics = measure_layer(
        [W], N=N, M=M, scale=1.0, options=AnalysisOptions(), backend=make_backend(Device.CPU)
    )
    return classify_metrics(metrics, M)


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
