"""The ONNX reader on fixtures made by torch.onnx and onnxruntime's quantiser.

Layers are checked against manifests written from the torch modules at generation time; values are
checked against what onnxruntime computes for each consumer's operand (the same Transpose, Cast and
DequantizeLinear chains, run by onnxruntime itself), so a dequantised weight must equal onnxruntime's
DequantizeLinear bit for bit.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from formats import DType, Layout, Role, WeightKind, detect, open_model
from formats.onnx_reader import ONNXReader, open_onnx
from tests.conftest import FIXTURES, load_manifests

ONNX_MANIFESTS = [m for m in load_manifests() if m["format"] == "onnx" and m["fixture"].startswith("onnx/")]
EXPECTED_FIXTURES = {
    "onnx/cnn.onnx",
    "onnx/mlp.onnx",
    "onnx/mlp_external.onnx",
    "onnx/mlp_fp16.onnx",
    "onnx/mlp_quantized.onnx",
    "onnx/transformer.onnx",
    "onnx/transformer_legacy.onnx",
    "onnx/lstm.onnx",
    "onnx/constants.onnx",
    "onnx/cond.onnx",
}


def _id(manifest: dict[str, Any]) -> str:
    return str(manifest["fixture"])


def _eigenvalue_count(shape: tuple[int, ...]) -> int:
    if len(shape) == 2:
        return min(shape)
    return min(shape[0], shape[1]) * math.prod(shape[2:])


def analysed_layers(reader: ONNXReader) -> list[tuple[str, list[int]]]:
    """Tensors the reader offers as matrices or kernels with at least 10 eigenvalues."""
    layers = []
    for ref in reader.tensors():
        info = ref.info
        if info.skip_reason is None and len(info.shape) >= 2 and _eigenvalue_count(info.shape) >= 10:
            layers.append((info.name, list(info.shape)))
    return sorted(layers)


def test_every_onnx_fixture_has_a_manifest() -> None:
    assert {m["fixture"] for m in ONNX_MANIFESTS} == EXPECTED_FIXTURES


@pytest.mark.parametrize("manifest", ONNX_MANIFESTS, ids=_id)
def test_analysed_layers_equal_the_manifest(manifest: dict[str, Any]) -> None:
    with open_onnx(FIXTURES / manifest["fixture"]) as reader:
        seen = analysed_layers(reader)
    expected = sorted((layer["name"], list(layer["shape"])) for layer in manifest["layers"])
    assert seen == expected


# ----------------------------------------------------------------------------------------------------
# Values against onnxruntime.


def _feeds(session: ort.InferenceSession) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feeds = {}
    for item in session.get_inputs():
        shape = [dim if isinstance(dim, int) else 2 for dim in item.shape]
        if "int" in item.type:
            feeds[item.name] = np.zeros(shape, dtype=np.int64)
        elif "float16" in item.type:
            feeds[item.name] = rng.standard_normal(shape).astype(np.float16)
        else:
            feeds[item.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def operands_from_onnxruntime(path: Path, tmp_path: Path) -> dict[str, list[np.ndarray]]:
    """For every main-graph node, the values onnxruntime computes for its inputs, by node name."""
    model = onnx.load(str(path), load_external_data=True)
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {
        value.name: value.type
        for value in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    }
    for tensor in model.graph.initializer:
        types.setdefault(tensor.name, onnx.helper.make_tensor_type_proto(tensor.data_type, None))
    # Nodes of If/Loop branches too: the values they take from the main graph can be main-graph outputs.
    nodes = _nodes_with_subgraphs(model.graph)
    wanted: list[str] = []
    packed = {onnx.TensorProto.INT4, onnx.TensorProto.UINT4}  # onnxruntime cannot return these to numpy
    for node in nodes:
        wanted.extend(
            name
            for name in node.input
            if name
            and name in types
            and name not in wanted
            and types[name].tensor_type.elem_type not in packed
        )
    existing = {output.name for output in model.graph.output}
    for name in wanted:
        if name not in existing:
            model.graph.output.append(onnx.helper.make_value_info(name, types[name]))
    copy = tmp_path / "with_outputs.onnx"
    onnx.save(model, str(copy))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(copy), options, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    values = dict(zip(names, session.run(names, _feeds(session)), strict=True))
    return {node.name: [values[name] for name in node.input if name in values] for node in nodes}


def _nodes_with_subgraphs(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    nodes = []
    for node in graph.node:
        nodes.append(node)
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                nodes.extend(_nodes_with_subgraphs(attribute.g))
    return nodes


@pytest.mark.parametrize("manifest", ONNX_MANIFESTS, ids=_id)
def test_values_equal_the_operands_onnxruntime_computes(manifest: dict[str, Any], tmp_path: Path) -> None:
    path = FIXTURES / manifest["fixture"]
    operands = operands_from_onnxruntime(path, tmp_path)
    checked = 0
    with open_onnx(path) as reader:
        for ref in reader.tensors():
            info = ref.info
            if info.skip_reason is not None or info.hint.layer_name not in operands:
                continue
            values = ref.read()
            candidates = operands[info.hint.layer_name]
            if info.hint.kind is WeightKind.RECURRENT:
                # One direction of a (num_directions, rows, cols) operand.
                direction = {"forward": 0, "reverse": 1}.get(info.name.rsplit(".", 1)[-1], 0)
                candidates = [c[direction] for c in candidates if c.ndim == 3]
            matches = [
                c
                for c in candidates
                if c.shape == values.shape and np.array_equal(c.astype(values.dtype), values)
            ]
            assert matches, f"{info.name}: no operand of {info.hint.layer_name} equals the values read"
            checked += 1
    assert checked >= len(manifest["layers"])


def test_dequantised_weights_match_onnxruntime_dequantizelinear_bit_for_bit(tmp_path: Path) -> None:
    path = FIXTURES / "onnx/mlp_quantized.onnx"
    model = onnx.load(str(path))
    initializers = {t.name: t for t in model.graph.initializer}
    reader = open_onnx(path)
    refs = {ref.info.name: ref for ref in reader.tensors()}
    for name in ("fc1.weight_quantized", "fc2.weight_quantized", "fc3.weight_quantized"):
        stem = name.removesuffix("_quantized")
        node = onnx.helper.make_node(
            "DequantizeLinear", [name, f"{stem}_scale", f"{stem}_zero_point"], ["y"], axis=0
        )
        graph = onnx.helper.make_graph(
            [node],
            "dq",
            [],
            [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
            [initializers[name], initializers[f"{stem}_scale"], initializers[f"{stem}_zero_point"]],
        )
        single = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 21)])
        (expected,) = ort.InferenceSession(
            single.SerializeToString(), providers=["CPUExecutionProvider"]
        ).run(None, {})
        assert refs[name].info.dtype is DType.QUANTIZED
        assert np.array_equal(refs[name].read(), expected), name
    reader.close()
    assert "int4 per-channel (axis 0)" in (refs["fc3.weight_quantized"].info.encoding or "")
    assert "uint8 per-channel (axis 0)" in (refs["fc1.weight_quantized"].info.encoding or "")


def test_fp16_weights_are_widened_exactly() -> None:
    path = FIXTURES / "onnx/mlp_fp16.onnx"
    stored = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    with open_onnx(path) as reader:
        for ref in reader.tensors():
            assert ref.info.dtype is DType.F16
            if ref.info.skip_reason is None:
                values = ref.read()
                assert values.dtype == np.float32
                assert np.array_equal(values, stored[ref.info.name].astype(np.float32))


def test_external_data_values_equal_onnx_load_and_listing_reads_nothing() -> None:
    path = FIXTURES / "onnx/mlp_external.onnx"
    loaded = {
        t.name: numpy_helper.to_array(t)
        for t in onnx.load(str(path), load_external_data=True).graph.initializer
    }
    with open_onnx(path) as reader:
        refs = list(reader.tensors())
        assert reader.bytes_materialized == 0
        assert any(ref.info.origin.startswith("mlp_external.onnx.data @") for ref in refs)
        for ref in refs:
            if ref.info.skip_reason is None:
                assert np.array_equal(ref.read(), loaded[ref.info.name])
        assert reader.bytes_materialized > 0


# ----------------------------------------------------------------------------------------------------
# What the graph says about each weight.


def _infos(fixture: str) -> dict[str, Any]:
    with open_onnx(FIXTURES / fixture) as reader:
        return {ref.info.name: ref.info for ref in reader.tensors()}


def test_cnn_hints_come_from_the_conv_nodes() -> None:
    infos = _infos("onnx/cnn.onnx")
    assert infos["conv1.weight"].hint.kind is WeightKind.CONV
    assert infos["conv1.weight"].hint.layout is Layout.OUT_IN
    assert infos["conv1.weight"].hint.op == "Conv"
    dw = infos["dw.weight"]
    assert dw.hint.kind is WeightKind.DEPTHWISE_CONV and dw.hint.groups == 16
    assert dw.skip_reason == "depthwise convolution kernel (groups=16): one filter per channel, not a matrix"
    assert infos["gconv.weight"].hint.groups == 2 and infos["gconv.weight"].skip_reason is None
    assert infos["up.weight"].hint.op == "ConvTranspose"
    assert infos["conv1d.weight"].hint.kind is WeightKind.CONV and len(infos["conv1d.weight"].shape) == 3
    assert infos["fc.weight"].hint.layout is Layout.OUT_IN  # Gemm with transB=1
    assert infos["conv1.bias"].hint.kind is WeightKind.BIAS and infos["conv1.bias"].skip_reason


def test_dynamo_export_folded_weights_get_their_torch_names_back() -> None:
    infos = _infos("onnx/transformer.onnx")
    linear1 = infos["layer.linear1.weight"]
    assert linear1.stored_name is not None and linear1.stored_name.startswith("val_")
    assert linear1.hint.op == "MatMul" and linear1.hint.layout is Layout.IN_OUT
    assert linear1.hint.layer_name is not None and linear1.hint.layer_name.startswith("node_")
    assert infos["layer.self_attn.in_proj_weight"].shape == (32, 96)
    assert infos["emb.weight"].hint.kind is WeightKind.EMBEDDING
    assert infos["emb.weight"].hint.role is Role.EMBEDDING


def test_torchscript_export_generated_names_are_named_after_the_consumer() -> None:
    infos = _infos("onnx/transformer_legacy.onnx")
    weight = infos["/layer/linear1/MatMul.weight"]
    assert weight.stored_name is not None and weight.stored_name.startswith("onnx::MatMul_")
    assert weight.hint.layer_name == "/layer/linear1/MatMul"
    # torch stored the two equal LayerNorm scales once, the second behind an Identity node.
    assert infos["layer.norm1.weight"].aliases == ("layer.norm2.weight",)


def test_lstm_weights_are_one_matrix_per_direction() -> None:
    infos = _infos("onnx/lstm.onnx")
    recurrent = {name: info for name, info in infos.items() if info.hint.kind is WeightKind.RECURRENT}
    assert len(recurrent) == 2 * 2 * 2 + 2  # two bidirectional LSTM layers (W, R) and one GRU (W, R)
    for info in recurrent.values():
        assert len(info.shape) == 2 and info.hint.layout is Layout.OUT_IN
        assert info.hint.op in ("LSTM", "GRU")
    forward = [name for name in recurrent if name.endswith(".W.forward")]
    assert len(forward) == 2 and all(recurrent[name].shape[0] == 96 for name in forward)
    biases = [info for info in infos.values() if info.hint.op == "LSTM" and info.hint.kind is WeightKind.BIAS]
    assert len(biases) == 2 and all(info.skip_reason for info in biases)


def test_constant_node_weights_reach_matmul_through_transpose() -> None:
    infos = _infos("onnx/constants.onnx")
    assert len(infos) == 2
    for info in infos.values():
        assert "Constant node" in info.origin
        assert info.encoding == "transposed [1, 0]"
        assert info.hint.op == "MatMul"


def test_if_branches_are_walked_and_outer_weights_found() -> None:
    infos = _infos("onnx/cond.onnx")
    assert {"a.weight", "b.weight", "out.weight"} <= set(infos)
    assert infos["a.weight"].hint.op == "Gemm"
    with open_onnx(FIXTURES / "onnx/cond.onnx") as reader:
        assert reader.metadata()["onnx.subgraphs"] == "2"


def test_metadata_names_the_producer_and_opsets() -> None:
    with open_onnx(FIXTURES / "onnx/mlp_quantized.onnx") as reader:
        meta = reader.metadata()
    assert meta["onnx.producer"].startswith("onnx.quantize")
    assert "ai.onnx 21" in meta["onnx.opsets"]


def test_detected_by_content_without_the_suffix(tmp_path: Path) -> None:
    copy = tmp_path / "model.bin"
    shutil.copy(FIXTURES / "onnx/mlp.onnx", copy)
    assert detect(copy).name == "onnx"
    with open_model(copy) as reader:
        assert reader.format == "onnx"
        assert len(list(reader.tensors())) == 6
