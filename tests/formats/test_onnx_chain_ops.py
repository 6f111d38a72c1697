"""Shape-only and selecting nodes between a weight and its consumer, quantised operators and model-local
functions: the operator semantics the reader follows, and hostile graphs (one skipped tensor, never a crash).

The real-graph fixtures are fixtures/onnx_graphs/*.onnx (their manifests are checked end to end by
tests/cli/test_every_fixture.py); here each rule is pinned on a small graph built with onnx.helper and,
where it runs, checked against what onnxruntime computes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from formats import DType, open_model
from tests.conftest import run_cli

RNG = np.random.default_rng(7)


def _weight(name: str, *shape: int) -> onnx.TensorProto:
    return numpy_helper.from_array(RNG.standard_t(3.0, size=shape).astype(np.float32), name)


def _ints(name: str, values: list[int] | int) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=np.int64), name)


def _value(name: str, *shape: int) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def _save(tmp_path: Path, graph: onnx.GraphProto, opset: int = 18, **kwargs: object) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], **kwargs)  # type: ignore[arg-type]
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    return path


def _read(path: Path) -> dict[str, tuple[object, np.ndarray | None]]:
    with open_model(path) as reader:
        return {
            ref.info.name: (ref.info, ref.read() if ref.info.skip_reason is None else None)
            for ref in reader.tensors()
        }


def test_split_slice_and_gather_parts_equal_numpy_and_onnxruntime(tmp_path: Path) -> None:
    fused = _weight("fused", 30, 12)
    graph = helper.make_graph(
        [
            # opset 18 Split by num_outputs: ceil(30 / 4) = 8 rows each, the last one 6.
            helper.make_node(
                "Split", ["fused"], ["p0", "p1", "p2", "p3"], axis=0, num_outputs=4, name="split"
            ),
            *[helper.make_node("MatMul", [f"p{i}", "x"], [f"y{i}"], name=f"use{i}") for i in range(4)],
            helper.make_node("Slice", ["fused", "start", "end", "axis", "step"], ["s"], name="slice"),
            helper.make_node("MatMul", ["s", "x"], ["ys"], name="use_slice"),
            helper.make_node("Gather", ["fused", "rows"], ["g"], axis=0, name="gather"),
            helper.make_node("MatMul", ["g", "x"], ["yg"], name="use_gather"),
        ],
        "parts",
        [_value("x", 12, 3)],
        [_value(f"y{i}", rows, 3) for i, rows in enumerate((8, 8, 8, 6))]
        + [_value("ys", 10, 3), _value("yg", 11, 3)],
        [
            fused,
            _ints("start", [-1]),
            _ints("end", [-31]),
            _ints("axis", [0]),
            _ints("step", [-3]),
            _ints("rows", list(range(0, 22, 2))),
        ],
    )
    path = _save(tmp_path, graph)
    tensors = _read(path)
    stored = numpy_helper.to_array(fused)
    expected = {
        "use0.weight_a": stored[0:8],
        "use1.weight_a": stored[8:16],
        "use2.weight_a": stored[16:24],
        "use3.weight_a": stored[24:30],
        "use_slice.weight_a": stored[-1:-31:-3],
        "use_gather.weight_a": stored[0:22:2],
    }
    assert set(tensors) == set(expected)
    for name, values in expected.items():
        info, read = tensors[name]
        assert info.stored_name == "fused" and info.shape == values.shape, name  # type: ignore[attr-defined]
        np.testing.assert_array_equal(read, values, err_msg=name)
    # onnxruntime agrees on what each consumer sees: x = identity gives the operand itself.
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = dict(
        zip(
            [o.name for o in session.get_outputs()],
            session.run(None, {"x": np.eye(12, 3, dtype=np.float32)}),
            strict=True,
        )
    )
    np.testing.assert_allclose(outputs["ys"], expected["use_slice.weight_a"][:, :3], rtol=1e-6)


def test_reshape_flatten_squeeze_unsqueeze_forms_across_opsets(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["flat", "shape"], ["w1"], name="reshape"),  # 0 copies, -1 infers
            helper.make_node("MatMul", ["x", "w1"], ["y1"], name="mm1"),
            helper.make_node("Unsqueeze", ["w2d"], ["w3"], axes=[0], name="unsqueeze"),  # opset 11: attribute
            helper.make_node("Squeeze", ["w3"], ["w2"], name="squeeze"),  # no axes: every size-1 axis
            helper.make_node("MatMul", ["x", "w2"], ["y2"], name="mm2"),
        ],
        "forms",
        [_value("x", 2, 16)],
        [_value("y1", 2, 12), _value("y2", 2, 12)],
        [_weight("flat", 16, 12, 1), _ints("shape", [0, -1]), _weight("w2d", 16, 12)],
    )
    tensors = _read(_save(tmp_path, graph, opset=11))
    assert tensors["flat"][0].shape == (16, 12)  # type: ignore[attr-defined]
    assert tensors["w2d"][0].shape == (16, 12)  # type: ignore[attr-defined]
    assert tensors["w2d"][0].encoding == "unsqueezed; squeezed"  # type: ignore[attr-defined]


def test_a_chain_that_does_not_fit_skips_that_weight_and_a_runtime_shape_is_not_followed(
    tmp_path: Path,
) -> None:
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["w", "bad_shape"], ["w_r"], name="reshape"),
            helper.make_node("MatMul", ["x", "w_r"], ["y"], name="mm"),
            helper.make_node("Reshape", ["v", "runtime_shape"], ["v_r"], name="reshape_runtime"),
            helper.make_node("MatMul", ["x", "v_r"], ["z"], name="mm_runtime"),
        ],
        "hostile",
        [_value("x", 2, 16), helper.make_tensor_value_info("runtime_shape", TensorProto.INT64, [2])],
        [_value("y", 2, 12), _value("z", 2, 12)],
        [_weight("w", 16, 12), _ints("bad_shape", [7, 5]), _weight("v", 16, 12)],
    )
    path = _save(tmp_path, graph)
    result = run_cli(path, "--format", "json")
    assert result.exit_code == 0, result.stderr
    layers = {layer["name"]: layer for layer in json.loads(result.stdout)["reports"][0]["layers"]}
    assert layers["w"]["status"] == "skipped" and "Reshape does not fit" in layers["w"]["reason"]
    # A shape known only at run time: the stored weight is listed as it is stored.
    assert layers["v"]["status"] == "analyzed" and layers["v"]["shape"] == [16, 12]


def test_a_function_that_calls_itself_is_expanded_a_bounded_number_of_times(tmp_path: Path) -> None:
    body = [helper.make_node("Loopy", ["x", "w"], ["y"], domain="test.local", name="again")]
    function = helper.make_function(
        "test.local", "Loopy", ["x", "w"], ["y"], body, [helper.make_opsetid("", 18)]
    )
    graph = helper.make_graph(
        [helper.make_node("Loopy", ["x", "w"], ["y"], domain="test.local", name="call")],
        "recursive",
        [_value("x", 2, 16)],
        [_value("y", 2, 16)],
        [_weight("w", 16, 16)],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("test.local", 1)],
        functions=[function],
    )
    path = tmp_path / "recursive.onnx"
    onnx.save(model, str(path))
    result = run_cli(path, "--format", "json")
    assert result.exit_code == 0, result.stderr
    (report,) = json.loads(result.stdout)["reports"]
    assert any("nested deeper" in warning for warning in report["warnings"])


def test_quantised_operators_with_lying_attributes_or_no_scale_are_skipped(tmp_path: Path) -> None:
    packed = numpy_helper.from_array(RNG.integers(0, 255, size=(16, 1, 16)).astype(np.uint8), "q4")
    scales = numpy_helper.from_array(np.ones(16, np.float32), "q4_scales")
    weight = numpy_helper.from_array(RNG.integers(0, 255, size=(16, 12)).astype(np.uint8), "w_int")
    graph = helper.make_graph(
        [
            # K says 64 rows, but one block of 32 values per column is stored.
            helper.make_node(
                "MatMulNBits",
                ["a", "q4", "q4_scales"],
                ["b"],
                domain="com.microsoft",
                K=64,
                N=16,
                bits=4,
                block_size=32,
                name="nbits",
            ),
            # A MatMulInteger whose output is never rescaled by a constant: no scale to be found.
            helper.make_node("MatMulInteger", ["a_int", "w_int"], ["c"], name="mmint"),
            helper.make_node("MatMul", ["a", "plain"], ["d"], name="plain_mm"),  # so the file has a layer
        ],
        "quantised",
        [_value("a", 2, 64), helper.make_tensor_value_info("a_int", TensorProto.UINT8, [2, 16])],
        [
            _value("b", 2, 16),
            helper.make_tensor_value_info("c", TensorProto.INT32, [2, 12]),
            _value("d", 2, 16),
        ],
        [packed, scales, weight, _weight("plain", 64, 16)],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)]
    )
    path = tmp_path / "quantised.onnx"
    onnx.save(model, str(path))
    result = run_cli(path, "--format", "json")
    assert result.exit_code == 0, result.stderr
    layers = {layer["name"]: layer for layer in json.loads(result.stdout)["reports"][0]["layers"]}
    assert layers["q4"]["status"] == "skipped" and "B has shape" in layers["q4"]["reason"]
    assert layers["w_int"]["status"] == "skipped" and "scale" in layers["w_int"]["reason"]
    with open_model(path) as reader:
        assert {ref.info.name: ref.info.dtype for ref in reader.tensors()} == {
            "q4": DType.QUANTIZED,
            "w_int": DType.QUANTIZED,
            "plain": DType.F32,
        }


def test_an_embedding_lookup_with_runtime_ids_stays_an_embedding(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["e"], axis=0, name="embed")],
        "lookup",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [3])],
        [_value("e", 3, 16)],
        [_weight("table", 40, 16)],
    )
    tensors = _read(_save(tmp_path, graph))
    assert tensors["table"][0].hint.kind.value == "embedding"  # type: ignore[attr-defined]
    assert tensors["table"][0].shape == (40, 16)  # type: ignore[attr-defined]


@pytest.mark.parametrize("opset", [9, 13])
def test_slice_bounds_as_attributes_and_as_inputs(tmp_path: Path, opset: int) -> None:
    if opset == 9:
        nodes = [helper.make_node("Slice", ["w"], ["s"], starts=[2], ends=[10], axes=[1], name="slice")]
        extra: list[onnx.TensorProto] = []
    else:
        nodes = [helper.make_node("Slice", ["w", "b0", "b1", "ax"], ["s"], name="slice")]
        extra = [_ints("b0", [2]), _ints("b1", [10]), _ints("ax", [1])]
    graph = helper.make_graph(
        [*nodes, helper.make_node("MatMul", ["x", "s"], ["y"], name="mm")],
        "slices",
        [_value("x", 2, 16)],
        [_value("y", 2, 8)],
        [_weight("w", 16, 12), *extra],
    )
    tensors = _read(_save(tmp_path, graph, opset=opset))
    info, values = tensors["mm.weight"]
    assert info.shape == (16, 8)  # type: ignore[attr-defined]
    assert values is not None and values.shape == (16, 8)
