"""The HDF5/Keras reader on fixtures saved by Keras 3 (torch backend) in all three layouts.

Layers are checked against manifests written from Keras at generation time; values against what Keras
itself loads from the same file (`keras.saving.load_model` on our own fixtures) or, for files Keras
cannot load without their architecture, against h5py reading the dataset the reader names.
"""

from __future__ import annotations

import functools
import io
import json
import math
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")

from formats import DType, Layout, Role, WeightKind, detect, open_model
from formats.hdf5_reader import HDF5Reader, open_hdf5, sniff_hdf5
from tests.conftest import FIXTURES, load_manifests

HDF5_MANIFESTS = [m for m in load_manifests() if m["format"] == "hdf5"]
KERAS = FIXTURES / "keras"


def _id(manifest: dict[str, Any]) -> str:
    return str(manifest["fixture"])


def _eigenvalue_count(shape: tuple[int, ...], layout: Layout) -> int:
    if len(shape) == 2:
        return min(shape)
    if layout is Layout.IN_OUT:
        return min(shape[-2], shape[-1]) * math.prod(shape[:-2])
    return min(shape[0], shape[1]) * math.prod(shape[2:])


def analysed_layers(reader: HDF5Reader) -> list[tuple[str, list[int]]]:
    layers = []
    for ref in reader.tensors():
        info = ref.info
        if (
            info.skip_reason is None
            and len(info.shape) >= 2
            and _eigenvalue_count(info.shape, info.hint.layout) >= 10
        ):
            layers.append((info.name, list(info.shape)))
    return sorted(layers)


def test_every_keras_layout_has_fixtures() -> None:
    fixtures = {m["fixture"] for m in HDF5_MANIFESTS}
    for model in ("mlp", "cnn", "lstm"):
        assert {f"keras/{model}.keras", f"keras/{model}.weights.h5", f"keras/{model}.h5"} <= fixtures
    assert "keras/mlp_keras2_weights.h5" in fixtures


@pytest.mark.parametrize("manifest", HDF5_MANIFESTS, ids=_id)
def test_analysed_layers_equal_the_manifest(manifest: dict[str, Any]) -> None:
    with open_hdf5(FIXTURES / manifest["fixture"]) as reader:
        seen = analysed_layers(reader)
    assert seen == sorted((layer["name"], list(layer["shape"])) for layer in manifest["layers"])


# ----------------------------------------------------------------------------------------------------
# Values.


@functools.cache
def keras_values(path: Path) -> dict[str, np.ndarray]:
    """Every variable of the model Keras loads from `path`, by the contract's name (no model prefix)."""
    import keras

    model = keras.saving.load_model(path, compile=False)
    values = {}
    for variable in model.weights:
        name = variable.path.removeprefix(f"{model.name}/")
        values[name] = keras.ops.convert_to_numpy(variable.value)
    return values


@pytest.mark.parametrize("model", ["mlp", "cnn", "lstm"])
@pytest.mark.parametrize("suffix", [".keras", ".h5", ".weights.h5"])
def test_values_equal_what_keras_loads(model: str, suffix: str) -> None:
    # A .weights.h5 has no architecture; its twin .keras was saved from the same model object.
    expected = keras_values(KERAS / f"{model}{'.keras' if suffix == '.weights.h5' else suffix}")
    compared = 0
    with open_hdf5(KERAS / f"{model}{suffix}") as reader:
        for ref in reader.tensors():
            assert ref.info.name in expected, ref.info.name
            if ref.info.skip_reason is None:
                values = ref.read()
                assert values.dtype == np.float32
                assert np.array_equal(values, expected[ref.info.name]), ref.info.name
                compared += 1
    assert compared >= 3


def test_keras2_weights_only_values_equal_keras() -> None:
    expected = keras_values(KERAS / "mlp.keras")
    with open_hdf5(KERAS / "mlp_keras2_weights.h5") as reader:
        assert reader.metadata()["keras.layout"] == "keras2 .h5 (weights only)"
        for ref in reader.tensors():
            assert ref.info.stored_name == f"mlp/{ref.info.name}"
            if ref.info.skip_reason is None:
                assert np.array_equal(ref.read(), expected[ref.info.name])


def test_lambda_model_values_equal_h5py_and_attention_kernels_are_folded() -> None:
    archive = zipfile.ZipFile(KERAS / "tx.keras")
    with (
        h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as handle,
        open_hdf5(KERAS / "tx.keras") as reader,
    ):
        for ref in reader.tensors():
            stored = handle[ref.info.stored_name][()]
            if ref.info.skip_reason is None:
                assert np.array_equal(ref.read(), stored.reshape(ref.info.shape)), ref.info.name
        infos = {ref.info.name: ref.info for ref in reader.tensors()}
    query = infos["mha/query/kernel"]
    assert query.shape == (16, 16) and query.encoding == "folded from [16, 2, 8]"
    assert query.hint.role is Role.ATTENTION and query.hint.layout is Layout.IN_OUT
    assert infos["mha/attention_output/kernel"].encoding == "folded from [2, 8, 16]"
    assert infos["emb/embeddings"].hint.kind is WeightKind.EMBEDDING
    assert infos["bi/backward_lstm/lstm_cell/recurrent_kernel"].hint.kind is WeightKind.RECURRENT
    assert infos["inner/d1/kernel"].hint.op == "Dense"


