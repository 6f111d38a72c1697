"""Which tensors are layers, and the N x M matrices each one becomes.

A `TensorInfo` becomes a `LayerPlan` (decided from metadata alone, before any bytes are read): its kind,
the matrix dimensions N >= M, how many matrices the tensor is cut into, the factor applied to their
eigenvalues, or the reason it is skipped. `layer_matrices` then cuts the values read for that tensor into
those matrices, as views where numpy allows.

Orientation and slicing rules (stated in docs/conventions.md):
- The format's own layer information (`FormatHint.kind`) decides first; without it the name and the
  number of dimensions decide (2-D: dense, or embedding by name; 3-D: stacked experts by name, else a
  Conv1d kernel; 4-D: a Conv2D kernel; 5-D and more: a higher-dimensional convolution).
- Conv kernels are cut into one (out, in) matrix per spatial position: PyTorch/ONNX/GGUF store them
  (out, in, *spatial) (`Layout.OUT_IN`), Keras/TF (*spatial, in, out) (`Layout.IN_OUT`). Without a stated
  layout a 4-D kernel is read as weightwatcher does: (a, b, c, d) is (out, in, kh, kw) when a + b >= c + d.
- A conv kernel whose (out, in) slices are vectors (one input channel, or one output channel, and no
  groups) is the matrix it applies to each input window: one (out, in * k) matrix, the kernel unfolded
  (an STFT basis [258, 1, 256] is 258 x 256), never k rank-1 slices. A depthwise kernel (one input
  channel per group, groups > 1) is skipped: each filter sees its own channel, so the layer's operator is
  block-diagonal and its singular values are only the filters' norms.
- A stack of expert matrices (E, a, b) gives one record per expert (`slice_index` e); the experts of one
  projection are summarised together (`inspector.groups`). Experts are recognised from the format
  (GGUF `*_exps`), from the configuration (a leading axis of `num_local_experts` / `num_experts`...), else
  from the name (`experts`).
- `--split-fused` and `--per-head` cut fused projections and attention heads into parts
  (`inspector.fused`); each part is a record named `<tensor><suffix>` and the whole is not.
- Every matrix is oriented N x M with N >= M, per slice: unlike weightwatcher 0.7.7, N and M never come
  out swapped for even kernel sizes.
- Pooled conv eigenvalues are multiplied by `conv_scale` (0.5, weightwatcher's conv2d_norm); one record per
  slice (`pool_conv=False`) multiplies by kh*kw/2, as weightwatcher's pool=False does.
"""

from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass, replace
from enum import Enum

import numpy as np
import numpy.typing as npt

from formats.skip_reasons import not_a_matrix, not_floating_point, too_few_dimensions, too_many_dimensions
from formats.types import DType, FormatHint, Layout, ModelStructure, Role, TensorInfo, WeightKind
from inspector.fused import MatrixPart, split_tensor
from inspector.options import AnalysisOptions, ReasonWords
from inspector.records import LayerKind, LayerRecord, Status
from inspector.settings import collect


class SliceAxes(str, Enum):
    """How the matrices of one tensor are laid out in it."""

    NONE = "none"  # the tensor is one matrix
    TRAILING = "trailing"  # a conv kernel (out, in, *spatial): one matrix per spatial position
    LEADING = "leading"  # a conv kernel (*spatial, in, out)
    STACK = "stack"  # (E, a, b): a stack of same-shaped matrices (experts): one record each
    UNFOLD_TRAILING = "unfold-trailing"  # (out, 1, *spatial) read as one (out, in * k) matrix
    UNFOLD_LEADING = "unfold-leading"  # (*spatial, 1, out) likewise

    @property
    def spatial(self) -> bool:
        """True for conv kernels, whose slices are the spatial positions (measured one by one when
        convolutions are not pooled)."""
        return self in (SliceAxes.TRAILING, SliceAxes.LEADING)

    def per_slice(self, pool_conv: bool) -> bool:
        """Whether each slice is its own record: experts always, conv positions when not pooled."""
        return self is SliceAxes.STACK or (self.spatial and not pool_conv)


