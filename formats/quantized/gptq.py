"""GPTQ checkpoints (AutoGPTQ / GPTQModel / optimum "gptq" format): qweight, qzeros, scales and g_idx.

Layout of one Linear with `in_features` K, `out_features` N, `bits` b and `group_size` g (AutoGPTQ's
QuantLinear.pack, GPTQModel's `gptq` checkpoint format):
- `qweight` int32 (K * b / 32, N): the input axis packed, field k of column n at stream bit k * b;
- `qzeros` int32 (G, N * b / 32): the output axis packed the same way, one row per group;
- `scales` float16 (G, N);
- `g_idx` int32 (K): the group of each input channel, k // g unless the model was quantised with
  act-order (`desc_act`), where the groups follow the order of decreasing Hessian diagonal;
- G = ceil(K / g), or 1 when `group_size` is -1 (one scale per output channel).
Format "gptq" (v1) stores each zero point minus one, a quirk of AutoGPTQ's packer that GPTQModel's
"gptq_v2" format drops; the dequantiser adds the one back for v1, modulo 2**bits as AutoGPTQ does.

W[k, n] = scales[g_idx[k], n] * (q[k, n] - zero[g_idx[k], n]). The stored orientation is (in, out); the
Linear's weight is its transpose, (out, in), which is what `dequantize_gptq` returns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from formats.quantized._common import (
    Floats,
    as_float32,
    expect_bits,
    expect_dtype,
    expect_shape,
    fail,
    input_groups,
    packed_words,
    round_to,
    unpack_words,
)

#: GPTQ packs 2, 3, 4 and 8 bits (3-bit fields straddle words).
GPTQ_BITS = frozenset({2, 3, 4, 8})
#: `checkpoint_format` values and whether their zero points are stored minus one.
ZEROS_MINUS_ONE = {"gptq": True, "gptq_v2": False}


@dataclass(frozen=True, slots=True)
class GPTQParams:
    """What `quantization_config` says about a GPTQ checkpoint.

    Attributes:
        bits: 2, 3, 4 or 8.
        group_size: input channels per group; -1 for one group (per output channel).
        checkpoint_format: "gptq" (zero points stored minus one) or "gptq_v2".
        output_dtype: the dtype the reference returns its dequantised weight in (the scales' dtype).
    """

    bits: int
    group_size: int
    checkpoint_format: str = "gptq"
    output_dtype: str = "float16"


def gptq_logical_shape(qweight_shape: tuple[int, ...], bits: int) -> tuple[int, int]:
    """(out, in) of the Linear whose `qweight` has this shape; in = rows * 32 / bits."""
    rows, columns = qweight_shape
    return columns, rows * 32 // bits


def dequantize_gptq(
    weight: str,
    qweight: npt.NDArray[np.integer],
    qzeros: npt.NDArray[np.integer],
    scales: npt.NDArray[np.floating],
    g_idx: npt.NDArray[np.integer] | None,
    params: GPTQParams,
) -> Floats:
    """The (out, in) float weight of one GPTQ Linear.

    Raises:
        TensorError: bits not 2/3/4/8, a group size that does not fit the scales (a lying config), parts of
            the wrong shape or dtype, g_idx values outside the groups.
    """
    expect_bits(weight, params.bits, GPTQ_BITS)
    expect_dtype(weight, "qweight", qweight, "iu")
    expect_dtype(weight, "qzeros", qzeros, "iu")
    if qweight.ndim != 2:
        raise fail(weight, f"qweight has {qweight.ndim} dimensions, expected 2")
    bits = params.bits
    if (qweight.shape[0] * 32) % bits:
        raise fail(weight, f"qweight's {qweight.shape[0]} rows do not hold whole {bits}-bit input channels")
    out_features, in_features = gptq_logical_shape(qweight.shape, bits)
    if g_idx is not None:
        expect_dtype(weight, "g_idx", g_idx, "iu")
        expect_shape(weight, "g_idx", g_idx, (in_features,))
    group_size, groups = input_groups(weight, params.group_size, in_features, out_features, scales)
    expect_shape(weight, "qzeros", qzeros, (groups, packed_words(bits, out_features)))
    if g_idx is None:
        group_of = np.arange(in_features) // group_size
    else:
        group_of = g_idx.astype(np.int64)
        if group_of.size and (group_of.min() < 0 or group_of.max() >= groups):
            raise fail(weight, f"g_idx holds groups outside 0..{groups - 1}")
    if params.checkpoint_format not in ZEROS_MINUS_ONE:
        raise fail(weight, f"unknown GPTQ checkpoint_format {params.checkpoint_format!r}")
    q = unpack_words(qweight, bits, axis=0, count=in_features).astype(np.int32)  # (in, out)
    zeros = unpack_words(qzeros, bits, axis=1, count=out_features).astype(np.int32)  # (groups, out)
    if ZEROS_MINUS_ONE[params.checkpoint_format]:
        # Masked as AutoGPTQ's dequantiser does: a zero point of 0 was stored as -1, i.e. all ones.
        zeros = (zeros + 1) & ((1 << bits) - 1)
    scale = as_float32(weight, "scales", scales)
    values = scale[group_of] * (q - zeros[group_of]).astype(np.float32)
    return round_to(np.ascontiguousarray(values.T), params.output_dtype)


def gptq_encoding(params: GPTQParams) -> str:
    """`gptq-int4-g128`; a per-channel checkpoint (group_size -1) is `gptq-int4`."""
    group = f"-g{params.group_size}" if params.group_size > 0 else ""
    return f"gptq-int{params.bits}{group}"
