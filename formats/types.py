"""The reader contract: what every format reader yields, and nothing about spectra.

A reader parses a file's metadata eagerly (names, shapes, dtypes, byte ranges, and whatever the format
says about the layer a tensor belongs to) and hands out `TensorRef`s whose bytes are read only when
`read()` is called, one tensor at a time. Readers translate their format's vocabulary into the small
closed sets below at the boundary, so the analysis never sees a format-specific name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import ClassVar

import numpy as np
import numpy.typing as npt


class DType(str, Enum):
    """Element types, spelled as safetensors spells them; `QUANTIZED` covers block formats (GGUF Q4_K...)."""

    F64 = "F64"
    F32 = "F32"
    F16 = "F16"
    BF16 = "BF16"
    F8_E4M3 = "F8_E4M3"
    F8_E5M2 = "F8_E5M2"
    F8_E4M3_FNUZ = "F8_E4M3_FNUZ"  # ONNX FLOAT8E4M3FNUZ, torch float8_e4m3fnuz
    F8_E5M2_FNUZ = "F8_E5M2_FNUZ"
    F8_E8M0 = "F8_E8M0"  # powers of two: the MX formats' shared scales
    F4_E2M1 = "F4_E2M1"  # two per byte, first in the low nibble (ONNX FLOAT4E2M1)
    I64 = "I64"
    I32 = "I32"
    I16 = "I16"
    I8 = "I8"
    I4 = "I4"
    U64 = "U64"
    U32 = "U32"
    U16 = "U16"
    U8 = "U8"
    U4 = "U4"
    BOOL = "BOOL"
    COMPLEX = "COMPLEX"
    QUANTIZED = "QUANTIZED"
    OTHER = "OTHER"

    @property
    def is_float(self) -> bool:
        """True for element types whose values are real numbers we can analyse directly."""
        return self in _FLOAT_DTYPES


_FLOAT_DTYPES = frozenset(
    {DType.F64, DType.F32, DType.F16, DType.BF16, DType.F8_E4M3, DType.F8_E5M2}
    | {DType.F8_E4M3_FNUZ, DType.F8_E5M2_FNUZ, DType.F8_E8M0, DType.F4_E2M1}
)


class WeightKind(str, Enum):
    """What the file's own layer information says a tensor is, when it says anything."""

    DENSE = "dense"  # multiplies activations: Linear, Gemm, MatMul, Dense, HF Conv1D
    CONV = "conv"  # a convolution kernel with spatial axes
    DEPTHWISE_CONV = "depthwise_conv"  # one filter per channel: not a matrix
    EMBEDDING = "embedding"  # a lookup table (vocab, dim)
    RECURRENT = "recurrent"  # stacked gate matrices of an LSTM/GRU/RNN
    EXPERTS = "experts"  # a stack of same-shaped expert matrices
    NORM = "norm"  # normalisation scale or shift
    BIAS = "bias"
    OTHER = "other"


class Layout(str, Enum):
    """Axis order of a weight as stored (after readers have put dims in numpy's row-major order).

    Eigenvalues of a matrix do not depend on its orientation, but cutting a conv kernel into (out, in)
    slices does, so readers state the layout where their format fixes it.
    """

    UNKNOWN = "unknown"
    OUT_IN = "out_in"  # PyTorch / ONNX / GGUF: (out, in) and conv (out, in, *spatial)
    IN_OUT = "in_out"  # Keras / TF / HF Conv1D: (in, out) and conv (*spatial, in, out)


class Role(str, Enum):
    """Where in a network a layer sits, when the format or conventional names say so."""

    ATTENTION = "attention"
    MLP = "mlp"
    EMBEDDING = "embedding"
    OUTPUT = "output"