@dataclass(frozen=True, slots=True)
class LayerPlan:
    """What one tensor becomes before its bytes are read.

    Attributes:
        kind: the layer kind reported.
        role: attention / mlp / embedding / output, where known.
        N, M: dimensions of each matrix, N >= M (None when the tensor is not a matrix at all).
        num_slices: matrices cut from the tensor (kh*kw for a conv kernel, experts for a stack).
        slice_axes: how the slices are laid out in the tensor.
        scale: factor applied to every eigenvalue of these matrices.
        skip_reason: why the layer is not analysed, in words; None when it is.
        parts: the logical parts the tensor is analysed as instead of whole (`--split-fused`,
            `--per-head`); empty when it is analysed whole.
        note: something the report should say once about how the tensor was read (a split not made).
        rank: the matrix's rank when the format fixes it (a LoRA update's r): alpha is fitted only when
            it gives at least --min-evals nonzero eigenvalues.
    """

    kind: LayerKind
    role: Role | None
    N: int | None
    M: int | None
    num_slices: int = 1
    slice_axes: SliceAxes = SliceAxes.NONE
    scale: float = 1.0
    skip_reason: str | None = None
    parts: tuple[MatrixPart, ...] = ()
    note: str | None = None
    rank: int | None = None

    @property
    def num_evals(self) -> int:
        """Eigenvalues in the pooled ESD: M per matrix."""
        return (self.M or 0) * self.num_slices


_EMBEDDING_NAME = re.compile(
    r"(embed|wte|wpe|tok_embeddings|word_embeddings|position_embeddings|token_type_embeddings|shared\.weight$)",
    re.IGNORECASE,
)
_RECURRENT_NAME = re.compile(
    r"(weight_ih_l\d|weight_hh_l\d|recurrent_kernel|\blstm\b|\bgru\b|\brnn\b)", re.IGNORECASE
)
_EXPERTS_NAME = re.compile(r"(experts|_exps\b|\bexps\b|moe)", re.IGNORECASE)
_CONV_NAME = re.compile(r"(conv|kernel)", re.IGNORECASE)
_ATTENTION_NAME = re.compile(
    r"(attn|attention|self_attn|q_proj|k_proj|v_proj|o_proj|qkv|query|key|value|c_attn|out_proj|wq\b|wk\b|wv\b|wo\b)",
    re.IGNORECASE,
)
_MLP_NAME = re.compile(
    r"(mlp|ffn|feed_forward|fc1|fc2|intermediate|gate_proj|up_proj|down_proj|c_fc|w1\b|w2\b|w3\b|\.output\.dense)",
    re.IGNORECASE,
)
#: A name whose last component is a bias (`.bias`, Keras `/bias`, gpt-oss `experts.gate_up_proj_bias`): per
#: channel offsets even when stored 2-D (one row per expert), never a matrix.
_BIAS_NAME = re.compile(r"(?:^|[._/])bias$")
_OUTPUT_NAME = re.compile(r"(^lm_head|^output\.|^classifier|^head\.|^fc\.|^logits)", re.IGNORECASE)


#: The flag of each setting a skip reason names (from the settings' one declaration).
_FLAGS = {spec.field: spec.flag for spec in collect(AnalysisOptions)}

#: Tensors that models register as buffers, not trained weights, known by their names: attention masks
#: (GPT-2's `attn.bias` and `attn.masked_bias`), STFT and mel filter banks of audio front ends, rotary
#: frequencies, position ids, batch-norm statistics. A 2-D one would otherwise be scored as a layer.
BUFFER_NAME = re.compile(
    r"(?:^|[./])(?:attn\.(?:masked_)?bias|(?:forward|inverse)_basis(?:_buffer)?|mel_basis|stft[._]\w*basis\w*"
    r"|window|position_ids|inv_freq|freqs_cis|causal_mask|attn_mask|relative_position_index"
    r"|num_batches_tracked|running_(?:mean|var))$"
)
BUFFER_REASON = "a registered buffer by its name (a mask, filter bank or statistic), not a trained weight"


