"""Sharded Hugging Face checkpoints: one set of rules for `.safetensors` and `.bin` shards alike.

Each rule is tested for both formats: the hub cache layout (`models--*/snapshots/<rev>/file` ->
`../../blobs/<hash>`) opens, a link out of the cache is refused naming it, a tensor in two shards is
refused, the index size cap and strict JSON are the same, and unindexed tensors are listed last.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from formats import _hf_shards, open_model
from formats.errors import CorruptFileError, UnsafeFileError
from tests.conftest import FIXTURES, assert_refused


@dataclass(frozen=True)
class Checkpoint:
    """A sharded fixture: its folder and its index's file name."""

    folder: Path
    index: str

    @property
    def index_path(self) -> Path:
        return self.folder / self.index


FORMATS = {
    "safetensors": Checkpoint(FIXTURES / "sharded", "model.safetensors.index.json"),
    "bin": Checkpoint(FIXTURES / "torch" / "hf_sharded", "pytorch_model.bin.index.json"),
}


@pytest.fixture(params=sorted(FORMATS))
def checkpoint(request: pytest.FixtureRequest) -> Checkpoint:
    return FORMATS[request.param]


def _read_all(path: Path) -> dict[str, np.ndarray]:
    with open_model(path) as reader:
        return {ref.info.name: np.array(ref.read()) for ref in reader.tensors()}


def _copy(checkpoint: Checkpoint, folder: Path) -> Checkpoint:
    shutil.copytree(checkpoint.folder, folder)
    return Checkpoint(folder, checkpoint.index)


def _edit_index(checkpoint: Checkpoint, change: Callable[[dict[str, Any]], None]) -> None:
    index = json.loads(checkpoint.index_path.read_text())
    change(index)
    checkpoint.index_path.write_text(json.dumps(index))


def _hub_cache(checkpoint: Checkpoint, cache: Path, repository: str = "models--org--tiny") -> Path:
    """The checkpoint laid out as huggingface_hub caches it; returns the snapshot folder."""
    blobs = cache / repository / "blobs"
    snapshot = cache / repository / "snapshots" / "0123abcd"
    blobs.mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for number, item in enumerate(sorted(checkpoint.folder.iterdir())):
        blob = blobs / f"{number:040x}"
        shutil.copy(item, blob)
        os.symlink(os.path.relpath(blob, snapshot), snapshot / item.name)
    return snapshot


def test_the_hub_cache_layout_opens_by_folder_and_by_index(checkpoint: Checkpoint, tmp_path: Path) -> None:
    snapshot = _hub_cache(checkpoint, tmp_path / "hub")
    assert all((snapshot / name).is_symlink() for name in os.listdir(snapshot))
    expected = _read_all(checkpoint.folder)
    for path in (snapshot, snapshot / checkpoint.index):
        values = _read_all(path)
        assert list(values) == list(expected)
        for name, array in values.items():
            np.testing.assert_array_equal(array, expected[name])


def test_a_cache_link_leaving_its_repository_is_refused_naming_it(
    checkpoint: Checkpoint, tmp_path: Path
) -> None:
    snapshot = _hub_cache(checkpoint, tmp_path / "hub")
    shard = next(
        name for name in json.loads((snapshot / checkpoint.index).read_text())["weight_map"].values()
    )
    outside = tmp_path / "elsewhere.bin"
    shutil.copy(snapshot / shard, outside)
    (snapshot / shard).unlink()
    os.symlink(os.path.relpath(outside, snapshot), snapshot / shard)
    assert_refused(open_model, snapshot, UnsafeFileError, rf"shard '{shard}' points outside .*elsewhere\.bin")


def test_a_cache_link_into_another_repositorys_blobs_is_refused(
    checkpoint: Checkpoint, tmp_path: Path
) -> None:
    snapshot = _hub_cache(checkpoint, tmp_path / "hub")
    other = _hub_cache(checkpoint, tmp_path / "hub", repository="models--someone--else")
    shard = next(
        name for name in json.loads((snapshot / checkpoint.index).read_text())["weight_map"].values()
    )
    (snapshot / shard).unlink()
    os.symlink(os.path.relpath((other / shard).resolve(), snapshot), snapshot / shard)
    assert_refused(open_model, snapshot, UnsafeFileError, "points outside the model's folder and its Hugging")


