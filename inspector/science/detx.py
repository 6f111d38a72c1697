"""The SETOL ERG / TRACE-LOG condition (weightwatcher's detX): the tail whose eigenvalues multiply to 1.

HTSR_THEORY §7: rescale the ESD to mean 1, scan from the largest eigenvalue down, and stop at the first index
where the product of the eigenvalues from there to the top drops below 1. The eigenvalues from that index up
form the Effective Correlation Space: `num` of them, starting at `lambda_min`. SETOL compares that start with
the power-law tail's: Delta lambda_min = xmin - lambda_min (HTSR_THEORY §7, eqn D_lambda_min), which tends to
0+ as alpha -> 2 in well-trained layers.

Same count as weightwatcher's `RMT_Util.detX_constraint` (reference §6), computed in O(n) from a cumulative
sum of logarithms instead of an O(n^2) series of `np.prod` calls that can overflow. One deliberate difference:
weightwatcher's scan stops at index 1, so when no product from index 1 up drops below 1 it reports the whole
spectrum (num = n) but lambda_min = the *second* smallest eigenvalue; we scan to index 0 and report the
smallest. Its column names `detX_val` / `detX_val_unrescaled` are also swapped relative to their meaning;
ours is `detX_lambda_min`, in the report's eigenvalue units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from inspector.science.powerlaw import RESOLUTION


@dataclass(frozen=True, slots=True)
class DetX:
    """The detX / ERG tail: `num` eigenvalues from `lambda_min` up (in the units of the input)."""

    num: int
    lambda_min: float | None


def detx(evals: npt.ArrayLike, resolution: float = RESOLUTION) -> DetX:
    """The smallest top set of eigenvalues, on the mean-1 scale, whose product falls below 1.

    A spectrum flat to within `resolution` (relative) has no tail: where its product crosses 1 is rounding.
    """
    lam = np.sort(np.asarray(evals, dtype=np.float64))
    n = lam.size
    # weightwatcher returns (0, 0) for fewer than 2 values or a flat spectrum: there is no tail to find.
    if n < 2 or not lam[0] < lam[-1] * (1.0 - resolution):
        return DetX(num=0, lambda_min=None)
    rescaled = lam * (n / lam.sum())
    with np.errstate(divide="ignore"):
        logs = np.log(rescaled)  # log 0 = -inf still means "the product is below 1"
    suffix = np.cumsum(logs[::-1])[::-1]  # suffix[i] = ln prod_{j >= i} rescaled_j
    below = np.flatnonzero(suffix < 0.0)
    # The largest index whose suffix product is < 1. By AM-GM the product of all n mean-1 values is <= 1,
    # and < 1 unless all are equal (excluded above), so index 0 always qualifies.
    idx = int(below[-1]) if below.size else 0
    return DetX(num=n - idx, lambda_min=float(lam[idx]))