def guess_role(name: str, kind: LayerKind) -> Role | None:
    """Role from conventional names (HF, llama.cpp, timm); None when the name does not say."""
    if kind is LayerKind.EMBEDDING:
        return Role.EMBEDDING
    if _ATTENTION_NAME.search(name):
        return Role.ATTENTION
    if _MLP_NAME.search(name):
        return Role.MLP
    if _OUTPUT_NAME.search(name):
        return Role.OUTPUT
    return None


def _matches(name: str, aliases: tuple[str, ...], globs: tuple[str, ...]) -> str | None:
    """The first glob matching the name or one of its aliases."""
    for glob in globs:
        if any(fnmatch.fnmatchcase(candidate, glob) for candidate in (name, *aliases)):
            return glob
    return None


def _skip(kind: LayerKind, role: Role | None, reason: str, dims: tuple[int, int] | None = None) -> LayerPlan:
    N, M = dims if dims is not None else (None, None)
    return LayerPlan(kind=kind, role=role, N=N, M=M, skip_reason=reason)


@dataclass(frozen=True, slots=True)
class HintedKind:
    """What the format's own layer information makes of a tensor.

    Attributes:
        kind: the layer kind the format states; None when it states none (names and shape decide).
        not_a_matrix: why the stated kind is no matrix at all (a bias, a depthwise kernel...), else None.
    """

    kind: LayerKind | None = None
    not_a_matrix: str | None = None


_KIND_OF_WEIGHT: dict[WeightKind, LayerKind] = {
    WeightKind.DENSE: LayerKind.DENSE,
    WeightKind.EXPERTS: LayerKind.DENSE,
    WeightKind.EMBEDDING: LayerKind.EMBEDDING,
    WeightKind.RECURRENT: LayerKind.RECURRENT,
}
_CONV_KINDS: dict[int, LayerKind] = {3: LayerKind.CONV1D, 4: LayerKind.CONV2D}


def _kind_from_hint(info: TensorInfo) -> HintedKind:
    """The layer kind the format states, or why that kind is not a matrix (`formats.skip_reasons`)."""
    hint_kind = info.hint.kind
    if hint_kind is None:
        return HintedKind()
    reason = not_a_matrix(info.hint, info.shape)
    if reason is not None:
        return HintedKind(not_a_matrix=reason)
    if hint_kind is WeightKind.CONV:  # three or more dimensions: not_a_matrix refused fewer
        return HintedKind(_CONV_KINDS.get(len(info.shape), LayerKind.OTHER))
    return HintedKind(_KIND_OF_WEIGHT[hint_kind])


def is_expert_stack(info: TensorInfo, structure: ModelStructure | None) -> bool:
    """A 3-D tensor that stacks expert matrices: stated by the format, by the configuration (a leading
    axis of its expert count), else by the name."""
    if len(info.shape) != 3:
        return False
    if info.hint.kind is WeightKind.EXPERTS:
        return True
    if info.hint.kind is not None:
        return False
    if structure is not None and structure.num_experts is not None:
        return info.shape[0] == structure.num_experts and not _CONV_NAME.search(info.name)
    return _EXPERTS_NAME.search(info.name) is not None


def _kind_from_shape(info: TensorInfo) -> LayerKind:
    ndim = len(info.shape)
    if ndim == 2:
        if _EMBEDDING_NAME.search(info.name):
            return LayerKind.EMBEDDING
        if _RECURRENT_NAME.search(info.name):
            return LayerKind.RECURRENT
        return LayerKind.DENSE
    if ndim == 3:
        return LayerKind.DENSE if _EXPERTS_NAME.search(info.name) else LayerKind.CONV1D
    if ndim == 4:
        return LayerKind.CONV2D
    return LayerKind.OTHER


def _conv_layout(info: TensorInfo) -> Layout:
    """Axis order of a conv kernel: stated by the format, else weightwatcher's size heuristic."""
    if info.hint.layout is not Layout.UNKNOWN:
        return info.hint.layout
    if len(info.shape) == 4:
        a, b, c, d = info.shape
        return Layout.OUT_IN if a + b >= c + d else Layout.IN_OUT
    return Layout.OUT_IN


