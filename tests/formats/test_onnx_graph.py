"""How the ONNX reader finds weights in graphs no exporter in our fixtures writes: subgraph-local
initializers (Loop, Scan, If with Constant nodes), shared initializers, blocked int4 and com.microsoft
dequantisation, Cast chains, and the operators whose constants are not weights.

Models are built with onnx.helper in tmp_path; expected values come from numpy_helper or onnxruntime.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from formats import DType, Layout, WeightKind
from formats.onnx_reader import open_onnx

RNG = np.random.default_rng(7)


def _weight(name: str, *shape: int, dtype: type = np.float32) -> onnx.TensorProto:
    return numpy_helper.from_array(RNG.standard_normal(shape).astype(dtype), name)


def _save(tmp_path: Path, graph: onnx.GraphProto, opset: int = 21, name: str = "model.onnx") -> Path:
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("com.microsoft", 1)]
    )
    model.ir_version = 10
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def _read_all(path: Path) -> dict[str, tuple[object, np.ndarray | None]]:
    with open_onnx(path) as reader:
        return {
            ref.info.name: (ref.info, None if ref.info.skip_reason else ref.read())
            for ref in reader.tensors()
        }


def _input(name: str, *shape: int | str, elem: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, list(shape))


def test_loop_body_initializers_and_outer_weights(tmp_path: Path) -> None:
    inner_w = _weight("body.w", 16, 16)
    outer_w = _weight("outer.w", 16, 16)
    body = helper.make_graph(
        [
            helper.make_node("MatMul", ["state_in", "body.w"], ["t"], name="body_matmul"),
            helper.make_node("MatMul", ["t", "outer.w"], ["state_out"], name="body_matmul_outer"),
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
        ],
        "body",
        [
            _input("i", elem=TensorProto.INT64),
            _input("cond_in", elem=TensorProto.BOOL),
            _input("state_in", 2, 16),
        ],
        [_input("cond_out", elem=TensorProto.BOOL), _input("state_out", 2, 16)],
        [inner_w],
    )
    graph = helper.make_graph(
        [helper.make_node("Loop", ["trip", "", "x"], ["y"], name="loop", body=body)],
        "main",
        [_input("x", 2, 16), _input("trip", elem=TensorProto.INT64)],
        [_input("y", 2, 16)],
        [outer_w],
    )
    tensors = _read_all(_save(tmp_path, graph))
    assert set(tensors) == {"body.w", "outer.w"}
    info, values = tensors["body.w"]
    assert info.hint.layer_name == "body_matmul" and info.hint.layout is Layout.IN_OUT  # type: ignore[attr-defined]
    assert "in main/loop.body" in info.origin  # type: ignore[attr-defined]
    assert np.array_equal(values, numpy_helper.to_array(inner_w))
    assert tensors["outer.w"][0].hint.layer_name == "body_matmul_outer"  # type: ignore[attr-defined]


def test_if_branches_with_constant_nodes_and_generated_names(tmp_path: Path) -> None:
    def branch(tag: str, number: int) -> onnx.GraphProto:
        value = _weight("", 12, 20)
        return helper.make_graph(
            [
                helper.make_node(
                    "Constant", [], [f"Constant_{number}"], value=value, name=f"Constant_{number}"
                ),
                helper.make_node(
                    "Gemm", ["x", f"Constant_{number}"], [f"y_{tag}"], transB=1, name=f"{tag}_gemm"
                ),
            ],
            tag,
            [],
            [_input(f"y_{tag}", 2, 12)],
        )

    graph = helper.make_graph(
        [
            helper.make_node(
                "If", ["c"], ["y"], then_branch=branch("then", 3), else_branch=branch("else", 4), name="if"
            )
        ],
        "main",
        [_input("x", 2, 20), _input("c", elem=TensorProto.BOOL)],
        [_input("y", 2, 12)],
    )
    tensors = _read_all(_save(tmp_path, graph))
    assert set(tensors) == {"then_gemm.weight", "else_gemm.weight"}
    info = tensors["then_gemm.weight"][0]
    assert info.stored_name == "Constant_3"  # type: ignore[attr-defined]
    assert info.hint.layout is Layout.OUT_IN and info.hint.kind is WeightKind.DENSE  # type: ignore[attr-defined]


def test_scan_body_weights_are_found(tmp_path: Path) -> None:
    w = _weight("scan.w", 8, 10)
    body = helper.make_graph(
        [
            helper.make_node("MatMul", ["xi", "scan.w"], ["yi"], name="scan_matmul"),
            helper.make_node("Identity", ["s"], ["s_out"]),
        ],
        "body",
        [_input("s", 1), _input("xi", 8)],
        [_input("s_out", 1), _input("yi", 10)],
        [w],
    )
    graph = helper.make_graph(
        [helper.make_node("Scan", ["s0", "x"], ["s1", "y"], body=body, num_scan_inputs=1, name="scan")],
        "main",
        [_input("s0", 1), _input("x", 3, 8)],
        [_input("s1", 1), _input("y", 3, 10)],
    )
    tensors = _read_all(_save(tmp_path, graph))
    assert list(tensors) == ["scan.w"]
    assert tensors["scan.w"][0].hint.op == "MatMul"  # type: ignore[attr-defined]


def test_shared_initializer_is_yielded_once_with_the_other_consumer_as_alias(tmp_path: Path) -> None:
    shared = _weight("onnx::MatMul_7", 16, 16)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "onnx::MatMul_7"], ["h"], name="/enc/MatMul"),
            helper.make_node("MatMul", ["h", "onnx::MatMul_7"], ["y"], name="/dec/MatMul"),
        ],
        "main",
        [_input("x", 2, 16)],
        [_input("y", 2, 16)],
        [shared],
    )
    tensors = _read_all(_save(tmp_path, graph))
    assert list(tensors) == ["/enc/MatMul.weight"]
    info = tensors["/enc/MatMul.weight"][0]
    assert info.aliases == ("/dec/MatMul.weight",)  # type: ignore[attr-defined]
    assert info.stored_name == "onnx::MatMul_7"  # type: ignore[attr-defined]


def test_blocked_int4_and_com_microsoft_dequantize_match_onnxruntime(tmp_path: Path) -> None:
    quantized = RNG.integers(-8, 8, size=(16, 64)).astype(np.int8)
    scale = (RNG.random((16, 2)) / 10 + 0.01).astype(np.float32)
    zero = RNG.integers(-3, 3, size=(16, 2)).astype(np.int8)
    q = helper.make_tensor("w_q", TensorProto.INT4, [16, 64], quantized.flatten().tolist())
    s = numpy_helper.from_array(scale, "w_scale")
    z = helper.make_tensor("w_zero", TensorProto.INT4, [16, 2], zero.flatten().tolist())
    u8 = numpy_helper.from_array(RNG.integers(0, 255, size=(64, 16)).astype(np.uint8), "v_q")
    u8_scale = numpy_helper.from_array(np.float32(0.02), "v_scale")
    u8_zero = numpy_helper.from_array(np.uint8(131), "v_zero")
    nodes = [
        helper.make_node(
            "DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w"], axis=1, block_size=32, name="dq_w"
        ),
        helper.make_node(
            "MatMul",
            ["x", "w"],
            ["h"],
            name="proj",
        ),
        helper.make_node(
            "DequantizeLinear", ["v_q", "v_scale", "v_zero"], ["v"], domain="com.microsoft", name="dq_v"
        ),
        helper.make_node("MatMul", ["h", "v"], ["y"], name="out"),
    ]
    outputs = [_input("y", 2, 16), _input("w", 16, 64), _input("v", 64, 16)]
    graph = helper.make_graph(nodes, "main", [_input("x", 2, 16)], outputs, [q, s, z, u8, u8_scale, u8_zero])
    path = _save(tmp_path, graph)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    _, expected_w, expected_v = session.run(None, {"x": np.zeros((2, 16), np.float32)})
    tensors = _read_all(path)
    info, values = tensors["w_q"]
    assert info.dtype is DType.QUANTIZED  # type: ignore[attr-defined]
    assert info.encoding == "int4 blocked (block_size 32, axis 1) dequantized by DequantizeLinear"  # type: ignore[attr-defined]
    assert np.array_equal(values, expected_w)
    info, values = tensors["v_q"]
    assert info.encoding == "uint8 per-tensor dequantized by com.microsoft.DequantizeLinear"  # type: ignore[attr-defined]
    assert np.array_equal(values, expected_v)
    assert set(tensors) == {"w_q", "v_q"}  # scales and zero points are not weights


def test_cast_and_transpose_chains_present_what_the_consumer_sees(tmp_path: Path) -> None:
    stored = _weight("w16", 32, 12, dtype=np.float16)
    bf = helper.make_tensor(
        "wbf", TensorProto.BFLOAT16, [12, 20], RNG.standard_normal(240).astype(np.float32).tolist()
    )
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["w16"], ["w32"], to=TensorProto.FLOAT),
            helper.make_node("Transpose", ["w32"], ["wt"]),  # default perm: reversed axes
            helper.make_node("Gemm", ["x", "wt"], ["h"], transB=0, name="fc"),
            helper.make_node("Cast", ["wbf"], ["wbf32"], to=TensorProto.FLOAT),
            helper.make_node("MatMul", ["wbf32", "hT"], ["y"], name="left"),
        ],
        "main",
        [_input("x", 2, 12), _input("hT", 20, 2)],
        [_input("h", 2, 32), _input("y", 12, 2)],
        [stored, bf],
    )
    tensors = _read_all(_save(tmp_path, graph))
    info, values = tensors["w16"]
    assert info.shape == (12, 32) and info.dtype is DType.F16  # type: ignore[attr-defined]
    assert info.encoding == "cast to float32; transposed reversed"  # type: ignore[attr-defined]
    assert info.hint.layout is Layout.IN_OUT  # Gemm transB=0  # type: ignore[attr-defined]
    assert np.array_equal(values, numpy_helper.to_array(stored).astype(np.float32).T)
    info, values = tensors["wbf"]
    assert info.hint.layout is Layout.OUT_IN  # a constant A operand of MatMul  # type: ignore[attr-defined]
    assert np.array_equal(values, numpy_helper.to_array(bf).astype(np.float32))


def test_constants_that_are_not_weights_are_not_yielded(tmp_path: Path) -> None:
    table = numpy_helper.from_array(RNG.standard_normal((30, 8)).astype(np.float32), "pos_table")
    graph = helper.make_graph(
        [
            helper.make_node(
                "Constant", [], ["shape"], value=numpy_helper.from_array(np.array([2, 8], np.int64))
            ),
            helper.make_node("Reshape", ["x", "shape"], ["r"]),
            helper.make_node("Constant", [], ["eps"], value_float=1e-5),
            helper.make_node("Add", ["r", "eps"], ["a"]),
            helper.make_node(
                "Constant", [], ["mask"], value=numpy_helper.from_array(np.ones((2, 8), np.float32))
            ),
            helper.make_node("Mul", ["a", "mask"], ["m"]),
            helper.make_node("Gather", ["pos_table", "idx"], ["p"], name="positions"),
            helper.make_node("Add", ["m", "learned"], ["y"], name="add_learned"),
        ],
        "main",
        [_input("x", 16), _input("idx", 2, elem=TensorProto.INT64)],
        [_input("y", 2, 8), _input("p", 2, 8)],
        [
            table,
            numpy_helper.from_array(RNG.standard_normal((2, 8)).astype(np.float32), "learned"),
            numpy_helper.from_array(np.float32(3.0), "unused_scalar"),
            numpy_helper.from_array(RNG.standard_normal(5).astype(np.float32), "unused_vector"),
        ],
    )
    tensors = _read_all(_save(tmp_path, graph))
    assert list(tensors) == ["pos_table", "learned", "unused_vector"]
    assert tensors["pos_table"][0].hint.kind is WeightKind.EMBEDDING  # type: ignore[attr-defined]
    assert tensors["learned"][0].hint.kind is None and tensors["learned"][0].hint.op == "Add"  # type: ignore[attr-defined]
    assert tensors["unused_vector"][0].hint.op is None  # type: ignore[attr-defined]


def test_recurrent_initial_states_are_not_weights_and_directions_are_split(tmp_path: Path) -> None:
    hidden, size = 12, 10
    w = _weight("W", 2, 4 * hidden, size)
    r = _weight("R", 2, 4 * hidden, hidden)
    b = _weight("B", 2, 8 * hidden)
    h0 = numpy_helper.from_array(np.zeros((2, 1, hidden), np.float32), "h0")
    graph = helper.make_graph(
        [
            helper.make_node(
                "LSTM",
                ["x", "W", "R", "B", "", "h0"],
                ["y"],
                hidden_size=hidden,
                direction="bidirectional",
                name="lstm",
            )
        ],
        "main",
        [_input("x", 5, 1, size)],
        [_input("y", 5, 2, 1, hidden)],
        [w, r, b, h0],
    )
    tensors = _read_all(_save(tmp_path, graph))
    assert set(tensors) == {"W.forward", "W.reverse", "R.forward", "R.reverse", "B"}
    assert np.array_equal(tensors["W.reverse"][1], numpy_helper.to_array(w)[1])
    assert tensors["R.forward"][0].shape == (4 * hidden, hidden)  # type: ignore[attr-defined]
    assert tensors["B"][0].skip_reason is not None  # type: ignore[attr-defined]


def test_depthwise_conv_transpose_and_sparse_are_listed_with_reasons_and_matmulnbits_read(
    tmp_path: Path,
) -> None:
    dw = _weight("up.weight", 8, 1, 3, 3)
    sparse_values = numpy_helper.from_array(np.ones(4, np.float32), "sparse.w")
    sparse = helper.make_sparse_tensor(
        sparse_values, numpy_helper.from_array(np.array([0, 5, 9, 13], np.int64), ""), [8, 8]
    )
    nbits = numpy_helper.from_array(RNG.integers(0, 255, size=(16, 1, 16)).astype(np.uint8), "q4")
    nbits_scale = numpy_helper.from_array(np.ones(16, np.float32), "q4_scale")
    graph = helper.make_graph(
        [
            helper.make_node("ConvTranspose", ["x", "up.weight"], ["y"], group=8, name="up"),
            helper.make_node("MatMul", ["z", "sparse.w"], ["zz"], name="sparse_mm"),
            helper.make_node(
                "MatMulNBits",
                ["a", "q4", "q4_scale"],
                ["b"],
                domain="com.microsoft",
                K=32,
                N=16,
                bits=4,
                block_size=32,
                name="mm4",
            ),
        ],
        "main",
        [_input("x", 1, 8, 5, 5), _input("z", 2, 8), _input("a", 2, 32)],
        [_input("y", 1, 8, 7, 7), _input("zz", 2, 8), _input("b", 2, 16)],
        [dw, nbits, nbits_scale],
        sparse_initializer=[sparse],
    )
    tensors = _read_all(_save(tmp_path, graph))
    assert tensors["up.weight"][0].hint.kind is WeightKind.DEPTHWISE_CONV  # type: ignore[attr-defined]
    assert "sparse" in (tensors["sparse.w"][0].skip_reason or "")  # type: ignore[attr-defined]
    assert tensors["sparse.w"][0].shape == (8, 8)  # type: ignore[attr-defined]
    # MatMulNBits is dequantised to the (K, N) weight the unquantised MatMul held.
    q4 = tensors["q4"][0]
    assert (q4.skip_reason, q4.shape, q4.encoding) == (None, (32, 16), "matmulnbits-int4-b32")  # type: ignore[attr-defined]
    with open_onnx(tmp_path / "model.onnx") as reader:
        ref = next(ref for ref in reader.tensors() if ref.info.name == "q4")
        assert ref.read().shape == (32, 16)


def test_a_weight_with_mismatched_quantisation_parameters_is_skipped_not_fatal(tmp_path: Path) -> None:
    q = numpy_helper.from_array(RNG.integers(0, 255, size=(16, 12)).astype(np.uint8), "q")
    scale = numpy_helper.from_array(np.ones(5, np.float32), "s")  # 5 scales for an axis of 16
    graph = helper.make_graph(
        [
            helper.make_node("DequantizeLinear", ["q", "s"], ["w"], axis=0),
            helper.make_node("MatMul", ["x", "w"], ["y"], name="mm"),
        ],
        "main",
        [_input("x", 2, 16)],
        [_input("y", 2, 12)],
        [q, scale],
    )
    tensors = _read_all(_save(tmp_path, graph))
    assert "scale shape [5] does not match axis 0" in (tensors["q"][0].skip_reason or "")  # type: ignore[attr-defined]


def test_bfloat16_and_float64_raw_initializers(tmp_path: Path) -> None:
    import ml_dtypes

    values = RNG.standard_normal((12, 16)).astype(np.float32)
    bf16 = TensorProto(name="w_bf16", data_type=TensorProto.BFLOAT16, dims=[12, 16])
    bf16.raw_data = values.astype(ml_dtypes.bfloat16).tobytes()
    double = numpy_helper.from_array(RNG.standard_normal((16, 10)), "w_f64")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w_bf16"], ["h"], name="a"),
            helper.make_node("MatMul", ["h", "w_f64"], ["y"], name="b"),
        ],
        "main",
        [_input("x", 2, 12, elem=TensorProto.BFLOAT16)],
        [_input("y", 2, 10, elem=TensorProto.DOUBLE)],
        [bf16, double],
    )
    tensors = _read_all(_save(tmp_path, graph))
    info, read = tensors["w_bf16"]
    assert info.dtype is DType.BF16 and read.dtype == np.float32  # type: ignore[attr-defined]
    assert np.array_equal(read, values.astype(ml_dtypes.bfloat16).astype(np.float32))
    info, read = tensors["w_f64"]
    assert info.dtype is DType.F64 and read.dtype == np.float64  # type: ignore[attr-defined]
    assert np.array_equal(read, numpy_helper.to_array(double))
