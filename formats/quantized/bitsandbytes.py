"""bitsandbytes checkpoints as transformers saves them: 4-bit NF4/FP4 (with nested quantisation) and int8.

4-bit (`Linear4bit`, `Params4bit`): one Linear's weight is stored as
- `<m>.weight` uint8 (ceil(numel / 2), 1): two 4-bit codes per byte, the FIRST element in the HIGH nibble
  (bitsandbytes' quantize_4bit; with `bnb_4bit_quant_storage` another dtype views the same bytes);
- `<m>.weight.absmax` float32 (ceil(numel / blocksize),): the absolute maximum of each block of
  `blocksize` consecutive elements of the row-major (out, in) weight; uint8 when nested;
- `<m>.weight.quant_map` float32 (16,): the code book (NF4 or FP4 values in [-1, 1]);
- `<m>.weight.nested_absmax` float32, `<m>.weight.nested_quant_map` float32 (256,): with double
  quantisation (`bnb_4bit_use_double_quant`), absmax itself is 8-bit blockwise-quantised around an offset;
- `<m>.weight.quant_state.bitsandbytes__nf4` (or `__fp4`) uint8: JSON with quant_type, blocksize, dtype,
  shape and, when nested, nested_blocksize, nested_offset and nested_dtype.
value[i] = quant_map[code[i]] * absmax[i // blocksize], with absmax = nested_quant_map[absmax_u8] *
nested_absmax[j // nested_blocksize] + nested_offset when nested; computed in float32 and returned in the
state's dtype, as `bitsandbytes.functional.dequantize_4bit` does.

int8 (`Linear8bitLt`, LLM.int8()): `<m>.weight` int8 (out, in) and `<m>.SCB` float32 (out,), the absolute
maximum of each row; W = weight * SCB / 127 (bitsandbytes' int8_vectorwise_dequant multiplies by the
float32 reciprocal).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from formats.quantized._common import (
    ROUNDING_DTYPES,
    Floats,
    as_float32,
    ceil_div,
    expect_dtype,
    expect_shape,
    fail,
    round_to,
    unpack_nibbles,
)

#: Suffix of the tensor holding a 4-bit weight's JSON state, per quant type.
QUANT_STATE_PREFIX = "quant_state.bitsandbytes__"
BNB_4BIT_TYPES = frozenset({"nf4", "fp4"})
#: Block sizes bitsandbytes accepts for 4-bit and for the nested 8-bit absmax.
BNB_BLOCK_SIZES = frozenset({32, 64, 128, 256, 512, 1024, 2048, 4096})
#: Longest quant-state JSON parsed (real ones are under 300 bytes).
MAX_QUANT_STATE_BYTES = 1 << 16
#: bitsandbytes' 1 / 127 as the float32 constant its int8 dequantisation multiplies by.
INT8_RECIPROCAL = np.float32(7.874015718698502e-3)


@dataclass(frozen=True, slots=True)
class Bnb4bitState:
    """The parsed JSON state of one 4-bit weight."""

    quant_type: str
    blocksize: int
    dtype: str
    shape: tuple[int, ...]
    nested_blocksize: int | None = None
    nested_offset: float | None = None

    @property
    def nested(self) -> bool:
        return self.nested_blocksize is not None


def parse_quant_state(weight: str, raw: npt.NDArray[np.generic] | bytes) -> Bnb4bitState:
    """Parse and check the `quant_state.bitsandbytes__*` tensor of `weight`.

    Raises:
        TensorError: not UTF-8 JSON of the expected keys, an unknown quant type or dtype, a block size
            bitsandbytes does not use, or a shape that is not a list of non-negative integers.
    """
    data = raw if isinstance(raw, bytes) else np.ascontiguousarray(raw).view(np.uint8).tobytes()
    if len(data) > MAX_QUANT_STATE_BYTES:
        raise fail(weight, f"its quant state is {len(data)} bytes, more than {MAX_QUANT_STATE_BYTES}")
    try:
        state = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError):
        raise fail(weight, "its quant state is not JSON") from None
    if not isinstance(state, Mapping):
        raise fail(weight, "its quant state is not a JSON object")
    quant_type = state.get("quant_type")
    blocksize = state.get("blocksize")
    dtype = str(state.get("dtype", "")).removeprefix("torch.")
    shape = state.get("shape")
    if quant_type not in BNB_4BIT_TYPES:
        raise fail(weight, f"quant_type {quant_type!r} is not nf4 or fp4")
    if not _is_int(blocksize) or blocksize not in BNB_BLOCK_SIZES:
        raise fail(weight, f"blocksize {blocksize!r} is not one bitsandbytes uses")
    if dtype not in ROUNDING_DTYPES:
        raise fail(weight, f"dtype {dtype!r} is not float32, float16 or bfloat16")
    if not isinstance(shape, list) or not shape or not all(_is_int(dim) and dim >= 0 for dim in shape):
        raise fail(weight, f"shape {shape!r} is not a list of dimensions")
    nested_blocksize = state.get("nested_blocksize")
    nested_offset = state.get("nested_offset")
    if nested_blocksize is not None or nested_offset is not None:
        if not _is_int(nested_blocksize) or nested_blocksize not in BNB_BLOCK_SIZES:
            raise fail(weight, f"nested_blocksize {nested_blocksize!r} is not one bitsandbytes uses")
        if not isinstance(nested_offset, int | float) or isinstance(nested_offset, bool):
            raise fail(weight, f"nested_offset {nested_offset!r} is not a number")
        if not math.isfinite(float(nested_offset)):
            raise fail(weight, "nested_offset is not finite")
    return Bnb4bitState(
        quant_type=quant_type,
        blocksize=blocksize,
        dtype=dtype,
        shape=tuple(shape),
        nested_blocksize=nested_blocksize,
        nested_offset=None if nested_offset is None else float(nested_offset),
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _blockwise(codes: Floats, absmax: Floats, blocksize: int) -> Floats:
    """codes[i] * absmax[i // blocksize] in float32, the last block possibly partial."""
    count = codes.size
    padded = np.zeros(ceil_div(count, blocksize) * blocksize, dtype=np.float32)
    padded[:count] = codes
    return (padded.reshape(-1, blocksize) * absmax[:, None]).reshape(-1)[:count]


def dequantize_bnb_4bit(
    weight: str,
    packed: npt.NDArray[np.generic],
    absmax: npt.NDArray[np.generic],
    quant_map: npt.NDArray[np.floating],
    state: Bnb4bitState,
    nested_absmax: npt.NDArray[np.floating] | None = None,
    nested_quant_map: npt.NDArray[np.floating] | None = None,
) -> Floats:
    """The float weight (in the state's shape) of one 4-bit bitsandbytes parameter.

    Raises:
        TensorError: packed bytes too few for the shape, absmax of the wrong length or dtype, a code book
            that is not 16 values, nested parts missing or of the wrong length.
    """
    count = math.prod(state.shape)
    data = np.ascontiguousarray(packed).reshape(-1).view(np.uint8)  # any quant_storage dtype
    needed = ceil_div(count, 2)
    if data.size < needed:
        raise fail(
            weight,
            f"{data.size} packed bytes hold {2 * data.size} values; shape {list(state.shape)} needs {count}",
        )
    expect_shape(weight, "quant_map", quant_map, (16,))
    blocks = ceil_div(count, state.blocksize)
    expect_shape(weight, "absmax", absmax, (blocks,))
    if state.nested:
        assert state.nested_blocksize is not None and state.nested_offset is not None
        if nested_absmax is None or nested_quant_map is None:
            raise fail(weight, "its quant state is nested but nested_absmax or nested_quant_map is missing")
        expect_dtype(weight, "the nested absmax codes", absmax, "u")
        expect_shape(weight, "nested_quant_map", nested_quant_map, (256,))
        expect_shape(weight, "nested_absmax", nested_absmax, (ceil_div(blocks, state.nested_blocksize),))
        inner = as_float32(weight, "nested_quant_map", nested_quant_map)[absmax.astype(np.intp)]
        scales = _blockwise(inner, as_float32(weight, "nested_absmax", nested_absmax), state.nested_blocksize)
        scales = scales + np.float32(state.nested_offset)
    else:
        scales = as_float32(weight, "absmax", absmax)
    codes = unpack_nibbles(data[:needed], axis=0, count=count, high_first=True)
    values = _blockwise(as_float32(weight, "quant_map", quant_map)[codes], scales, state.blocksize)
    return round_to(values.reshape(state.shape), state.dtype)


def dequantize_bnb_int8(
    weight: str, values: npt.NDArray[np.integer], scb: npt.NDArray[np.floating], output_dtype: str = "float32"
) -> Floats:
    """The (out, in) float weight of one LLM.int8() Linear: weight * SCB / 127, row by row.

    Raises:
        TensorError: weight not int8 and 2-D, or SCB not one float per row.
    """
    expect_dtype(weight, "the int8 weight", values, "i")
    if values.ndim != 2:
        raise fail(weight, f"the int8 weight has {values.ndim} dimensions, expected 2")
    expect_shape(weight, "SCB", scb, (values.shape[0],))
    rows = as_float32(weight, "SCB", scb)[:, None]
    return round_to((values.astype(np.float32) * rows) * INT8_RECIPROCAL, output_dtype)


def bnb_encoding(quant_type: str) -> str:
    """`nf4`, `fp4` or `bnb-int8`."""
    return quant_type if quant_type in BNB_4BIT_TYPES else "bnb-int8"
