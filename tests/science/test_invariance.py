"""The phase and every scale-free number do not depend on the units of the weights, their orientation in the
file, or half-precision storage (the phase issue's deliverable 2)."""

from __future__ import annotations

from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import save_file

from inspector import analyze
from inspector.options import AnalysisOptions, FitCut
from inspector.records import LayerMetrics, Phase
from inspector.science.eigen import CpuBackend
from inspector.science.metrics import measure_layer
from inspector.science.phases import PhaseLabel, label
from tests.science.phase_suite import Case, tuning_cases

BACKEND = CpuBackend()
SCALES = (1e-6, 1e-3, 0.37, 1e3, 1e6)
# Scale-free fields of LayerMetrics (weak_rank_loss is weightwatcher's absolute 1e-6 rule: not among them).
SCALE_FREE = (
    "alpha", "D", "sigma", "num_pl_spikes", "num_fit_evals", "stable_rank", "entropy", "matrix_rank",
    "rank_loss", "near_zero_fraction", "mp_sigma", "mp_softrank", "num_spikes", "detX_num", "mp_bulk_ks",
    "mp_bulk_ks_null", "lambda_max_tw", "num_outliers", "num_separated_spikes", "outlier_mass",
    "tail_decades", "near_edge_share", "tail_lr", "tail_lr_p", "xmin_over_edge", "fit_low_confidence",
)  # fmt: skip


def one_per_phase() -> list[Case]:
    """A moderate-size case of every phase and most families, from the tuning suite."""
    chosen: dict[str, Case] = {}
    for case in tuning_cases():
        if case.M in (128, 256) and case.N <= 512 and case.family not in chosen:
            chosen[case.family] = case
    return list(chosen.values())


CASES = one_per_phase()


DEFAULTS = AnalysisOptions()


def measure(W: np.ndarray, options: AnalysisOptions = DEFAULTS) -> tuple[LayerMetrics, PhaseLabel]:
    if W.shape[0] < W.shape[1]:
        W = np.ascontiguousarray(W.T)
    metrics = measure_layer([W], N=W.shape[0], M=W.shape[1], scale=1.0, options=options, backend=BACKEND)
    return metrics, label(metrics)


def assert_same(
    base: tuple[LayerMetrics, PhaseLabel], other: tuple[LayerMetrics, PhaseLabel], rel: float
) -> None:
    (m0, l0), (m1, l1) = base, other
    assert (l1.phase, l1.neighbour, l1.rule) == (l0.phase, l0.neighbour, l0.rule)
    assert l1.confidence == pytest.approx(l0.confidence, rel=rel, abs=1e-12)
    for key in SCALE_FREE:
        a, b = getattr(m0, key), getattr(m1, key)
        if isinstance(a, float) and isinstance(b, float):
            assert b == pytest.approx(a, rel=rel, abs=1e-12), key
        else:
            assert a == b, key
    assert (m0.xmin is None) == (m1.xmin is None)
    if m0.xmin is not None and m1.xmin is not None and m0.lambda_max and m1.lambda_max:
        assert m1.xmin / m1.lambda_max == pytest.approx(m0.xmin / m0.lambda_max, rel=rel)


def test_the_cases_cover_every_phase() -> None:
    assert {case.truth for case in CASES} == set(Phase)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.family)
def test_scale_and_transpose_change_nothing(case: Case) -> None:
    W = case.matrix()
    base = measure(W)
    for c in SCALES:
        assert_same(base, measure(W * c), rel=1e-9)
    assert_same(base, measure(np.ascontiguousarray(W.T)), rel=1e-9)
    # float32 weights: the same to float32 precision at every scale
    single = W.astype(np.float32)
    base32 = measure(single)
    for c in (1e-6, 1e6):
        assert_same(base32, measure(single * np.float32(c)), rel=1e-4)


