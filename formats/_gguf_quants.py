"""GGML tensor types: their block layouts, and dequantisation of whole blocks to float32.

Each quantised type stores a row as blocks of `block_size` elements in `type_size` bytes. The layouts are
those of ggml's `ggml-common.h` (`block_q4_0`, `block_q4_K`, ...) written here as numpy structured dtypes,
so a run of blocks is viewed in place and every field is addressed by name. The dequantisers follow
ggml's reference `dequantize_row_*` functions (ggml-quants.c), vectorised over blocks, and keep their
order of float32 operations, so the results match ggml and gguf-py's `quants.py` bit for bit where the
arithmetic allows.

The importance-matrix "IQ" types index fixed code books (`formats._gguf_grids`) and carry their signs
as bit masks; the ternary TQ types pack base-3 digits; MXFP4 and NVFP4 are the microscaling 4-bit float
formats (E2M1 values with a shared E8M0 or unsigned-E4M3 scale).

Non-goals: quantising, and the types ggml itself never dequantises to float or that gguf-py cannot check
(Q8_1, Q8_K, Q1_0: listed by the reader, refused by `read()` with a `TensorError`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from formats._gguf_grids import grid

#: Elements per super-block of the K-quants (ggml's QK_K).
QK_K = 256

Blocks = npt.NDArray[np.void]
Floats = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class GGMLType:
    """One GGML tensor type.

    Attributes:
        name: ggml's name ("Q4_K").
        type_id: the number in the GGUF tensor table.
        block_size: elements per block (1 for plain types).
        type_size: bytes per block.
        layout: numpy dtype of one block (a plain dtype for F32/F16/...), None for types we cannot read.
        dequantize: blocks (n,) of `layout` -> float32 (n, block_size); None for plain and unread types.
    """

    name: str
    type_id: int
    block_size: int
    type_size: int
    layout: np.dtype[np.generic] | None = None
    dequantize: Callable[[Blocks], Floats] | None = None

    @property
    def is_quantized(self) -> bool:
        return self.block_size > 1


def _half(values: npt.NDArray[np.generic]) -> Floats:
    return values.astype(np.float32)


def _low_high_nibbles(qs: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Bytes (n, k) -> (n, 2k): first every low nibble, then every high nibble (ggml's q4/q5 order)."""
    return np.concatenate([qs & np.uint8(0x0F), qs >> np.uint8(4)], axis=-1)


# --- 32-element blocks -------------------------------------------------------------------------------

_Q4_0 = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
_Q4_1 = np.dtype([("d", "<f2"), ("m", "<f2"), ("qs", "u1", (16,))])
_Q5_0 = np.dtype([("d", "<f2"), ("qh", "<u4"), ("qs", "u1", (16,))])
_Q5_1 = np.dtype([("d", "<f2"), ("m", "<f2"), ("qh", "<u4"), ("qs", "u1", (16,))])
_Q8_0 = np.dtype([("d", "<f2"), ("qs", "i1", (32,))])
_IQ4_NL = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])

# The non-linear 4-bit code book of IQ4_NL (ggml's kvalues_iq4nl).
_IQ4_NL_VALUES = np.array(
    [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], dtype=np.float32
)
_BIT_POSITIONS_32 = np.arange(32, dtype=np.uint32)


def _fifth_bits(qh: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint8]:
    """The 32 high bits of a Q5 block (bit j belongs to element j), each as 0 or 16."""
    return (((qh[:, None] >> _BIT_POSITIONS_32) & np.uint32(1)) << np.uint32(4)).astype(np.uint8)


def _dequantize_q4_0(blocks: Blocks) -> Floats:
    q = _low_high_nibbles(blocks["qs"]).astype(np.int8) - np.int8(8)
    return _half(blocks["d"])[:, None] * q.astype(np.float32)


def _dequantize_q4_1(blocks: Blocks) -> Floats:
    q = _low_high_nibbles(blocks["qs"]).astype(np.float32)
    return _half(blocks["d"])[:, None] * q + _half(blocks["m"])[:, None]


def _dequantize_q5_0(blocks: Blocks) -> Floats:
    q = (_low_high_nibbles(blocks["qs"]) | _fifth_bits(blocks["qh"])).astype(np.int8) - np.int8(16)
    return _half(blocks["d"])[:, None] * q.astype(np.float32)


