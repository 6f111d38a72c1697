"""The one rule for names that lead out of a model file (`formats._paths.resolve_confined`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from formats import open_model
from formats._paths import climbs_out, hub_cache_repository, resolve_confined
from formats.errors import UnsafeFileError
from tests.conftest import FIXTURES


@pytest.mark.parametrize(
    ("name", "climbs"),
    [
        ("a.bin", False),
        ("sub/../a.bin", False),
        ("../a.bin", True),
        ("sub/../../a.bin", True),
        ("..\\a", False),
    ],
)
def test_climbing_is_read_from_the_names_text(name: str, climbs: bool) -> None:
    assert climbs_out(name) is climbs  # on POSIX a backslash is part of a file name, not a separator


@pytest.mark.parametrize(
    ("name", "fragment"),
    [("/etc/passwd", "absolute path"), ("C:x", "absolute path"), ("", "absolute path"), ("../x", "outside")],
)
def test_names_that_leave_the_folder_are_refused(tmp_path: Path, name: str, fragment: str) -> None:
    with pytest.raises(UnsafeFileError, match=fragment):
        resolve_confined(tmp_path, name, what="shard")


def test_a_link_inside_the_folder_is_followed(tmp_path: Path) -> None:
    (tmp_path / "real.bin").write_bytes(b"x")
    os.symlink("real.bin", tmp_path / "link.bin")
    assert resolve_confined(tmp_path, "link.bin", what="shard") == (tmp_path / "real.bin").resolve()


def test_a_link_out_of_the_folder_is_refused_naming_its_target(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "secret").write_bytes(b"x")
    os.symlink("../secret", folder / "data.bin")
    with pytest.raises(
        UnsafeFileError, match=r"'data\.bin' points outside the model's folder \(a link to .*secret"
    ):
        resolve_confined(folder, "data.bin", what="external data")


def test_the_hub_cache_repository_is_found_from_a_snapshot_or_below(tmp_path: Path) -> None:
    repository = tmp_path / "models--org--name"
    (repository / "blobs").mkdir(parents=True)
    (repository / "snapshots" / "rev" / "text_encoder").mkdir(parents=True)
    assert hub_cache_repository(repository / "snapshots" / "rev") == repository.resolve()
    assert hub_cache_repository(repository / "snapshots" / "rev" / "text_encoder") == repository.resolve()
    assert hub_cache_repository(repository / "snapshots") is None
    assert hub_cache_repository(tmp_path) is None
    shutil.rmtree(repository / "blobs")
    assert hub_cache_repository(repository / "snapshots" / "rev") is None  # no blobs: not the layout


def test_onnx_external_data_in_the_hub_cache_opens(tmp_path: Path) -> None:
    repository = tmp_path / "models--org--mlp"
    blobs, snapshot = repository / "blobs", repository / "snapshots" / "rev"
    blobs.mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for number, name in enumerate(("mlp_external.onnx", "mlp_external.onnx.data")):
        shutil.copy(FIXTURES / "onnx" / name, blobs / f"{number:040x}")
        os.symlink(f"../../blobs/{number:040x}", snapshot / name)
    with (
        open_model(FIXTURES / "onnx" / "mlp_external.onnx") as plain,
        open_model(snapshot / "mlp_external.onnx") as cached,
    ):
        expected = {
            ref.info.name: np.array(ref.read()) for ref in plain.tensors() if ref.info.skip_reason is None
        }
        got = {
            ref.info.name: np.array(ref.read()) for ref in cached.tensors() if ref.info.skip_reason is None
        }
    assert list(got) == list(expected) and got
    for name, values in got.items():
        np.testing.assert_array_equal(values, expected[name])
