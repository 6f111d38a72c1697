"""Matrices of known phase, built from random-matrix theory and checked against it before any classifier.

Every construction is W = noise + signal (or a heavy-tailed or rank-deficient matrix) whose spectrum the
theory predicts; `Case.check` asserts that prediction on the realised eigenvalues, with the true noise level,
never with wwinspect's fit. Conventions: noise entries have variance 1/N, so the noise alone has the MP law
of X = W^T W with sigma^2 = 1, edge lambda_+ = (1 + Q^-1/2)^2 and TW scale s_TW (`tracy_widom_scale`).

Families and the phase the theory gives them (Martin & Mahoney, arXiv 1810.01075, Table 4):

* random-like: i.i.d. entries of several laws (Gaussian, uniform, Rademacher, Laplace, Student t with 8
  degrees of freedom; all with finite fourth moment, so lambda_max -> lambda_+ with TW fluctuations, Bai-Yin
  1988, Soshnikov 2002), Kaiming-normal and Kaiming-uniform inits, orthogonal inits (every singular value
  equal: no eigenvalue leaves the bulk), and BBP spikes below the threshold S < Q^-1/4 (no outlier,
  Baik-Ben Arous-Peche 2005; Benaych-Georges & Nadakuditi 2012).
* bleeding-out: 1-2 spikes just above the BBP threshold, whose outliers sit at BBP's
  (1 + S^2)(1/Q + S^2)/S^2 between lambda_+ + 2 s_TW and 1.25 lambda_+: eigenmass just pulling out of
  the edge.
* bulk+spikes: 1-16 spikes whose outliers sit at 1.4-15 lambda_+ (separated from the edge), the trained-MLP
  pattern of the phase issue (about as many spikes as classes) included.
* bulk-decay: a graded signal of rank 15-30% of M whose strengths fall through the BBP threshold (linear,
  square-root or exponential profiles): a continuous run of outliers out of the edge to 2-3.5 lambda_+, the
  edge eroded by the sub-threshold part.
* heavy-tailed: i.i.d. Pareto entries with tail exponent mu in (1, 2) (infinite variance: no MP law and no
  lambda_+ exist; the largest eigenvalues are the largest squared entries, Auffinger-Ben Arous-Peche 2009);
  power-law singular spectra (the eigenvalues an i.i.d. Pareto sample of exponent alpha in [1.5, 3], or
  s_i ~ i^-beta), over at least a decade; and noise plus such a power-law signal reaching >= 30 lambda_+.
* rank-collapse: thin products A B with inner dimension r <= 0.85 M (M - r exact zeros), with Gaussian or
  heavy-tailed factors, plus noise at 1e-9 of the signal.

`tuning_cases()` is what the thresholds were chosen on; `held_out_cases()` uses other seeds, other shapes and
construction variants (Student t noise, square-root and power profiles, s_i ~ i^-beta spectra, heavy-tailed
thin factors, float32 storage...) and was not looked at while tuning.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from inspector.records import Phase
from inspector.science.mp import tracy_widom_scale

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Case:
    """One matrix of known phase: how to build it, and what its spectrum must show."""

    family: str
    truth: Phase
    N: int
    M: int
    seed: int
    build: Callable[[np.random.Generator], FloatArray] = field(repr=False)
    check: Callable[[FloatArray], None] = field(repr=False)

    @property
    def name(self) -> str:
        return f"{self.family} {self.N}x{self.M} seed {self.seed}"

    def matrix(self) -> FloatArray:
        return self.build(np.random.default_rng(self.seed))


# --- theory
# ---------------------------------------------------------------------------------------------------


def edge(Q: float) -> float:
    """lambda_+ of the noise (sigma^2 = 1)."""
    return (1.0 + Q**-0.5) ** 2


def bbp_location(S: float, Q: float) -> float:
    """Where a rank-one signal of strength S puts its outlier (lambda_+ when S <= Q^-1/4)."""
    y = 1.0 / Q
    return (1.0 + S * S) * (y + S * S) / (S * S) if y**0.25 < S else edge(Q)


def bbp_strength(location: float, Q: float) -> float:
    """The strength S whose outlier sits at `location` > lambda_+ (the inverse of `bbp_location`)."""
    y = 1.0 / Q
    b = location - 1.0 - y
    return math.sqrt((b + math.sqrt(b * b - 4.0 * y)) / 2.0)


def spectrum(W: FloatArray) -> FloatArray:
    """Eigenvalues of W^T W (W oriented N >= M), ascending."""
    if W.shape[0] < W.shape[1]:
        W = W.T
    return np.sort(np.linalg.svd(np.asarray(W, dtype=np.float64), compute_uv=False) ** 2)


# --- constructions
# --------------------------------------------------------------------------------------------


def orthonormal(rng: np.random.Generator, n: int, k: int) -> FloatArray:
    A, _ = np.linalg.qr(rng.standard_normal((n, k)))
    return A


def noise(rng: np.random.Generator, N: int, M: int, law: str = "gauss") -> FloatArray:
    """N x M i.i.d. entries of mean 0 and variance 1/N."""
    if law == "gauss":
        G = rng.standard_normal((N, M))
    elif law == "uniform":
        G = rng.uniform(-math.sqrt(3.0), math.sqrt(3.0), (N, M))
    elif law == "rademacher":
        G = rng.choice([-1.0, 1.0], (N, M))
    elif law == "laplace":
        G = rng.laplace(0.0, 1.0 / math.sqrt(2.0), (N, M))
    elif law == "student-t8":
        G = rng.standard_t(8.0, (N, M)) / math.sqrt(8.0 / 6.0)
    else:
        raise ValueError(law)
    return G / math.sqrt(N)


def low_rank(rng: np.random.Generator, N: int, M: int, strengths: FloatArray) -> FloatArray:
    """sum_i S_i u_i v_i^T with orthonormal u_i, v_i."""
    r = strengths.size
    return (orthonormal(rng, N, r) * strengths) @ orthonormal(rng, M, r).T


def kaiming(rng: np.random.Generator, N: int, M: int, uniform: bool) -> FloatArray:
    """torch's kaiming_normal_/kaiming_uniform_ (fan_in = M, gain sqrt(2)), stored out x in = N x M."""
    std = math.sqrt(2.0 / M)
    if uniform:
        return rng.uniform(-math.sqrt(3.0) * std, math.sqrt(3.0) * std, (N, M))
    return rng.standard_normal((N, M)) * std