def _dequantize_q5_1(blocks: Blocks) -> Floats:
    q = (_low_high_nibbles(blocks["qs"]) | _fifth_bits(blocks["qh"])).astype(np.float32)
    return _half(blocks["d"])[:, None] * q + _half(blocks["m"])[:, None]


def _dequantize_q8_0(blocks: Blocks) -> Floats:
    return blocks["qs"].astype(np.float32) * _half(blocks["d"])[:, None]


def _dequantize_iq4_nl(blocks: Blocks) -> Floats:
    return _half(blocks["d"])[:, None] * _IQ4_NL_VALUES[_low_high_nibbles(blocks["qs"])]


# --- 256-element super-blocks (K-quants) -------------------------------------------------------------

_Q2_K = np.dtype([("scales", "u1", (16,)), ("qs", "u1", (64,)), ("d", "<f2"), ("dmin", "<f2")])
_Q3_K = np.dtype([("hmask", "u1", (32,)), ("qs", "u1", (64,)), ("scales", "u1", (12,)), ("d", "<f2")])
_Q4_K = np.dtype([("d", "<f2"), ("dmin", "<f2"), ("scales", "u1", (12,)), ("qs", "u1", (128,))])
_Q5_K = np.dtype(
    [("d", "<f2"), ("dmin", "<f2"), ("scales", "u1", (12,)), ("qh", "u1", (32,)), ("qs", "u1", (128,))]
)
_Q6_K = np.dtype([("ql", "u1", (128,)), ("qh", "u1", (64,)), ("scales", "i1", (16,)), ("d", "<f2")])

_SHIFTS_2BIT = np.array([0, 2, 4, 6], dtype=np.uint8)
_SHIFTS_1BIT = np.arange(8, dtype=np.uint8)


