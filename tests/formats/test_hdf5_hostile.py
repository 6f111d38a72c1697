"""Hostile and broken HDF5 / .keras inputs, built in tmp_path: each is refused with one typed error and
the CLI exits 3 with one line, whatever libhdf5 does with them (it runs in a worker process).

The hang case is real: fuzzing our Keras fixtures found that a global-heap object whose size runs past
its collection makes libhdf5 loop forever while reading a string attribute; it is rebuilt here from
scratch. No crash (signal) was found on this libhdf5 build; the crash path is exercised by killing the
worker with SIGSEGV, which is what the parent sees when libhdf5 crashes.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from formats import hdf5_reader
from formats.errors import CorruptFileError, FormatError, UnsafeFileError, UnsupportedFormatError
from formats.hdf5_reader import open_hdf5
from tests.conftest import FIXTURES, assert_refused

KERAS = FIXTURES / "keras"


def _assert_refused(path: Path, error: type[FormatError], match: str) -> None:
    assert_refused(open_hdf5, path, error, match)


def _keras3_file(path: Path, names: list[str]) -> None:
    with h5py.File(path, "w") as handle:
        for name in names:
            group = handle.create_group(f"layers/{name}/vars")
            group.attrs["name"] = name  # a variable-length string: stored in the global heap
            group.create_dataset("0", data=np.ones((12, 12), np.float32))


def test_a_file_that_makes_libhdf5_loop_forever_is_exit_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "loop.weights.h5"
    _keras3_file(path, ["dense", "dense_1", "dense_2"])
    data = bytearray(path.read_bytes())
    heap = data.find(b"GCOL")
    assert heap > 0
    first_object = heap + 16  # "GCOL", version, 3 reserved bytes, 8-byte collection size
    index, _, _, size = struct.unpack("<HHIQ", data[first_object : first_object + 16])
    assert index == 1 and size == len("dense")
    data[first_object + 9] = 2  # the object's size grows by 512 bytes, past the end of its collection
    path.write_bytes(bytes(data))
    monkeypatch.setenv("WWINSPECT_HDF5_TIMEOUT", "4")
    _assert_refused(path, CorruptFileError, "did not finish walking the HDF5 file in time")


def test_a_worker_that_crashes_while_reading_is_exit_3(tmp_path: Path) -> None:
    path = tmp_path / "chunked.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("w", data=np.ones((20, 20), np.float32), chunks=(5, 5), compression="gzip")
    reader = open_hdf5(path)
    (ref,) = list(reader.tensors())
    assert reader._client is not None and reader._client._process is not None
    os.kill(reader._client._process.pid, signal.SIGSEGV)
    with pytest.raises(CorruptFileError, match=r"crashed while reading dataset '/w' \(killed by signal 11\)"):
        ref.read()
    reader.close()


def test_truncated_and_non_hdf5_files_are_corrupt(tmp_path: Path) -> None:
    data = (KERAS / "cnn.weights.h5").read_bytes()
    truncated = tmp_path / "cut.weights.h5"
    truncated.write_bytes(data[: len(data) // 2])
    _assert_refused(truncated, CorruptFileError, "HDF5 library cannot read this file")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 2048, dtype=np.uint8).tobytes())
    _assert_refused(junk, CorruptFileError, "HDF5 library cannot read this file")


def test_cyclic_hard_and_soft_links_are_walked_once(tmp_path: Path) -> None:
    path = tmp_path / "cycle.h5"
    with h5py.File(path, "w") as handle:
        inner = handle.create_group("a/b")
        inner.create_dataset("w", data=np.ones((12, 12), np.float32))
        inner["loop"] = handle["a"]  # a hard link back to an ancestor: a cycle in the group graph
        inner["soft"] = h5py.SoftLink("/a")
    with open_hdf5(path) as reader:
        assert [ref.info.name for ref in reader.tensors()] == ["a/b/w"]


@pytest.mark.parametrize(
    ("shape", "match"),
    [
        ((1 << 21, 1 << 21), "declares 4398046511104 elements"),
        ((1 << 16, 1 << 16), "dimensions are not credible"),
    ],
)
def test_huge_declared_dimensions_are_corrupt(tmp_path: Path, shape: tuple[int, int], match: str) -> None:
    path = tmp_path / "huge.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("w", shape=shape, dtype=np.float32, chunks=(64, 64))  # nothing written
    _assert_refused(path, CorruptFileError, match)


def test_a_dataset_whose_address_points_past_the_end_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "lying.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("padding", data=np.zeros(333, np.uint8))  # moves w to an address seen once
        dataset = handle.create_dataset("w", data=np.ones((16, 16), np.float32))
        offset = dataset.id.get_offset()
    data = bytearray(path.read_bytes())
    packed = struct.pack("<Q", offset)
    assert data.count(packed) == 1  # the address in w's layout message
    data[data.find(packed) : data.find(packed) + 8] = struct.pack("<Q", len(data) - 100)
    path.write_bytes(bytes(data))
    _assert_refused(path, CorruptFileError, "the HDF5 structure is damaged: /w cannot be opened")


class _NoWorker:
    def close(self) -> None:
        pass


def test_catalogue_ranges_are_checked_against_the_file_before_any_read(tmp_path: Path) -> None:
    """The parent trusts nothing the worker reports: an offset past the end is refused at open."""
    path = tmp_path / "model.h5"
    path.write_bytes(b"\0" * 4096)
    dataset = {"shape": [16, 16], "dtype": "<f4", "layout": "contiguous", "filters": 0, "storage": 1024}
    catalogue = {
        "groups": {"/": {"attrs": {}, "members": ["w"]}},
        "datasets": {"/w": {**dataset, "offset": 3500}},
    }
    container = hdf5_reader._Container(path, size=4096)
    with pytest.raises(CorruptFileError, match="ends at byte 4524 but the HDF5 data has 4096 bytes"):
        hdf5_reader.HDF5Reader(path, catalogue, _NoWorker(), container, None, {})  # type: ignore[arg-type]
    catalogue["datasets"]["/w"] = {**dataset, "offset": 0, "storage": 512}
    with pytest.raises(CorruptFileError, match="stored in 512 bytes but its shape and type need 1024"):
        hdf5_reader.HDF5Reader(path, catalogue, _NoWorker(), container, None, {})  # type: ignore[arg-type]


def test_datasets_reading_other_files_are_unsafe(tmp_path: Path) -> None:
    outside = tmp_path / "secret.bin"
    outside.write_bytes(np.arange(64, dtype=np.float32).tobytes())
    folder = tmp_path / "model"
    folder.mkdir()
    external = folder / "external.h5"
    with h5py.File(external, "w") as handle:
        handle.create_dataset("w", shape=(8, 8), dtype=np.float32, external=[(str(outside), 0, 256)])
    _assert_refused(external, UnsafeFileError, "external raw-data files")
    virtual = folder / "virtual.h5"
    source = tmp_path / "source.h5"
    with h5py.File(source, "w") as handle:
        handle.create_dataset("data", data=np.ones((8, 8), np.float32))
    layout = h5py.VirtualLayout(shape=(8, 8), dtype=np.float32)
    layout[:] = h5py.VirtualSource(str(source), "data", shape=(8, 8))
    with h5py.File(virtual, "w") as handle:
        handle.create_virtual_dataset("w", layout)
    _assert_refused(virtual, UnsafeFileError, "virtual dataset")


def test_external_links_out_of_the_folder_are_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as handle:
        handle.create_dataset("w", data=np.ones((12, 12), np.float32))
    path = tmp_path / "model" / "linked.h5"
    path.parent.mkdir()
    with h5py.File(path, "w") as handle:
        handle.create_dataset("own", data=np.ones((12, 12), np.float32))
        handle["borrowed"] = h5py.ExternalLink(str(other), "/w")
    _assert_refused(path, UnsafeFileError, "external link '/borrowed' names an absolute path")


def test_external_links_inside_the_folder_are_listed_not_followed(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "other.h5", "w") as handle:
        handle.create_dataset("w", data=np.ones((12, 12), np.float32))
    path = tmp_path / "linked.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("own", data=np.ones((12, 12), np.float32))
        handle["borrowed"] = h5py.ExternalLink("other.h5", "/w")
    with open_hdf5(path) as reader:
        listed = {ref.info.name: ref.info.skip_reason for ref in reader.tensors()}
        assert listed["own"] is None
        assert "external link to 'other.h5'" in str(listed["borrowed"])
        assert any("'/borrowed': an external link" in warning for warning in reader.warnings)


# ----------------------------------------------------------------------------------------------------
# .keras archives.


def _rezip(target: Path, members: list[tuple[str, bytes]]) -> Path:
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in members:
            archive.writestr(zipfile.ZipInfo(name), data)
    return target


def _members(source: Path) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(source) as archive:
        return [(info.filename, archive.read(info.filename)) for info in archive.infolist()]


@pytest.mark.parametrize(
    "evil", ["../evil.txt", "/etc/cron.d/evil", "assets/../../evil", "C:/evil.txt", "a\\..\\..\\evil"]
)
def test_keras_archive_with_a_traversal_member_name_is_unsafe(tmp_path: Path, evil: str) -> None:
    path = _rezip(tmp_path / "evil.keras", [*_members(KERAS / "mlp.keras"), (evil, b"owned")])
    _assert_refused(path, UnsafeFileError, "the archive holds a member named")


def test_keras_archive_with_two_configs_is_corrupt(tmp_path: Path) -> None:
    members = _members(KERAS / "mlp.keras")
    config = next(data for name, data in members if name == "config.json")
    with pytest.warns(UserWarning, match="Duplicate name"):
        path = _rezip(tmp_path / "twice.keras", [*members, ("config.json", config)])
    _assert_refused(path, CorruptFileError, "two members named 'config.json'")


def test_keras_archive_without_weights_is_unsupported(tmp_path: Path) -> None:
    members = [(name, data) for name, data in _members(KERAS / "mlp.keras") if name != "model.weights.h5"]
    members.append(("model.weights.json", b"{}"))
    path = _rezip(tmp_path / "sharded.keras", members)
    _assert_refused(path, UnsupportedFormatError, "no model.weights.h5 .*sharded or npz weights")


def test_keras_archive_with_broken_config_or_weights_is_corrupt(tmp_path: Path) -> None:
    members = _members(KERAS / "mlp.keras")
    broken_config = [(n, b"{not json" if n == "config.json" else d) for n, d in members]
    _assert_refused(
        _rezip(tmp_path / "config.keras", broken_config), CorruptFileError, "config.json is not valid JSON"
    )
    not_hdf5 = [(n, b"\0" * 4096 if n == "model.weights.h5" else d) for n, d in members]
    _assert_refused(_rezip(tmp_path / "weights.keras", not_hdf5), CorruptFileError, "is not an HDF5 file")


def test_keras_config_is_read_as_data_and_custom_objects_are_reported(tmp_path: Path) -> None:
    members = _members(KERAS / "mlp.keras")
    config = json.loads(next(data for name, data in members if name == "config.json"))
    config["config"]["layers"][1]["module"] = "evil_package.layers"
    config["config"]["layers"][1]["class_name"] = "Backdoor"
    edited = [(n, json.dumps(config).encode() if n == "config.json" else d) for n, d in members]
    with open_hdf5(_rezip(tmp_path / "custom.keras", edited)) as reader:
        meta = reader.metadata()
        names = [ref.info.name for ref in reader.tensors()]
    assert meta["keras.custom_objects"] == "Backdoor (evil_package.layers)"
    # Still listed: the class is only a name here, so its variables keep their indices.
    assert names[:2] == ["fc1/0", "fc1/1"] and "fc2/kernel" in names
