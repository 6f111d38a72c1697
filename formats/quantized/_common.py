"""Checks and bit manipulation shared by the dequantisers: shapes, packed integers, output rounding.

Every dequantiser receives arrays whose shapes a file declared and must never index past them: a lying
group size or a packed tensor shorter than the logical shape would otherwise surface as an IndexError or a
silently broadcast result. The checks here turn each such mismatch into one `TensorError` line naming
the weight, which the readers report as a skipped layer while the rest of the file is analysed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from formats.errors import TensorError

Floats = npt.NDArray[np.float32]
Ints = npt.NDArray[np.integer]

#: Bit widths the integer packers of GPTQ, AWQ, compressed-tensors and MatMulNBits use in practice.
PACKED_BITS = frozenset({2, 4, 8})
#: Names of output dtypes a reference library rounds its dequantised weight to.
ROUNDING_DTYPES = frozenset({"float32", "float16", "bfloat16"})


def fail(weight: str, problem: str) -> TensorError:
    """The error a dequantiser raises for `weight`: one line, the weight first."""
    return TensorError(f"quantised weight {weight!r}: {problem}")


def expect_shape(weight: str, what: str, array: npt.NDArray[np.generic], shape: Sequence[int]) -> None:
    """Raise unless `array` (one of `weight`'s parts, called `what`) has exactly `shape`."""
    if tuple(array.shape) != tuple(shape):
        raise fail(weight, f"{what} has shape {list(array.shape)}, expected {list(shape)}")


def expect_dtype(weight: str, what: str, array: npt.NDArray[np.generic], kinds: str) -> None:
    """Raise unless `array`'s numpy kind is one of `kinds` ("i", "u", "f": signed, unsigned, float)."""
    if array.dtype.kind not in kinds:
        raise fail(weight, f"{what} is {array.dtype}, expected {' or '.join(_KIND_NAMES[k] for k in kinds)}")


_KIND_NAMES = {"i": "signed integers", "u": "unsigned integers", "f": "floats", "b": "booleans"}


def expect_bits(weight: str, bits: int, allowed: frozenset[int] = PACKED_BITS) -> None:
    if bits not in allowed:
        raise fail(weight, f"{bits}-bit values are not supported (supported: {sorted(allowed)})")


def ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def input_groups(
    weight: str, group_size: int, in_features: int, out_features: int, scales: npt.NDArray[np.generic]
) -> tuple[int, int]:
    """(input channels per group, groups) of a group-wise quantised Linear whose `scales` are
    [groups, out_features]; `group_size` -1 means one group over all input channels."""
    if group_size == -1:
        size = max(in_features, 1)
    elif group_size > 0:
        size = group_size
    else:
        raise fail(weight, f"group_size {group_size} is neither positive nor -1")
    groups = ceil_div(in_features, size) if in_features else 1
    if scales.ndim != 2 or scales.shape[1] != out_features:
        raise fail(weight, f"scales have shape {list(scales.shape)}, expected [groups, {out_features}]")
    if scales.shape[0] != groups:
        raise fail(
            weight,
            f"group_size {group_size} over {in_features} input channels makes {groups} groups, "
            f"but the scales have {scales.shape[0]}",
        )
    return size, groups


def packed_words(bits: int, count: int) -> int:
    """32-bit words that hold `count` densely packed `bits`-bit fields."""
    return ceil_div(count * bits, 32)


def unpack_words(packed: Ints, bits: int, axis: int, count: int) -> npt.NDArray[np.uint8]:
    """Unsigned `bits`-bit fields of 32-bit words along `axis`, cut to `count` elements.

    The words form one little-endian bit stream: field i occupies bits [i * bits, (i + 1) * bits) of the
    stream, so a field may straddle two words (3-bit GPTQ, compressed-tensors' dense packing); for widths
    that divide 32 this is the usual "element j of word w at bit offset bits * j". The caller has checked
    that the axis holds `packed_words(bits, count)` words.
    """
    words = np.moveaxis(np.asarray(packed).astype(np.uint32, copy=False), axis, -1)
    # Each field is read from a 64-bit window over two consecutive words (a zero word closes the stream).
    padded = np.concatenate([words, np.zeros((*words.shape[:-1], 1), dtype=np.uint32)], axis=-1)
    start = np.arange(count, dtype=np.int64) * bits
    index, offset = start // 32, (start % 32).astype(np.uint64)
    window = padded[..., index].astype(np.uint64) | (
        padded[..., index + 1].astype(np.uint64) << np.uint64(32)
    )
    fields = ((window >> offset) & np.uint64((1 << bits) - 1)).astype(np.uint8)
    return np.moveaxis(fields, -1, axis)


def interleave(fields: npt.NDArray[np.uint8], axis: int, order: Sequence[int]) -> npt.NDArray[np.uint8]:
    """Undo a packer's interleave: position j of every run of len(order) holds element order[j]."""
    data = np.moveaxis(fields, axis, -1)
    runs = data.reshape(*data.shape[:-1], -1, len(order))
    restored = runs[..., np.argsort(np.asarray(order))].reshape(data.shape)
    return np.moveaxis(restored, -1, axis)


def unpack_nibbles(
    packed: npt.NDArray[np.uint8], axis: int, count: int, *, high_first: bool
) -> npt.NDArray[np.uint8]:
    """4-bit fields of bytes along `axis`, cut to `count`: low nibble first unless `high_first`."""
    data = np.moveaxis(np.asarray(packed, dtype=np.uint8), axis, -1)
    low, high = data & np.uint8(0x0F), data >> np.uint8(4)
    pair = (high, low) if high_first else (low, high)
    flat = np.stack(pair, axis=-1).reshape(*data.shape[:-1], data.shape[-1] * 2)[..., :count]
    return np.moveaxis(flat, -1, axis)


def round_to(values: Floats, dtype: str) -> Floats:
    """Round float32 `values` to `dtype` (nearest even, as torch and numpy cast) and widen back to float32.

    Reference libraries return their dequantised weight in the model's dtype; rounding the exact float32
    product the same way reproduces their copy bit for bit.
    """
    if dtype == "float32":
        return values
    if dtype == "float16":
        return values.astype(np.float16).astype(np.float32)
    if dtype == "bfloat16":
        import ml_dtypes

        return values.astype(ml_dtypes.bfloat16).astype(np.float32)
    raise TensorError(f"cannot round dequantised values to {dtype!r} (known: {sorted(ROUNDING_DTYPES)})")


def as_float32(weight: str, what: str, array: npt.NDArray[np.generic]) -> Floats:
    """A float parameter (scales, absmax, code book) widened to float32; integers are refused."""
    expect_dtype(weight, what, array, "f")
    return np.asarray(array, dtype=np.float32)