def plan_layer(
    info: TensorInfo, options: AnalysisOptions, structure: ModelStructure | None = None
) -> LayerPlan:
    """Decide from metadata alone what `info` becomes; skipped layers get a reason in words.

    `structure` is what the checkpoint's configuration says (head counts, experts), where it has one.
    """
    shape = info.shape
    ndim = len(shape)

    # A reason the reader gave reaches the report unchanged (it knows facts the shape does not show);
    # the kind reported is still what the format and the shape say the tensor is.
    hinted = _kind_from_hint(info)
    if (
        info.hint.kind is None
        and ndim >= 2
        and _BIAS_NAME.search(info.name)
        and not BUFFER_NAME.search(info.name)
    ):
        hinted = HintedKind(not_a_matrix=not_a_matrix(FormatHint(kind=WeightKind.BIAS), shape))
    if hinted.not_a_matrix is not None:
        return _skip(LayerKind.OTHER, info.hint.role, info.skip_reason or hinted.not_a_matrix)
    if ndim < 2:
        return _skip(LayerKind.OTHER, info.hint.role, info.skip_reason or too_few_dimensions(ndim))
    experts = is_expert_stack(info, structure)
    kind = LayerKind.DENSE if experts else hinted.kind if hinted.kind is not None else _kind_from_shape(info)
    role = info.hint.role or guess_role(info.name, kind)

    if info.skip_reason is not None:
        return _skip(kind, role, info.skip_reason)
    if BUFFER_NAME.search(info.name):
        return _skip(kind, role, BUFFER_REASON)
    if not (info.dtype.is_float or info.dtype is DType.QUANTIZED):
        return _skip(kind, role, not_floating_point(info.dtype.value))

    slice_axes, scale = SliceAxes.NONE, 1.0
    if ndim == 2:
        (rows, cols), num_slices = shape, 1
    elif kind in (LayerKind.CONV1D, LayerKind.CONV2D, LayerKind.OTHER) and not experts:
        if _conv_layout(info) is Layout.IN_OUT:
            spatial, (rows, cols) = shape[:-2], shape[-2:]
            slice_axes = SliceAxes.LEADING
        else:
            (rows, cols), spatial = shape[:2], shape[2:]
            slice_axes = SliceAxes.TRAILING
        num_slices = math.prod(spatial)
        scale = options.conv_scale if options.pool_conv else num_slices / 2
        if min(rows, cols) == 1 and num_slices > 1:
            # The slices are vectors: the kernel is the (out, in * k) matrix applied to each window.
            in_out = slice_axes is SliceAxes.LEADING
            out = cols if in_out else rows
            rows, cols = out, math.prod(shape) // max(out, 1)
            slice_axes = SliceAxes.UNFOLD_LEADING if in_out else SliceAxes.UNFOLD_TRAILING
            num_slices, scale = 1, 1.0
    elif ndim == 3:
        # A stack of same-shaped matrices (experts, recurrent directions): one pooled ESD, no rescaling.
        num_slices, rows, cols = shape
        slice_axes = SliceAxes.STACK
    else:
        return _skip(kind, role, too_many_dimensions(ndim, kind.value))
    plan = LayerPlan(
        kind=kind,
        role=role,
        N=max(rows, cols),
        M=min(rows, cols),
        num_slices=num_slices,
        slice_axes=slice_axes,
        scale=scale,
        rank=info.hint.rank,
    )
    if slice_axes in (SliceAxes.NONE, SliceAxes.STACK):
        split = split_tensor(info, structure, split_fused=options.split_fused, per_head=options.per_head)
        plan = replace(plan, parts=split.parts, note=split.note)
    return _apply_filters(plan, info, options)


def _setting(options: AnalysisOptions, field: str, value: object) -> str:
    """A setting and its value as the run's words name it: `--min-evals 10` on the command line (the flag of
    the field's declaration), `min_evals=10` in Python."""
    if options.reason_words is ReasonWords.PYTHON:
        return f"{field}={value!r}"
    shown = " ".join(repr(item) for item in value) if isinstance(value, tuple) else str(value)
    return f"{_FLAGS[field]} {shown}"


def _evals(count: int, per_slice: bool) -> str:
    """'1 eigenvalue', '3 eigenvalues per slice'."""
    return f"{count} eigenvalue{'' if count == 1 else 's'}{' per slice' if per_slice else ''}"


