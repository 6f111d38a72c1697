"""Every element type a format defines is read, widened or skipped with a reason; an undefined one skips
its tensor while the rest of the file is read (PRODUCT.md: per-tensor problems are not exit 3)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from formats import open_model
from formats._safetensors_header import STORED_TYPES
from tests.conftest import run_cli
from tests.formats.test_gguf_hostile import _gguf, _tensor

RNG = np.random.default_rng(7)
WEIGHT = RNG.standard_normal((64, 32)).astype(np.float32)


def _listing(path: Path) -> dict[str, tuple[str | None, np.ndarray | None]]:
    """Each tensor's skip reason, and its values when it has none."""
    found: dict[str, tuple[str | None, np.ndarray | None]] = {}
    with open_model(path) as reader:
        for ref in reader.tensors():
            reason = ref.info.skip_reason
            found[ref.info.name] = (reason, None if reason else np.array(ref.read()))
    return found


# --------------------------------------------------------------------------------------------------
# ONNX
# --------------------------------------------------------------------------------------------------


def _onnx_model(path: Path, tensors: list[object]) -> Path:
    import onnx
    from onnx import TensorProto, helper

    nodes, outputs = [], []
    for tensor in tensors:
        name = tensor.name  # type: ignore[attr-defined]
        nodes.append(helper.make_node("MatMul", ["x", name], [f"y_{name}"]))
        outputs.append(helper.make_tensor_value_info(f"y_{name}", TensorProto.FLOAT, [1, 32]))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])], outputs, tensors
    )
    onnx.save(helper.make_model(graph), path)
    return path


def _onnx_raw(name: str, code: int, payload: bytes, dims: tuple[int, ...] = (64, 32)) -> object:
    from onnx import TensorProto

    tensor = TensorProto(name=name, data_type=code, dims=list(dims), raw_data=payload)
    return tensor


