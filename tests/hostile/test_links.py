"""One link and path rule for every format (`formats._paths`, `formats._hdf5_links`), through the CLI.

Links that resolve outside the model's folder are exit 3, naming the link: HDF5 external links, ONNX
external data (by name or through a symbolic link), the shards of an index. The Hugging Face cache layout
(`models--*/snapshots/<rev>/x` -> `../../blobs/<hash>`) is followed, confined to its repository. Inside the
folder, links are followed or listed with a reason.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import h5py
import numpy as np
import onnx
import pytest
from safetensors.numpy import save

from tests.conftest import FIXTURES, run_cli
from tests.hostile.refusals import assert_cli_reads, assert_cli_refuses

KERAS3 = FIXTURES / "keras" / "mlp.weights.h5"
ONNX_EXTERNAL = FIXTURES / "onnx" / "mlp_external.onnx"


def _layers(report: dict[str, object]) -> dict[str, dict[str, object]]:
    (entry,) = report["reports"]  # type: ignore[index]
    return {layer["name"]: layer for layer in entry["layers"]}


def _described(path: Path) -> dict[str, dict[str, object]]:
    result = run_cli("describe", path, "--format", "json")
    assert result.exit_code == 0, result.stderr
    (entry,) = json.loads(result.stdout)["files"]
    return {tensor["name"]: tensor for tensor in entry["tensors"]}


def _plain_h5(path: Path) -> Path:
    with h5py.File(path, "w") as handle:
        handle.create_dataset("own", data=np.random.default_rng(0).standard_normal((24, 32), np.float32))
    return path


# --- HDF5 ---------------------------------------------------------------------------------------------


def test_an_external_link_to_etc_passwd_is_exit_3(tmp_path: Path) -> None:
    path = _plain_h5(tmp_path / "linked.h5")
    with h5py.File(path, "a") as handle:
        handle["borrowed"] = h5py.ExternalLink("/etc/passwd", "/w")
    assert_cli_refuses(path, words=("external link '/borrowed'", "/etc/passwd"))


@pytest.mark.parametrize("name", ["../outside.h5", "sub/../../outside.h5"])
def test_an_external_link_climbing_out_is_exit_3(tmp_path: Path, name: str) -> None:
    _plain_h5(tmp_path / "outside.h5")
    (tmp_path / "model").mkdir()
    path = _plain_h5(tmp_path / "model" / "linked.h5")
    with h5py.File(path, "a") as handle:
        handle["borrowed"] = h5py.ExternalLink(name, "/own")
    assert_cli_refuses(path, words=("external link '/borrowed'", "outside the model's folder"))


def test_an_external_link_through_a_symlink_out_is_exit_3(tmp_path: Path) -> None:
    outside = _plain_h5(tmp_path / "outside.h5")
    (tmp_path / "model").mkdir()
    os.symlink(outside, tmp_path / "model" / "inside.h5")
    path = _plain_h5(tmp_path / "model" / "linked.h5")
    with h5py.File(path, "a") as handle:
        handle["borrowed"] = h5py.ExternalLink("inside.h5", "/own")
    assert_cli_refuses(path, words=("external link '/borrowed'", "a link to"))


def test_an_external_link_inside_the_folder_is_listed_with_its_reason(tmp_path: Path) -> None:
    _plain_h5(tmp_path / "other.h5")
    path = _plain_h5(tmp_path / "linked.h5")
    with h5py.File(path, "a") as handle:
        handle["borrowed"] = h5py.ExternalLink("other.h5", "/own")
    report = assert_cli_reads(path)
    assert any("'/borrowed': an external link" in warning for warning in report["reports"][0]["warnings"])
    described = _described(path)
    assert described["own"]["analysed"] is True
    assert "not followed" in str(described["borrowed"]["reason"])


def _keras3_copy(tmp_path: Path) -> Path:
    path = tmp_path / "mlp.weights.h5"
    shutil.copy(KERAS3, path)
    return path


def test_a_keras_weight_that_is_an_external_link_out_is_exit_3(tmp_path: Path) -> None:
    path = _keras3_copy(tmp_path)
    with h5py.File(path, "a") as handle:
        del handle["layers/dense_1/vars/0"]
        handle["layers/dense_1/vars/0"] = h5py.ExternalLink("/etc/passwd", "/w")
    assert_cli_refuses(path, words=("'/layers/dense_1/vars/0'",))


def test_a_keras_weight_that_is_a_soft_link_is_a_second_name(tmp_path: Path) -> None:
    path = _keras3_copy(tmp_path)
    with h5py.File(path, "a") as handle:
        del handle["layers/dense_1/vars/1"]
        handle["layers/dense_1/vars/1"] = h5py.SoftLink("/layers/dense/vars/1")
    described = _described(path)
    # layers/dense_1 is the model's fc2: its bias is now a second name of fc1's (layers/dense)
    assert "fc2/bias" not in described
    assert described["fc1/bias"]["aliases"] == ["fc2/bias"]


def test_a_soft_link_to_a_group_is_walked_once_and_named(tmp_path: Path) -> None:
    path = _plain_h5(tmp_path / "soft.h5")
    with h5py.File(path, "a") as handle:
        handle.create_dataset("block/w", data=np.ones((24, 32), np.float32))
        handle["alias"] = h5py.SoftLink("/block")
    report = assert_cli_reads(path)
    assert set(_layers(report)) == {"own", "block/w"}
    assert any("'/alias': a soft link to the group '/block'" in w for w in report["reports"][0]["warnings"])


def test_a_dangling_soft_link_is_listed_with_its_reason(tmp_path: Path) -> None:
    path = _plain_h5(tmp_path / "dangling.h5")
    with h5py.File(path, "a") as handle:
        handle["nowhere"] = h5py.SoftLink("/missing/w")
    described = _described(path)
    assert "reaches nothing" in str(described["nowhere"]["reason"])


def test_a_keras_archive_whose_weights_link_out_is_exit_3(tmp_path: Path) -> None:
    source = FIXTURES / "keras" / "mlp.keras"
    weights = tmp_path / "model.weights.h5"
    with zipfile.ZipFile(source) as archive:
        weights.write_bytes(archive.read("model.weights.h5"))
        members = [(info, archive.read(info)) for info in archive.infolist()]
    with h5py.File(weights, "a") as handle:
        handle["evil"] = h5py.ExternalLink("../../secret.h5", "/w")
    path = tmp_path / "mlp.keras"
    with zipfile.ZipFile(path, "w") as archive:
        for info, data in members:
            archive.writestr(info, weights.read_bytes() if info.filename == "model.weights.h5" else data)
    assert_cli_refuses(path, words=("external link '/evil'",))


# --- ONNX external data --------------------------------------------------------------------------------


def _onnx_with_location(folder: Path, location: str) -> Path:
    model = onnx.load(str(ONNX_EXTERNAL), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    path = folder / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.parametrize("location", ["../outside.data", "/etc/passwd"])
def test_onnx_external_data_named_outside_is_exit_3(tmp_path: Path, location: str) -> None:
    shutil.copy(ONNX_EXTERNAL.with_suffix(".onnx.data"), tmp_path / "outside.data")
    (tmp_path / "model").mkdir()
    path = _onnx_with_location(tmp_path / "model", location)
    assert_cli_refuses(path, words=("external data of tensor",))


def test_onnx_external_data_symlinked_out_of_the_folder_is_exit_3(tmp_path: Path) -> None:
    outside = tmp_path / "outside.data"
    shutil.copy(ONNX_EXTERNAL.with_suffix(".onnx.data"), outside)
    (tmp_path / "model").mkdir()
    shutil.copy(ONNX_EXTERNAL, tmp_path / "model" / ONNX_EXTERNAL.name)
    os.symlink(outside, tmp_path / "model" / "mlp_external.onnx.data")
    assert_cli_refuses(
        tmp_path / "model" / ONNX_EXTERNAL.name,
        words=("'mlp_external.onnx.data'", "a link to", "outside.data"),
    )


def _hub_snapshot(tmp_path: Path, files: dict[str, bytes], repository: str = "models--org--model") -> Path:
    """A real hub cache layout: the bytes in `blobs/`, the snapshot's names as relative links to them."""
    repo = tmp_path / "hub" / repository
    blobs, snapshot = repo / "blobs", repo / "snapshots" / ("ab" * 20)
    blobs.mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for number, (name, data) in enumerate(files.items()):
        blob = f"{number:064x}"
        (blobs / blob).write_bytes(data)
        os.symlink(f"../../blobs/{blob}", snapshot / name)
    return snapshot


