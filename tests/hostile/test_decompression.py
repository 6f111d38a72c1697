"""Decompression bombs end in exit 3 within seconds and a bounded amount of memory; honest compressed
weights are still read (the bound is on the ratio, formats/_decode_budget.py, not on the size)."""

from __future__ import annotations

import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from formats import open_model
from formats._decode_budget import FLOOR_BYTES, MAX_RATIO, Budget, allowed_bytes
from formats.errors import UnsafeFileError
from tests.conftest import FIXTURES, ROOT
from tests.hostile.bombs import hdf5_gzip_zeros, write_zip

h5py = pytest.importorskip("h5py")

#: Declared sizes of the bombs built here: past the floor, small enough to build in a fraction of a second.
BOMB_BYTES = 256 << 20


#: Runs the CLI in a grandchild and prints, after it ends, its exit code and the peak RSS (KiB) of it and
#: its own children (the HDF5 worker): RUSAGE_CHILDREN of a fresh process sees only that run.
_MEASURE = (
    "import resource, subprocess, sys; "
    "done = subprocess.run([sys.executable, '-c', 'from inspector.cli import main; main()', sys.argv[1]], "
    "stdout=subprocess.DEVNULL); "
    "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def _cli(path: Path) -> tuple[int, str, float, int]:
    """Run the real console entry in a child process: exit code, stderr, seconds, peak RSS in bytes."""
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    seconds = time.monotonic() - start
    code, peak = (int(word) for word in done.stdout.split())
    return code, done.stderr, seconds, peak * 1024


def test_budget_allows_the_floor_and_the_ratio() -> None:
    assert allowed_bytes(0) == FLOOR_BYTES
    assert allowed_bytes(10 << 20) == MAX_RATIO * (10 << 20)
    Budget("x", 1).check_declared(FLOOR_BYTES)
    with pytest.raises(UnsafeFileError, match="decompression bomb"):
        Budget("x", 1 << 20).check_decoded(MAX_RATIO * (1 << 20) + FLOOR_BYTES)


def test_hdf5_gzip_bomb_is_refused_at_open(tmp_path: Path) -> None:
    path = hdf5_gzip_zeros(tmp_path / "bomb.h5", BOMB_BYTES)
    assert path.stat().st_size < BOMB_BYTES // 500
    start = time.monotonic()
    with pytest.raises(UnsafeFileError, match="decompression bomb"):
        open_model(path)
    assert time.monotonic() - start < 10


def test_hdf5_gzip_bomb_through_the_cli_is_fast_and_small(tmp_path: Path) -> None:
    path = hdf5_gzip_zeros(tmp_path / "bomb.h5", 1 << 30)
    code, stderr, seconds, peak = _cli(path)
    assert code == 3, stderr
    assert len(stderr.strip().splitlines()) == 1 and "decompression bomb" in stderr
    assert seconds < 20  # about 1.5 s, mostly start-up; 100 s before the budget
    assert peak < 400 << 20  # about 50 MB; 4-5 GB before


def test_one_hdf5_chunk_that_inflates_past_its_size_is_stopped(tmp_path: Path) -> None:
    """The stored sizes look honest (one 256 KiB chunk in 1 MB), but the chunk's deflate stream inflates to
    1 GiB: libhdf5 would grow its buffer to hold it. The worker's memory bound stops it."""
    path = tmp_path / "overinflate.h5"
    with h5py.File(path, "w") as handle:
        handle.attrs["layer_names"] = [b"dense"]
        group = handle.create_group("dense")
        group.attrs["weight_names"] = [b"dense/kernel:0"]
        dataset = group.create_group("dense").create_dataset(
            "kernel:0", shape=(256, 256), dtype="f4", chunks=(256, 256), compression="gzip"
        )
        dataset.id.write_direct_chunk((0, 0), zlib.compress(bytes(1 << 30), 1))
    code, stderr, seconds, peak = _cli(path)
    assert code == 3, stderr
    assert len(stderr.strip().splitlines()) == 1
    assert seconds < 30
    assert peak < 600 << 20  # the 1 GiB inflation never happens


def test_honest_compressed_hdf5_weights_past_the_floor_are_read(tmp_path: Path) -> None:
    """48 MiB of float32 weights with gzip and shuffle: compressed about 1.1:1, read whole."""
    weights = np.random.default_rng(0).standard_normal((3072, 4096)).astype(np.float32)
    path = tmp_path / "honest.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset(
            "w", data=weights, chunks=(512, 4096), compression="gzip", compression_opts=1, shuffle=True
        )
    with open_model(path) as reader:
        (ref,) = reader.tensors()
        np.testing.assert_array_equal(ref.read(), weights)


def _torch_with_deflated_storage(tmp_path: Path, rows: int) -> Path:
    torch = pytest.importorskip("torch")
    plain = tmp_path / "plain.pt"
    torch.save({"fc.weight": torch.zeros(rows, 4096)}, plain)
    with zipfile.ZipFile(plain) as archive:
        members = {
            info.filename: archive.read(info) for info in archive.infolist() if "/data/" not in info.filename
        }
        sizes = {info.filename: info.file_size for info in archive.infolist() if "/data/" in info.filename}
    plain.unlink()
    return write_zip(tmp_path / "bomb.pt", members, sizes)


def test_torch_deflate_bomb_is_exit_3_fast(tmp_path: Path) -> None:
    path = _torch_with_deflated_storage(tmp_path, 16384)  # 256 MiB of zeros in about 250 KB
    assert path.stat().st_size < 1 << 20
    code, stderr, seconds, peak = _cli(path)
    assert code == 3, stderr
    assert "zip bomb" in stderr and len(stderr.strip().splitlines()) == 1
    assert seconds < 20
    assert peak < 400 << 20


def test_small_deflated_torch_storage_is_still_read(tmp_path: Path) -> None:
    """Under the floor any ratio is fine: 8 MiB of zeros deflated is read (and fails as an all-zero layer)."""
    path = _torch_with_deflated_storage(tmp_path, 512)
    with open_model(path) as reader:
        (ref,) = reader.tensors()
        assert not ref.read().any()


def test_keras_archive_with_a_deflated_weights_bomb_is_exit_3(tmp_path: Path) -> None:
    source = FIXTURES / "crossformat" / "digits.keras"
    with zipfile.ZipFile(source) as archive:
        members = {
            info.filename: archive.read(info)
            for info in archive.infolist()
            if info.filename != "model.weights.h5"
        }
    path = write_zip(tmp_path / "bomb.keras", members, {"model.weights.h5": BOMB_BYTES})
    code, stderr, seconds, _peak = _cli(path)
    assert code == 3, stderr
    assert "zip bomb" in stderr and len(stderr.strip().splitlines()) == 1
    assert seconds < 20