# ----------------------------------------------------------------------------------------------------
# Layer information and metadata.


def _infos(name: str) -> dict[str, Any]:
    with open_hdf5(KERAS / name) as reader:
        return {ref.info.name: ref.info for ref in reader.tensors()}


@pytest.mark.parametrize("suffix", [".keras", ".weights.h5", ".h5"])
def test_cnn_layer_kinds_are_the_same_in_every_layout(suffix: str) -> None:
    infos = _infos(f"cnn{suffix}")
    conv = infos["conv1/kernel"]
    assert (
        conv.hint.kind is WeightKind.CONV and conv.hint.layout is Layout.IN_OUT and conv.hint.op == "Conv2D"
    )
    assert conv.hint.layer_name == "conv1"
    dw = infos["dw/kernel"]
    assert dw.hint.kind is WeightKind.DEPTHWISE_CONV
    assert dw.skip_reason == "depthwise convolution kernel (groups=12): one filter per channel, not a matrix"
    assert infos["sep/depthwise_kernel"].hint.kind is WeightKind.DEPTHWISE_CONV
    assert (
        infos["sep/pointwise_kernel"].hint.kind is WeightKind.CONV
        and infos["sep/pointwise_kernel"].skip_reason is None
    )
    assert (
        infos["bn1/moving_variance"].hint.kind is WeightKind.NORM and infos["bn1/moving_variance"].skip_reason
    )
    assert (
        infos["head/kernel"].hint.kind is WeightKind.DENSE
        and infos["head/kernel"].hint.layout is Layout.IN_OUT
    )
    assert infos["head/bias"].hint.kind is WeightKind.BIAS


def test_recurrent_kernels_keep_their_gate_stacks() -> None:
    infos = _infos("lstm.keras")
    assert infos["lstm/lstm_cell/kernel"].shape == (16, 80)
    assert infos["lstm/lstm_cell/recurrent_kernel"].shape == (20, 80)
    assert infos["gru/gru_cell/kernel"].hint.kind is WeightKind.RECURRENT
    assert infos["conv1d/kernel"].hint.kind is WeightKind.CONV and len(infos["conv1d/kernel"].shape) == 3


def test_lambda_layers_are_reported_never_run() -> None:
    with open_hdf5(KERAS / "tx.keras") as reader:
        meta = reader.metadata()
    assert meta["keras.lambda_layers"] == "double"
    assert "keras.custom_objects" not in meta
    assert meta["keras.layout"] == "keras3 .keras" and meta["keras.model_class"] == "Functional"


def test_optimizer_slots_are_not_weights() -> None:
    for name in ("tx.keras", "tx.weights.h5", "mlp.weights.h5"):
        with open_hdf5(KERAS / name) as reader:
            assert not any("optimizer" in (ref.info.stored_name or "") for ref in reader.tensors())


def test_listing_reads_no_tensor_bytes_and_contiguous_files_stop_the_worker() -> None:
    with open_hdf5(KERAS / "mlp.keras") as reader:
        refs = list(reader.tensors())
        assert reader.bytes_materialized == 0
        assert reader._client is None  # every dataset is contiguous: read directly, libhdf5 not kept
        refs[0].read()
        assert reader.bytes_materialized == refs[0].info.nbytes


def test_compressed_keras_archive_is_read_through_the_worker(tmp_path: Path) -> None:
    source = zipfile.ZipFile(KERAS / "lstm.keras")
    repacked = tmp_path / "deflated.keras"
    with zipfile.ZipFile(repacked, "w", compression=zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info.filename))
    expected = keras_values(KERAS / "lstm.keras")
    with open_hdf5(repacked) as reader:
        for ref in reader.tensors():
            if ref.info.skip_reason is None:
                assert np.array_equal(ref.read(), expected[ref.info.name])


