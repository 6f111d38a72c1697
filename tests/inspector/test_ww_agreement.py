"""Number-for-number agreement with weightwatcher 0.7.7, the numeric reference (PRODUCT.md, "Conventions").

* Its power-law fit (`WW_powerlaw.WWFit`) on the same float64 eigenvalues: alpha, xmin, D and sigma to 1e-9
  relative wherever it takes its standard path (20 or more eigenvalues above the cut).
* Its `analyze()` on a small torch model (Linear, Conv2d, Embedding), against `measure_layer` on the same
  matrices: every shared metric to 1e-9 relative when we use its eigenvalue route (float64 SVD), alpha to 1e-3
  through our default route (Gram + eigh).
* With `mp_fit=True, randomize=True, detX=True`: the MP fit with its method and spike margin (KDE, sqrt TW),
  detX, and the randomised numbers recomputed from weightwatcher's own shuffles (its unseeded global
  `np.random`, seeded here, replayed in the same order).

Deliberate differences, each pinned by a test below: the small-n fit (its bias-corrected alpha with an
overwritten J criterion), the entropy's +1e-10 regulariser, and the quarter-circle law for square matrices.
weightwatcher is a test dependency and is never skipped (PRODUCT.md); these tests run in well under a minute.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
import torch
import weightwatcher
from weightwatcher import RMT_Util
from weightwatcher.WW_powerlaw import WWFit

from inspector.options import AnalysisOptions, FitCut, MPMethod, SpikeRule
from inspector.records import LayerMetrics
from inspector.science.eigen import CpuBackend
from inspector.science.metrics import matrix_entropy, measure_layer
from inspector.science.mp import fit_mp
from inspector.science.powerlaw import fit_power_law
from inspector.science.randomize import jensen_shannon_distance

logging.getLogger("weightwatcher").setLevel(logging.WARNING)

EXACT = 1e-9  # relative, where the eigenvalue routes match
SVD_ROUTE = CpuBackend(route="svd")  # weightwatcher's scipy float64 gesdd
GRAM_ROUTE = CpuBackend()  # our default
DEFAULTS = AnalysisOptions(
    fit_cut=FitCut.ABSOLUTE
)  # weightwatcher's EVALS_THRESH cut, for like-for-like numbers
# weightwatcher's spike rule and MP method, for the MP comparisons
WW_MP = AnalysisOptions(mp_method=MPMethod.KDE, spike_rule=SpikeRule.WEIGHTWATCHER, fit_cut=FitCut.ABSOLUTE)


def heavy_tailed(rng: np.random.Generator, N: int, M: int, alpha: float) -> npt.NDArray[np.float64]:
    """U diag(s) V^T + noise with Pareto singular values: a trained-looking, heavy-tailed ESD."""
    U, _ = np.linalg.qr(rng.standard_normal((N, M)))
    V, _ = np.linalg.qr(rng.standard_normal((M, M)))
    s = (1.0 - rng.random(M)) ** (-1.0 / (alpha - 1.0))
    return (U * s) @ V.T + 0.05 * rng.standard_normal((N, M))


# --- the power-law fit on identical eigenvalues ------------------------------------------------------------


def fit_cases() -> Iterator[tuple[str, npt.NDArray[np.float64]]]:
    rng = np.random.default_rng(2024)
    for N, M, alpha in [(60, 20, 2.0), (100, 50, 3.0), (300, 128, 2.5), (768, 384, 4.0), (1536, 384, 2.2)]:
        W = heavy_tailed(rng, N, M, alpha)
        yield f"heavy-{N}x{M}", np.sort(np.linalg.svd(W, compute_uv=False) ** 2)
    for N, M in [(200, 100), (512, 512)]:
        yield f"student-t-{N}x{M}", np.sort(np.linalg.svd(rng.standard_t(3.0, (N, M)), compute_uv=False) ** 2)
    yield "gaussian-1000x250", np.sort(np.linalg.svd(rng.standard_normal((1000, 250)), compute_uv=False) ** 2)
    yield "pareto-2500", np.sort((1.0 - rng.random(2500)) ** (-1.0 / 1.8))


@pytest.mark.parametrize(
    ("name", "evals"), list(fit_cases()), ids=lambda value: value if isinstance(value, str) else ""
)
def test_fit_equals_wwfit_on_the_same_eigenvalues(name: str, evals: npt.NDArray[np.float64]) -> None:
    data = evals[evals > 1e-5]  # weightwatcher's EVALS_THRESH
    assert data.size >= 20, name
    theirs = WWFit(data)
    ours = fit_power_law(data)
    assert ours is not None
    assert ours.xmin == theirs.xmin
    assert ours.alpha == pytest.approx(theirs.alpha, rel=EXACT)
    assert ours.D == pytest.approx(theirs.D, rel=EXACT)  # noqa: SIM300 - D is a field
    assert ours.sigma == pytest.approx(theirs.sigma, rel=EXACT)
    assert ours.xmax == theirs.xmax
    assert ours.n_tail == len(theirs.data)


@pytest.mark.parametrize("n", [10, 14, 19])
def test_small_n_keeps_the_standard_estimator_where_weightwatcher_switches(n: int) -> None:
    # weightwatcher 0.7.7 sends n < 20 to fit_powerlaw_smallN, whose J criterion is overwritten by argmin D
    # while alpha stays bias-corrected (reference §3.3). We keep its standard estimator and flag the fit.
    data = np.sort((1.0 - np.random.default_rng(n).random(n)) ** (-1.0 / 1.5))
    standard = WWFit.__new__(WWFit)
    standard.data, standard.N = data, n
    standard.fit_power_law_standard()
    best = int(np.argmin(standard.Ds))
    ours = fit_power_law(data)
    assert ours is not None and ours.low_confidence
    assert ours.xmin == data[best]
    assert ours.alpha == pytest.approx(standard.alphas[best], rel=EXACT)
    assert ours.D == pytest.approx(standard.Ds[best], rel=EXACT)  # noqa: SIM300 - D is a field
    small_n = WWFit(data)  # the path we deliberately do not copy: a different alpha
    assert small_n.alpha != pytest.approx(ours.alpha, rel=1e-6)


# --- analyze() on a torch model ---------------------------------------------------------------------------


class Net(torch.nn.Module):
    """Linear (Q = 2.4), Conv2d 3x3 (64 out, 40 in), Embedding (Q = 4), square Linear (Q = 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(100, 240)
        self.conv = torch.nn.Conv2d(40, 64, 3)
        self.emb = torch.nn.Embedding(400, 100)
        self.fc2 = torch.nn.Linear(128, 128)


@dataclass(frozen=True)
class Layer:
    name: str
    slices: list[npt.NDArray[np.float32]]  # oriented N x M, as the lead's layers.py hands them over
    N: int
    M: int
    scale: float


def build_model() -> tuple[Net, list[Layer]]:
    rng = np.random.default_rng(7)
    net = Net()
    with torch.no_grad():
        net.fc1.weight.copy_(torch.from_numpy(heavy_tailed(rng, 240, 100, 2.5)))
        net.conv.weight.copy_(torch.from_numpy(rng.standard_t(3.0, (64, 40, 3, 3))))
        net.emb.weight.copy_(torch.from_numpy(heavy_tailed(rng, 400, 100, 3.0)))
        net.fc2.weight.copy_(torch.from_numpy(heavy_tailed(rng, 128, 128, 2.0)))
    layers = []
    for name in ("fc1", "conv", "emb", "fc2"):
        W = getattr(net, name).weight.detach().numpy()
        if W.ndim == 4:  # (out, in, kh, kw) -> kh*kw slices (out, in), weightwatcher's conv2D_Wmats order
            slices = [W[:, :, i, j] for i in range(W.shape[2]) for j in range(W.shape[3])]
            scale = 0.5  # conv2d_norm, pooled
        else:
            slices, scale = [W], 1.0
        slices = [s if s.shape[0] >= s.shape[1] else s.T for s in slices]
        layers.append(Layer(name, slices, slices[0].shape[0], slices[0].shape[1], scale))
    return net, layers


@pytest.fixture(scope="module")
def model() -> tuple[Net, list[Layer]]:
    return build_model()


def ours(layer: Layer, options: AnalysisOptions = DEFAULTS, backend: CpuBackend = SVD_ROUTE) -> LayerMetrics:
    return measure_layer(
        layer.slices, N=layer.N, M=layer.M, scale=layer.scale, options=options, backend=backend
    )


def rows(details: pd.DataFrame) -> dict[str, pd.Series]:
    return {str(row["name"]): row for _, row in details.iterrows()}


@pytest.fixture(scope="module")
def default_analysis(model: tuple[Net, list[Layer]]) -> dict[str, pd.Series]:
    # The entropy's +1e-10 regulariser switched off (see test_entropy_differs_only_by_the_regulariser).
    saved = RMT_Util.EPSILON
    RMT_Util.EPSILON = 0.0
    try:
        return rows(weightwatcher.WeightWatcher(model=model[0]).analyze())
    finally:
        RMT_Util.EPSILON = saved


SHARED = {  # ours -> weightwatcher's column
    "alpha": "alpha",
    "xmin": "xmin",
    "xmax": "xmax",
    "D": "D",
    "sigma": "sigma",
    "lambda_max": "lambda_max",
    "log_norm": "log_norm",
    "log_spectral_norm": "log_spectral_norm",
    "stable_rank": "stable_rank",
    "alpha_weighted": "alpha_weighted",
    "log_alpha_norm": "log_alpha_norm",
    "entropy": "entropy",
}
COUNTS = {
    "num_pl_spikes": "num_pl_spikes",
    "num_evals": "num_evals",
    "rank_loss": "rank_loss",
    "matrix_rank": "matrix_rank",
    "weak_rank_loss": "weak_rank_loss",
}


def test_analyze_layers_are_ours(
    default_analysis: dict[str, pd.Series], model: tuple[Net, list[Layer]]
) -> None:
    assert sorted(default_analysis) == sorted(layer.name for layer in model[1])
    for layer in model[1]:
        row = default_analysis[layer.name]
        assert (row["N"], row["M"]) == (layer.N, layer.M)


@pytest.mark.parametrize("name", ["fc1", "conv", "emb", "fc2"])
def test_every_shared_metric_matches_analyze(
    name: str, default_analysis: dict[str, pd.Series], model: tuple[Net, list[Layer]]
) -> None:
    layer = next(item for item in model[1] if item.name == name)
    row = default_analysis[name]
    metrics = ours(layer)
    for key, column in SHARED.items():
        assert getattr(metrics, key) == pytest.approx(float(row[column]), rel=EXACT), key
    for key, column in COUNTS.items():
        assert getattr(metrics, key) == int(row[column]), key
    assert metrics.fit_low_confidence is False
    assert metrics.alpha is not None
    expected = "over-trained" if metrics.alpha < 2.0 else "under-trained" if metrics.alpha > 6.0 else ""
    assert row["warning"] == expected


@pytest.mark.parametrize("name", ["fc1", "conv", "emb", "fc2"])
def test_alpha_end_to_end_through_our_default_route(
    name: str, default_analysis: dict[str, pd.Series], model: tuple[Net, list[Layer]]
) -> None:
    layer = next(item for item in model[1] if item.name == name)
    metrics = ours(layer, AnalysisOptions(), backend=GRAM_ROUTE)  # our defaults: Gram route, relative cut
    assert metrics.alpha == pytest.approx(float(default_analysis[name]["alpha"]), rel=1e-3)
    assert metrics.lambda_max == pytest.approx(float(default_analysis[name]["lambda_max"]), rel=1e-12)


def test_entropy_differs_only_by_the_regulariser(model: tuple[Net, list[Layer]]) -> None:
    # weightwatcher adds EPSILON = 1e-10 to every p and to the rank; we sum 0 ln 0 = 0 exactly.
    for layer in model[1]:
        metrics = ours(layer)
        evals = np.sort(
            np.concatenate([np.linalg.svd(s.astype(np.float64), compute_uv=False) ** 2 for s in layer.slices])
        )
        theirs = RMT_Util.matrix_entropy(np.sqrt(evals * layer.scale), layer.N)
        assert metrics.entropy is not None
        assert abs(metrics.entropy - theirs) <= 30 * metrics.num_evals * 1e-10
        assert metrics.entropy == pytest.approx(
            matrix_entropy(evals * layer.scale, metrics.matrix_rank or 0), rel=1e-12
        )


# --- mp_fit, randomize, detX ------------------------------------------------------------------------------

SEED = 1234


@pytest.fixture(scope="module")
def full_analysis(model: tuple[Net, list[Layer]]) -> dict[str, pd.Series]:
    np.random.seed(SEED)  # noqa: NPY002 - weightwatcher shuffles with the global legacy generator
    return rows(weightwatcher.WeightWatcher(model=model[0]).analyze(mp_fit=True, randomize=True, detX=True))


def replay_shuffles(layers: list[Layer]) -> dict[str, tuple[list[np.ndarray], list[np.ndarray]]]:
    """weightwatcher's two shuffles per layer, replayed.

    Per layer in order, apply_random_esd shuffles each slice once for the MP fit of the random ESD (one
    replica: every layer here has >= 100 components), then once more for rand_distance. np.random.shuffle
    draws the same swaps for any dtype, so shuffling positions replays it.
    """
    state = np.random.RandomState()
    state.seed(SEED)
    out = {}
    for layer in layers:
        draws = []
        for _ in range(2):
            shuffled = []
            for W in layer.slices:
                positions = np.arange(W.size)
                state.shuffle(positions)
                shuffled.append(W.reshape(-1)[positions].reshape(W.shape))
            draws.append(shuffled)
        out[layer.name] = (draws[0], draws[1])
    return out


def pooled_evals(slices: list[np.ndarray], scale: float) -> npt.NDArray[np.float64]:
    return np.sort(np.concatenate([SVD_ROUTE.eigenvalues(s) for s in slices])) * scale


@pytest.mark.parametrize(
    "name", ["fc1", "conv", "emb"]
)  # Q != 1; fc2 (Q = 1) is the quarter-circle fix below
def test_mp_fit_matches_with_weightwatchers_method_and_margin(
    name: str, full_analysis: dict[str, pd.Series], model: tuple[Net, list[Layer]]
) -> None:
    layer = next(item for item in model[1] if item.name == name)
    row = full_analysis[name]
    metrics = ours(layer, WW_MP)
    assert metrics.mp_sigma == pytest.approx(float(row["sigma_mp"]), rel=EXACT)
    assert metrics.mp_lambda_plus == pytest.approx(float(row["bulk_max"]), rel=EXACT)
    assert metrics.mp_lambda_minus == pytest.approx(float(row["bulk_min"]), rel=EXACT)
    assert metrics.mp_softrank == pytest.approx(float(row["mp_softrank"]), rel=EXACT)
    assert metrics.num_spikes == int(row["num_spikes"])


def test_quarter_circle_is_fitted_with_its_true_support(
    full_analysis: dict[str, pd.Series], model: tuple[Net, list[Layer]]
) -> None:
    # weightwatcher fits (1/(pi s^2)) sqrt(4 - nu^2) for every s, a density integrating to 1 only at s = 1;
    # ours uses sqrt(4 s^2 - nu^2). Where the fitted s is far from 1 the two disagree.
    layer = next(item for item in model[1] if item.name == "fc2")
    metrics = ours(layer, WW_MP)
    theirs = float(full_analysis["fc2"]["sigma_mp"])
    assert layer.N == layer.M
    assert metrics.mp_sigma is not None and abs(metrics.mp_sigma - theirs) > 1e-3
    evals = pooled_evals(layer.slices, layer.scale)
    assert metrics.mp_lambda_plus == pytest.approx(4.0 * metrics.mp_sigma**2 * float(evals.mean()), rel=1e-12)


@pytest.mark.parametrize("name", ["fc1", "conv", "emb", "fc2"])
def test_detx_matches(name: str, full_analysis: dict[str, pd.Series], model: tuple[Net, list[Layer]]) -> None:
    layer = next(item for item in model[1] if item.name == name)
    row = full_analysis[name]
    metrics = ours(layer)
    assert metrics.detX_num == int(row["detX_num"])
    # weightwatcher's detX_val is the detX lambda_min on its eigenvalue scale (its names are swapped).
    assert metrics.detX_lambda_min == pytest.approx(float(row["detX_val"]), rel=EXACT)
    assert metrics.detX_num - (metrics.num_pl_spikes or 0) == int(row["ERG_gap"])


@pytest.mark.parametrize("name", ["fc1", "conv", "emb", "fc2"])
def test_randomized_numbers_match_on_weightwatchers_own_shuffles(
    name: str, full_analysis: dict[str, pd.Series], model: tuple[Net, list[Layer]]
) -> None:
    layer = next(item for item in model[1] if item.name == name)
    row = full_analysis[name]
    first, second = replay_shuffles(model[1])[name]
    evals = pooled_evals(layer.slices, layer.scale)
    rand_mp = pooled_evals(first, layer.scale)
    rand_distance = pooled_evals(second, layer.scale)
    assert float(rand_mp[-1]) == pytest.approx(float(row["max_rand_eval"]), rel=EXACT)
    assert jensen_shannon_distance(evals, rand_distance) == pytest.approx(
        float(row["rand_distance"]), rel=1e-7
    )
    assert float(rand_distance[-1]) / float(evals[-1]) == pytest.approx(float(row["ww_softrank"]), rel=EXACT)
    if layer.N != layer.M:  # the quarter-circle case differs by design (test above)
        fit = fit_mp(
            rand_mp, Q=layer.N / layer.M, M=layer.M, method=MPMethod.KDE, spike_rule=SpikeRule.WEIGHTWATCHER
        )
        assert fit is not None
        assert fit.sigma == pytest.approx(float(row["rand_sigma_mp"]), rel=EXACT)
        assert fit.num_spikes == int(row["rand_num_spikes"]) == int(row["num_traps"])


def test_randomize_end_to_end_is_close_on_independent_shuffles(
    full_analysis: dict[str, pd.Series], model: tuple[Net, list[Layer]]
) -> None:
    # Our shuffle is seeded by --seed, weightwatcher's is not: same statistics, different draws.
    for layer in model[1]:
        metrics = ours(layer, AnalysisOptions(randomize=True, seed=5))
        row = full_analysis[layer.name]
        assert metrics.rand_lambda_max == pytest.approx(float(row["max_rand_eval"]), rel=0.1)
        assert metrics.rand_distance == pytest.approx(float(row["rand_distance"]), rel=0.25, abs=0.01)
        assert math.isfinite(metrics.rand_mp_sigma or math.nan)