def pareto_entries(rng: np.random.Generator, N: int, M: int, mu: float) -> FloatArray:
    """Symmetric entries with P(|W| > x) = (1 + x)^-mu (Lomax / Pareto II, numpy's `pareto`)."""
    return rng.pareto(mu, (N, M)) * rng.choice([-1.0, 1.0], (N, M))


def with_eigenvalues(rng: np.random.Generator, N: int, evals: FloatArray) -> FloatArray:
    """U diag(sqrt(evals)) V^T: a matrix whose eigenvalues are exactly `evals`."""
    M = evals.size
    return (orthonormal(rng, N, M) * np.sqrt(evals)) @ orthonormal(rng, M, M).T


# --- checks (theory, with the true noise level)
# ---------------------------------------------------------------


def check_no_outlier(N: int, M: int, scale: float = 1.0) -> Callable[[FloatArray], None]:
    """The top eigenvalue within TW reach of lambda_+ (4 s_TW: TW1 exceeds 4 with probability ~1e-4)."""
    Q = N / M

    def check(evals: FloatArray) -> None:
        top = evals[-1] / scale
        assert top <= edge(Q) + 4.0 * tracy_widom_scale(1.0, Q, M), (top, edge(Q))

    return check


def check_flat(evals: FloatArray) -> None:
    """Orthogonal init: every eigenvalue equal."""
    assert evals[0] >= evals[-1] * (1.0 - 1e-9)


def check_outliers_at(
    N: int, M: int, locations: FloatArray, tolerance: float
) -> Callable[[FloatArray], None]:
    """The top len(locations) eigenvalues at BBP's locations, within `tolerance` relative (finite-size
    error of a spike is O(M^-1/2), Paul 2007), and nothing else above the edge's TW reach."""
    Q = N / M
    expected = np.sort(locations)

    def check(evals: FloatArray) -> None:
        k = expected.size
        top = evals[-k:]
        assert np.all(np.abs(top - expected) <= tolerance * expected), (top, expected)
        assert evals[-k - 1] <= edge(Q) + 4.0 * tracy_widom_scale(1.0, Q, M)

    return check


def check_graded(N: int, M: int) -> Callable[[FloatArray], None]:
    """A continuous run: 4-20% of the eigenvalues above lambda_+ + 2 s_TW, the top at 1.6-4 lambda_+."""
    Q = N / M
    lp = edge(Q)
    cutoff = lp + 2.0 * tracy_widom_scale(1.0, Q, M)

    def check(evals: FloatArray) -> None:
        share = np.count_nonzero(evals > cutoff) / M
        assert 0.04 <= share <= 0.20, share
        assert 1.6 <= evals[-1] / lp <= 4.0, evals[-1] / lp

    return check