@dataclass(frozen=True, slots=True)
class FormatHint:
    """What the format itself says about the layer a tensor belongs to; every field is optional.

    Attributes:
        kind: the layer kind from the format's own graph or config (ONNX op, Keras class, torch module).
        layout: axis order of the stored tensor.
        role: attention / mlp / embedding / output, where the format or names make it clear.
        op: the source operator or class in the format's words, e.g. "Gemm", "Conv", "Dense", "LSTM".
        layer_name: the layer or node that uses the tensor, e.g. an ONNX node name.
        groups: convolution groups (1 for ordinary convolutions).
        rank: the matrix's rank when the format fixes it (a LoRA update B @ A has rank r); None otherwise.
    """

    kind: WeightKind | None = None
    layout: Layout = Layout.UNKNOWN
    role: Role | None = None
    op: str | None = None
    layer_name: str | None = None
    groups: int = 1
    rank: int | None = None


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """Everything the file says about one tensor; building it reads no tensor bytes.

    Attributes:
        name: the name a user knows the tensor by ("encoder.layer.0.attention.self.query.weight").
        shape: logical shape in numpy (row-major) order; readers reverse GGUF's dims on the way in.
        dtype: element type as stored.
        nbytes: bytes the tensor occupies in the file.
        origin: where it lives, for messages ("model-00002-of-00004.safetensors @ 0x3c0000").
        encoding: the format's own type name when `dtype` is too coarse ("Q4_K", "float8_e4m3fn").
        hint: what the format says about the layer (kind, layout, role, source op).
        aliases: other names that refer to the same bytes (tied embeddings, shared initializers).
        stored_name: the name in the file when `name` was derived from elsewhere (an ONNX initializer
            named by the exporter, `onnx::MatMul_123`, gets the consumer node's name as `name`).
        skip_reason: set by the reader when it already knows the values cannot be analysed
            (integer data, FP8 without its block scales); the tensor is listed, never read.
    """

    name: str
    shape: tuple[int, ...]
    dtype: DType
    nbytes: int
    origin: str = ""
    encoding: str | None = None
    hint: FormatHint = field(default_factory=FormatHint)
    aliases: tuple[str, ...] = ()
    stored_name: str | None = None
    skip_reason: str | None = None


@dataclass(frozen=True, slots=True)
class ModelStructure:
    """What a checkpoint's own configuration says about the network (config.json, GGUF metadata).

    The analysis uses it to split fused projections and attention heads, to recognise stacked experts and
    tied embeddings; every field is None where the configuration does not say.

    Attributes:
        source: where the facts come from, for the report ("config.json", "GGUF metadata").
        model_type: the architecture's name as the configuration spells it ("llama", "falcon", "gpt2").
        num_heads: attention (query) heads.
        num_kv_heads: key/value heads (grouped-query attention); equal to num_heads without GQA.
        head_dim: the width of one head.
        hidden_size: the model width.
        num_experts: experts per mixture-of-experts layer.
        experts_key: the configuration key that gave num_experts ("num_local_experts").
        tie_word_embeddings: the output projection is the input embedding.
        fused_qkv: how a fused query_key_value stacks its rows: "per-head" (BLOOM, Falcon without the new
            decoder architecture: q, k, v of each head in turn), "grouped" (Falcon's new decoder
            architecture: per key/value group its query heads, then one k and one v), "multi-query"
            (Falcon-7B: every query head, then one k, one v), "blocks" (q, then k, then v), or None.
    """

    source: str
    model_type: str | None = None
    num_heads: int | None = None
    num_kv_heads: int | None = None
    head_dim: int | None = None
    hidden_size: int | None = None
    num_experts: int | None = None
    experts_key: str | None = None
    tie_word_embeddings: bool | None = None
    fused_qkv: str | None = None


@dataclass(frozen=True, slots=True)
class TensorRef:
    """A `TensorInfo` plus a way to fetch its values on demand."""

    info: TensorInfo
    _fetch: Callable[[], npt.NDArray[np.floating]] = field(repr=False, compare=False)

    def read(self) -> npt.NDArray[np.floating]:
        """Return the values as float32 or float64 (widened from F16/BF16/F8, dequantised from blocks).

        The array may be a read-only view of a memory map; callers must not keep it past the layer.

        Raises:
            TensorError: the values cannot be produced (unsupported dtype or quantisation).
            FormatError: the bytes turned out inconsistent with the header while reading.
        """
        return self._fetch()


class Reader(ABC):
    """An open model file. Use as a context manager; `tensors()` yields lazily, in file order."""

    #: The format name reported in the JSON report ("safetensors", "pytorch", "torchscript", ...).
    format_name: ClassVar[str] = ""
    #: Things the user should hear about that did not stop the reading (gaps, links not followed...).
    warnings: tuple[str, ...] = ()
    #: What the checkpoint's configuration says about the network, where it has one.
    structure: ModelStructure | None = None

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def format(self) -> str:
        """The format name of this file; a reader serving two variants may override it per file."""
        return self.format_name

    @abstractmethod
    def tensors(self) -> Iterator[TensorRef]:
        """Yield every weight tensor once, in file order, without reading tensor bytes."""

    def metadata(self) -> Mapping[str, str]:
        """Free-form file metadata, stringified; untrusted text."""
        return {}

    def close(self) -> None:  # noqa: B027 - readers without resources need not override it
        """Release files and memory maps; `read()` on a ref from this reader fails afterwards."""

    def __enter__(self) -> Reader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
