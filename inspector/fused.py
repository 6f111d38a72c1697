"""Fused projections split into their logical parts (`--split-fused`) and attention projections split into
heads (`--per-head`), from the head counts a checkpoint's configuration states.

By default a fused projection stays one matrix (PRODUCT.md). With `--split-fused`:
- GPT-2 `attn.c_attn` (HF Conv1D, stored (in, out) = (H, 3H)): q, k, v are the three column blocks
  (`GPT2Attention`: `split(split_size, dim=2)` of the output);
- `query_key_value` (Falcon, BLOOM, GPT-NeoX): rows in the architecture's order (`ModelStructure.fused_qkv`):
  "per-head" (BLOOM, NeoX, Falcon without multi_query: `view(n_head, 3, head_dim)`, q, k, v of each head in
  turn), "grouped" (Falcon's new decoder architecture: per key/value group its n_head / n_kv query
  heads, then one k and one v), "multi-query" (Falcon-7B: every query head, then one k and one v);
- `qkv_proj`, `Wqkv` (Phi-3, MPT): row blocks q (n_head * head_dim), k and v (n_kv * head_dim each);
- `gate_up_proj` (Phi-3 MLP, (2I, H)): rows gate then up (`chunk(2, dim=-1)` of the output); stacked
  expert `gate_up_proj` (E, H, 2I): gpt-oss interleaves the columns (gate = [..., ::2], up = [..., 1::2],
  `GptOssExperts`), Llama 4 halves them.
With `--per-head`, each query/key/value projection (a stored one or a part of a fused one) gives one
matrix per head (head_dim of its output rows), and each attention output projection (o_proj, out_proj,
attention `dense`, GPT-2 `attn.c_proj`) one per head (head_dim of its input columns).

A projection is either one record or its parts, never both. Where the configuration does not give what a
split needs (no head counts, sizes that do not add up), the projection stays one record and the report
says why once (`LayerPlan.note`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from formats.types import Layout, ModelStructure, TensorInfo

#: Names of fused attention projections (the last component before `.weight`).
_QKV = re.compile(r"(?:^|\.)(c_attn|query_key_value|qkv_proj|Wqkv|qkv|attn_qkv)(?:\.weight)?$")
_GATE_UP = re.compile(r"(?:^|\.)(gate_up_proj)(?:\.weight)?$")
#: Per-head projections: queries, keys, values (output rows by head) and the attention output (input
#: columns by head).
_Q_K_V = re.compile(
    r"(?:^|\.)(q_proj|k_proj|v_proj|query|key|value|wq|wk|wv|attn_q|attn_k|attn_v)(?:\.weight)?$"
)
_OUT = re.compile(
    r"(?:^|\.)(o_proj|out_proj|wo|attn_output|attn\.c_proj|self_attention\.dense|attention\.dense)"
    r"(?:\.weight)?$"
)
_KV_NAMES = frozenset({"k_proj", "v_proj", "key", "value", "wk", "wv", "attn_k", "attn_v"})
#: GPT-2's Conv1D stores (in, out): its projections are named so.
_CONV1D_MODELS = frozenset({"gpt2", "openai-gpt", "imagegpt"})


@dataclass(frozen=True, slots=True)
class MatrixPart:
    """One logical part of a stored matrix: the rows or columns it takes.

    Attributes:
        suffix: appended to the tensor's name (".q", ".gate", ".head3", ".k.head0").
        axis: the axis the part selects along, counted from the end (-2: rows, -1: columns), so that a
            stack of expert matrices is cut the same way in every expert.
        indices: the positions taken along that axis, in order.
        shape: the tensor's shape after the selection.
    """

    suffix: str
    axis: int
    indices: tuple[int, ...]
    shape: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Split:
    """The parts of one tensor, or why it is kept whole (`note`); both empty when nothing applies."""

    parts: tuple[MatrixPart, ...] = ()
    note: str | None = None


def _blocks(start: int, sizes: list[tuple[str, int]]) -> list[tuple[str, tuple[int, ...]]]:
    out, position = [], start
    for label, size in sizes:
        out.append((label, tuple(range(position, position + size))))
        position += size
    return out


def _qkv_rows(structure: ModelStructure, total: int) -> list[tuple[str, tuple[int, ...]]] | str:
    """Positions of q, k, v along the fused output axis, per the architecture's layout."""
    heads, kv, dim = structure.num_heads, structure.num_kv_heads, structure.head_dim
    if not heads or not kv or not dim:
        return "the configuration gives no head counts"
    layout = structure.fused_qkv or "blocks"
    if (heads + 2 * kv) * dim != total:
        return f"{heads} query and {kv} key/value heads of {dim} do not make {total} rows"
    if layout == "blocks" or (layout == "multi-query" and kv == 1):
        return _blocks(0, [("q", heads * dim), ("k", kv * dim), ("v", kv * dim)])
    if layout == "per-head":
        if kv != heads:
            return "a per-head fused layout needs as many key/value heads as query heads"
        parts: dict[str, list[int]] = {"q": [], "k": [], "v": []}
        for head in range(heads):
            for number, label in enumerate("qkv"):
                start = (3 * head + number) * dim
                parts[label].extend(range(start, start + dim))
        return [(label, tuple(rows)) for label, rows in parts.items()]
    # "grouped": per key/value group, its query heads, then one k, one v.
    per_group = heads // kv
    groups: dict[str, list[int]] = {"q": [], "k": [], "v": []}
    for group in range(kv):
        base = group * (per_group + 2) * dim
        groups["q"].extend(range(base, base + per_group * dim))
        groups["k"].extend(range(base + per_group * dim, base + (per_group + 1) * dim))
        groups["v"].extend(range(base + (per_group + 1) * dim, base + (per_group + 2) * dim))
    return [(label, tuple(rows)) for label, rows in groups.items()]