def _apply_filters(plan: LayerPlan, info: TensorInfo, options: AnalysisOptions) -> LayerPlan:
    """Name filters, then the eigenvalue-count bounds; each skip says which option caused it.

    A filtered layer keeps its dimensions and slice count, so its record still says what it is.
    """
    if options.layer_globs and _matches(info.name, info.aliases, options.layer_globs) is None:
        reason = "not selected by " + _setting(options, "layer_globs", options.layer_globs)
        return replace(plan, skip_reason=reason)
    excluded = _matches(info.name, info.aliases, options.exclude_globs)
    if excluded is not None:
        return replace(plan, skip_reason="excluded by " + _setting(options, "exclude_globs", (excluded,)))
    if plan.M == 0:
        return replace(plan, skip_reason="empty tensor (a dimension is 0)")
    per_slice = plan.slice_axes.per_slice(options.pool_conv)
    count = (plan.M or 0) if per_slice else plan.num_evals
    if count < options.min_evals:
        bound = _setting(options, "min_evals", options.min_evals)
        return replace(plan, skip_reason=f"{_evals(count, per_slice)}, fewer than {bound}")
    if options.max_evals is not None and count > options.max_evals:
        bound = _setting(options, "max_evals", options.max_evals)
        return replace(plan, skip_reason=f"{_evals(count, per_slice)}, more than {bound}")
    return plan


def _oriented(matrix: npt.NDArray[np.floating]) -> npt.NDArray[np.floating]:
    """The matrix as N x M with N >= M (a transposed view when it is wide)."""
    return matrix.T if matrix.shape[0] < matrix.shape[1] else matrix


def layer_matrices(plan: LayerPlan, values: npt.NDArray[np.floating]) -> list[npt.NDArray[np.floating]]:
    """Cut the values of a planned layer into its N x M matrices (views where possible)."""
    if plan.slice_axes is SliceAxes.NONE:
        return [_oriented(values)]
    if plan.slice_axes is SliceAxes.TRAILING:
        rows, cols = values.shape[:2]
        flat = values.reshape(rows, cols, -1)
        return [_oriented(flat[:, :, position]) for position in range(flat.shape[2])]
    if plan.slice_axes is SliceAxes.LEADING:
        rows, cols = values.shape[-2:]
        flat = values.reshape(-1, rows, cols)
        return [_oriented(flat[position]) for position in range(flat.shape[0])]
    if plan.slice_axes is SliceAxes.UNFOLD_TRAILING:
        return [_oriented(values.reshape(values.shape[0], -1))]
    if plan.slice_axes is SliceAxes.UNFOLD_LEADING:
        return [_oriented(values.reshape(-1, values.shape[-1]))]
    return [_oriented(matrix) for matrix in values]


def part_values(values: npt.NDArray[np.floating], part: MatrixPart) -> npt.NDArray[np.floating]:
    """The rows or columns of one part (of every expert, for a stack)."""
    return np.take(values, np.asarray(part.indices, dtype=np.intp), axis=part.axis)


def part_plan(plan: LayerPlan, part: MatrixPart) -> LayerPlan:
    """The plan of one part: its own matrix dimensions, the tensor's slicing."""
    rows, cols = part.shape[-2:]
    return replace(plan, N=max(rows, cols), M=min(rows, cols), parts=())


def part_record(record: LayerRecord, part: MatrixPart, options: AnalysisOptions) -> LayerRecord:
    """The record of one part, named `<tensor><suffix>`; skipped when it has too few eigenvalues."""
    rows, cols = part.shape[-2:]
    named = replace(
        record,
        name=record.name + part.suffix,
        shape=part.shape,
        N=max(rows, cols),
        M=min(rows, cols),
        stored_name=record.stored_name or record.name,
        aliases=(),
    )
    if min(rows, cols) < options.min_evals:
        bound = _setting(options, "min_evals", options.min_evals)
        return replace(
            named, status=Status.SKIPPED, reason=f"{_evals(min(rows, cols), False)}, fewer than {bound}"
        )
    return named