def check_largest_entries(mu: float) -> Callable[[FloatArray], None]:
    """mu < 2: no finite variance. The top eigenvalue is the largest squared entry up to the row and column
    mass around it (Auffinger-Ben Arous-Peche 2009): checked through `build`'s stored matrix in the test."""

    def check(evals: FloatArray) -> None:
        # A power-law ESD: the top eigenvalue exceeds the median by more than a decade.
        assert evals[-1] >= 10.0 * float(np.median(evals)), evals[-1] / np.median(evals)

    return check


def check_exact(expected: Callable[[], FloatArray]) -> Callable[[FloatArray], None]:
    def check(evals: FloatArray) -> None:
        np.testing.assert_allclose(evals, np.sort(expected()), rtol=1e-8, atol=1e-12 * evals[-1])

    return check


def check_decades(minimum: float) -> Callable[[FloatArray], None]:
    def check(evals: FloatArray) -> None:
        positive = evals[evals > 1e-12 * evals[-1]]
        assert math.log10(positive[-1] / positive[0]) >= minimum

    return check


def check_above_edge(N: int, M: int, ratio: float) -> Callable[[FloatArray], None]:
    Q = N / M

    def check(evals: FloatArray) -> None:
        assert evals[-1] >= ratio * edge(Q), evals[-1] / edge(Q)

    return check


def check_rank(r: int) -> Callable[[FloatArray], None]:
    def check(evals: FloatArray) -> None:
        assert np.count_nonzero(evals > 1e-12 * evals[-1]) == r

    return check


# --- the families
# ---------------------------------------------------------------------------------------------


def random_like(N: int, M: int, seed: int, variant: str) -> Case:
    Q = N / M
    if variant in ("gauss", "uniform", "rademacher", "laplace", "student-t8"):
        return Case(
            f"MP noise ({variant})",
            Phase.RANDOM_LIKE,
            N,
            M,
            seed,
            lambda rng: noise(rng, N, M, variant),
            check_no_outlier(N, M),
        )
    if variant in ("kaiming-normal", "kaiming-uniform"):
        scale = 2.0 * N / M  # entry variance 2/M against the 1/N of `noise`
        return Case(
            f"{variant} init",
            Phase.RANDOM_LIKE,
            N,
            M,
            seed,
            lambda rng: kaiming(rng, N, M, variant.endswith("uniform")),
            check_no_outlier(N, M, scale),
        )
    if variant == "orthogonal":
        return Case(
            "orthogonal init", Phase.RANDOM_LIKE, N, M, seed, lambda rng: orthonormal(rng, N, M), check_flat
        )
    if variant.startswith("sub-threshold"):
        fraction = float(variant.split()[-1])  # strength as a fraction of the BBP threshold

        def build(rng: np.random.Generator) -> FloatArray:
            return noise(rng, N, M) + low_rank(rng, N, M, np.full(3, fraction * Q**-0.25))

        return Case(
            f"3 spikes at {fraction:g} x threshold",
            Phase.RANDOM_LIKE,
            N,
            M,
            seed,
            build,
            check_no_outlier(N, M),
        )
    raise ValueError(variant)


def bleeding_out(N: int, M: int, seed: int, positions: tuple[float, ...]) -> Case:
    Q = N / M
    locations = np.asarray(positions) * edge(Q)
    strengths = np.asarray([bbp_strength(L, Q) for L in locations])

    def build(rng: np.random.Generator) -> FloatArray:
        return noise(rng, N, M) + low_rank(rng, N, M, strengths)

    def check(evals: FloatArray) -> None:
        lp, s_tw = edge(Q), tracy_widom_scale(1.0, Q, M)
        top = evals[-len(positions) :]
        assert np.all(top > lp + 2.0 * s_tw) and np.all(top < 1.25 * lp), top / lp

    label = ", ".join(f"{p:g}" for p in positions)
    return Case(
        f"{len(positions)} spike(s) at {label} lambda_+", Phase.BLEEDING_OUT, N, M, seed, build, check
    )


