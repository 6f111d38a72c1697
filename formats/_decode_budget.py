"""How many bytes compressed data may expand to: one rule for HDF5 filters and zip members.

A decompression bomb is a few megabytes that inflate to gigabytes (deflate reaches about 1030:1 on
zeros). Readers never trust the size a file declares alone: before anything is decompressed, the bytes
it may yield are bounded by the bytes it stores, and a reader that decompresses piece by piece (zip
members, HDF5 chunks in the worker) stops at the same bound while it reads.

The bound is `max(FLOOR_BYTES, MAX_RATIO * stored)`. Trained weights barely compress (float32 deflates by
about 1.1:1, bfloat16 by 1.3:1, a 90 %-pruned matrix by under 10:1), so `MAX_RATIO` leaves a wide margin
for honest files of any size, while small members and datasets (configs, biases, zero-initialised
optimizer slots) are never refused whatever their ratio: inflating `FLOOR_BYTES` costs a fraction of a
second and a bounded amount of memory. The limit is on the ratio, never on the size of real weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from formats.errors import UnsafeFileError

#: Most bytes one compressed stored byte may stand for once the floor is passed.
MAX_RATIO = 100
#: Decoded bytes always allowed, whatever the ratio (32 MiB: a quarter second of inflating zeros).
FLOOR_BYTES = 32 << 20


def allowed_bytes(stored: int) -> int:
    """The most bytes `stored` compressed bytes may decode to."""
    return max(FLOOR_BYTES, MAX_RATIO * max(stored, 0))


@dataclass(frozen=True, slots=True)
class Budget:
    """The decoded bytes one compressed object may yield, and how to word a refusal.

    Attributes:
        what: the object, for messages ("zip member 'archive/data/0'", "dataset '/dense/kernel:0'").
        stored: compressed bytes it occupies in the file.
        path: the model file, for the error.
        kind: what the message calls a refused object ("zip bomb" for zip members).
    """

    what: str
    stored: int
    path: Path | None = None
    kind: str = "decompression bomb"

    @property
    def limit(self) -> int:
        return allowed_bytes(self.stored)

    def check_declared(self, declared: int) -> None:
        """Refuse, before reading, an object that declares more decoded bytes than its budget."""
        if declared > self.limit:
            raise self._bomb(declared, "declares")

    def check_decoded(self, decoded: int) -> None:
        """Refuse, while reading, once the bytes decoded so far pass the budget."""
        if decoded > self.limit:
            raise self._bomb(decoded, "expands to")

    def _bomb(self, size: int, verb: str) -> UnsafeFileError:
        ratio = size / max(self.stored, 1)
        return UnsafeFileError(
            f"{self.what} {verb} {size} bytes from {self.stored} stored bytes ({ratio:.0f}:1, more than "
            f"the {MAX_RATIO}:1 allowed past {FLOOR_BYTES >> 20} MiB): a {self.kind}",
            path=self.path,
        )
