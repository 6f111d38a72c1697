"""The structure of LLM checkpoints: fused projections split as transformers splits them, heads, experts
one record each with a summary per projection, tied embeddings analysed once, and the conv-kernel rule.

The fixtures (fixtures/llm/, fixtures/quantized/moe_*) were saved by transformers; the parts wwinspect
cuts out of a fused weight are compared with what the library's own attention code computes from it
(its projection applied to an identity input, then its own split), so the interleave of each
architecture is checked against the architecture, not against our reading of it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from formats import FormatHint, Layout, TensorInfo, WeightKind, open_model
from formats.types import DType
from inspector.fused import split_tensor
from inspector.layers import SliceAxes, layer_matrices, part_values, plan_layer
from inspector.options import AnalysisOptions
from inspector.records import LayerKind
from tests.conftest import FIXTURES, run_cli

LLM = FIXTURES / "llm"


def _report(path: Path, *args: str) -> dict[str, Any]:
    result = run_cli(path, "--format", "json", *args)
    assert result.exit_code == 0, (result.exit_code, result.stderr)
    (report,) = json.loads(result.stdout)["reports"]
    return report  # type: ignore[no-any-return]


def _parts(name: str, tensor: str, **flags: bool) -> tuple[dict[str, np.ndarray], Any]:
    """The parts `--split-fused` / `--per-head` cut from `tensor` of fixture `name`, and the reader's
    structure."""
    with open_model(LLM / name / "model.safetensors") as reader:
        ref = next(ref for ref in reader.tensors() if ref.info.name == tensor)
        split = split_tensor(
            ref.info,
            reader.structure,
            split_fused=flags.get("split", True),
            per_head=flags.get("heads", False),
        )
        assert split.note is None, split.note
        values = ref.read()
        return {part.suffix: part_values(values, part) for part in split.parts}, reader.structure


def _model(name: str) -> Any:
    transformers = pytest.importorskip("transformers")
    return transformers.AutoModelForCausalLM.from_pretrained(LLM / name, dtype=torch.float32).eval()


def _projected(linear: Any, width: int) -> torch.Tensor:
    """The module applied to an identity input: row i is what input unit i contributes (x @ W)."""
    with torch.no_grad():
        return linear(torch.eye(width)[None])  # (1, in, out)


def test_gpt2_c_attn_splits_as_gpt2_attention_does() -> None:
    parts, _ = _parts("gpt2", "transformer.h.0.attn.c_attn.weight")
    attention = _model("gpt2").transformer.h[0].attn
    fused = _projected(attention.c_attn, 64) - attention.c_attn.bias.detach()
    q, k, v = fused.split(attention.split_size, dim=2)
    for label, theirs in zip((".q", ".k", ".v"), (q, k, v), strict=True):
        np.testing.assert_allclose(parts[label], theirs[0].numpy(), rtol=1e-5, atol=1e-6)  # (in, out)


@pytest.mark.parametrize("name", ["falcon_gqa", "falcon_mq"])
def test_falcon_query_key_value_splits_as_falcon_attention_does(name: str) -> None:
    parts, structure = _parts(name, "transformer.h.0.self_attention.query_key_value.weight")
    attention = _model(name).transformer.h[0].self_attention
    query, key, value = attention._split_heads(_projected(attention.query_key_value, 64))
    kv = structure.num_kv_heads
    per_group = structure.num_heads // kv
    if attention.new_decoder_architecture:  # keys and values come broadcast to every query head
        key, value = (x.view(1, 64, kv, per_group, 16)[:, :, :, 0] for x in (key, value))
    for label, theirs in zip((".q", ".k", ".v"), (query, key, value), strict=True):
        # Ours are (out, in) rows of the weight; theirs (in, heads, head_dim).
        np.testing.assert_array_equal(parts[label].T, theirs[0].reshape(64, -1).numpy())


def test_bloom_query_key_value_splits_head_by_head_as_bloom_does() -> None:
    parts, _ = _parts("bloom", "transformer.h.0.self_attention.query_key_value.weight")
    attention = _model("bloom").transformer.h[0].self_attention
    fused = _projected(attention.query_key_value, 64) - attention.query_key_value.bias.detach()
    query, key, value = attention._reshape(fused)  # (batch, heads, seq, head_dim)
    for label, theirs in zip((".q", ".k", ".v"), (query, key, value), strict=True):
        np.testing.assert_allclose(
            parts[label].T, theirs[0].transpose(0, 1).reshape(64, -1).numpy(), atol=1e-6
        )


def test_phi3_qkv_proj_and_gate_up_proj_split_as_phi3_does() -> None:
    parts, structure = _parts("phi3", "model.layers.0.self_attn.qkv_proj.weight")
    layer = _model("phi3").model.layers[0]
    qkv = _projected(layer.self_attn.qkv_proj, 64)[0]
    query_end = structure.num_heads * structure.head_dim
    kv_end = query_end + structure.num_kv_heads * structure.head_dim
    for label, theirs in zip(
        (".q", ".k", ".v"), (qkv[:, :query_end], qkv[:, query_end:kv_end], qkv[:, kv_end:]), strict=True
    ):
        np.testing.assert_array_equal(parts[label].T, theirs.numpy())
    parts, _ = _parts("phi3", "model.layers.0.mlp.gate_up_proj.weight")
    gate, up = _projected(layer.mlp.gate_up_proj, 64)[0].chunk(2, dim=-1)
    np.testing.assert_array_equal(parts[".gate"].T, gate.numpy())
    np.testing.assert_array_equal(parts[".up"].T, up.numpy())


def test_gpt_oss_stacked_gate_up_is_interleaved_as_gpt_oss_experts_do() -> None:
    path = FIXTURES / "quantized" / "moe_gptoss" / "model.safetensors"
    with open_model(path) as reader:
        ref = next(ref for ref in reader.tensors() if ref.info.name.endswith("experts.gate_up_proj"))
        split = split_tensor(ref.info, reader.structure, split_fused=True, per_head=False)
        values = ref.read()
    parts = {part.suffix: part_values(values, part) for part in split.parts}
    # transformers' GptOssExperts: gate, up = gate_up[..., ::2], gate_up[..., 1::2].
    np.testing.assert_array_equal(parts[".gate"], values[..., ::2])
    np.testing.assert_array_equal(parts[".up"], values[..., 1::2])


def test_split_fused_and_per_head_records_replace_the_whole() -> None:
    default = _report(LLM / "falcon_gqa" / "model.safetensors")
    split = _report(LLM / "falcon_gqa" / "model.safetensors", "--split-fused")
    heads = _report(LLM / "falcon_gqa" / "model.safetensors", "--split-fused", "--per-head")
    fused = "transformer.h.0.self_attention.query_key_value.weight"
    names = lambda report: {layer["name"] for layer in report["layers"]}  # noqa: E731
    assert fused in names(default) and not {fused + ".q", fused + ".k"} & names(default)
    assert {fused + ".q", fused + ".k", fused + ".v"} <= names(split) and fused not in names(split)
    per_head = {name for name in names(heads) if name.startswith(fused)}
    assert per_head == {f"{fused}.q.head{h}" for h in range(4)} | {
        f"{fused}.{p}.head{h}" for p in "kv" for h in range(2)
    }
    output = "transformer.h.0.self_attention.dense.weight"
    assert {f"{output}.head{h}" for h in range(4)} <= names(heads) and output not in names(heads)
    record = next(layer for layer in heads["layers"] if layer["name"] == f"{fused}.q.head0")
    assert (record["shape"], record["N"], record["M"], record["stored_name"]) == ([16, 64], 64, 16, fused)


def test_a_split_without_head_counts_keeps_the_projection_whole_and_says_so(tmp_path: Path) -> None:
    import shutil

    shutil.copy(LLM / "falcon_gqa" / "model.safetensors", tmp_path / "model.safetensors")
    report = _report(tmp_path / "model.safetensors", "--split-fused")
    fused = "transformer.h.0.self_attention.query_key_value.weight"
    assert fused in {layer["name"] for layer in report["layers"]}
    assert any("kept whole" in warning and "config.json" in warning for warning in report["warnings"])


def test_tied_embeddings_are_analysed_once() -> None:
    report = _report(LLM / "llama_tied" / "model.safetensors")
    layers = {layer["name"]: layer for layer in report["layers"]}
    assert "lm_head.weight" not in layers
    assert layers["model.embed_tokens.weight"]["aliases"] == ["lm_head.weight"]
    untied = _report(LLM / "phi3" / "model.safetensors")
    assert {"lm_head.weight", "model.embed_tokens.weight"} <= {layer["name"] for layer in untied["layers"]}


def test_experts_are_one_record_each_with_a_summary_saying_how_they_were_recognised(tmp_path: Path) -> None:
    report = _report(FIXTURES / "quantized" / "moe_gptoss" / "model.safetensors")
    stack = "model.layers.0.mlp.experts.down_proj"
    experts = [layer for layer in report["layers"] if layer["name"] == stack]
    assert [layer["slice_index"] for layer in experts] == [0, 1, 2, 3]
    assert all(layer["num_slices"] == 1 and (layer["N"], layer["M"]) == (64, 64) for layer in experts)
    (group,) = [group for group in report["groups"] if group["name"] == stack]
    assert group["basis"] == "config.json: num_local_experts = 4" and group["analyzed"] == 4
    alphas = [layer["alpha"] for layer in experts]
    assert group["min_alpha"] == min(alphas) and group["max_alpha"] == max(alphas)
    assert abs(group["mean_alpha"] - float(np.mean(alphas))) < 1e-12
    # Without config.json the names decide, and the report says so.
    import shutil

    shutil.copy(FIXTURES / "quantized" / "moe_mixtral" / "model.safetensors", tmp_path / "model.safetensors")
    bare = _report(tmp_path / "model.safetensors")
    names = {group["name"]: group for group in bare["groups"]}
    w1 = names["model.layers.0.block_sparse_moe.experts.*.w1.weight"]
    assert w1["basis"] == "names" and len(w1["members"]) == 4


def _info(
    shape: tuple[int, ...], *, groups: int = 1, kind: WeightKind | None = WeightKind.CONV
) -> TensorInfo:
    hint = FormatHint(kind=kind, layout=Layout.OUT_IN, groups=groups)
    if groups > 1:
        hint = FormatHint(kind=WeightKind.DEPTHWISE_CONV, layout=Layout.OUT_IN, groups=groups)
    return TensorInfo("stft.weight", shape, DType.F32, 0, hint=hint)


def test_a_kernel_with_one_input_channel_is_its_window_operator_and_a_depthwise_one_is_skipped() -> None:
    options = AnalysisOptions()
    plan = plan_layer(_info((258, 1, 256)), options)
    assert (plan.kind, plan.N, plan.M, plan.num_slices, plan.scale) == (LayerKind.CONV1D, 258, 256, 1, 1.0)
    assert plan.slice_axes is SliceAxes.UNFOLD_TRAILING and plan.skip_reason is None
    values = np.random.default_rng(0).standard_normal((258, 1, 256)).astype(np.float32)
    (matrix,) = layer_matrices(plan, values)
    np.testing.assert_array_equal(matrix, values.reshape(258, 256))
    depthwise = plan_layer(_info((258, 1, 256), groups=258), options)
    assert depthwise.skip_reason is not None and "depthwise" in depthwise.skip_reason
    # Keras (*spatial, in, out) with one input channel: the same window operator.
    keras = TensorInfo(
        "k", (256, 1, 258), DType.F32, 0, hint=FormatHint(kind=WeightKind.CONV, layout=Layout.IN_OUT)
    )
    plan = plan_layer(keras, options)
    assert (plan.N, plan.M, plan.slice_axes) == (258, 256, SliceAxes.UNFOLD_LEADING)
    # Per-slice mode does not cut it back into rank-1 slices.
    assert plan_layer(_info((258, 1, 256)), AnalysisOptions(pool_conv=False)).num_slices == 1


@pytest.mark.parametrize(
    ("path", "options"),
    [
        (FIXTURES / "quantized" / "moe_gptoss" / "model.safetensors", AnalysisOptions(split_fused=True)),
        (LLM / "falcon_gqa" / "model.safetensors", AnalysisOptions(split_fused=True, per_head=True)),
        (
            FIXTURES / "quantized" / "dora_adapter" / "adapter_model.safetensors",
            AnalysisOptions(base=FIXTURES / "quantized" / "dora_adapter" / "base.safetensors"),
        ),
    ],
    ids=["experts", "heads", "adapter-with-base"],
)
def test_forked_workers_give_the_same_records_for_parts_experts_and_merged_adapters(
    path: Path, options: AnalysisOptions
) -> None:
    from inspector.pipeline import analyze_file
    from inspector.science.eigen import CpuBackend

    one = analyze_file(path, options, CpuBackend())
    forked = analyze_file(path, options, CpuBackend(), jobs=2, min_parallel_work=0)
    assert [(r.name, r.slice_index, r.status) for r in forked.layers] == [
        (r.name, r.slice_index, r.status) for r in one.layers
    ]
    for a, b in zip(one.layers, forked.layers, strict=True):
        if a.metrics is not None and b.metrics is not None and a.metrics.alpha is not None:
            assert b.metrics.alpha is not None and abs(a.metrics.alpha - b.metrics.alpha) < 1e-9
    # Floating-point values agree to rounding (BLAS may sum in another order in another process).
    assert [(g.name, g.members, g.basis) for g in forked.groups] == [
        (g.name, g.members, g.basis) for g in one.groups
    ]
    for a_group, b_group in zip(one.groups, forked.groups, strict=True):
        assert a_group.mean_alpha == pytest.approx(b_group.mean_alpha, rel=1e-9)
    assert [(c.name, c.update_rank) for c in forked.base_comparisons] == [
        (c.name, c.update_rank) for c in one.base_comparisons
    ]
