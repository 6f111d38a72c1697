"""The readers on the quantised fixtures, end to end: values, alpha and lambda_max against the libraries' own
dequantised copies, and hostile variants through the CLI.

Each fixture's `reference.safetensors` (fixtures/generate_quantized.py) holds what the library itself makes
of the stored parts (auto-gptq's forward, autoawq's dequantize_gemm, bitsandbytes' dequantize_4bit,
compressed-tensors' decompress_model, transformers' convert_moe_packed_tensors, torch's dequantize()). The
issue's conventions: a quantised weight's alpha equals alpha of that copy to 1e-3, and its lambda_max to
1e-3 relative (which alpha alone cannot show: alpha does not change when a matrix is scaled).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from formats import DType, open_model
from tests.conftest import FIXTURES, MANIFESTS, run_cli

QUANTISED = [json.loads(path.read_text()) for path in sorted(MANIFESTS.glob("quantized_*.json"))]
#: The Hugging Face and torch fixtures, which carry the library's copy in reference.safetensors.
WITH_REFERENCE = [manifest for manifest in QUANTISED if "reference" in manifest]
#: The issue's tolerances: alpha absolute, lambda_max relative.
ALPHA_TOLERANCE = 1e-3
LAMBDA_MAX_RELATIVE = 1e-3


def _records(path: Path, *args: str) -> dict[tuple[str, int | None], dict[str, Any]]:
    result = run_cli(path, "--format", "json", *args)
    assert result.exit_code == 0, (result.exit_code, result.stderr)
    (report,) = json.loads(result.stdout)["reports"]
    return {(layer["name"], layer["slice_index"]): layer for layer in report["layers"]}


def _reference(manifest: dict[str, Any]) -> dict[str, np.ndarray]:
    with safe_open(str(FIXTURES / manifest["reference"]), "pt") as handle:
        return {name: handle.get_tensor(name).float().numpy() for name in handle.keys()}  # noqa: SIM118


@pytest.mark.parametrize("manifest", WITH_REFERENCE, ids=lambda manifest: manifest["fixture"])
def test_read_values_equal_the_librarys_dequantised_copy(manifest: dict[str, Any]) -> None:
    reference = _reference(manifest)
    with open_model(FIXTURES / manifest["fixture"]) as reader:
        refs = {ref.info.name: ref for ref in reader.tensors()}
        for name, theirs in reference.items():
            info = refs[name].info
            assert info.dtype is DType.QUANTIZED and info.encoding, name
            assert info.shape == theirs.shape, name
            # The libraries' output dtype (float16/bfloat16) widened: the same numbers, bit for bit.
            np.testing.assert_array_equal(refs[name].read(), theirs, err_msg=name)


@pytest.mark.parametrize("manifest", WITH_REFERENCE, ids=lambda manifest: manifest["fixture"])
def test_alpha_and_lambda_max_equal_those_of_the_librarys_copy(manifest: dict[str, Any]) -> None:
    ours = _records(FIXTURES / manifest["fixture"])
    theirs = _records(FIXTURES / manifest["reference"])
    quantised = {layer["name"] for layer in manifest["layers"] if layer["quantised"]}
    compared = 0
    for key, record in ours.items():
        if key[0] not in quantised:
            continue
        assert record["status"] == "analyzed" and record["encoding"], key
        reference = theirs[key]
        assert abs(record["alpha"] - reference["alpha"]) <= ALPHA_TOLERANCE, key
        assert (
            abs(record["lambda_max"] - reference["lambda_max"])
            <= LAMBDA_MAX_RELATIVE * reference["lambda_max"]
        ), key
        compared += 1
    assert compared >= len(quantised)


def test_quantised_parts_are_never_listed_and_activation_parameters_are_skipped(tmp_path: Path) -> None:
    manifest = json.loads((MANIFESTS / "quantized_gptq_int4_actorder.json").read_text())
    names = {name for name, _ in _records(FIXTURES / manifest["fixture"])}
    assert not names & set(manifest["quantised_parts"])
    folder = _copy("gptq_int4_actorder", tmp_path)
    stored = _stored(folder)
    stored["model.layers.0.self_attn.q_proj.input_scale"] = torch.ones(1)
    save_file(stored, str(folder / "model.safetensors"))
    records = _records(folder / "model.safetensors")
    reason = records[("model.layers.0.self_attn.q_proj.input_scale", None)]["reason"]
    assert "activations of 'model.layers.0.self_attn.q_proj'" in reason


# --- hostile variants through the CLI --------------------------------------------------------------


def _copy(kind: str, tmp_path: Path) -> Path:
    folder = tmp_path / kind
    shutil.copytree(FIXTURES / "quantized" / kind, folder)
    return folder


def _stored(folder: Path) -> dict[str, torch.Tensor]:
    """Stored tensors through torch (numpy has no float8 for the NVFP4 scales)."""
    with safe_open(str(folder / "model.safetensors"), "pt") as handle:
        return {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118


def _config(folder: Path, change: Any) -> None:
    config = json.loads((folder / "config.json").read_text())
    change(config)
    (folder / "config.json").write_text(json.dumps(config))


def _skipped(folder: Path, name: str) -> str:
    record = _records(folder / "model.safetensors")[(name, None)]
    assert record["status"] == "skipped", record
    reason: str = record["reason"]
    assert name in reason and "\n" not in reason
    return reason


Q_PROJ = "model.layers.0.self_attn.q_proj"


def test_a_lying_group_size_skips_the_weights_it_does_not_fit(tmp_path: Path) -> None:
    folder = _copy("gptq_int4_actorder", tmp_path)
    _config(folder, lambda config: config["quantization_config"].update(group_size=16))
    assert "group_size 16" in _skipped(folder, Q_PROJ + ".weight")
    folder = _copy("awq_int4", tmp_path)
    _config(folder, lambda config: config["quantization_config"].update(group_size=64))
    assert "group_size 64" in _skipped(folder, Q_PROJ + ".weight")
    folder = _copy("compressed_w4a16", tmp_path)
    _config(
        folder,
        lambda config: config["quantization_config"]["config_groups"]["group_0"]["weights"].update(
            group_size=16
        ),
    )
    assert "group_size 16" in _skipped(folder, Q_PROJ + ".weight")


@pytest.mark.parametrize(
    ("kind", "part", "cut", "words"),
    [
        ("gptq_int4_actorder", ".scales", (slice(None), slice(0, -1)), "scales"),
        ("gptq_int4_actorder", ".qweight", (slice(0, -1),), "g_idx"),
        ("awq_int4", ".scales", (slice(None), slice(0, -1)), "scales"),
        ("awq_int4", ".qweight", (slice(None), slice(0, -1)), "scales"),
        ("bnb_nf4", ".weight.absmax", (slice(0, -1),), "absmax"),
        ("bnb_nf4", ".weight", (slice(0, -1),), "packed bytes"),
        ("bnb_int8", ".SCB", (slice(0, -1),), "SCB"),
        ("compressed_w4a16", ".weight_packed", (slice(None), slice(0, -1)), "weight_packed"),
        ("compressed_w4a16", ".weight_scale", (slice(None), slice(0, -1)), "weight_scale"),
        ("compressed_nvfp4", ".weight_scale", (slice(None), slice(0, -1)), "weight_scale"),
    ],
)
def test_wrong_shaped_scales_and_short_packed_tensors_skip_that_weight(
    tmp_path: Path, kind: str, part: str, cut: tuple[slice, ...], words: str
) -> None:
    folder = _copy(kind, tmp_path)
    stored = _stored(folder)
    stored[Q_PROJ + part] = stored[Q_PROJ + part][cut].contiguous()
    save_file(stored, str(folder / "model.safetensors"))
    assert words in _skipped(folder, Q_PROJ + ".weight")
    records = _records(folder / "model.safetensors")
    assert records[("model.layers.0.self_attn.k_proj.weight", None)]["status"] == "analyzed"


def test_hostile_quant_state_and_weight_shape_skip_that_weight(tmp_path: Path) -> None:
    folder = _copy("bnb_nf4", tmp_path)
    stored = _stored(folder)
    state = Q_PROJ + ".weight.quant_state.bitsandbytes__nf4"
    lying = {"quant_type": "nf4", "blocksize": 64, "dtype": "float16", "shape": [-1, 64]}
    stored[state] = torch.tensor(list(json.dumps(lying).encode()), dtype=torch.uint8)
    save_file(stored, str(folder / "model.safetensors"))
    assert "shape" in _skipped(folder, Q_PROJ + ".weight")
    folder = _copy("compressed_w4a16", tmp_path)
    stored = _stored(folder)
    stored[Q_PROJ + ".weight_shape"] = torch.tensor([64, 64, 64])
    save_file(stored, str(folder / "model.safetensors"))
    assert "weight_shape" in _skipped(folder, Q_PROJ + ".weight")


def test_a_group_with_missing_parts_is_one_skipped_weight_and_a_warning(tmp_path: Path) -> None:
    folder = _copy("gptq_int4_actorder", tmp_path)
    stored = _stored(folder)
    del stored[Q_PROJ + ".qzeros"]
    save_file(stored, str(folder / "model.safetensors"))
    result = run_cli(folder / "model.safetensors", "--format", "json")
    assert result.exit_code == 0, result.stderr
    (report,) = json.loads(result.stdout)["reports"]
    (warning,) = report["warnings"]
    assert "qzeros" in warning
    names = {layer["name"] for layer in report["layers"]}
    assert Q_PROJ + ".scales" not in names and Q_PROJ + ".g_idx" not in names
    assert "qzeros" in _skipped(folder, Q_PROJ + ".weight")


def test_an_unusable_config_is_a_warning_and_the_names_decide(tmp_path: Path) -> None:
    folder = _copy("gptq_int4_actorder", tmp_path)
    (folder / "config.json").write_text('{"quantization_config": {"bits": 4, "bits": 8}}')
    result = run_cli(folder / "model.safetensors", "--format", "json")
    assert result.exit_code == 0, result.stderr
    (report,) = json.loads(result.stdout)["reports"]
    assert any("config.json ignored" in warning and "repeats" in warning for warning in report["warnings"])
    analysed = [layer for layer in report["layers"] if layer["encoding"] == "gptq-int4-g32"]
    assert len(analysed) == 7 and all(layer["status"] == "analyzed" for layer in analysed)


# --- ONNX quantised operators ------------------------------------------------------------------------

ONNX_QUANTISED = [manifest for manifest in QUANTISED if manifest["format"] == "onnx"]


def _onnx_reference(path: Path) -> dict[str, np.ndarray]:
    """onnxruntime's own float weight for every quantised weight of `path`: the contrib operators run
    alone on an identity (MatMulNBits) or on every index (GatherBlockQuantized); the integer operators'
    weights through DequantizeLinear with their scale and zero point."""
    import onnx

    from formats.quantized.onnx_ops import INTEGER_OPERATOR_INPUTS
    from tests.formats.test_quantized_ops import _dequantize_linear_reference, _initializers, _run_single

    model = onnx.load(str(path))
    values = _initializers(model)
    reference: dict[str, np.ndarray] = {}
    for node in model.graph.node:
        if node.op_type == "MatMulNBits":
            k = next(attribute.i for attribute in node.attribute if attribute.name == "K")
            reference[node.input[1]] = _run_single(node, model, {node.input[0]: np.eye(k, dtype=np.float32)})
        elif node.op_type == "GatherBlockQuantized":
            rows = values[node.input[0]].shape[0]
            feeds = {node.input[1]: np.arange(rows, dtype=np.int64)}
            reference[node.input[0]] = _run_single(node, model, feeds)
        elif node.op_type in INTEGER_OPERATOR_INPUTS:
            weight, scale_input, zero_input = INTEGER_OPERATOR_INPUTS[node.op_type]
            name = node.input[weight]
            scale_name = (
                node.input[scale_input] if scale_input is not None else name.replace("_quantized", "_scale")
            )
            reference[name] = _dequantize_linear_reference(
                values[name],
                values[scale_name],
                values[node.input[zero_input]],
                axis=0 if "Conv" in node.op_type else 1,
            )
    return reference


@pytest.mark.parametrize("manifest", ONNX_QUANTISED, ids=lambda manifest: manifest["fixture"])
def test_onnx_quantised_weights_equal_onnxruntime_and_keep_its_alpha(
    manifest: dict[str, Any], tmp_path: Path
) -> None:
    path = FIXTURES / manifest["fixture"]
    reference = _onnx_reference(path)
    assert set(reference) == {tensor["name"] for tensor in manifest["tensors"]}
    with open_model(path) as reader:
        refs = {ref.info.name: ref for ref in reader.tensors()}
        for name, theirs in reference.items():
            assert refs[name].info.dtype is DType.QUANTIZED and refs[name].info.encoding, name
            np.testing.assert_array_equal(refs[name].read(), theirs, err_msg=name)  # max abs difference 0
    copy = tmp_path / "reference.safetensors"
    save_file(
        {name: torch.from_numpy(np.ascontiguousarray(values)) for name, values in reference.items()},
        str(copy),
    )
    ours, theirs_records = _records(path), _records(copy)
    for name in reference:
        record, expected = ours[(name, None)], theirs_records[(name, None)]
        assert record["status"] == "analyzed", name
        assert abs(record["alpha"] - expected["alpha"]) <= ALPHA_TOLERANCE, name
        assert (
            abs(record["lambda_max"] - expected["lambda_max"]) <= LAMBDA_MAX_RELATIVE * expected["lambda_max"]
        )


# --- torch quantised tensors with hostile quantizer parameters ----------------------------------------


def _hostile_qtensor(tmp_path: Path, params: Any) -> Path:
    """A torch.save whose tensor is rebuilt by `_rebuild_qtensor` with `params` as quantizer parameters
    (torch pickles a quantised tensor as exactly that call; here the parameters are ours)."""
    import collections
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scales = torch.rand(16, dtype=torch.float64) * 0.1 + 0.01
        quantised = torch.quantize_per_channel(
            torch.randn(16, 24), scales, torch.zeros(16, dtype=torch.int64), 0, torch.qint8
        )
        storage = quantised.storage()

    class Rebuilt:
        def __reduce__(self) -> tuple[Any, ...]:
            args = (storage, 0, (16, 24), (24, 1), params, False, collections.OrderedDict())
            return (torch._utils._rebuild_qtensor, args)

    path = tmp_path / "hostile.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save({"w": Rebuilt(), "plain": torch.randn(16, 24)}, path)
    return path


def test_torch_quantizer_parameters_that_do_not_fit_skip_the_tensor_or_refuse_the_file(
    tmp_path: Path,
) -> None:
    wrong_size = (
        torch.per_channel_affine,
        torch.ones(5, dtype=torch.float64),
        torch.zeros(5, dtype=torch.int64),
        0,
    )
    record = _records(_hostile_qtensor(tmp_path, wrong_size))[("w", None)]
    assert record["status"] == "skipped" and "5 scales for axis 0" in record["reason"]
    wrong_axis = (
        torch.per_channel_affine,
        torch.ones(16, dtype=torch.float64),
        torch.zeros(16, dtype=torch.int64),
        2,
    )
    record = _records(_hostile_qtensor(tmp_path, wrong_axis))[("w", None)]
    assert record["status"] == "skipped" and "axis 2" in record["reason"]
    # Parameters of the wrong types are a corrupt file: exit 3, one line, no traceback.
    result = run_cli(_hostile_qtensor(tmp_path, (torch.per_tensor_affine, "0.1", 0)), "--format", "json")
    assert result.exit_code == 3 and "per_tensor_affine" in result.stderr and "Traceback" not in result.stderr


def test_a_sharded_quantised_checkpoint_groups_parts_across_shards(tmp_path: Path) -> None:
    """transformers shards by size, so one weight's qweight and scales can sit in different shards."""
    folder = _copy("gptq_int4_actorder", tmp_path)
    stored = _stored(folder)
    first = {name: value for name, value in stored.items() if not name.endswith(".scales")}
    second = {name: value for name, value in stored.items() if name.endswith(".scales")}
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    shutil.copy(folder / "config.json", sharded / "config.json")
    names = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")
    save_file(first, str(sharded / names[0]))
    save_file(second, str(sharded / names[1]))
    weight_map = {name: names[0] for name in first} | {name: names[1] for name in second}
    (sharded / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map})
    )
    with open_model(folder / "model.safetensors") as whole, open_model(sharded) as parts:
        expected = {ref.info.name: ref.read() for ref in whole.tensors() if ref.info.dtype is DType.QUANTIZED}
        found = {ref.info.name: ref for ref in parts.tensors()}
        assert len(expected) == 7
        for name, values in expected.items():
            assert found[name].info.encoding == "gptq-int4-g32"
            np.testing.assert_array_equal(found[name].read(), values, err_msg=name)
