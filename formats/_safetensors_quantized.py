"""Quantised weights of safetensors checkpoints: one entry per logical weight, rebuilt from its parts on read.

GPTQ, AWQ, bitsandbytes, compressed-tensors and gpt-oss MXFP4 checkpoints store each quantised Linear as
several tensors (packed integers, scales, zero points, group indices, quant maps...). `plan_quantized_entries`
groups them with `formats.quantized.detect` from the header and `config.json`, and describes each group as
one tensor named after the unquantised model's weight (`...q_proj.weight`), with its float shape, dtype
QUANTIZED, `encoding` (`gptq-int4-g128`, `nf4`...) and `stored_name` (the main part, `...q_proj.qweight`).

Decisions:
- The parts a weight consumes are not listed on their own: they are not weights, and their values are in
  the weight's record (its encoding names the scheme). This is the rule the FP8 scale tensors already
  follow. A group whose parts do not fit together (a missing qzeros, a config that contradicts the
  shapes) is still one entry, with the problem as its skip reason and a warning, so its scales are never
  analysed as a layer either.
- Activation parameters (input_scale, k_scale...) are listed, skipped, with the module they belong to.
- The few parts that carry the float shape (bitsandbytes' quant-state JSON, compressed-tensors'
  weight_shape) are read when the file is opened, capped at `dispatch.MAX_SHAPE_PART_BYTES`; a part that
  cannot be used makes that weight skipped with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from formats._binary import describe_offset
from formats._safetensors_header import Entry
from formats.errors import TensorError
from formats.quantized.detect import (
    Layout as QuantLayout,
)
from formats.quantized.detect import (
    LogicalWeight,
    StoredTensor,
    plan_quantized,
    quantization_config,
)
from formats.quantized.dispatch import MAX_SHAPE_PART_BYTES, SHAPE_PARTS, logical_shape
from formats.types import DType, FormatHint, Layout, TensorInfo

#: The part that names and locates a logical weight, per role, in order of preference.
_MAIN_ROLES = ("qweight", "packed", "values", "blocks", "scb", "scales")


@dataclass(frozen=True, slots=True)
class QuantizedRead:
    """What reading one logical weight involves.

    Attributes:
        weight: the planned logical weight.
        parts: role -> the header entry of that part.
        section: the checkpoint's quantization_config (None without a config.json).
    """

    weight: LogicalWeight
    parts: Mapping[str, Entry]
    section: Mapping[str, object] | None


@dataclass(frozen=True, slots=True)
class QuantizedEntries:
    """The quantised weights of a checkpoint, placed for the reader.

    Attributes:
        at: name of a weight's first stored part -> the weight's description and how to read it (None when
            it cannot be rebuilt: the info then has a skip reason).
        consumed: every stored name that is part of a logical weight (not listed on its own).
        activation: stored name -> the skip reason of an activation quantisation parameter.
        warnings: groups that could not be formed, one line each.
    """

    at: Mapping[str, tuple[TensorInfo, QuantizedRead | None]] = field(default_factory=dict)
    consumed: frozenset[str] = frozenset()
    activation: Mapping[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


def _main(parts: Mapping[str, Entry]) -> Entry:
    for role in _MAIN_ROLES:
        if role in parts:
            return parts[role]
    return next(iter(parts.values()))


def _first(parts: Mapping[str, Entry], order: Mapping[str, int]) -> Entry:
    return min(parts.values(), key=lambda entry: order[entry.name])


def _info(
    name: str,
    parts: Mapping[str, Entry],
    shape: tuple[int, ...],
    encoding: str,
    layout: Layout,
    skip_reason: str | None,
) -> TensorInfo:
    main = _main(parts)
    return TensorInfo(
        name=name,
        shape=shape,
        dtype=DType.QUANTIZED,
        nbytes=sum(entry.nbytes for entry in parts.values()),
        origin=describe_offset(main.file.label, main.offset),
        encoding=encoding,
        hint=FormatHint(layout=layout),
        stored_name=main.name if main.name != name else None,
        skip_reason=skip_reason,
    )


def plan_quantized_entries(
    primaries: Sequence[Entry],
    config: Mapping[str, object] | None,
    read_small: Callable[[Entry], npt.NDArray[np.generic]],
) -> QuantizedEntries:
    """Group the quantised parts among `primaries` (header order) into logical weights.

    Args:
        primaries: the checkpoint's tensors, aliases removed, in the order they are listed.
        config: the parsed config.json, or None.
        read_small: reads one small part's stored elements (the quant state, the weight_shape).
    """
    stored = [StoredTensor(entry.name, entry.shape, entry.code) for entry in primaries]
    plan = plan_quantized(stored, config)
    if not plan.weights and not plan.refused and not plan.activation_params:
        return QuantizedEntries()
    by_name = {entry.name: entry for entry in primaries}
    order = {entry.name: position for position, entry in enumerate(primaries)}
    section = quantization_config(config)
    at: dict[str, tuple[TensorInfo, QuantizedRead | None]] = {}
    for weight in plan.weights:
        parts = {role: by_name[name] for role, name in weight.parts.items()}
        layout = Layout.IN_OUT if weight.layout is QuantLayout.IN_OUT else Layout.OUT_IN
        skip: str | None = None
        try:
            small = {role: _read_small(parts[role], read_small) for role in SHAPE_PARTS if role in parts}
            shape = logical_shape(weight, small)
        except TensorError as exc:
            skip, shape = exc.message, _main(parts).shape
        info = _info(weight.name, parts, shape, weight.encoding, layout, skip)
        read = QuantizedRead(weight, parts, section) if skip is None else None
        at[_first(parts, order).name] = (info, read)
    for refused in plan.refused:
        parts = {role: by_name[name] for role, name in refused.parts.items()}
        if not parts:
            continue
        reason = f"quantised weight {refused.name!r} cannot be rebuilt: {refused.reason}"
        info = _info(refused.name, parts, _main(parts).shape, "quantized", Layout.OUT_IN, reason)
        at[_first(parts, order).name] = (info, None)
    activation = {
        name: f"parameter of the activations of {module!r} (a scale or zero point), not a weight matrix"
        for name, module in plan.activation_params.items()
    }
    return QuantizedEntries(at, frozenset(plan.consumed), activation, plan.problems)


def _read_small(
    entry: Entry, read_small: Callable[[Entry], npt.NDArray[np.generic]]
) -> npt.NDArray[np.generic]:
    if entry.nbytes > MAX_SHAPE_PART_BYTES:
        raise TensorError(
            f"part {entry.name!r} is {entry.nbytes} bytes, more than the {MAX_SHAPE_PART_BYTES} a shape needs"
        )
    return read_small(entry)
