"""Builders of decompression bombs: small files whose compressed data expands far past what they store.

Each chunk or member is compressed once and written many times (h5py's `write_direct_chunk`), so a file
that declares gigabytes is built in well under a second and stays a few megabytes on disk.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

#: A 1 MiB float32 chunk (512 x 512), the unit the HDF5 bombs repeat.
CHUNK_ROWS = 512


def hdf5_gzip_zeros(path: Path, total_bytes: int, *, keras_names: bool = True) -> Path:
    """An HDF5 file with one gzip-compressed float32 dataset of `total_bytes` zeros (Keras-2 layout)."""
    import h5py

    rows = max(CHUNK_ROWS, total_bytes // (CHUNK_ROWS * 4))
    rows -= rows % CHUNK_ROWS
    chunk = np.zeros((CHUNK_ROWS, CHUNK_ROWS), dtype=np.float32)
    packed = zlib.compress(chunk.tobytes(), 9)
    with h5py.File(path, "w") as handle:
        group = handle.create_group("dense") if keras_names else handle
        if keras_names:
            handle.attrs["layer_names"] = [b"dense"]
            group.attrs["weight_names"] = [b"dense/kernel:0"]
            inner = group.create_group("dense")
        else:
            inner = group
        dataset = inner.create_dataset(
            "kernel:0",
            shape=(rows, CHUNK_ROWS),
            dtype=np.float32,
            chunks=(CHUNK_ROWS, CHUNK_ROWS),
            compression="gzip",
        )
        for first in range(0, rows, CHUNK_ROWS):
            dataset.id.write_direct_chunk((first, 0), packed)
    return path


def zip_deflate_member(total_bytes: int, name: str) -> tuple[bytes, int]:
    """A deflate stream of `total_bytes` zeros and its CRC-32, built one MiB at a time."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = bytes(1 << 20)
    parts: list[bytes] = []
    crc = 0
    left = total_bytes
    while left > 0:
        piece = block[: min(left, len(block))]
        parts.append(compressor.compress(piece))
        crc = zlib.crc32(piece, crc)
        left -= len(piece)
    parts.append(compressor.flush())
    del name
    return b"".join(parts), crc


def write_zip(path: Path, members: dict[str, bytes], deflated: dict[str, int]) -> Path:
    """A zip holding `members` stored as they are and `deflated` (name -> size) as deflated zeros."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    if not deflated:
        return path
    # zipfile cannot write a member from a precompressed stream, so the bomb members are appended by hand.
    raw = bytearray(path.read_bytes())
    end = raw.rfind(b"PK\x05\x06")
    (central_size, central_offset) = struct.unpack_from("<II", raw, end + 12)
    central = bytes(raw[central_offset : central_offset + central_size])
    count = struct.unpack_from("<H", raw, end + 10)[0]
    body = bytearray(raw[:central_offset])
    extra_central = bytearray()
    for name, size in deflated.items():
        stream, crc = zip_deflate_member(size, name)
        encoded = name.encode()
        offset = len(body)
        body += struct.pack(
            "<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0x21, crc, len(stream), size, len(encoded), 0
        )
        body += encoded + stream
        extra_central += struct.pack(
            "<4sHHHHHHIIIHHHHHII",
            b"PK\x01\x02",
            20,
            20,
            0,
            8,
            0,
            0x21,
            crc,
            len(stream),
            size,
            len(encoded),
            0,
            0,
            0,
            0,
            0,
            offset,
        )
        extra_central += encoded
        count += 1
    new_central = central + bytes(extra_central)
    tail = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, count, count, len(new_central), len(body), 0)
    path.write_bytes(bytes(body) + new_central + tail)
    return path


def as_bytes(array: np.ndarray) -> bytes:
    """Bytes of an array, for members built in tests."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()