def _is_conv1d(info: TensorInfo, structure: ModelStructure | None) -> bool:
    """GPT-2's Conv1D weights are stored (in, out), whatever the reader's general layout."""
    return structure is not None and structure.model_type in _CONV1D_MODELS and ".c_" in info.name


def _output_axis(info: TensorInfo, structure: ModelStructure | None) -> int:
    """Which of the last two axes is the output one (-2 for (out, in), -1 for (in, out))."""
    if _is_conv1d(info, structure) or (info.hint.layout is Layout.IN_OUT):
        return -1
    return -2


def _replace_shape(shape: tuple[int, ...], axis: int, size: int) -> tuple[int, ...]:
    changed = list(shape)
    changed[axis] = size
    return tuple(changed)


def _heads(
    suffix: str, axis: int, indices: tuple[int, ...], dim: int, shape: tuple[int, ...]
) -> list[MatrixPart]:
    count = len(indices) // dim
    return [
        MatrixPart(
            f"{suffix}.head{head}",
            axis,
            indices[head * dim : (head + 1) * dim],
            _replace_shape(shape, axis, dim),
        )
        for head in range(count)
    ]


def split_tensor(
    info: TensorInfo, structure: ModelStructure | None, *, split_fused: bool, per_head: bool
) -> Split:
    """The parts `--split-fused` and `--per-head` make of one 2-D (or stacked 3-D) weight."""
    if not (split_fused or per_head) or len(info.shape) not in (2, 3):
        return Split()
    shape = info.shape
    out_axis = _output_axis(info, structure)
    in_axis = -1 if out_axis == -2 else -2
    fused = _QKV.search(info.name)
    dim = structure.head_dim if structure is not None else None
    if fused is not None and len(shape) == 2:
        if structure is None:
            return Split(note=f"{fused.group(1)} kept whole: no config.json gives its head counts")
        rows = _qkv_rows(structure, shape[out_axis])
        if isinstance(rows, str):
            return Split(note=f"{info.name} kept whole: {rows}")
        parts: list[MatrixPart] = []
        for label, indices in rows:
            if per_head and dim:
                parts.extend(_heads(f".{label}", out_axis, indices, dim, shape))
            else:
                parts.append(
                    MatrixPart(f".{label}", out_axis, indices, _replace_shape(shape, out_axis, len(indices)))
                )
        return Split(tuple(parts))
    gate_up = _GATE_UP.search(info.name)
    if gate_up is not None and split_fused:
        axis = -1 if len(shape) == 3 else out_axis  # stacked experts are (E, H, 2I): in, out
        total = shape[axis]
        if total % 2:
            return Split(note=f"{info.name} kept whole: {total} outputs do not halve into gate and up")
        interleaved = len(shape) == 3 and structure is not None and structure.model_type == "gpt_oss"
        if interleaved:
            halves = [("gate", tuple(range(0, total, 2))), ("up", tuple(range(1, total, 2)))]
        else:
            halves = _blocks(0, [("gate", total // 2), ("up", total // 2)])
        return Split(
            tuple(
                MatrixPart(f".{label}", axis, indices, _replace_shape(shape, axis, len(indices)))
                for label, indices in halves
            )
        )
    if not per_head or len(shape) != 2:
        return Split()
    projection = _Q_K_V.search(info.name)
    output = _OUT.search(info.name) if projection is None else None
    if projection is None and output is None:
        return Split()
    if structure is None or not dim or not structure.num_heads:
        return Split(note="--per-head kept projections whole: no config.json gives the head counts")
    axis = out_axis if projection is not None else in_axis
    heads = (
        structure.num_kv_heads
        if projection is not None and projection.group(1) in _KV_NAMES
        else structure.num_heads
    )
    if not heads or heads * dim != shape[axis]:
        return Split(note=f"{info.name} kept whole: {heads} heads of {dim} do not make {shape[axis]}")
    return Split(tuple(_heads("", axis, tuple(range(shape[axis])), dim, shape)))
