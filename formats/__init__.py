"""Model-file readers: what is in a file, read lazily and safely, and nothing about spectra.

`open_model(path)` picks a reader by magic bytes, then suffix. The reader modules are declared here in
detection order and imported only when detection reaches them.
"""

from __future__ import annotations

from pathlib import Path

from formats._hf_config import is_adapter
from formats.errors import (
    CorruptFileError,
    FormatError,
    MissingDependencyError,
    TensorError,
    UnknownFormatError,
    UnsafeFileError,
    UnsupportedFormatError,
    WWInspectError,
)
from formats.registry import FormatSpec, declare, detect, open_model, registered_formats
from formats.types import (
    DType,
    FormatHint,
    Layout,
    ModelStructure,
    Reader,
    Role,
    TensorInfo,
    TensorRef,
    WeightKind,
)

# Detection order: safetensors first (the most common and a cheap, exact header check), then the formats
# with magic bytes; the HDF5 reader must come before the PyTorch one, since both claim zip archives
# (.keras zips versus torch archives); ONNX, which has no magic, last.
for _module in (
    "formats.safetensors_reader",
    "formats.gguf_reader",
    "formats.hdf5_reader",
    "formats.torch_reader",
    "formats.onnx_reader",
):
    declare(_module)


def open_with_base(path: Path, base: Path, *, strict_pickles: bool | None = None) -> Reader:
    """Open a LoRA/PEFT adapter with the base model it applies to (`formats._adapter_merge`)."""
    from formats._adapter_merge import open_merged
    from formats._pickle_policy import strict_pickles as strictness

    with strictness(strict_pickles):
        return open_merged(path, base)


__all__ = [
    "CorruptFileError",
    "DType",
    "FormatError",
    "FormatHint",
    "FormatSpec",
    "Layout",
    "MissingDependencyError",
    "ModelStructure",
    "Reader",
    "Role",
    "TensorError",
    "TensorInfo",
    "TensorRef",
    "UnknownFormatError",
    "UnsafeFileError",
    "UnsupportedFormatError",
    "WWInspectError",
    "WeightKind",
    "detect",
    "is_adapter",
    "open_model",
    "open_with_base",
    "registered_formats",
]
