"""LoRA/PEFT adapters (`adapter_model.safetensors` + `adapter_config.json`): one update per target module.

peft saves an adapter as its low-rank factors: per target module `base_model.model.<module>.lora_A.weight`
(r, in) and `.lora_B.weight` (out, r), or `lora_embedding_A`/`lora_embedding_B` for embeddings, and with
DoRA `.lora_magnitude_vector` (out). The factors are not layers: A and B are rank-r pieces whose spectra
say nothing about the layer. `plan_lora_entries` describes each module as one tensor, the update
ΔW = scaling * B @ A (`formats.quantized.lora`), named `<module>.lora_delta` in the base model's
orientation (out, in) with encoding `lora-r8` (`rslora-r8`, `dora-r8`); the factors are not listed.

A DoRA magnitude vector is listed, skipped, with the reason: it rescales the merged weight's rows, so it is
applied only when the base is given (`--base`, `formats._adapter_merge`). Adapters of other peft types
(IA3, LoHa, LoKr, AdaLoRA...) are listed with every tensor skipped and the reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from formats._binary import describe_offset
from formats._safetensors_header import Entry
from formats.quantized.lora import LoraSettings, pattern_value
from formats.types import DType, FormatHint, Layout, TensorInfo, WeightKind

#: The prefix peft puts before the base model's module names.
PEFT_PREFIX = "base_model.model."
DELTA_SUFFIX = ".lora_delta"
_PARTS = {
    "a": (".lora_A.weight", ".lora_embedding_A"),
    "b": (".lora_B.weight", ".lora_embedding_B"),
    "magnitude": (".lora_magnitude_vector", ".lora_magnitude_vector.weight"),
}


@dataclass(frozen=True, slots=True)
class LoraRead:
    """One target module's update: its factors and settings, and the base weight it applies to."""

    module: str
    base_name: str
    settings: LoraSettings
    a: Entry
    b: Entry
    magnitude: Entry | None = None


@dataclass(frozen=True, slots=True)
class AdapterEntries:
    """The adapter's tensors, placed for the reader (as `formats._safetensors_quantized` places its own)."""

    at: Mapping[str, tuple[TensorInfo, LoraRead]] = field(default_factory=dict)
    consumed: frozenset[str] = frozenset()
    skipped: Mapping[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


def module_name(stored: str) -> str:
    """The base model's module name of a peft tensor name."""
    return stored.removeprefix(PEFT_PREFIX)


def _number(config: Mapping[str, object], key: str, default: float) -> float:
    value = config.get(key, default)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def plan_lora_entries(primaries: Sequence[Entry], config: Mapping[str, object] | None) -> AdapterEntries:
    """Group an adapter's factors into one update per target module; None config: not an adapter."""
    if config is None:
        return AdapterEntries()
    peft_type = str(config.get("peft_type", "LORA")).upper()
    if peft_type != "LORA":
        reason = f"part of a {peft_type} adapter: {peft_type} adapters are not supported (LoRA and DoRA are)"
        return AdapterEntries(skipped={entry.name: reason for entry in primaries})
    by_name = {entry.name: entry for entry in primaries}
    order = {entry.name: position for position, entry in enumerate(primaries)}
    alphas = config.get("alpha_pattern")
    alpha_pattern = alphas if isinstance(alphas, Mapping) else {}
    at: dict[str, tuple[TensorInfo, LoraRead]] = {}
    consumed: set[str] = set()
    skipped: dict[str, str] = {}
    warnings: list[str] = []
    for entry in primaries:
        suffix = next((s for s in (*_PARTS["a"],) if entry.name.endswith(s)), None)
        if suffix is None:
            continue
        stem = entry.name.removesuffix(suffix)
        embedding = suffix == ".lora_embedding_A"
        b = by_name.get(stem + _PARTS["b"][1 if embedding else 0])
        if b is None or len(entry.shape) != 2 or len(b.shape) != 2 or b.shape[1] != entry.shape[0]:
            warnings.append(f"{stem}: lora_A {list(entry.shape)} without a matching lora_B; listed as stored")
            continue
        magnitude = next((by_name[stem + s] for s in _PARTS["magnitude"] if stem + s in by_name), None)
        module = module_name(stem)
        alpha = pattern_value(alpha_pattern, module)
        settings = LoraSettings(
            rank=entry.shape[0],
            alpha=float(alpha) if isinstance(alpha, int | float) else _number(config, "lora_alpha", 8.0),
            rslora=config.get("use_rslora") is True,
            dora=magnitude is not None,
            fan_in_fan_out=config.get("fan_in_fan_out") is True,
            embedding=embedding,
        )
        out_features, in_features = b.shape[0], entry.shape[1]
        shape = (
            (in_features, out_features)
            if settings.embedding != settings.fan_in_fan_out
            else (out_features, in_features)
        )
        base_name = module + ".weight"
        read = LoraRead(module, base_name, settings, entry, b, magnitude)
        skip = None
        if settings.dora and settings.fan_in_fan_out:
            skip = "DoRA on a fan_in_fan_out (Conv1D) module is not read"
        info = TensorInfo(
            name=module + DELTA_SUFFIX,
            shape=shape,
            dtype=DType.F32,
            nbytes=entry.nbytes + b.nbytes,
            origin=describe_offset(entry.file.label, entry.offset),
            encoding=settings.encoding,
            hint=FormatHint(
                kind=WeightKind.EMBEDDING if embedding else WeightKind.DENSE,
                layout=Layout.IN_OUT if settings.fan_in_fan_out else Layout.OUT_IN,
                rank=settings.rank,
            ),
            stored_name=stem,
            skip_reason=skip,
        )
        first = min((entry, b), key=lambda part: order[part.name])
        at[first.name] = (info, read)
        consumed.update({entry.name, b.name})
        if magnitude is not None:
            skipped[magnitude.name] = (
                f"DoRA magnitude vector of {module!r}, a scale per output row, not a weight matrix: "
                "it is applied to the merged weight with --base BASE"
            )
    return AdapterEntries(at, frozenset(consumed), skipped, tuple(warnings))
