"""LoRA / DoRA adapters as peft stores them: the update a target module receives, and the merged weight.

peft (`peft.tuners.lora`) saves, per target module, `lora_A.weight` (r, in) and `lora_B.weight` (out, r)
(`lora_embedding_A` (r, vocab) and `lora_embedding_B` (dim, r) for embeddings), and with DoRA the
`lora_magnitude_vector` (out). `adapter_config.json` gives r, lora_alpha, use_rslora, use_dora,
fan_in_fan_out and the per-module `alpha_pattern`. The rules, as `LoraLayer.get_delta_weight` and
`DoraLinearLayer` compute them (checked against peft 0.21 in tests/formats/test_quantized_adapters.py):
- scaling = lora_alpha / r, or lora_alpha / sqrt(r) with rsLoRA; r is the module's own rank (A's rows);
- update ΔW = (B @ A) * scaling, transposed for fan_in_fan_out modules (GPT-2's Conv1D) and for
  embeddings ((B @ A).T: (vocab, dim));
- merged LoRA weight = W + ΔW; merged DoRA weight = m * (W + ΔW) / ||W + ΔW|| with the norm of each
  output row (`get_weight_norm`, dim=1).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from formats.quantized._common import Floats, expect_shape, fail


@dataclass(frozen=True, slots=True)
class LoraSettings:
    """What adapter_config.json says about one target module.

    Attributes:
        rank: r, the module's own (the rows of its lora_A).
        alpha: lora_alpha (or the alpha_pattern entry matching the module).
        rslora: scale by alpha / sqrt(r) instead of alpha / r.
        dora: the module has a DoRA magnitude vector.
        fan_in_fan_out: the base weight is stored (in, out) (HF Conv1D), so the update is transposed.
        embedding: the module is an embedding (lora_embedding_A/B): the update is (B @ A).T.
    """

    rank: int
    alpha: float
    rslora: bool = False
    dora: bool = False
    fan_in_fan_out: bool = False
    embedding: bool = False

    @property
    def scaling(self) -> float:
        return self.alpha / (math.sqrt(self.rank) if self.rslora else self.rank)

    @property
    def encoding(self) -> str:
        """`lora-r8`, `rslora-r16`, `dora-r8`."""
        kind = "dora" if self.dora else "rslora" if self.rslora else "lora"
        return f"{kind}-r{self.rank}"


def pattern_value(patterns: Mapping[str, object], module: str) -> object | None:
    """peft's per-module override (`rank_pattern`, `alpha_pattern`): the entry whose key matches the end
    of the module's name, as `peft.utils.other.get_pattern_key` matches it."""
    for key, value in patterns.items():
        try:
            if re.match(rf"(.*\.)?({key})$", module):
                return value
        except re.error:
            continue
    return None


def delta_weight(
    module: str, a: npt.NDArray[np.floating], b: npt.NDArray[np.floating], settings: LoraSettings
) -> Floats:
    """The update ΔW the adapter adds to the module's weight, in the base weight's orientation.

    Raises:
        TensorError: A and B that do not multiply (r differs) or are not matrices.
    """
    if a.ndim != 2 or b.ndim != 2:
        raise fail(module, f"lora_A {list(a.shape)} and lora_B {list(b.shape)} are not matrices")
    expect_shape(module, "lora_B", b, (b.shape[0], a.shape[0]))
    product = np.asarray(b, dtype=np.float32) @ np.asarray(a, dtype=np.float32)
    if settings.embedding != settings.fan_in_fan_out:
        product = product.T
    return np.ascontiguousarray(product * np.float32(settings.scaling))


def merged_weight(
    module: str,
    base: npt.NDArray[np.floating],
    delta: npt.NDArray[np.floating],
    magnitude: npt.NDArray[np.floating] | None = None,
) -> Floats:
    """W + ΔW, or with a DoRA magnitude m * (W + ΔW) / (norm of each output row of W + ΔW).

    Raises:
        TensorError: a base of another shape than the update, or a magnitude not one per output row.
    """
    expect_shape(module, "the base weight", base, delta.shape)
    combined = np.asarray(base, dtype=np.float32) + delta
    if magnitude is None:
        return combined
    flat = np.asarray(magnitude, dtype=np.float32).reshape(-1)
    if flat.size != combined.shape[0]:
        raise fail(
            module, f"lora_magnitude_vector has {flat.size} entries for {combined.shape[0]} output rows"
        )
    norms = np.linalg.norm(combined, axis=1)
    return np.ascontiguousarray(combined * (flat / np.where(norms > 0, norms, 1.0))[:, None])
