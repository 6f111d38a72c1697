"""A LoRA/PEFT adapter together with the base model it applies to (`wwinspect ADAPTER --base BASE`).

The adapter alone yields one update per target module (`<module>.lora_delta`, see
`formats._safetensors_adapters`). With its base, each module also yields the weight the fine-tuned model
holds, named like the base's (`<module>.weight`): W + ΔW for LoRA, m * (W + ΔW) / row norms for DoRA
(`formats.quantized.lora.merged_weight`), encoding `lora-merged-r8` / `dora-merged-r8`. The base is any file
wwinspect reads (safetensors, sharded, PyTorch, a quantised checkpoint: QLoRA's base is dequantised as
usual); `base_ref` gives the base's own tensor so the analysis can compare the two.

Reading stays one tensor at a time: a merged weight reads its base tensor and the adapter's factors.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from functools import partial
from pathlib import Path

import numpy as np
import numpy.typing as npt

from formats._safetensors_adapters import LoraRead
from formats.errors import TensorError, UnsupportedFormatError
from formats.quantized.lora import merged_weight
from formats.registry import open_model
from formats.types import DType, Reader, TensorInfo, TensorRef

MERGED_SUFFIX = "-merged"


class MergedAdapterReader(Reader):
    """The adapter's tensors, and after each update the merged weight of its module."""

    format_name = "safetensors"

    def __init__(self, path: Path, adapter: Reader, modules: Mapping[str, LoraRead], base: Reader) -> None:
        super().__init__(path)
        self._adapter = adapter
        self._modules = dict(modules)
        self._base = base
        self._base_refs = {ref.info.name: ref for ref in base.tensors()}
        self.structure = base.structure or adapter.structure
        self.warnings = tuple(adapter.warnings) + tuple(f"base: {warning}" for warning in base.warnings)

    @property
    def format(self) -> str:
        return self._adapter.format

    def metadata(self) -> Mapping[str, str]:
        merged = dict(self._adapter.metadata())
        merged["base"] = str(self._base.path)
        return merged

    def base_ref(self, name: str) -> TensorRef | None:
        """The base's own tensor of a merged weight's name (or of an update's module)."""
        return self._base_refs.get(name)

    def tensors(self) -> Iterator[TensorRef]:
        for ref in self._adapter.tensors():
            yield ref
            lora = self._modules.get(ref.info.name)
            if lora is not None:
                yield self._merged_ref(ref, lora)

    def _merged_ref(self, delta: TensorRef, lora: LoraRead) -> TensorRef:
        base = self._base_refs.get(lora.base_name)
        kind = lora.settings.encoding.split("-", 1)[0]
        encoding = f"{kind}{MERGED_SUFFIX}-r{lora.settings.rank}"
        skip = delta.info.skip_reason
        if base is None:
            skip = skip or f"the base {self._base.path.name} has no tensor {lora.base_name!r}"
        elif base.info.shape != delta.info.shape:
            skip = skip or (
                f"the base's {lora.base_name!r} has shape {list(base.info.shape)}, the update "
                f"{list(delta.info.shape)}"
            )
        info = TensorInfo(
            name=lora.base_name,
            shape=delta.info.shape,
            dtype=DType.F32,
            nbytes=delta.info.nbytes + (base.info.nbytes if base is not None else 0),
            origin=base.info.origin if base is not None else delta.info.origin,
            encoding=encoding,
            hint=dataclasses.replace(base.info.hint if base is not None else delta.info.hint, rank=None),
            stored_name=None,
            skip_reason=skip,
        )
        return TensorRef(info=info, _fetch=partial(self._read_merged, delta, base, lora, skip))

    def _read_merged(
        self, delta: TensorRef, base: TensorRef | None, lora: LoraRead, skip: str | None
    ) -> npt.NDArray[np.floating]:
        if base is None or skip is not None:
            raise TensorError(f"merged weight {lora.base_name!r}: {skip}", path=self.path)
        magnitude = self._adapter.magnitude(lora) if lora.magnitude is not None else None  # type: ignore[attr-defined]
        return merged_weight(lora.module, base.read(), delta.read(), magnitude)

    def close(self) -> None:
        self._adapter.close()
        self._base.close()


def open_merged(path: Path, base: Path) -> MergedAdapterReader:
    """Open the adapter at `path` with the base model at `base`.

    Raises:
        UnsupportedFormatError: `path` holds no LoRA update (not a LoRA/DoRA adapter).
        FormatError: either file cannot be read (as when it is opened alone).
    """
    adapter = open_model(path)
    modules: dict[str, LoraRead] = getattr(adapter, "adapter_modules", {})
    if not modules:
        adapter.close()
        raise UnsupportedFormatError(
            "--base needs a LoRA or DoRA adapter (adapter_config.json and lora_A/lora_B tensors); "
            "this file holds none",
            path=path,
        )
    try:
        base_reader = open_model(base)
    except BaseException:
        adapter.close()
        raise
    return MergedAdapterReader(path, adapter, modules, base_reader)