def bulk_plus_spikes(N: int, M: int, seed: int, positions: tuple[float, ...]) -> Case:
    Q = N / M
    locations = np.asarray(positions) * edge(Q)
    strengths = np.asarray([bbp_strength(L, Q) for L in locations])

    def build(rng: np.random.Generator) -> FloatArray:
        return noise(rng, N, M) + low_rank(rng, N, M, strengths)

    tolerance = 0.05 + 1.5 / math.sqrt(M)
    name = f"{len(positions)} spikes at {min(positions):g}-{max(positions):g} lambda_+"
    return Case(
        name, Phase.BULK_PLUS_SPIKES, N, M, seed, build, check_outliers_at(N, M, locations, tolerance)
    )


def bulk_decay(N: int, M: int, seed: int, rank_share: float, top: float, profile: str) -> Case:
    Q = N / M
    r = max(2, round(rank_share * M))
    s_max = bbp_strength(top * edge(Q), Q)
    t = np.arange(r) / r
    if profile == "linear":
        strengths = s_max * (1.0 - t)
    elif profile == "sqrt":
        strengths = s_max * np.sqrt(1.0 - t)
    elif profile == "exp":
        strengths = s_max * np.exp(-1.5 * t)
    elif profile == "power":
        strengths = s_max * (1.0 + 4.0 * t) ** -1.0
    else:
        raise ValueError(profile)
    # The design itself: a continuous run through the edge (BBP puts >= 3 outliers in the edge window) and an
    # eroded edge (>= 2% of M components below the threshold, deforming the bulk's top).
    lp = edge(Q)
    cutoff = lp + 2.0 * tracy_widom_scale(1.0, Q, M)
    locations = np.asarray([bbp_location(x, Q) for x in strengths])
    assert np.count_nonzero((locations > cutoff) & (locations < 1.25 * lp)) >= 3, (profile, N, M)
    assert np.count_nonzero(strengths < Q**-0.25) >= 0.02 * M, (profile, N, M)

    def build(rng: np.random.Generator) -> FloatArray:
        return noise(rng, N, M) + low_rank(rng, N, M, strengths)

    return Case(
        f"graded rank {rank_share:g} M ({profile}) to {top:g} lambda_+",
        Phase.BULK_DECAY,
        N,
        M,
        seed,
        build,
        check_graded(N, M),
    )