def test_chunked_compressed_and_big_endian_datasets_of_a_plain_hdf5_file(tmp_path: Path) -> None:
    path = tmp_path / "plain.h5"
    rng = np.random.default_rng(0)
    chunked = rng.standard_normal((40, 30)).astype(np.float32)
    big_endian = rng.standard_normal((12, 20)).astype(">f8")
    half = rng.standard_normal((16, 16)).astype(np.float16)
    with h5py.File(path, "w") as handle:
        handle.create_dataset("group/chunked", data=chunked, chunks=(10, 10), compression="gzip")
        handle.create_dataset("big_endian", data=big_endian)
        handle.create_dataset("half", data=half)
        handle.create_dataset("steps", data=np.arange(10))
    with open_hdf5(path) as reader:
        assert reader.metadata()["keras.layout"] == "hdf5 (not a Keras layout)"
        refs = {ref.info.name: ref for ref in reader.tensors()}
        assert np.array_equal(refs["group/chunked"].read(), chunked)
        assert np.array_equal(refs["big_endian"].read(), big_endian.astype(np.float64))
        assert refs["half"].info.dtype is DType.F16 and np.array_equal(
            refs["half"].read(), half.astype(np.float32)
        )
        assert refs["steps"].info.skip_reason == "I64 values are not floating point"
        assert reader._client is not None  # the chunked dataset needs libhdf5, in the worker
    assert reader._client is None


def test_handmade_keras2_file_names_drop_the_tensorflow_suffix(tmp_path: Path) -> None:
    """The layout tf.keras 2 writes: `:0` suffixes, layer-scoped names, a Keras 2 model_config."""
    path = tmp_path / "tf_keras.h5"
    config = {
        "class_name": "Sequential",
        "config": {
            "name": "sequential_1",
            "layers": [
                {"class_name": "Dense", "config": {"name": "dense_1", "units": 12}},
                {
                    "class_name": "Lambda",
                    "config": {"name": "lambda_1", "function": ["4wEAAA==", None, None]},
                },
                {"class_name": "MyAttention", "config": {"name": "my_attention"}},
            ],
        },
    }
    kernel = np.arange(16 * 12, dtype=np.float32).reshape(16, 12)
    with h5py.File(path, "w") as handle:
        handle.attrs["model_config"] = json.dumps(config)
        handle.attrs["keras_version"] = "2.13.1"
        handle.attrs["backend"] = "tensorflow"
        weights = handle.create_group("model_weights")
        weights.attrs["layer_names"] = [b"dense_1", b"lambda_1"]
        layer = weights.create_group("dense_1")
        layer.attrs["weight_names"] = [b"dense_1/kernel:0", b"dense_1/bias:0"]
        layer.create_dataset("dense_1/kernel:0", data=kernel)
        layer.create_dataset("dense_1/bias:0", data=np.zeros(12, np.float32))
        weights.create_group("lambda_1").attrs["weight_names"] = np.array([], dtype="S1")
    with open_hdf5(path) as reader:
        infos = {ref.info.name: ref for ref in reader.tensors()}
        meta = reader.metadata()
        assert set(infos) == {"dense_1/kernel", "dense_1/bias"}
        assert infos["dense_1/kernel"].info.stored_name == "dense_1/kernel:0"
        assert infos["dense_1/kernel"].info.hint.kind is WeightKind.DENSE
        assert np.array_equal(infos["dense_1/kernel"].read(), kernel)
    assert meta["keras.layout"] == "keras2 .h5 (full model)" and meta["keras.keras_version"] == "2.13.1"
    assert meta["keras.lambda_layers"] == "lambda_1"


def test_shared_datasets_are_yielded_once_with_an_alias(tmp_path: Path) -> None:
    path = tmp_path / "tied.weights.h5"
    with h5py.File(path, "w") as handle:
        vars_a = handle.create_group("layers/dense/vars")
        vars_a.attrs["name"] = "encoder"
        vars_a.create_dataset("0", data=np.ones((12, 12), np.float32))
        vars_a.create_dataset("1", data=np.zeros(12, np.float32))
        vars_b = handle.create_group("layers/dense_1/vars")
        vars_b.attrs["name"] = "decoder"
        vars_b["0"] = vars_a["0"]  # a second hard link to the same dataset
        vars_b.create_dataset("1", data=np.zeros(12, np.float32))
    with open_hdf5(path) as reader:
        refs = {ref.info.name: ref.info for ref in reader.tensors()}
    assert set(refs) == {"encoder/kernel", "encoder/bias", "decoder/bias"}
    assert refs["encoder/kernel"].aliases == ("decoder/kernel",)


def test_sniffing_claims_keras_archives_but_not_other_zips(tmp_path: Path) -> None:
    head = (KERAS / "cnn.keras").read_bytes()[:64]
    assert sniff_hdf5(head, KERAS / "cnn.keras")
    plain_zip = tmp_path / "archive.zip"
    with zipfile.ZipFile(plain_zip, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        archive.writestr("archive/version", b"3\n")
    assert not sniff_hdf5(plain_zip.read_bytes()[:64], plain_zip)
    copy = tmp_path / "model.bin"
    shutil.copy(KERAS / "cnn.keras", copy)
    assert detect(copy).name == "hdf5"
    with open_model(KERAS / "lstm.h5") as reader:
        assert reader.format == "hdf5"
