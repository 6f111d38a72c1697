"""Model-file readers: what is in a file, read lazily and safely, and nothing about spectra.

Importing this package registers every reader; `open_model(path)` picks one by magic bytes, then suffix.
"""

from __future__ import annotations

from formats import gguf_reader as _gguf_reader  # noqa: F401 - registers the format
from formats import hdf5_reader as _hdf5_reader  # noqa: F401 - registers the format (before torch: .keras zips)
from formats import onnx_reader as _onnx_reader  # noqa: F401 - registers the format
from formats import safetensors_reader as _safetensors_reader  # noqa: F401 - registers the format
from formats import torch_reader as _torch_reader  # noqa: F401 - registers the format
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
from formats.registry import FormatSpec, detect, open_model, registered_formats
from formats.types import DType, FormatHint, Layout, Reader, Role, TensorInfo, TensorRef, WeightKind

__all__ = [
    "CorruptFileError",
    "DType",
    "FormatError",
    "FormatHint",
    "FormatSpec",
    "Layout",
    "MissingDependencyError",
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
    "open_model",
    "registered_formats",
]
