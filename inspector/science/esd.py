"""A compact picture of an ESD: a log-binned histogram and its sparkline.

The eigenvalues of a trained layer span many decades, so bins are equal in log10(lambda) between the
smallest positive and the largest eigenvalue; the sparkline draws the counts with block characters so a
heavy tail shows up as a long low ramp to the right of the bulk.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

#: Bins of the histogram kept in each layer record (and drawn in the table).
HISTOGRAM_BINS = 16

_BLOCKS = " ▁▂▃▄▅▆▇█"


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


def sparkline(counts: tuple[int, ...]) -> str:
    """Block characters scaled to the square root of the counts, so a thin tail stays visible."""
    if not counts or max(counts) == 0:
        return ""
    peak = max(counts) ** 0.5
    levels = len(_BLOCKS) - 1
    glyphs = []
    for count in counts:
        level = 0 if count == 0 else max(1, round(levels * (count**0.5) / peak))
        glyphs.append(_BLOCKS[level])
    return "".join(glyphs)