def test_onnx_external_data_in_the_hub_cache_layout_is_followed(tmp_path: Path) -> None:
    data = ONNX_EXTERNAL.with_suffix(".onnx.data")
    snapshot = _hub_snapshot(
        tmp_path, {ONNX_EXTERNAL.name: ONNX_EXTERNAL.read_bytes(), data.name: data.read_bytes()}
    )
    cached = assert_cli_reads(snapshot / ONNX_EXTERNAL.name)
    plain = assert_cli_reads(ONNX_EXTERNAL)
    assert {name: layer["alpha"] for name, layer in _layers(cached).items()} == {
        name: layer["alpha"] for name, layer in _layers(plain).items()
    }


def test_hub_cache_links_into_another_repository_are_exit_3(tmp_path: Path) -> None:
    data = ONNX_EXTERNAL.with_suffix(".onnx.data")
    _hub_snapshot(tmp_path, {data.name: data.read_bytes()}, repository="models--other--repo")
    snapshot = _hub_snapshot(tmp_path, {ONNX_EXTERNAL.name: ONNX_EXTERNAL.read_bytes()})
    os.symlink(f"../../../models--other--repo/blobs/{0:064x}", snapshot / data.name)
    assert_cli_refuses(snapshot / ONNX_EXTERNAL.name, words=("Hugging Face cache repository",))


