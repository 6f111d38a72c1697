"""FP8 weights and their scale tensors in safetensors checkpoints: which scale goes with which weight,
how its grid tiles the weight, and multiplying it in.

An FP8 (F8_E4M3 / F8_E5M2) weight is stored with a scale tensor beside it: `<name>_scale_inv` (DeepSeek-V3
and Qwen3-FP8 128x128 blocks; the stored value is the multiplier despite its name) or `<name>_scale`
(per tensor or per output channel). The scale tensors a weight consumes are not weights themselves and
are not yielded; an FP8 weight without a usable scale is listed with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from formats._messages import quote_name
from formats._safetensors_header import Entry
from formats.types import DType

#: The fine-grained FP8 block size of DeepSeek-V3 and Qwen3-FP8 (`weight_block_size: [128, 128]`); used
#: when a scale grid's shape allows it, because a partial last block makes the size ambiguous otherwise.
FP8_BLOCK = 128
#: Suffixes that name the scale of an FP8 weight, in order of preference.
FP8_SCALE_SUFFIXES = ("_scale_inv", "_scale")
FP8_DTYPES = frozenset({DType.F8_E4M3, DType.F8_E5M2})


@dataclass(frozen=True, slots=True)
class ScalePlan:
    """How an FP8 weight is rescaled: which tensor holds the scales and how big each block is."""

    scale: Entry
    blocks: tuple[int, ...]  # per weight axis; the scale grid has ceil(dim / block) cells along it

    @property
    def per_tensor(self) -> bool:
        return math.prod(self.scale.shape) == 1

    def describe(self, code: str) -> str:
        """The encoding in words: `F8_E4M3 x weight_scale_inv (128x128 blocks)`."""
        scale_name = self.scale.name.rsplit(".", 1)[-1]
        grid = "per tensor" if self.per_tensor else "x".join(map(str, self.blocks)) + " blocks"
        return f"{code} x {scale_name} ({grid})"


def _block_sizes(weight: tuple[int, ...], grid: tuple[int, ...]) -> tuple[int, ...] | None:
    """Block size per axis such that `ceil(dim / block) == cells`, or None if the grid does not tile."""
    if len(grid) != len(weight):
        return None
    blocks = []
    for dim, cells in zip(weight, grid, strict=True):
        if cells == 1:
            blocks.append(max(dim, 1))
        elif cells == 0 or dim == 0:
            return None
        elif -(-dim // FP8_BLOCK) == cells:
            blocks.append(FP8_BLOCK)
        else:
            block = -(-dim // cells)
            if -(-dim // block) != cells:
                return None
            blocks.append(block)
    return tuple(blocks)


def _plan_scale(weight: Entry, scale: Entry) -> ScalePlan | str:
    """The rescaling plan for `weight`, or the reason it cannot be rescaled with `scale`."""
    if not scale.stored.dtype.is_float or scale.stored.dtype in FP8_DTYPES:
        return f"its scale tensor {quote_name(scale.name)} is {scale.code}, not a float type for scales"
    grid = scale.shape
    if math.prod(grid) == 1:
        return ScalePlan(scale=scale, blocks=tuple(max(dim, 1) for dim in weight.shape))
    if len(grid) == 1 and len(weight.shape) >= 2 and grid[0] == weight.shape[0]:
        grid = (grid[0],) + (1,) * (len(weight.shape) - 1)  # per output channel, stored flat
    blocks = _block_sizes(weight.shape, grid)
    if blocks is None:
        return (
            f"its scale tensor {quote_name(scale.name)} of shape {list(scale.shape)} "
            f"does not tile the weight's shape {list(weight.shape)}"
        )
    return ScalePlan(scale=scale, blocks=blocks)


def pair_scales(entries: Sequence[Entry]) -> tuple[dict[str, ScalePlan | str], set[str]]:
    """For each FP8 weight its scale plan (or why it has none), and the names of the scales consumed."""
    by_name = {entry.name: entry for entry in entries}
    plans: dict[str, ScalePlan | str] = {}
    consumed: set[str] = set()
    for entry in entries:
        if entry.stored.dtype not in FP8_DTYPES:
            continue
        candidates = [entry.name + suffix for suffix in FP8_SCALE_SUFFIXES]
        scale = next((by_name[name] for name in candidates if name in by_name), None)
        if scale is None:
            plans[entry.name] = (
                f"{entry.code} weight without its scale tensor {quote_name(candidates[0])} "
                f"(or {quote_name(candidates[1])}), so its values cannot be recovered"
            )
            continue
        consumed.add(scale.name)
        plans[entry.name] = _plan_scale(entry, scale)
    return plans, consumed


def apply_scale(
    values: npt.NDArray[np.float32], scales: npt.NDArray[np.float32], blocks: tuple[int, ...]
) -> None:
    """Multiply `values` in place by `scales`, each scale covering one block of `blocks` elements.

    The scale grid is expanded along every axis but the first and then applied one block-row at a time,
    so the extra memory is one block-row, not a full-size copy of the weight.
    """
    if values.size == 0:
        return
    if scales.size == 1:
        values *= scales.reshape(())
        return
    cells = tuple(-(-dim // block) for dim, block in zip(values.shape, blocks, strict=True))
    grid = scales.reshape(cells)
    for axis in range(1, values.ndim):
        if cells[axis] > 1:
            grid = np.repeat(grid, blocks[axis], axis=axis)[
                (slice(None),) * axis + (slice(0, values.shape[axis]),)
            ]
    if blocks[0] == 1 or cells[0] == 1:
        values *= grid
        return
    for row in range(cells[0]):
        values[row * blocks[0] : (row + 1) * blocks[0]] *= grid[row : row + 1]