def test_blobs_beside_a_folder_that_is_not_a_snapshot_are_not_trusted(
    checkpoint: Checkpoint, tmp_path: Path
) -> None:
    snapshot = _hub_cache(checkpoint, tmp_path / "hub")
    checkout = snapshot.parent.parent / "checkout"  # models--org--tiny/checkout: not snapshots/<rev>
    checkout.mkdir()
    for item in snapshot.iterdir():
        os.symlink(os.path.relpath(item.resolve(), checkout), checkout / item.name)
    assert_refused(open_model, checkout, UnsafeFileError, "points outside the model's folder")


def test_a_tensor_in_two_shards_is_refused(checkpoint: Checkpoint, tmp_path: Path) -> None:
    copy = _copy(checkpoint, tmp_path / "ckpt")
    first_shard = json.loads(copy.index_path.read_text())["weight_map"]
    shard = next(iter(first_shard.values()))
    suffix = Path(shard).suffix
    shutil.copy(copy.folder / shard, copy.folder / f"copy{suffix}")
    _edit_index(copy, lambda index: index["weight_map"].update({"extra": f"copy{suffix}"}))
    assert_refused(open_model, copy.folder, CorruptFileError, "appears in both")


def test_a_tensor_the_index_misplaces_is_refused(checkpoint: Checkpoint, tmp_path: Path) -> None:
    copy = _copy(checkpoint, tmp_path / "ckpt")
    shards = sorted(set(json.loads(copy.index_path.read_text())["weight_map"].values()))

    def misplace(index: dict[str, Any]) -> None:
        name = next(name for name, shard in index["weight_map"].items() if shard == shards[0])
        index["weight_map"][name] = shards[1]

    _edit_index(copy, misplace)
    assert_refused(open_model, copy.index_path, CorruptFileError, "which does not hold it")


def test_tensors_missing_from_the_index_are_listed_last_with_a_warning(
    checkpoint: Checkpoint, tmp_path: Path
) -> None:
    copy = _copy(checkpoint, tmp_path / "ckpt")
    dropped = next(iter(json.loads(copy.index_path.read_text())["weight_map"]))
    _edit_index(copy, lambda index: index["weight_map"].pop(dropped))
    with open_model(copy.folder) as reader:
        names = [ref.info.name for ref in reader.tensors()]
        assert names[-1] == dropped
        assert any("missing from the index" in warning for warning in reader.warnings)


def test_tensors_follow_the_index_order(checkpoint: Checkpoint, tmp_path: Path) -> None:
    copy = _copy(checkpoint, tmp_path / "ckpt")
    _edit_index(copy, lambda index: index.update(weight_map=dict(reversed(index["weight_map"].items()))))
    wanted = list(json.loads(copy.index_path.read_text())["weight_map"])
    assert wanted[0] == "lm_head.weight"
    with open_model(copy.folder) as reader:
        assert [ref.info.name for ref in reader.tensors()] == wanted
        assert reader.metadata()["shards"] == "2"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b'{"weight_map": {"a": "x", "a": "y"}}', "repeats the key 'a'"),
        (b'{"metadata": {"total_size": NaN}, "weight_map": {}}', "NaN is not a JSON number"),
        (b'{"weight_map": {"a": 3}}', "not a file name"),
        (b'{"weight_map": []}', "no weight_map"),
    ],
)
def test_the_index_is_strict_json_for_both(
    checkpoint: Checkpoint, tmp_path: Path, content: bytes, fragment: str
) -> None:
    copy = _copy(checkpoint, tmp_path / "ckpt")
    copy.index_path.write_bytes(content)
    assert_refused(open_model, copy.folder, CorruptFileError, fragment)


def test_the_index_size_cap_is_the_same_for_both(checkpoint: Checkpoint, tmp_path: Path) -> None:
    copy = _copy(checkpoint, tmp_path / "ckpt")
    with copy.index_path.open("r+b") as handle:
        handle.truncate(_hf_shards.MAX_INDEX_BYTES + 1)  # sparse: the cap is checked before reading
    assert_refused(
        open_model, copy.folder, CorruptFileError, f"more than the limit {_hf_shards.MAX_INDEX_BYTES}"
    )
    assert _hf_shards.MAX_INDEX_BYTES == 64 << 20  # the smaller of the two caps the readers had


def test_a_shard_outside_the_folder_is_refused(checkpoint: Checkpoint, tmp_path: Path) -> None:
    copy = _copy(checkpoint, tmp_path / "ckpt")
    shard = next(iter(json.loads(copy.index_path.read_text())["weight_map"].values()))
    shutil.copy(copy.folder / shard, tmp_path / shard)
    _edit_index(
        copy, lambda index: index["weight_map"].update({k: f"../{shard}" for k in index["weight_map"]})
    )
    assert_refused(open_model, copy.folder, UnsafeFileError, "points outside the model's folder")