# --- index shards -------------------------------------------------------------------------------------


def _safetensors_shards(rng: np.random.Generator) -> dict[str, bytes]:
    """Two shards and their index, as bytes by file name."""
    files: dict[str, bytes] = {}
    weight_map: dict[str, str] = {}
    for number in (1, 2):
        name = f"model-0000{number}-of-00002.safetensors"
        tensors = {f"layer{number}.weight": rng.standard_normal((32, 24)).astype(np.float32)}
        files[name] = save(tensors)
        weight_map.update(dict.fromkeys(tensors, name))
    files["model.safetensors.index.json"] = json.dumps({"metadata": {}, "weight_map": weight_map}).encode()
    return files


def test_safetensors_shards_in_the_hub_cache_layout_are_followed(tmp_path: Path) -> None:
    snapshot = _hub_snapshot(tmp_path, _safetensors_shards(np.random.default_rng(0)))
    report = assert_cli_reads(snapshot)
    assert set(_layers(report)) == {"layer1.weight", "layer2.weight"}
    assert_cli_reads(snapshot / "model.safetensors.index.json")


@pytest.mark.parametrize("shard", ["../outside.safetensors", "/etc/passwd"])
def test_an_index_naming_a_shard_outside_is_exit_3(tmp_path: Path, shard: str) -> None:
    files = _safetensors_shards(np.random.default_rng(1))
    (tmp_path / "model").mkdir()
    for name, data in files.items():
        (tmp_path / "model" / name).write_bytes(data)
    index = json.loads(files["model.safetensors.index.json"])
    index["weight_map"]["layer2.weight"] = shard
    (tmp_path / "model" / "model.safetensors.index.json").write_text(json.dumps(index))
    assert_cli_refuses(tmp_path / "model", words=("shard",))


@pytest.mark.parametrize("kind", ["safetensors", "bin"])
def test_a_shard_symlinked_out_of_the_folder_is_exit_3(tmp_path: Path, kind: str) -> None:
    source = FIXTURES / ("sharded" if kind == "safetensors" else "torch/hf_sharded")
    (tmp_path / "model").mkdir()
    for file in sorted(source.iterdir()):
        (tmp_path / "model" / file.name).write_bytes(file.read_bytes())
    victim = sorted(p for p in (tmp_path / "model").iterdir() if not p.name.endswith(".json"))[-1]
    outside = tmp_path / victim.name
    victim.rename(outside)
    os.symlink(outside, victim)
    assert_cli_refuses(tmp_path / "model", words=(f"'{victim.name}'", "a link to"))


def test_a_link_name_with_escape_characters_reaches_the_terminal_escaped(tmp_path: Path) -> None:
    path = _plain_h5(tmp_path / "escape.h5")
    with h5py.File(path, "a") as handle:
        handle["evil\x1b[31m"] = h5py.ExternalLink("/etc/passwd", "/w")
        handle["soft\x1b[2J"] = h5py.SoftLink("/nowhere")
    result = assert_cli_refuses(path, words=("external link '/evil\\x1b[31m'",))
    assert "\x1b" not in result.stderr
    with h5py.File(path, "a") as handle:
        del handle["evil\x1b[31m"]
    table = run_cli(path)
    assert table.exit_code == 0, table.stderr
    assert "\x1b" not in table.stdout and "soft\\x1b[2J" in table.stdout