def heavy_tailed(N: int, M: int, seed: int, variant: str, exponent: float) -> Case:
    Q = N / M
    if variant == "pareto":
        return Case(
            f"Pareto entries mu={exponent:g}",
            Phase.HEAVY_TAILED,
            N,
            M,
            seed,
            lambda rng: pareto_entries(rng, N, M, exponent),
            check_largest_entries(exponent),
        )
    if variant == "pareto-spectrum":

        def evals(rng: np.random.Generator) -> FloatArray:
            return (1.0 - rng.random(M)) ** (-1.0 / (exponent - 1.0))

        return Case(
            f"Pareto spectrum alpha={exponent:g}",
            Phase.HEAVY_TAILED,
            N,
            M,
            seed,
            lambda rng: with_eigenvalues(rng, N, evals(rng)),
            check_decades(1.0),
        )
    if variant == "zipf-spectrum":  # s_i ~ i^-beta: rho(lambda) ~ lambda^-(1 + 1/(2 beta))
        beta = 1.0 / (2.0 * (exponent - 1.0))
        values = np.arange(1, M + 1, dtype=np.float64) ** (-2.0 * beta)
        return Case(
            f"Zipf singular values alpha={exponent:g}",
            Phase.HEAVY_TAILED,
            N,
            M,
            seed,
            lambda rng: with_eigenvalues(rng, N, values),
            check_exact(lambda: values),
        )
    if variant == "noise+power-law":
        # signal strengths with s^2 ~ Pareto(alpha), scaled so that the top outlier is >= 100 lambda_+ and a
        # quarter of the components are above the BBP threshold
        def build(rng: np.random.Generator) -> FloatArray:
            s = np.sort((1.0 - rng.random(M)) ** (-1.0 / (2.0 * (exponent - 1.0))))[::-1]
            s = s * max(Q**-0.25 / s[M // 4], bbp_strength(100.0 * edge(Q), Q) / s[0])
            return noise(rng, N, M) + low_rank(rng, N, M, s)

        return Case(
            f"noise + power-law signal alpha={exponent:g}",
            Phase.HEAVY_TAILED,
            N,
            M,
            seed,
            build,
            check_above_edge(N, M, 30.0),
        )
    raise ValueError(variant)


def rank_collapse(N: int, M: int, seed: int, rank_share: float, factors: str) -> Case:
    r = max(1, int(rank_share * M))

    def build(rng: np.random.Generator) -> FloatArray:
        if factors == "pareto":
            A, B = pareto_entries(rng, N, r, 2.5), pareto_entries(rng, r, M, 2.5)
        else:
            A, B = rng.standard_normal((N, r)), rng.standard_normal((r, M))
        return np.asarray(A @ B / math.sqrt(N * r), dtype=np.float64)

    return Case(
        f"thin product rank {rank_share:g} M ({factors})",
        Phase.RANK_COLLAPSE,
        N,
        M,
        seed,
        build,
        check_rank(r),
    )


# --- the suites
# -----------------------------------------------------------------------------------------------

TUNING_SHAPES = (
    (64, 64),
    (256, 64),
    (512, 64),
    (128, 128),
    (256, 128),
    (1024, 128),
    (256, 256),
    (512, 256),
    (1024, 512),
)
HELD_OUT_SHAPES = (
    (96, 96),
    (384, 96),
    (768, 96),
    (320, 160),
    (1280, 160),
    (480, 320),
    (2560, 320),
    (768, 768),
    (1536, 768),
    (2048, 2048),
)


def _cases(shapes: tuple[tuple[int, int], ...], seed0: int, held_out: bool) -> Iterator[Case]:
    for number, case in enumerate(_designs(shapes, held_out)):
        yield Case(case.family, case.truth, case.N, case.M, seed0 + number, case.build, case.check)


def _designs(shapes: tuple[tuple[int, int], ...], held_out: bool) -> Iterator[Case]:
    seed = 0  # replaced by one seed per case in `_cases`
    laws = (
        ("gauss", "uniform", "rademacher", "laplace") if not held_out else ("student-t8", "gauss", "uniform")
    )
    for N, M in shapes:
        Q = N / M
        for law in laws:
            yield random_like(N, M, seed, law)
        yield random_like(N, M, seed, "kaiming-uniform" if not held_out else "kaiming-normal")
        yield random_like(N, M, seed, "orthogonal")
        yield random_like(N, M, seed, "sub-threshold 0.6" if not held_out else "sub-threshold 0.75")
        if M >= 256:  # below, the TW edge and its finite-size shift leave no room under 1.25 lambda_+
            for _ in range(2):
                yield bleeding_out(N, M, seed, (1.12,) if not held_out else (1.1, 1.13))
                yield bleeding_out(N, M, seed, (1.08, 1.12) if not held_out else (1.15,))
        strong = (1.5, 2.5, 4.0) if not held_out else (1.6, 3.0, 6.0, 9.0)
        yield bulk_plus_spikes(N, M, seed, strong)
        many = (
            tuple(np.geomspace(1.6, 15.0, min(10, M // 8)).round(3))
            if not held_out
            else tuple(np.geomspace(1.4, 12.0, min(15, M // 6)).round(3))
        )
        yield bulk_plus_spikes(N, M, seed, many)
        if M >= 128:
            if not held_out:
                yield bulk_decay(N, M, seed, 0.2, 2.5, "linear")
                yield bulk_decay(N, M, seed, 0.2, 3.0, "exp")
            else:
                yield bulk_decay(N, M, seed, 0.25, 2.2, "sqrt")
                yield bulk_decay(N, M, seed, 0.25, 3.0, "power")
        for mu in (1.3, 1.8) if not held_out else (1.2, 1.6, 1.95):
            yield heavy_tailed(N, M, seed, "pareto", mu)
        if not held_out:
            yield heavy_tailed(N, M, seed, "pareto-spectrum", 2.0 if M < 256 else 2.5)
            # (a smaller exponent at small M: the signal's own power law must span a decade and a half)
            yield heavy_tailed(N, M, seed, "noise+power-law", 2.0 if M < 256 else 2.5)
        else:
            yield heavy_tailed(N, M, seed, "zipf-spectrum", 2.0 if M < 256 else 2.8)
            yield heavy_tailed(N, M, seed, "noise+power-law", 2.2 if M < 256 else 3.0)
        yield rank_collapse(N, M, seed, 0.5 if not held_out else 0.3, "gauss" if not held_out else "pareto")
        if Q >= 1.0 and not held_out:
            yield rank_collapse(N, M, seed, 0.85, "gauss")


def tuning_cases() -> list[Case]:
    return list(_cases(TUNING_SHAPES, 1000, held_out=False))


def held_out_cases() -> list[Case]:
    return list(_cases(HELD_OUT_SHAPES, 5000, held_out=True))
