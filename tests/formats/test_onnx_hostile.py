"""Hostile and broken ONNX files, built in tmp_path: each is refused with one typed error, and the CLI
exits 3 with one line on stderr. Also external data beyond 2 GiB, read one tensor at a time.
"""

from __future__ import annotations

import os
import resource
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from formats.errors import CorruptFileError, FormatError, TensorError, UnsafeFileError
from formats.onnx_reader import open_onnx
from tests.conftest import FIXTURES, assert_refused, run_cli

MLP = FIXTURES / "onnx/mlp.onnx"


def _external_model(folder: Path, location: str, *, offset: int = 0, length: int | None = 64 * 4) -> Path:
    """A MatMul whose (16, 4) float32 weight lives in external data at `location`."""
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[16, 4])
    weight.data_location = TensorProto.EXTERNAL
    entries = {"location": location, "offset": str(offset)}
    if length is not None:
        entries["length"] = str(length)
    for key, value in entries.items():
        item = weight.external_data.add()
        item.key, item.value = key, value
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        "main",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        [weight],
    )
    path = folder / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _assert_refused(path: Path, error: type[FormatError], match: str) -> None:
    assert_refused(open_onnx, path, error, match)


def test_truncated_protobuf_is_corrupt(tmp_path: Path) -> None:
    data = MLP.read_bytes()
    for cut in (len(data) // 3, len(data) // 2, len(data) - 7):
        broken = tmp_path / f"cut{cut}.onnx"
        broken.write_bytes(data[:cut])
        _assert_refused(broken, CorruptFileError, "truncated or corrupt|holds .* bytes of raw data|no graph")


def test_random_bytes_with_an_onnx_suffix_are_corrupt(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    _assert_refused(junk, CorruptFileError, "not a valid ONNX protobuf|no graph")


def test_raw_data_shorter_than_the_shape_is_corrupt(tmp_path: Path) -> None:
    weight = numpy_helper.from_array(np.ones((10, 10), np.float32), "w")
    weight.raw_data = weight.raw_data[:-4]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 10])],
        [weight],
    )
    path = tmp_path / "short.onnx"
    onnx.save(helper.make_model(graph), str(path))
    _assert_refused(path, CorruptFileError, "holds 396 bytes of raw data but its shape \\[10, 10\\]")


def test_absurd_dims_are_corrupt(tmp_path: Path) -> None:
    weight = numpy_helper.from_array(np.ones((2, 2), np.float32), "w")
    del weight.dims[:]
    weight.dims.extend([1 << 31, 1 << 31])
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g", [], [], [weight])
    path = tmp_path / "huge.onnx"
    onnx.save(helper.make_model(graph), str(path))
    _assert_refused(path, CorruptFileError, "declares .* elements")


@pytest.mark.parametrize(
    "location", ["/etc/passwd", "../outside.bin", "sub/../../outside.bin", "..\\outside.bin"]
)
def test_external_data_outside_the_folder_is_unsafe(tmp_path: Path, location: str) -> None:
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (tmp_path / "outside.bin").write_bytes(b"\0" * 4096)
    path = _external_model(folder, location)
    if "\\" in location:
        # On POSIX a backslash is an ordinary character: the file is simply missing inside the folder.
        _assert_refused(path, CorruptFileError, "cannot be opened")
        return
    _assert_refused(path, UnsafeFileError, "absolute path|outside the model's folder")


def test_external_data_symlink_leaving_the_folder_is_unsafe(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "secret.bin").write_bytes(b"\1" * 4096)
    os.symlink(tmp_path / "secret.bin", folder / "weights.bin")
    _assert_refused(_external_model(folder, "weights.bin"), UnsafeFileError, "outside the model's folder")


