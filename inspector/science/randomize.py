"""Randomised ESDs: element-shuffled copies of a layer's matrices, the distance to them, correlation traps.

Shuffling the entries of W keeps their distribution (and the Frobenius norm) and destroys every correlation,
so the shuffled ESD is what the layer would look like if it had learnt nothing (HTSR_THEORY §3.5, "Also worth
reporting"; weightwatcher `randomize=True`, reference §5.2):
* `rand_distance`: weightwatcher's Jensen-Shannon distance between the sorted eigenvalue vectors of the ESD
  and of the shuffled ESD, each normalised to sum 1 and paired by rank (`RMT_Util.jensen_shannon_distance`).
  It is not a distance between densities, but it is scale-free and needs no binning; we keep its definition
  so that numbers carry over.
* correlation traps (`num_traps`): eigenvalues of the shuffled ESD above the MP edge plus the spike margin of
  an MP fit to that ESD. A shuffled matrix should have none; survivors come from a few very large entries.

Differences from weightwatcher: the shuffle is seeded (`--seed`) and reproducible, where weightwatcher's
`np.random.shuffle` is not; one shuffle per matrix feeds every randomised number, where weightwatcher draws
5 replicas for layers with fewer than 100 eigenvalues (so its trap count there is summed over 5 shuffles) and
a second, independent draw for `rand_distance`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def shuffled(
    matrices: Sequence[npt.NDArray[np.floating[Any]]], seed: int
) -> list[npt.NDArray[np.floating[Any]]]:
    """Element-shuffled copies of each matrix (a permutation without replacement), from one seeded stream."""
    rng = np.random.default_rng(seed)
    out = []
    for W in matrices:
        flat = np.array(W, copy=True).reshape(-1)
        rng.shuffle(flat)
        out.append(flat.reshape(W.shape))
    return out


def jensen_shannon_distance(p: npt.ArrayLike, q: npt.ArrayLike) -> float:
    """weightwatcher's `jensen_shannon_distance`: sqrt((KL(p||m) + KL(q||m)) / 2), m = (p + q) / 2.

    Natural logarithms. As in `scipy.stats.entropy`, each argument of KL is normalised to sum 1 and
    0 * log(0 / m) = 0. p and q must have the same length (they are paired entry by entry).
    """
    a = np.asarray(p, dtype=np.float64)
    b = np.asarray(q, dtype=np.float64)
    m = (a + b) / 2.0
    divergence = (_kl(a, m) + _kl(b, m)) / 2.0
    return float(np.sqrt(divergence))


def _kl(p: FloatArray, q: FloatArray) -> float:
    p = p / p.sum()
    q = q / q.sum()
    positive = p > 0.0
    return float(np.sum(p[positive] * np.log(p[positive] / q[positive])))