def _crumbs(qs: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """2-bit fields of (n, 64) bytes in ggml's Q2_K/Q3_K order: per 128-element half, per shift, 32 bytes."""
    halves = qs.reshape(-1, 2, 1, 32)
    return ((halves >> _SHIFTS_2BIT[None, None, :, None]) & np.uint8(3)).reshape(-1, QK_K)


def _dequantize_q2_k(blocks: Blocks) -> Floats:
    scales = blocks["scales"]
    d = _half(blocks["d"])[:, None]
    dmin = _half(blocks["dmin"])[:, None]
    # One 4-bit scale and one 4-bit min per 16 consecutive outputs.
    dl = (d * (scales & np.uint8(0x0F)).astype(np.float32))[:, :, None]
    ml = (dmin * (scales >> np.uint8(4)).astype(np.float32))[:, :, None]
    q = _crumbs(blocks["qs"]).reshape(-1, 16, 16).astype(np.float32)
    return (dl * q - ml).reshape(-1, QK_K)


def _q3_k_scales(packed: npt.NDArray[np.uint8]) -> npt.NDArray[np.int8]:
    """Sixteen 6-bit scales of Q3_K: low nibbles in bytes 0-7 (low, then high halves), top 2 bits in 8-11."""
    low = np.concatenate([packed[:, :8] & np.uint8(0x0F), packed[:, :8] >> np.uint8(4)], axis=-1)
    top = (packed[:, 8:12, None] >> _SHIFTS_2BIT[None, None, :]) & np.uint8(3)  # (n, byte k, shift s)
    high = top.transpose(0, 2, 1).reshape(-1, 16)  # scale i takes byte i % 4 at shift 2 * (i // 4)
    scales: npt.NDArray[np.int8] = (low | (high << np.uint8(4))).astype(np.int8) - np.int8(32)
    return scales


def _dequantize_q3_k(blocks: Blocks) -> Floats:
    dl = (_half(blocks["d"])[:, None] * _q3_k_scales(blocks["scales"]).astype(np.float32))[:, :, None]
    low = _crumbs(blocks["qs"]).reshape(-1, 2, 4, 32)
    # hmask bit (4 * half + shift index) of byte b: set means no offset, clear means subtract 4.
    bits = (blocks["hmask"][:, None, :] >> _SHIFTS_1BIT[None, :, None]) & np.uint8(1)
    high = bits.reshape(-1, 2, 4, 32)
    q = low.astype(np.int8) - ((high ^ np.uint8(1)) << np.uint8(2)).astype(np.int8)
    return (dl * q.reshape(-1, 16, 16).astype(np.float32)).reshape(-1, QK_K)


def _k_scales_mins(packed: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """Eight 6-bit scales and mins of Q4_K/Q5_K (ggml's get_scale_min_k4)."""
    first, second, third = packed[:, 0:4], packed[:, 4:8], packed[:, 8:12]
    scales = np.concatenate(
        [first & np.uint8(0x3F), (third & np.uint8(0x0F)) | ((first >> np.uint8(6)) << np.uint8(4))], axis=-1
    )
    mins = np.concatenate(
        [second & np.uint8(0x3F), (third >> np.uint8(4)) | ((second >> np.uint8(6)) << np.uint8(4))], axis=-1
    )
    return scales, mins


def _nibble_pairs(qs: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """(n, 128) bytes -> (n, 8, 32): per 32-byte chunk, its low nibbles then its high nibbles."""
    chunks = qs.reshape(-1, 4, 1, 32)
    return np.concatenate([chunks & np.uint8(0x0F), chunks >> np.uint8(4)], axis=2).reshape(-1, 8, 32)


def _dequantize_q4_k(blocks: Blocks) -> Floats:
    scales, mins = _k_scales_mins(blocks["scales"])
    d = (_half(blocks["d"])[:, None] * scales.astype(np.float32))[:, :, None]
    m = (_half(blocks["dmin"])[:, None] * mins.astype(np.float32))[:, :, None]
    return (d * _nibble_pairs(blocks["qs"]).astype(np.float32) - m).reshape(-1, QK_K)


def _dequantize_q5_k(blocks: Blocks) -> Floats:
    scales, mins = _k_scales_mins(blocks["scales"])
    d = (_half(blocks["d"])[:, None] * scales.astype(np.float32))[:, :, None]
    m = (_half(blocks["dmin"])[:, None] * mins.astype(np.float32))[:, :, None]
    # Sub-block s takes bit s of each of the 32 qh bytes as its fifth bit.
    fifth = ((blocks["qh"][:, None, :] >> _SHIFTS_1BIT[None, :, None]) & np.uint8(1)) << np.uint8(4)
    q = (_nibble_pairs(blocks["qs"]) | fifth).astype(np.float32)
    return (d * q - m).reshape(-1, QK_K)


def _dequantize_q6_k(blocks: Blocks) -> Floats:
    d = (_half(blocks["d"])[:, None] * blocks["scales"].astype(np.float32))[:, :, None]
    # Per 128-element half: quarter k takes nibble k // 2 of ql bytes 32 * (k % 2) ... and bits 2k of qh.
    ql = blocks["ql"].reshape(-1, 2, 1, 2, 32)
    low = (ql >> np.array([0, 4], dtype=np.uint8)[None, None, :, None, None]) & np.uint8(0x0F)
    low = low.reshape(-1, 2, 4, 32)
    qh = blocks["qh"].reshape(-1, 2, 1, 32)
    high = (qh >> _SHIFTS_2BIT[None, None, :, None]) & np.uint8(3)
    q = (low | (high << np.uint8(4))).astype(np.int8) - np.int8(32)
    return (d * q.reshape(-1, 16, 16).astype(np.float32)).reshape(-1, QK_K)


# --- importance-matrix types (IQ1_S ... IQ4_XS) --------------------------------------------------------

_IQ2_XXS = np.dtype([("d", "<f2"), ("qs", "<u4", (16,))])
_IQ2_XS = np.dtype([("d", "<f2"), ("qs", "<u2", (32,)), ("scales", "u1", (8,))])
_IQ2_S = np.dtype(
    [("d", "<f2"), ("qs", "u1", (32,)), ("signs", "u1", (32,)), ("qh", "u1", (8,)), ("scales", "u1", (8,))]
)
_IQ3_XXS = np.dtype([("d", "<f2"), ("qs", "u1", (64,)), ("scales_and_signs", "<u4", (8,))])
_IQ3_S = np.dtype(
    [("d", "<f2"), ("qs", "u1", (64,)), ("qh", "u1", (8,)), ("signs", "u1", (32,)), ("scales", "u1", (4,))]
)
_IQ1_S = np.dtype([("d", "<f2"), ("qs", "u1", (32,)), ("qh", "<u2", (8,))])
_IQ1_M = np.dtype([("qs", "u1", (32,)), ("qh", "u1", (16,)), ("scales", "<u2", (4,))])
_IQ4_XS = np.dtype([("d", "<f2"), ("scales_h", "<u2"), ("scales_l", "u1", (4,)), ("qs", "u1", (128,))])

#: IQ1_S/IQ1_M shift every grid point by +-1/8 (ggml's IQ1S_DELTA); the sign is one bit per group.
_IQ1_DELTA = np.float32(0.125)
_SEVEN_BIT_FIELDS = np.array([0, 7, 14, 21], dtype=np.uint32)
_THREE_BIT_FIELDS = np.array([0, 3, 6, 9], dtype=np.uint16)
_BYTES_OF_U32 = np.array([0, 8, 16, 24], dtype=np.uint32)
_NIBBLE_SHIFTS = np.array([0, 4], dtype=np.uint8)


def _sign_bits(masks: npt.NDArray[np.uint8]) -> Floats:
    """Bytes (...) -> (..., 8) factors: bit j set means element j of the group of 8 is negated."""
    bits = (masks[..., None] >> _SHIFTS_1BIT) & np.uint8(1)
    return np.where(bits == 0, np.float32(1), np.float32(-1))


def _even_parity_signs(indices: npt.NDArray[np.unsignedinteger]) -> Floats:
    """ggml's `ksigns_iq2xs`: 7 sign bits from the index, an eighth that makes the count of negatives even."""
    low = (indices & 0x7F).astype(np.uint8)
    parity = np.zeros_like(low)
    for bit in range(7):
        parity ^= (low >> np.uint8(bit)) & np.uint8(1)
    return _sign_bits(low | (parity << np.uint8(7)))


def _nibbles(packed: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Bytes (n, k) -> (n, 2k): low then high nibble of each byte, in byte order."""
    return ((packed[..., None] >> _NIBBLE_SHIFTS) & np.uint8(0x0F)).reshape(*packed.shape[:-1], -1)


def _quarter_scales(d: Floats, scales: npt.NDArray[np.uint8], factor: np.float32) -> Floats:
    """IQ2/IQ3 group scales: d * (0.5 + s) * factor, in ggml's order of float32 operations."""
    return d * (np.float32(0.5) + scales.astype(np.float32)) * factor


def _dequantize_iq2_xxs(blocks: Blocks) -> Floats:
    words = blocks["qs"].reshape(-1, 8, 2)  # per 32 elements: 4 grid indices, then signs and the scale
    indices = (words[:, :, 0, None] >> _BYTES_OF_U32) & np.uint32(0xFF)  # (n, 8, 4)
    aux = words[:, :, 1]
    scales = (aux >> np.uint32(28)).astype(np.uint8)
    db = _quarter_scales(_half(blocks["d"])[:, None], scales, np.float32(0.25))
    signs = _even_parity_signs(aux[:, :, None] >> _SEVEN_BIT_FIELDS)  # (n, 8, 4, 8)
    points = grid("IQ2_XXS")[indices]  # (n, 8, 4, 8)
    out: Floats = (db[:, :, None, None] * points * signs).reshape(-1, QK_K)
    return out


def _dequantize_iq2_xs(blocks: Blocks) -> Floats:
    qs = blocks["qs"]  # (n, 32): 9-bit grid index, 7-bit sign index; one per 8 elements
    db = _quarter_scales(_half(blocks["d"])[:, None], _nibbles(blocks["scales"]), np.float32(0.25))  # (n, 16)
    points = grid("IQ2_XS")[qs & np.uint16(511)].reshape(-1, 16, 2, 8)
    signs = _even_parity_signs(qs >> np.uint16(9)).reshape(-1, 16, 2, 8)
    out: Floats = (db[:, :, None, None] * points * signs).reshape(-1, QK_K)
    return out


def _dequantize_iq2_s(blocks: Blocks) -> Floats:
    high = (blocks["qh"][:, :, None] >> _SHIFTS_2BIT) & np.uint8(3)  # (n, 8, 4): bits 8-9 of each index
    indices = blocks["qs"].astype(np.uint16) | (high.reshape(-1, 32).astype(np.uint16) << np.uint16(8))
    db = _quarter_scales(_half(blocks["d"])[:, None], _nibbles(blocks["scales"]), np.float32(0.25))
    points = grid("IQ2_S")[indices].reshape(-1, 16, 2, 8)
    signs = _sign_bits(blocks["signs"]).reshape(-1, 16, 2, 8)
    out: Floats = (db[:, :, None, None] * points * signs).reshape(-1, QK_K)
    return out


def _dequantize_iq3_xxs(blocks: Blocks) -> Floats:
    aux = blocks["scales_and_signs"]  # (n, 8): per 32 elements, four 7-bit sign indices and a 4-bit scale
    scales = (aux >> np.uint32(28)).astype(np.uint8)
    db = _quarter_scales(_half(blocks["d"])[:, None], scales, np.float32(0.5))
    points = grid("IQ3_XXS")[blocks["qs"]].reshape(-1, 8, 4, 8)  # two 4-element points per group of 8
    signs = _even_parity_signs(aux[:, :, None] >> _SEVEN_BIT_FIELDS)
    out: Floats = (db[:, :, None, None] * points * signs).reshape(-1, QK_K)
    return out


def _dequantize_iq3_s(blocks: Blocks) -> Floats:
    high = (blocks["qh"][:, :, None] >> _SHIFTS_1BIT) & np.uint8(1)  # (n, 8, 8): bit 8 of each index
    indices = blocks["qs"].astype(np.uint16) | (high.reshape(-1, 64).astype(np.uint16) << np.uint16(8))
    db = _half(blocks["d"])[:, None] * (1 + 2 * _nibbles(blocks["scales"]).astype(np.float32))  # (n, 8)
    points = grid("IQ3_S")[indices].reshape(-1, 8, 4, 8)
    signs = _sign_bits(blocks["signs"]).reshape(-1, 8, 4, 8)
    out: Floats = (db[:, :, None, None] * points * signs).reshape(-1, QK_K)
    return out


def _dequantize_iq1_s(blocks: Blocks) -> Floats:
    qh = blocks["qh"]  # (n, 8): per 32 elements, 4 x 3 high index bits, a 3-bit scale, the delta's sign
    dl = _half(blocks["d"])[:, None] * (2 * ((qh >> np.uint16(12)) & np.uint16(7)) + 1).astype(np.float32)
    delta = np.where(qh & np.uint16(0x8000), -_IQ1_DELTA, _IQ1_DELTA)
    high = (qh[:, :, None] >> _THREE_BIT_FIELDS) & np.uint16(7)
    indices = blocks["qs"].reshape(-1, 8, 4).astype(np.uint16) | (high << np.uint16(8))
    points = grid("IQ1_S")[indices]  # (n, 8, 4, 8)
    return (dl[:, :, None, None] * (points + delta[:, :, None, None])).reshape(-1, QK_K)


def _dequantize_iq1_m(blocks: Blocks) -> Floats:
    scales = blocks["scales"]  # (n, 4): 12 bits of 3-bit scales each, the top nibbles make up d
    top = scales & np.uint16(0xF000)
    d_bits = (top[:, 0] >> 12) | (top[:, 1] >> 8) | (top[:, 2] >> 4) | top[:, 3]
    d = d_bits.astype(np.uint16).view(np.float16).astype(np.float32)[:, None]
    sub = ((scales[:, :, None] >> _THREE_BIT_FIELDS) & np.uint16(7)).reshape(-1, 16)  # one per 16 elements
    dl = (d * (2 * sub + 1).astype(np.float32)).reshape(-1, 8, 2)
    nibbles = _nibbles(blocks["qh"])  # (n, 32): per grid index, 3 high bits and the delta's sign
    indices = blocks["qs"].astype(np.uint16) | ((nibbles & np.uint8(7)).astype(np.uint16) << np.uint16(8))
    delta = np.where(nibbles & np.uint8(8), -_IQ1_DELTA, _IQ1_DELTA).reshape(-1, 8, 2, 2)
    points = grid("IQ1_M")[indices].reshape(-1, 8, 2, 2, 8)
    return (dl[:, :, :, None, None] * (points + delta[..., None])).reshape(-1, QK_K)


def _dequantize_iq4_xs(blocks: Blocks) -> Floats:
    low = _nibbles(blocks["scales_l"])  # (n, 8)
    high = (blocks["scales_h"][:, None] >> (2 * np.arange(8, dtype=np.uint16))) & np.uint16(3)
    scales = (low | (high.astype(np.uint8) << np.uint8(4))).astype(np.int8) - np.int8(32)
    dl = _half(blocks["d"])[:, None] * scales.astype(np.float32)
    qs = blocks["qs"].reshape(-1, 8, 16)
    codes = np.concatenate([qs & np.uint8(0x0F), qs >> np.uint8(4)], axis=-1)  # (n, 8, 32)
    out: Floats = (dl[:, :, None] * _IQ4_NL_VALUES[codes]).reshape(-1, QK_K)
    return out


# --- ternary types ------------------------------------------------------------------------------------

_TQ1_0 = np.dtype([("qs", "u1", (48,)), ("qh", "u1", (4,)), ("d", "<f2")])
_TQ2_0 = np.dtype([("qs", "u1", (64,)), ("d", "<f2")])
_POWERS_OF_3 = np.array([1, 3, 9, 27, 81], dtype=np.uint8)


def _trits(packed: npt.NDArray[np.uint8], digits: int) -> npt.NDArray[np.uint8]:
    """TQ1_0 bytes (n, k) -> (n, digits * k): byte b holds `digits` base-3 digits as a fixed-point fraction.

    Multiplying by 3**j (mod 256) brings digit j to the top and (q * 3) >> 8 reads it, as ggml's
    dequantize_row_tq1_0 does.
    """
    shifted = packed[:, None, :] * _POWERS_OF_3[:digits, None]  # uint8 wraps, as in ggml
    return ((shifted.astype(np.uint16) * 3) >> 8).astype(np.uint8).reshape(packed.shape[0], -1)


def _dequantize_tq1_0(blocks: Blocks) -> Floats:
    qs = blocks["qs"]
    digits = np.concatenate([_trits(qs[:, :32], 5), _trits(qs[:, 32:], 5), _trits(blocks["qh"], 4)], axis=-1)
    return _half(blocks["d"])[:, None] * (digits.astype(np.int8) - np.int8(1)).astype(np.float32)


def _dequantize_tq2_0(blocks: Blocks) -> Floats:
    q = _crumbs(blocks["qs"]).astype(np.int8) - np.int8(1)
    return _half(blocks["d"])[:, None] * q.astype(np.float32)


# --- microscaling 4-bit floats ------------------------------------------------------------------------

_MXFP4 = np.dtype([("e", "u1"), ("qs", "u1", (16,))])
_NVFP4 = np.dtype([("d", "u1", (4,)), ("qs", "u1", (32,))])
#: E2M1 values doubled (ggml's kvalues_mxfp4); the scale decoders below halve to compensate.
_E2M1_DOUBLED = np.array([0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12], dtype=np.float32)


def _e8m0_half(exponents: npt.NDArray[np.uint8]) -> Floats:
    """2**(e - 127) / 2 as float32 bits (ggml_e8m0_to_fp32_half); e < 2 lands among the subnormals."""
    e = exponents.astype(np.uint32)
    bits = np.where(e < 2, np.uint32(0x00200000) << e, (e - np.uint32(1)) << np.uint32(23))
    return bits.astype(np.uint32).view(np.float32)


def _ue4m3_half_table() -> Floats:
    """Every unsigned E4M3 byte (bias 7, bit 7 ignored) as float32, halved; 0 and 0x7F (NaN) read as 0."""
    codes = np.arange(256)
    exponent = (codes >> 3) & 0xF
    mantissa = codes & 0x7
    values = np.where(exponent == 0, mantissa * 2.0**-9, (1 + mantissa / 8) * 2.0 ** (exponent - 7))
    values = np.where((codes == 0) | (codes == 0x7F), 0.0, values * 0.5)
    return values.astype(np.float32)


_UE4M3_HALF = _ue4m3_half_table()


def _dequantize_mxfp4(blocks: Blocks) -> Floats:
    values = _E2M1_DOUBLED[_low_high_nibbles(blocks["qs"])]
    return _e8m0_half(blocks["e"])[:, None] * values


def _dequantize_nvfp4(blocks: Blocks) -> Floats:
    qs = blocks["qs"].reshape(-1, 4, 8)  # four 16-element sub-blocks, each with its own scale
    values = _E2M1_DOUBLED[np.concatenate([qs & np.uint8(0x0F), qs >> np.uint8(4)], axis=-1)]
    out: Floats = (_UE4M3_HALF[blocks["d"]][:, :, None] * values).reshape(-1, 64)
    return out


def _plain(name: str, type_id: int, numpy_type: str) -> GGMLType:
    layout = np.dtype(numpy_type)
    return GGMLType(name, type_id, 1, layout.itemsize, layout)


def _blocks(
    name: str,
    type_id: int,
    block_size: int,
    layout: np.dtype[np.void],
    dequantize: Callable[[Blocks], Floats],
) -> GGMLType:
    return GGMLType(name, type_id, block_size, layout.itemsize, layout, dequantize)


def _unread(name: str, type_id: int, block_size: int, type_size: int) -> GGMLType:
    return GGMLType(name, type_id, block_size, type_size)


#: Every GGML type id in use (gguf-py constants.GGML_QUANT_SIZES), by id.
GGML_TYPES: dict[int, GGMLType] = {
    entry.type_id: entry
    for entry in (
        _plain("F32", 0, "<f4"),
        _plain("F16", 1, "<f2"),
        _blocks("Q4_0", 2, 32, _Q4_0, _dequantize_q4_0),
        _blocks("Q4_1", 3, 32, _Q4_1, _dequantize_q4_1),
        _blocks("Q5_0", 6, 32, _Q5_0, _dequantize_q5_0),
        _blocks("Q5_1", 7, 32, _Q5_1, _dequantize_q5_1),
        _blocks("Q8_0", 8, 32, _Q8_0, _dequantize_q8_0),
        _unread("Q8_1", 9, 32, 40),
        _blocks("Q2_K", 10, QK_K, _Q2_K, _dequantize_q2_k),
        _blocks("Q3_K", 11, QK_K, _Q3_K, _dequantize_q3_k),
        _blocks("Q4_K", 12, QK_K, _Q4_K, _dequantize_q4_k),
        _blocks("Q5_K", 13, QK_K, _Q5_K, _dequantize_q5_k),
        _blocks("Q6_K", 14, QK_K, _Q6_K, _dequantize_q6_k),
        _unread("Q8_K", 15, QK_K, 4 + QK_K + QK_K // 8),
        _blocks("IQ2_XXS", 16, QK_K, _IQ2_XXS, _dequantize_iq2_xxs),
        _blocks("IQ2_XS", 17, QK_K, _IQ2_XS, _dequantize_iq2_xs),
        _blocks("IQ3_XXS", 18, QK_K, _IQ3_XXS, _dequantize_iq3_xxs),
        _blocks("IQ1_S", 19, QK_K, _IQ1_S, _dequantize_iq1_s),
        _blocks("IQ4_NL", 20, 32, _IQ4_NL, _dequantize_iq4_nl),
        _blocks("IQ3_S", 21, QK_K, _IQ3_S, _dequantize_iq3_s),
        _blocks("IQ2_S", 22, QK_K, _IQ2_S, _dequantize_iq2_s),
        _blocks("IQ4_XS", 23, QK_K, _IQ4_XS, _dequantize_iq4_xs),
        _plain("I8", 24, "i1"),
        _plain("I16", 25, "<i2"),
        _plain("I32", 26, "<i4"),
        _plain("I64", 27, "<i8"),
        _plain("F64", 28, "<f8"),
        _blocks("IQ1_M", 29, QK_K, _IQ1_M, _dequantize_iq1_m),
        GGMLType("BF16", 30, 1, 2, np.dtype("<u2")),
        _blocks("TQ1_0", 34, QK_K, _TQ1_0, _dequantize_tq1_0),
        _blocks("TQ2_0", 35, QK_K, _TQ2_0, _dequantize_tq2_0),
        _blocks("MXFP4", 39, 32, _MXFP4, _dequantize_mxfp4),
        _blocks("NVFP4", 40, 64, _NVFP4, _dequantize_nvfp4),
        _unread("Q1_0", 41, 128, 2 + 16),
    )
}