def test_onnx_fp4_tensor_is_read_and_the_rest_of_the_file_too(tmp_path: Path) -> None:
    from onnx import TensorProto, numpy_helper

    codes = RNG.integers(0, 256, size=64 * 32 // 2, dtype=np.uint8).tobytes()
    fp4 = _onnx_raw("fp4", TensorProto.FLOAT4E2M1, codes)
    good = numpy_helper.from_array(WEIGHT, "good")
    listing = _listing(_onnx_model(tmp_path / "fp4.onnx", [fp4, good]))
    assert listing["fp4"][0] is None
    expected = numpy_helper.to_array(fp4).astype(np.float32)  # type: ignore[arg-type]
    np.testing.assert_array_equal(listing["fp4"][1], expected)
    np.testing.assert_array_equal(listing["good"][1], WEIGHT)


def test_onnx_fp4_in_the_typed_field_is_read(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    values = RNG.choice(np.array([0.0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.5, -6], dtype=np.float32), (64, 32))
    fp4 = helper.make_tensor("fp4", TensorProto.FLOAT4E2M1, [64, 32], values)
    listing = _listing(_onnx_model(tmp_path / "typed.onnx", [fp4]))
    np.testing.assert_array_equal(listing["fp4"][1], values)


@pytest.mark.parametrize(
    ("code_name", "ml_type"),
    [
        ("FLOAT8E4M3FNUZ", ml_dtypes.float8_e4m3fnuz),
        ("FLOAT8E5M2FNUZ", ml_dtypes.float8_e5m2fnuz),
        ("FLOAT8E8M0", ml_dtypes.float8_e8m0fnu),
    ],
)
def test_onnx_fp8_variants_are_widened(tmp_path: Path, code_name: str, ml_type: object) -> None:
    from onnx import TensorProto

    raw = RNG.integers(0, 120, size=64 * 32, dtype=np.uint8)
    tensor = _onnx_raw("w", getattr(TensorProto, code_name), raw.tobytes())
    listing = _listing(_onnx_model(tmp_path / "fp8.onnx", [tensor]))
    expected = raw.view(ml_type).astype(np.float32).reshape(64, 32)  # type: ignore[arg-type]
    np.testing.assert_array_equal(listing["w"][1], expected)


@pytest.mark.parametrize("code", [999, 0, 1 << 20])
def test_onnx_undefined_code_skips_that_tensor_only(tmp_path: Path, code: int) -> None:
    from onnx import numpy_helper

    odd = _onnx_raw("odd", code, WEIGHT.tobytes())
    good = numpy_helper.from_array(WEIGHT, "good")
    listing = _listing(_onnx_model(tmp_path / "odd.onnx", [odd, good]))
    reason = listing["odd"][0]
    assert reason is not None and str(code) in reason
    np.testing.assert_array_equal(listing["good"][1], WEIGHT)


def test_every_onnx_element_type_is_read_or_skipped_with_a_reason(tmp_path: Path) -> None:
    """Each code TensorProto.DataType defines, as an initializer with correctly sized raw data."""
    from onnx import TensorProto, helper

    tensors = []
    for name, code in TensorProto.DataType.items():
        if code in (TensorProto.UNDEFINED, TensorProto.STRING):
            continue
        bits = helper.tensor_dtype_to_np_dtype(code).itemsize * 8
        if name in ("INT4", "UINT4", "FLOAT4E2M1"):
            bits = 4
        elif name in ("INT2", "UINT2"):
            bits = 2
        elif name.startswith("FLOAT6"):
            bits = 6
        payload = RNG.integers(0, 60, size=(64 * 32 * bits + 7) // 8, dtype=np.uint8).tobytes()
        tensors.append(_onnx_raw(name.lower(), code, payload))
    strings = helper.make_tensor("string", TensorProto.STRING, [2], [b"a", b"b"])
    listing = _listing(_onnx_model(tmp_path / "all.onnx", [*tensors, strings]))
    assert len(listing) == len(tensors) + 1
    for name, (reason, values) in listing.items():
        assert reason is not None or (values is not None and values.dtype.kind == "f"), name
    read = {name for name, (reason, _values) in listing.items() if reason is None}
    assert {"float", "float16", "bfloat16", "double", "float4e2m1", "float8e8m0", "float8e4m3fnuz"} <= read


def test_cli_analyses_an_onnx_file_with_fp4_and_an_undefined_type(tmp_path: Path) -> None:
    from onnx import TensorProto, numpy_helper

    codes = RNG.integers(0, 256, size=64 * 32 // 2, dtype=np.uint8).tobytes()
    path = _onnx_model(
        tmp_path / "m.onnx",
        [
            _onnx_raw("fp4", TensorProto.FLOAT4E2M1, codes),
            _onnx_raw("odd", 999, WEIGHT.tobytes()),
            numpy_helper.from_array(WEIGHT, "good"),
        ],
    )
    result = run_cli(path, "--format", "json", "--show-skipped")
    assert result.exit_code == 0, result.stderr
    layers = {layer["name"]: layer for layer in json.loads(result.stdout)["reports"][0]["layers"]}
    assert layers["fp4"]["status"] == "analyzed" and layers["good"]["status"] == "analyzed"
    assert layers["odd"]["status"] == "skipped" and "999" in layers["odd"]["reason"]


# --------------------------------------------------------------------------------------------------
# safetensors
# --------------------------------------------------------------------------------------------------


def _safetensors(path: Path, entries: list[tuple[str, str, tuple[int, ...], bytes]]) -> Path:
    header: dict[str, object] = {}
    data = b""
    for name, code, shape, payload in entries:
        header[name] = {
            "dtype": code,
            "shape": list(shape),
            "data_offsets": [len(data), len(data) + len(payload)],
        }
        data += payload
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


def test_every_safetensors_code_is_read_or_skipped_and_undefined_codes_skip(tmp_path: Path) -> None:
    entries = []
    for code, stored in STORED_TYPES.items():
        nbytes = 64 * 32 * stored.bits // 8
        entries.append(
            (f"t_{code}", code, (64, 32), RNG.integers(0, 60, size=nbytes, dtype=np.uint8).tobytes())
        )
    entries.append(("t_X99", "X99", (64, 32), bytes(10)))  # an undefined code: its size cannot be checked
    entries.append(("good", "F32", (64, 32), WEIGHT.tobytes()))
    listing = _listing(_safetensors(tmp_path / "all.safetensors", entries))
    assert len(listing) == len(entries)
    for name, (reason, values) in listing.items():
        assert reason is not None or (values is not None and values.dtype.kind == "f"), name
    assert "X99" in str(listing["t_X99"][0])
    np.testing.assert_array_equal(listing["good"][1], WEIGHT)
    read = {name for name, (reason, _values) in listing.items() if reason is None}
    assert {"t_F8_E8M0", "t_F8_E4M3FNUZ", "t_F8_E5M2FNUZ", "t_BF16"} <= read


def test_safetensors_e8m0_values_are_powers_of_two(tmp_path: Path) -> None:
    raw = RNG.integers(100, 150, size=64 * 32, dtype=np.uint8)
    listing = _listing(_safetensors(tmp_path / "e8.safetensors", [("s", "F8_E8M0", (64, 32), raw.tobytes())]))
    expected = raw.view(ml_dtypes.float8_e8m0fnu).astype(np.float32).reshape(64, 32)
    np.testing.assert_array_equal(listing["s"][1], expected)


# --------------------------------------------------------------------------------------------------
# GGUF
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("type_id", "word"), [(9999, "type id 9999"), (31, "Q4_0_4_4")])
def test_gguf_undefined_or_removed_type_skips_that_tensor(tmp_path: Path, type_id: int, word: str) -> None:
    values = np.arange(16 * 12, dtype=np.float32)
    path = _gguf(
        tmp_path / "odd.gguf",
        tensors=[_tensor("blk.0.odd.weight", [16, 12], type_id=type_id), _tensor("output.weight", [16, 12])],
        data=values.tobytes(),
    )
    listing = _listing(path)
    assert word in str(listing["blk.0.odd.weight"][0])
    np.testing.assert_array_equal(listing["output.weight"][1], values.reshape(12, 16))


# --------------------------------------------------------------------------------------------------
# PyTorch and HDF5
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype_name", ["float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu", "float8_e4m3fn"]
)
def test_torch_fp8_storages_are_widened(tmp_path: Path, dtype_name: str) -> None:
    torch = pytest.importorskip("torch")
    dtype = getattr(torch, dtype_name)
    weight = torch.from_numpy(WEIGHT).to(dtype)
    path = tmp_path / "fp8.pt"
    torch.save({"fc.weight": weight}, path)
    listing = _listing(path)
    np.testing.assert_array_equal(listing["fc.weight"][1], weight.float().numpy())


def test_torch_fp4_pairs_and_complex_are_skipped_with_a_reason(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    path = tmp_path / "odd.pt"
    torch.save(
        {
            "fp4.weight": torch.zeros((64, 16), dtype=torch.uint8).view(torch.float4_e2m1fn_x2),
            "c.weight": torch.zeros((64, 32), dtype=torch.complex64),
            "fc.weight": torch.from_numpy(WEIGHT),
        },
        path,
    )
    result = run_cli(path, "--format", "json", "--show-skipped")
    assert result.exit_code == 0, result.stderr
    layers = {layer["name"]: layer for layer in json.loads(result.stdout)["reports"][0]["layers"]}
    assert layers["fc.weight"]["status"] == "analyzed"
    assert layers["fp4.weight"]["status"] == "skipped" and layers["fp4.weight"]["reason"]
    assert layers["c.weight"]["status"] == "skipped" and layers["c.weight"]["reason"]


def test_hdf5_non_float_datasets_are_skipped_with_a_reason(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "mixed.h5"
    with h5py.File(path, "w") as handle:
        handle["w_float"] = WEIGHT
        handle["w_complex"] = WEIGHT.astype(np.complex64)
        handle["w_bool"] = WEIGHT > 0
        handle["w_int"] = WEIGHT.astype(np.int8)
        handle["w_text"] = np.array([b"abc"] * 4)
        handle["w_half_be"] = WEIGHT.astype(">f2")
    listing = _listing(path)
    assert listing["w_float"][0] is None and listing["w_half_be"][0] is None
    for name in ("w_complex", "w_bool", "w_int", "w_text"):
        assert listing[name][0], name