def test_weightwatchers_absolute_cut_is_what_made_the_phase_depend_on_the_scale() -> None:
    # A heavy-tailed matrix at 1e-3: the 1e-5 cut on s^2 leaves most of the spectrum out of the fit.
    case = next(c for c in CASES if c.truth is Phase.HEAVY_TAILED)
    W = case.matrix()
    absolute = AnalysisOptions(fit_cut=FitCut.ABSOLUTE)
    assert measure(W * 1e-3)[0].alpha == pytest.approx(measure(W)[0].alpha, rel=1e-9)
    assert measure(W * 1e-3, absolute)[0].num_fit_evals < measure(W, absolute)[0].num_fit_evals


HALF = {"F16": (np.float16, 2.0**-11), "BF16": (ml_dtypes.bfloat16, 2.0**-8)}


@pytest.mark.parametrize("dtype", sorted(HALF))
def test_half_precision_storage_keeps_the_phase(tmp_path: Path, dtype: str) -> None:
    """Each case stored as F32, as F16/BF16 and transposed, read back by the safetensors reader and analysed:
    the same phase, and alpha within what rounding every weight to the dtype can move it."""
    numpy_type, unit_roundoff = HALF[dtype]
    tensors_32, tensors_half = {}, {}
    for number, case in enumerate(CASES):
        W = case.matrix()
        W = W / float(np.abs(W).max())  # inside the half-precision range whatever the construction's scale
        tensors_32[f"layer{number}.weight"] = W.astype(np.float32)
        rounded = W.astype(numpy_type)
        tensors_half[f"layer{number}.weight"] = rounded if dtype == "F16" else rounded.view(np.uint16)
        tensors_half[f"layer{number}.transposed"] = np.ascontiguousarray(
            tensors_half[f"layer{number}.weight"].T
        )
    save_file(tensors_32, str(tmp_path / "f32.safetensors"))
    half_path = tmp_path / "half.safetensors"
    save_file(tensors_half, str(half_path))
    if dtype == "BF16":  # safetensors.numpy has no bfloat16: relabel the uint16 payload in the header
        raw = half_path.read_bytes()
        size = int.from_bytes(raw[:8], "little")
        header = raw[8 : 8 + size].rstrip(b" ").replace(b'"U16"', b'"BF16"')
        header += b" " * (-len(header) % 8)  # offsets are relative to the data: only the length changes
        half_path.write_bytes(len(header).to_bytes(8, "little") + header + raw[8 + size :])
    base = {record.name: record for record in analyze(tmp_path / "f32.safetensors").layers}
    half = {record.name: record for record in analyze(half_path).layers}
    for number, case in enumerate(CASES):
        reference = base[f"layer{number}.weight"]
        assert reference.metrics is not None
        for name in (f"layer{number}.weight", f"layer{number}.transposed"):
            record = half[name]
            assert record.dtype == dtype and record.metrics is not None
            assert record.phase is reference.phase, (case.name, dtype)
            # Eigenvalues move by ~2 u relative; alpha by as much, times the tail's sensitivity. A random-like
            # ESD has no tail: its Clauset xmin jumps between near-equal minima of D under any perturbation
            # (and an orthogonal init has nothing to fit), so only its phase is compared.
            if reference.metrics.alpha is not None and reference.phase is not Phase.RANDOM_LIKE:
                assert record.metrics.alpha == pytest.approx(reference.metrics.alpha, rel=200 * unit_roundoff)
        stored, transposed = half[f"layer{number}.weight"], half[f"layer{number}.transposed"]
        assert stored.metrics is not None and transposed.metrics is not None
        assert (stored.phase, stored.phase_neighbour) == (transposed.phase, transposed.phase_neighbour)
        for key in SCALE_FREE:
            a, b = getattr(stored.metrics, key), getattr(transposed.metrics, key)
            assert b == (pytest.approx(a, rel=1e-6, abs=1e-12) if isinstance(a, float) else a), key
