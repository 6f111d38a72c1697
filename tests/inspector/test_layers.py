"""From tensor metadata to layer plans and matrices: kinds, orientation, conv slicing and skip reasons."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from formats.skip_reasons import not_a_matrix
from formats.types import DType, FormatHint, Layout, Role, TensorInfo, WeightKind
from inspector.layers import HintedKind, SliceAxes, _kind_from_hint, guess_role, layer_matrices, plan_layer
from inspector.options import AnalysisOptions
from inspector.records import LayerKind

OPTIONS = AnalysisOptions()


def _info(name: str, shape: tuple[int, ...], dtype: DType = DType.F32, **hint: object) -> TensorInfo:
    return TensorInfo(name=name, shape=shape, dtype=dtype, nbytes=0, hint=FormatHint(**hint))  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", [WeightKind.DENSE, WeightKind.EMBEDDING, WeightKind.RECURRENT])
def test_a_kind_stated_by_the_format_is_analysed(kind: WeightKind) -> None:
    plan = plan_layer(_info("onnx::MatMul_7", (64, 32), kind=kind), OPTIONS)
    assert plan.skip_reason is None
    assert (plan.N, plan.M) == (64, 32)
    assert (
        plan.kind.value == {"dense": "dense", "embedding": "embedding", "recurrent": "recurrent"}[kind.value]
    )


def test_dense_matrices_are_oriented_tall() -> None:
    plan = plan_layer(_info("fc.weight", (16, 48)), OPTIONS)
    values = np.arange(16 * 48, dtype=np.float32).reshape(16, 48)
    (matrix,) = layer_matrices(plan, values)
    assert matrix.shape == (48, 16)
    assert (plan.N, plan.M, plan.num_evals) == (48, 16, 16)


@pytest.mark.parametrize("layout", [Layout.OUT_IN, Layout.IN_OUT])
def test_conv_kernels_are_cut_into_out_in_slices(layout: Layout) -> None:
    rng = np.random.default_rng(0)
    torch_kernel = rng.standard_normal((32, 64, 2, 2)).astype(np.float32)  # (out, in, kh, kw), even size
    stored = (
        torch_kernel if layout is Layout.OUT_IN else torch_kernel.transpose(2, 3, 1, 0)
    )  # Keras (kh,kw,in,out)
    plan = plan_layer(_info("conv.weight", stored.shape, kind=WeightKind.CONV, layout=layout), OPTIONS)
    assert plan.kind is LayerKind.CONV2D
    assert (plan.N, plan.M, plan.num_slices, plan.scale) == (
        64,
        32,
        4,
        0.5,
    )  # never swapped (weightwatcher bug)
    matrices = layer_matrices(plan, stored)
    expected = [torch_kernel[:, :, i, j].T for i in range(2) for j in range(2)]
    assert all(m.shape == (64, 32) for m in matrices)
    got = sorted(np.linalg.svd(m, compute_uv=False)[0] for m in matrices)
    want = sorted(np.linalg.svd(m, compute_uv=False)[0] for m in expected)
    assert np.allclose(got, want, rtol=1e-6)


def test_conv_layout_guess_without_a_hint_follows_weightwatcher() -> None:
    assert plan_layer(_info("c.weight", (64, 32, 3, 3)), OPTIONS).slice_axes == "trailing"
    assert plan_layer(_info("c.kernel", (3, 3, 32, 64)), OPTIONS).slice_axes == "leading"


def test_per_slice_mode_scales_by_half_the_kernel_area() -> None:
    plan = plan_layer(_info("c.weight", (64, 32, 3, 3)), AnalysisOptions(pool_conv=False))
    assert plan.scale == pytest.approx(4.5)


def test_conv1d_kernels_are_sliced_per_position() -> None:
    plan = plan_layer(_info("conv1.weight", (24, 16, 5)), OPTIONS)
    assert plan.kind is LayerKind.CONV1D
    assert (plan.N, plan.M, plan.num_slices) == (24, 16, 5)
    values = np.ones((24, 16, 5), dtype=np.float32)
    assert len(layer_matrices(plan, values)) == 5


def test_stacked_experts_are_one_record_each_without_rescaling() -> None:
    plan = plan_layer(_info("model.layers.0.mlp.experts.down_proj", (8, 64, 32)), OPTIONS)
    assert plan.kind is LayerKind.DENSE
    assert (plan.num_slices, plan.scale, plan.slice_axes) == (8, 1.0, "stack")
    assert plan.slice_axes.per_slice(pool_conv=True)


@pytest.mark.parametrize(
    ("info", "fragment"),
    [
        (_info("fc.bias", (64,)), "1-D tensor"),
        (_info("ids", (64, 64), DType.I64), "I64 values are not floating point"),
        (_info("dw", (32, 1, 3, 3), kind=WeightKind.DEPTHWISE_CONV, groups=32), "depthwise"),
        (_info("ln.weight", (64, 64), kind=WeightKind.NORM), "norm parameters"),
        (_info("tiny.weight", (3, 100)), "3 eigenvalues, fewer than --min-evals 10"),
        (_info("empty.weight", (0, 100)), "empty tensor"),
    ],
)
def test_skips_say_why(info: TensorInfo, fragment: str) -> None:
    plan = plan_layer(info, OPTIONS)
    assert plan.skip_reason is not None and fragment in plan.skip_reason


def test_a_reader_skip_reason_is_kept() -> None:
    info = TensorInfo(
        name="w", shape=(64, 64), dtype=DType.F8_E4M3, nbytes=0, skip_reason="missing 'w_scale_inv'"
    )
    assert plan_layer(info, OPTIONS).skip_reason == "missing 'w_scale_inv'"


def test_name_filters_and_eigenvalue_bounds() -> None:
    info = _info("encoder.layer.0.attention.self.query.weight", (384, 384))
    assert plan_layer(info, AnalysisOptions(layer_globs=("*.query.*",))).skip_reason is None
    assert "not selected" in (plan_layer(info, AnalysisOptions(layer_globs=("*.key.*",))).skip_reason or "")
    assert "excluded by --exclude" in (
        plan_layer(info, AnalysisOptions(exclude_globs=("encoder.*",))).skip_reason or ""
    )
    assert "more than --max-evals 100" in (plan_layer(info, AnalysisOptions(max_evals=100)).skip_reason or "")


def test_large_embeddings_are_analysed_not_skipped() -> None:
    plan = plan_layer(_info("model.embed_tokens.weight", (128_256, 64)), OPTIONS)
    assert plan.skip_reason is None and plan.kind is LayerKind.EMBEDDING and plan.N == 128_256


@pytest.mark.parametrize(
    ("name", "role"),
    [
        ("encoder.layer.0.attention.output.dense.weight", Role.ATTENTION),
        ("encoder.layer.0.output.dense.weight", Role.MLP),
        ("model.layers.3.mlp.down_proj.weight", Role.MLP),
        ("transformer.h.0.attn.c_attn.weight", Role.ATTENTION),
        ("lm_head.weight", Role.OUTPUT),
        ("conv1.weight", None),
    ],
)
def test_roles_from_conventional_names(name: str, role: Role | None) -> None:
    assert guess_role(name, LayerKind.DENSE) is role


def test_slice_axes_are_an_enum_and_say_which_are_spatial() -> None:
    plans = {
        axes: plan_layer(_info(name, shape), OPTIONS).slice_axes
        for axes, name, shape in (
            (SliceAxes.NONE, "fc.weight", (64, 32)),
            (SliceAxes.TRAILING, "c.weight", (64, 32, 3, 3)),
            (SliceAxes.LEADING, "c.kernel", (3, 3, 32, 64)),
            (SliceAxes.STACK, "mlp.experts.w", (4, 64, 32)),
        )
    }
    assert all(type(got) is SliceAxes and got is axes for axes, got in plans.items())
    assert {axes for axes in SliceAxes if axes.spatial} == {SliceAxes.TRAILING, SliceAxes.LEADING}


@pytest.mark.parametrize(
    ("hint", "shape", "kind", "reason"),
    [
        ({"kind": WeightKind.DENSE}, (64, 32), LayerKind.DENSE, None),
        ({"kind": WeightKind.EXPERTS}, (4, 64, 32), LayerKind.DENSE, None),
        ({"kind": WeightKind.CONV}, (8, 4, 3), LayerKind.CONV1D, None),
        ({"kind": WeightKind.CONV}, (8, 4, 3, 3, 3), LayerKind.OTHER, None),
        ({"kind": WeightKind.CONV}, (8, 4), None, "2-D convolution weight, not a kernel"),
        ({"kind": WeightKind.BIAS}, (64,), None, "bias parameters, not a weight matrix"),
        ({"kind": WeightKind.OTHER, "op": "PRelu"}, (64,), None, "PRelu weight, not a layer matrix"),
        ({}, (64, 32), None, None),
    ],
)
def test_the_formats_kind_gives_a_layer_kind_or_why_it_is_no_matrix(
    hint: dict[str, object], shape: tuple[int, ...], kind: LayerKind | None, reason: str | None
) -> None:
    info = TensorInfo(name="t", shape=shape, dtype=DType.F32, nbytes=0, hint=FormatHint(**hint))  # type: ignore[arg-type]
    assert _kind_from_hint(info) == HintedKind(kind, reason)


def test_one_wording_for_the_reader_and_the_report() -> None:
    hint = FormatHint(kind=WeightKind.DEPTHWISE_CONV, groups=32)
    assert plan_layer(
        _info("dw", (32, 1, 3, 3), kind=WeightKind.DEPTHWISE_CONV, groups=32), OPTIONS
    ).skip_reason == (not_a_matrix(hint, (32, 1, 3, 3)))


@pytest.mark.parametrize(
    ("shape", "hint"), [((), {}), ((64,), {}), ((64, 64), {"kind": WeightKind.BIAS}), ((8, 64, 64), {})]
)
def test_a_readers_own_reason_wins_over_what_the_shape_or_kind_says(
    shape: tuple[int, ...], hint: dict[str, object]
) -> None:
    info = TensorInfo(
        name="optimizer.state.0.exp_avg",
        shape=shape,
        dtype=DType.F32,
        nbytes=0,
        hint=FormatHint(**hint),  # type: ignore[arg-type]
        skip_reason="optimizer state (not a weight)",
    )
    plan = plan_layer(info, OPTIONS)
    assert plan.skip_reason == "optimizer state (not a weight)"
    assert plan.kind is plan_layer(dataclasses.replace(info, skip_reason=None), OPTIONS).kind
