"""GGML tensor types: their block layouts, and dequantisation of whole blocks to float32.

Each quantised type stores a row as blocks of `block_size` elements in `type_size` bytes. The layouts are
those of ggml's `ggml-common.h` (`block_q4_0`, `block_q4_K`, ...) written here as numpy structured dtypes,
so a run of blocks is viewed in place and every field is addressed by name. The dequantisers follow
ggml's reference `dequantize_row_*` functions (ggml-quants.c), vectorised over blocks, and keep their
order of float32 operations, so the results match ggml and gguf-py's `quants.py` bit for bit where the
arithmetic allows.

Non-goals: quantising, the importance-matrix "IQ" types other than IQ4_NL, the ternary TQ types and the
microscaling MXFP4/NVFP4 types (listed by the reader, refused by `read()` with a `TensorError`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

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
        _unread("IQ2_XXS", 16, QK_K, 2 + QK_K // 4),
        _unread("IQ2_XS", 17, QK_K, 2 + QK_K // 4 + QK_K // 32),
        _unread("IQ3_XXS", 18, QK_K, 2 + QK_K // 4 + QK_K // 8),
        _unread("IQ1_S", 19, QK_K, 2 + QK_K // 8 + QK_K // 16),
        _blocks("IQ4_NL", 20, 32, _IQ4_NL, _dequantize_iq4_nl),
        _unread("IQ3_S", 21, QK_K, 2 + QK_K // 4 + QK_K // 8 + QK_K // 32 + 4),
        _unread("IQ2_S", 22, QK_K, 2 + QK_K // 4 + QK_K // 16),
        _unread("IQ4_XS", 23, QK_K, 2 + 2 + QK_K // 2 + QK_K // 64),
        _plain("I8", 24, "i1"),
        _plain("I16", 25, "<i2"),
        _plain("I32", 26, "<i4"),
        _plain("I64", 27, "<i8"),
        _plain("F64", 28, "<f8"),
        _unread("IQ1_M", 29, QK_K, QK_K // 8 + QK_K // 16 + QK_K // 32),
        GGMLType("BF16", 30, 1, 2, np.dtype("<u2")),
        _unread("TQ1_0", 34, QK_K, 2 + 4 * 13),
        _unread("TQ2_0", 35, QK_K, 2 + 64),
        _unread("MXFP4", 39, 32, 1 + 16),
        _unread("NVFP4", 40, 64, 4 + 32),
        _unread("Q1_0", 41, 128, 2 + 16),
    )
}
