"""A compact picture of an ESD: a log-binned histogram.

The eigenvalues of a trained layer span many decades, so bins are equal in log10(lambda) between the
smallest positive and the largest eigenvalue. Reports draw it (the terminal's sparkline is
`inspector.render.view.sparkline`), where a heavy tail shows up as a long low ramp right of the bulk.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

#: Bins of the histogram kept in each layer record (and drawn in the table).
HISTOGRAM_BINS = 16


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
