"""A compact picture of an ESD: a log-binned histogram, and a bounded sample of it for plots.

The eigenvalues of a trained layer span many decades, so bins are equal in log10(lambda) between the
smallest positive and the largest eigenvalue. Reports draw it (the terminal's sparkline is
`inspector.render.chars.sparkline`), where a heavy tail shows up as a long low ramp right of the bulk.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from inspector.records import EsdSample

#: Bins of the histogram kept in each layer record (and drawn in the table).
HISTOGRAM_BINS = 16
#: Most eigenvalues a layer keeps for its plot (64 KiB of float64 values and weights, so records stay
#: small on the worker pipe), and how many of the largest are kept exactly (the tail the fit reads).
SAMPLE_LIMIT = 4096
TAIL_KEEP = 1024


def log_histogram(eigenvalues: npt.NDArray[np.floating], bins: int = HISTOGRAM_BINS) -> tuple[int, ...]:
    """Counts of the positive eigenvalues in `bins` equal-width bins of log10(lambda)."""
    positive = eigenvalues[eigenvalues > 0]
    if positive.size == 0:
        return ()
    logs = np.log10(positive)
    low, high = float(logs.min()), float(logs.max())
    if high - low < 1e-12:
        counts = np.zeros(bins, dtype=np.int64)
        counts[bins // 2] = positive.size
        return tuple(int(count) for count in counts)
    counts, _ = np.histogram(logs, bins=bins, range=(low, high))
    return tuple(int(count) for count in counts)


def sample_spectrum(
    eigenvalues: npt.ArrayLike, limit: int = SAMPLE_LIMIT, tail: int = TAIL_KEEP
) -> EsdSample:
    """All eigenvalues when there are at most `limit`; else the `tail` largest exactly and `limit - tail`
    evenly spaced order statistics of the others, each weighted by the share of the others it stands for
    (so a histogram of the sample has the full ESD's counts up to one bin's rounding)."""
    values = np.sort(np.asarray(eigenvalues, dtype=np.float64).ravel())
    total = int(values.size)
    if total <= limit:
        return EsdSample(values=values, weights=np.ones(total), total=total)
    rest, top = values[: total - tail], values[total - tail :]
    picks = np.linspace(0, rest.size - 1, limit - tail).round().astype(np.int64)
    weights = np.full(picks.size, rest.size / picks.size)
    return EsdSample(
        values=np.concatenate([rest[picks], top]),
        weights=np.concatenate([weights, np.ones(tail)]),
        total=total,
    )