def test_external_data_symlink_inside_the_folder_is_followed(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    (folder / "real").mkdir(parents=True)
    values = np.arange(64, dtype=np.float32)
    (folder / "real" / "weights.bin").write_bytes(values.tobytes())
    os.symlink(folder / "real" / "weights.bin", folder / "weights.bin")
    with open_onnx(_external_model(folder, "weights.bin")) as reader:
        (ref,) = list(reader.tensors())
        assert np.array_equal(ref.read(), values.reshape(16, 4))


@pytest.mark.parametrize(
    ("offset", "length", "file_bytes", "match"),
    [
        (0, 64 * 4 + 4, 4096, "length 260 .* does not match its shape"),
        (4000, 256, 4096, "ends at byte 4256 .* has only 4096 bytes"),
        (0, None, 100, "has only 100 bytes"),
    ],
)
def test_lying_external_offsets_and_lengths_are_corrupt(
    tmp_path: Path, offset: int, length: int | None, file_bytes: int, match: str
) -> None:
    (tmp_path / "w.bin").write_bytes(b"\0" * file_bytes)
    _assert_refused(_external_model(tmp_path, "w.bin", offset=offset, length=length), CorruptFileError, match)


def test_missing_external_file_is_corrupt(tmp_path: Path) -> None:
    _assert_refused(_external_model(tmp_path, "gone.bin"), CorruptFileError, "cannot be opened")


def test_external_data_that_is_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.bin")
    _assert_refused(_external_model(tmp_path, "pipe.bin"), CorruptFileError, "not a regular file")


def test_fixture_with_external_data_in_a_copied_folder_still_reads(tmp_path: Path) -> None:
    for name in ("mlp_external.onnx", "mlp_external.onnx.data"):
        shutil.copy(FIXTURES / "onnx" / name, tmp_path / name)
    result = run_cli(tmp_path / "mlp_external.onnx", "--format", "json")
    assert result.exit_code in (0, 4), (
        result.output
    )  # read fine; whether layers are analysed is the inspector's


def test_external_data_beyond_2_gib_is_read_one_tensor_at_a_time(tmp_path: Path) -> None:
    """A sparse 2.3 GiB data file: tensors at offsets past 2**31 read correctly and listing maps nothing."""
    data = tmp_path / "big.onnx.data"
    far = (1 << 31) + (1 << 28)  # 2.25 GiB
    near_values = np.arange(32 * 16, dtype=np.float32).reshape(32, 16)
    far_values = -np.arange(16 * 24, dtype=np.float32).reshape(16, 24)
    with data.open("wb") as handle:
        handle.write(near_values.tobytes())
        handle.seek(far)
        handle.write(far_values.tobytes())
        handle.truncate(far + (1 << 26))  # the file is 2.3 GiB long; the gap costs no disk
    tensors = []
    for name, values, offset in (("near", near_values, 0), ("far", far_values, far)):
        tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(values.shape))
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", data.name), ("offset", str(offset)), ("length", str(values.nbytes))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        tensors.append(tensor)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "near"], ["h"], name="a"),
            helper.make_node("MatMul", ["h", "far"], ["y"], name="b"),
        ],
        "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 24])],
        tensors,
    )
    path = tmp_path / "big.onnx"
    onnx.save(helper.make_model(graph), str(path))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open_onnx(path) as reader:
        refs = {ref.info.name: ref for ref in reader.tensors()}
        assert reader.bytes_materialized == 0
        assert refs["far"].info.origin == f"big.onnx.data @ {far:#x}"
        assert np.array_equal(refs["far"].read(), far_values)
        assert np.array_equal(refs["near"].read(), near_values)
        assert reader.bytes_materialized == near_values.nbytes + far_values.nbytes
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 64 * 1024, f"resident set grew by {grown_kib} KiB"


def test_names_that_are_not_utf8_are_corrupt(tmp_path: Path) -> None:
    # ONNX's schema is proto2, so protobuf hands back invalid UTF-8 in a string field as bytes.
    data = MLP.read_bytes()
    name = b"fc1.weight"
    position = data.find(name)
    broken = tmp_path / "latin1.onnx"
    broken.write_bytes(data[:position] + b"\xff" + data[position + 1 :])
    _assert_refused(broken, CorruptFileError, "not valid UTF-8")


def test_random_mutations_only_ever_raise_typed_errors(tmp_path: Path) -> None:
    """Fuzzing in miniature (the full run: 6500 mutations of four fixtures, none escaped)."""
    rng = np.random.default_rng(1)
    data = np.frombuffer((FIXTURES / "onnx/transformer_legacy.onnx").read_bytes(), dtype=np.uint8)
    path = tmp_path / "mutant.onnx"
    outcomes = {"read": 0, "refused": 0}
    for _ in range(150):
        mutant = data.copy()
        positions = rng.integers(0, len(mutant), rng.integers(1, 12))
        mutant[positions] = rng.integers(0, 256, len(positions), dtype=np.uint8)
        path.write_bytes(mutant.tobytes())
        try:
            with open_onnx(path) as reader:
                for ref in reader.tensors():
                    if ref.info.skip_reason is None:
                        ref.read()
            outcomes["read"] += 1
        except (FormatError, TensorError):  # a file-level refusal, or one tensor that cannot be decoded
            outcomes["refused"] += 1
    assert outcomes["read"] > 0 and outcomes["refused"] > 0
