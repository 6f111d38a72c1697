"""The phase classifier on matrices of known phase (tests/science/phase_suite.py): >= 95% right per phase.

Each construction is first checked against the theory it comes from (its own `check`, with the true noise
level), then analysed as the pipeline does (`measure_layer`, default options) and labelled
(`phases.label`). The thresholds of inspector/science/phases.py were chosen on these tuning cases; the
held-out cases (other seeds, shapes and construction variants) are scored by benchmarks/phase_confusion.py.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest

from inspector.options import AnalysisOptions
from inspector.records import Phase
from inspector.science.eigen import CpuBackend
from inspector.science.metrics import measure_layer
from inspector.science.phases import label
from tests.science.phase_suite import Case, spectrum, tuning_cases

MIN_ACCURACY = 0.95
BACKEND = CpuBackend()


def classify(case: Case) -> tuple[Phase | None, np.ndarray]:
    W = case.matrix()
    if W.shape[0] < W.shape[1]:
        W = np.ascontiguousarray(W.T)
    N, M = W.shape
    metrics = measure_layer([W], N=N, M=M, scale=1.0, options=AnalysisOptions(), backend=BACKEND)
    return label(metrics).phase, W


@pytest.fixture(scope="module")
def outcomes() -> list[tuple[Case, Phase | None]]:
    results = []
    for case in tuning_cases():
        phase, W = classify(case)
        if case.M <= 256:  # the theory checks need an SVD: on the smaller half of the suite
            case.check(spectrum(W))
        results.append((case, phase))
    return results


def test_every_phase_is_found_on_at_least_95_percent_of_its_cases(
    outcomes: list[tuple[Case, Phase | None]],
) -> None:
    confusion: dict[Phase, Counter[Phase | None]] = defaultdict(Counter)
    for case, phase in outcomes:
        confusion[case.truth][phase] += 1
    assert set(confusion) == set(Phase)  # every phase is in the suite
    report = {
        truth.value: {(phase.value if phase else None): count for phase, count in row.items()}
        for truth, row in confusion.items()
    }
    for truth, row in confusion.items():
        assert row[truth] / sum(row.values()) >= MIN_ACCURACY, report
