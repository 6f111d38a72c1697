"""Reads ONNX models: every weight found from the graph, described as its consumer sees it, read lazily.

The protobuf is parsed without external data (`load_external_data=False` semantics: we parse the
`ModelProto` ourselves and never call onnx's external-data loader). `formats._onnx_graph` walks the main
graph and every If/Loop/Scan subgraph and decides which constants are weights and how their layers use
them; this module checks each weight's bytes (`formats._onnx_tensor.locate`) when the reader opens, and
on `read()` produces the float matrix the consumer sees, applying Transpose, Cast and DequantizeLinear
chains and splitting LSTM/GRU/RNN weights per direction.

Honest about memory: weights embedded in the protobuf (`raw_data`) are in memory as soon as the file is
parsed, so for embedded models the reader holds the whole file; only external data is lazy, memory-mapped
one tensor's byte range at a time and released when the caller drops the array. Protobuf itself cannot
parse files over 2 GiB, which is why models that large keep their weights in external files.

Decisions that shape what `tensors()` yields:
- Order: constants in the order of their first use in the graph (depth first into subgraphs), then
  unused float initializers in file order.
- Names: an initializer keeps its name (`fc1.weight`); a name the exporter generated (`onnx::MatMul_12`,
  `val_7`, `Constant_3`) is replaced by the consumer's: the torch parameter named in the dynamo
  exporter's node metadata when it is unambiguous, else `<consumer node name><suffix>` (`.weight`,
  `.bias`, `.W`, `.R`...). `stored_name` keeps the initializer's name.
- LSTM/GRU/RNN: W (num_directions, gates*hidden, input) and R (num_directions, gates*hidden, hidden)
  are yielded one tensor per direction, 2-D (gates*hidden, input|hidden), kind RECURRENT, layout
  OUT_IN, named `<base>` for one direction and `<base>.forward` / `<base>.reverse` for two. The gate
  blocks are kept stacked: a fused gate stack is one matrix, as the product contract says.
- A constant used by several consumers is yielded once, with the other consumers' names as aliases.
- Model-local functions are expanded at each call (`GraphWalker._inlined`), so a weight passed into a
  function reaches the operator inside it that uses it. Not walked: training_info graphs.
- Shape-only and selecting nodes with constant operands (Unsqueeze, Squeeze, Reshape, Flatten, Expand,
  Slice, Split, Gather) are followed (`formats._onnx_shape_ops`); the parts a Split, Slice or Gather
  selects from one weight are yielded one each, named after their consumers.
- Quantised operators (QLinearMatMul, QLinearConv, MatMulInteger, ConvInteger, com.microsoft
  MatMulNBits and GatherBlockQuantized) dequantise their weight on read, as the operator does
  (`formats._onnx_quantized_ops`); dtype QUANTIZED, encoding `qlinear-int8`, `matmulnbits-int4-b32`...
- Biases, normalisation parameters and depthwise kernels are yielded with a `skip_reason`; shape and
  index constants, quantisation scales and zero points, and Constant-node
  arithmetic are not yielded at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from formats._binary import as_floats, file_size_of
from formats._lazy_reader import LazyReader
from formats._onnx_chains import (
    Cast,
    Constant,
    Dequantize,
    SelectDirection,
    apply_transforms,
    cast,
    dequantize,
    is_dequantized,
)
from formats._onnx_graph import GraphWalker, Planned
from formats._onnx_quantized_ops import QuantizedOperand
from formats._onnx_tensor import (
    DOUBLE,
    FLOAT,
    FLOAT_CODES,
    Located,
    Storage,
    element_type,
    is_defined,
    load_values,
    locate,
    undefined_type_reason,
)
from formats.errors import (
    CorruptFileError,
    MissingDependencyError,
    UnsupportedFormatError,
)
from formats.registry import FormatSpec, register
from formats.skip_reasons import not_a_matrix, not_floating_point
from formats.types import DType, FormatHint, TensorInfo

__all__ = ["ONNXReader", "cast", "dequantize", "open_onnx", "sniff_onnx"]

if TYPE_CHECKING:
    import onnx


#: protobuf refuses messages over 2 GiB; larger models must use external data.
MAX_PROTOBUF_BYTES = (1 << 31) - 1


@dataclass(frozen=True, slots=True)
class _Entry:
    """A planned tensor with its description and the checked locations of every constant it reads."""

    info: TensorInfo
    planned: Planned
    located: dict[int, Located]  # id(Constant) -> where its values are


class ONNXReader(LazyReader[_Entry]):
    """An ONNX model whose weights were found from its graph; `read()` produces what the consumer sees.

    Attributes:
        warnings: what the user should hear about that did not stop the reading.
        bytes_materialized: bytes of tensor data decoded so far (embedded or external); tests use it.
    """

    format_name = "onnx"

    def __init__(self, path: Path, model: onnx.ModelProto) -> None:
        walker = GraphWalker(model)
        walker.walk()
        # Metadata: producer, IR version, opsets, graph name and the model's metadata_props (untrusted).
        super().__init__(path, (), _describe_model(model, walker.subgraph_count), tuple(walker.notes))
        self._entries = [self._describe(planned) for planned in walker.plan()]  # locating needs self.path

    def _release(self) -> None:
        """Drop the parsed model (the plan holds the only references to it); memory maps live only as
        long as the arrays a `read()` returned."""
        self._entries = []

    # -- opening ------------------------------------------------------------------------------------

    def _describe(self, planned: Planned) -> _Entry:
        constant = planned.constant
        located: dict[int, Located] = {}
        what = constant.name or "(unnamed)"
        if constant.sparse_shape is None:
            located[id(constant)] = locate(constant.tensor, model_path=self.path, what=what)
        for transform in planned.transforms:
            params: tuple[Constant | None, ...] = ()
            if isinstance(transform, Dequantize):
                params = (transform.scale, transform.zero_point)
            elif isinstance(transform, QuantizedOperand):
                params = (transform.scale, transform.zero_point, transform.g_idx)
            for param in params:
                if param is not None:
                    located[id(param)] = locate(param.tensor, model_path=self.path, what=param.name)
        use = planned.use
        slot = use.slot if use is not None else None
        hint = FormatHint(
            kind=slot.kind if slot is not None else None,
            layout=slot.layout if slot is not None else FormatHint().layout,
            role=slot.role_hint if slot is not None else None,
            op=_op_label(use.node) if use is not None else None,
            layer_name=use.node_label if use is not None else None,
            groups=slot.groups if slot is not None else 1,
        )
        quantized = is_dequantized(planned.transforms) or (
            constant.code not in FLOAT_CODES and any(isinstance(t, Cast) for t in planned.transforms)
        )
        dtype = DType.QUANTIZED if quantized else element_type(constant.code).dtype
        # Facts every format shares (a bias, a depthwise kernel...) are worded from the hint; ONNX's own
        # (sparse storage, a chain that does not fit, an operator-quantised weight) come with the plan.
        skip = not_a_matrix(hint, planned.shape) or planned.skip_reason
        if not is_defined(constant.code):
            # One tensor's problem while the graph parses (PRODUCT.md): listed, never read.
            skip = undefined_type_reason(constant.code)
        elif skip is None and not quantized and not dtype.is_float:
            skip = not_floating_point(element_type(constant.code).onnx_name)
        directions = next((t.count for t in planned.transforms if isinstance(t, SelectDirection)), 1)
        source = located.get(id(constant))
        nbytes = (source.nbytes if source is not None else 0) // directions
        if source is not None and source.storage is Storage.EXTERNAL and source.file is not None:
            origin = f"{source.file.name} @ {source.offset:#x}"
        else:
            origin = f"{self.path.name}: {constant.where}"
        encoding = planned.encoding
        if encoding is None and constant.code not in (FLOAT, DOUBLE):
            encoding = element_type(constant.code).onnx_name
        info = TensorInfo(
            name=planned.name,
            shape=planned.shape,
            dtype=dtype,
            nbytes=nbytes,
            origin=origin,
            encoding=encoding,
            hint=hint,
            aliases=planned.aliases,
            stored_name=constant.name if constant.name != planned.name else None,
            skip_reason=skip,
        )
        return _Entry(info, planned, located)

    # -- reading ------------------------------------------------------------------------------------

    def _values(self, constant: Constant, entry: _Entry) -> npt.NDArray[np.generic]:
        located = entry.located[id(constant)]
        values = load_values(constant.tensor, located)
        self.bytes_materialized += located.nbytes
        return values

    def _fetch(self, entry: _Entry) -> npt.NDArray[np.floating]:
        info = entry.info
        planned = entry.planned
        values = apply_transforms(
            self._values(planned.constant, entry),
            planned.transforms,
            lambda constant: self._values(constant, entry),
            info.name,
        )
        return as_floats(values, what=f"tensor {info.name!r}")


def _describe_model(model: onnx.ModelProto, subgraphs: int) -> dict[str, str]:
    meta = {
        "onnx.producer": f"{model.producer_name} {model.producer_version}".strip(),
        "onnx.ir_version": str(model.ir_version),
        "onnx.opsets": ", ".join(
            f"{entry.domain or 'ai.onnx'} {entry.version}" for entry in model.opset_import
        ),
        "onnx.graph": model.graph.name,
        "onnx.subgraphs": str(subgraphs),
    }
    if model.model_version:
        meta["onnx.model_version"] = str(model.model_version)
    if model.domain:
        meta["onnx.domain"] = model.domain
    if any(tensor.data_location == 1 for tensor in model.graph.initializer):
        meta["onnx.external_data"] = "yes"
    if model.functions:
        meta["onnx.functions"] = str(len(model.functions))
    for prop in model.metadata_props:
        meta[f"onnx.meta.{prop.key}"] = prop.value
    return meta


def _op_label(node: onnx.NodeProto) -> str:
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"


# ----------------------------------------------------------------------------------------------------
# Opening and registration.


def open_onnx(path: Path) -> ONNXReader:
    """Parse an ONNX model (without its external data) and plan its weights.

    Raises:
        MissingDependencyError: the `onnx` package is not installed.
        CorruptFileError: not a parseable ModelProto, no graph, or tensor bytes inconsistent with shapes.
        UnsafeFileError: external data outside the model's folder.
        UnsupportedFormatError: a protobuf over 2 GiB.
    """
    try:
        import onnx
        from google.protobuf.message import DecodeError
    except ImportError as exc:
        raise MissingDependencyError(
            "reading ONNX needs the onnx package", path=path, hint="pip install onnx"
        ) from exc
    size = file_size_of(path)
    if size > MAX_PROTOBUF_BYTES:
        raise UnsupportedFormatError(
            f"the protobuf is {size} bytes; protobuf cannot parse messages over 2 GiB (models this large "
            "keep their weights in external data files)",
            path=path,
        )
    data = path.read_bytes()
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise CorruptFileError(
            f"not a valid ONNX protobuf (truncated or corrupt): {exc}", path=path
        ) from None
    del data
    if not model.HasField("graph"):
        raise CorruptFileError("not an ONNX model: the protobuf has no graph", path=path)
    bad_text = _first_bad_text(model)
    if bad_text is not None:
        raise CorruptFileError(f"{bad_text} is not valid UTF-8 text (ONNX strings must be)", path=path)
    return ONNXReader(path, model)


def _first_bad_text(model: onnx.ModelProto) -> str | None:
    """Where a string field holds invalid UTF-8, which ONNX's proto2 schema lets protobuf return as bytes.

    Names are compared, hashed and printed everywhere downstream, so such a file is refused once here.
    """
    for prop in model.metadata_props:
        if isinstance(prop.key, bytes) or isinstance(prop.value, bytes):
            return "a metadata property"
    if isinstance(model.producer_name, bytes) or isinstance(model.producer_version, bytes):
        return "the producer name"
    stack = [model.graph]
    while stack:
        graph = stack.pop()
        if isinstance(graph.name, bytes):
            return "a graph name"
        for tensor in [*graph.initializer, *(sparse.values for sparse in graph.sparse_initializer)]:
            if isinstance(tensor.name, bytes) or any(
                isinstance(entry.key, bytes) or isinstance(entry.value, bytes)
                for entry in tensor.external_data
            ):
                return "an initializer name or external data entry"
        for value in [*graph.input, *graph.output]:
            if isinstance(value.name, bytes):
                return "a graph input or output name"
        for position, node in enumerate(graph.node):
            texts = [node.name, node.op_type, node.domain, *node.input, *node.output]
            texts += [prop.key for prop in node.metadata_props] + [prop.value for prop in node.metadata_props]
            if any(isinstance(text, bytes) for text in texts):
                return f"a name in node #{position}"
            for attribute in node.attribute:
                if isinstance(attribute.name, bytes):
                    return "an attribute name"
                if attribute.type == 4 and isinstance(attribute.t.name, bytes):  # AttributeProto.TENSOR
                    return "a Constant tensor name"
                if attribute.type == 5:  # GRAPH
                    stack.append(attribute.g)
                elif attribute.type == 10:  # GRAPHS
                    stack.extend(attribute.graphs)
    return None


# ModelProto field tags that may follow ir_version (field 1, varint): producer_name (2), producer_version
# (3), domain (4), model_version (5), doc_string (6), graph (7), opset_import (8), metadata_props (14),
# training_info (20, two-byte tag), functions (25, two-byte tag).
_SECOND_FIELD_TAGS = frozenset({0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72, 0xA2, 0xCA})


def sniff_onnx(head: bytes, path: Path) -> bool:
    """An ONNX file has no magic; torch, onnx and onnxscript all write ir_version first, then a known field.

    The pattern (0x08, a small version, a ModelProto field tag) does not occur at the start of the other
    formats we read (GGUF, HDF5 and zip magics; safetensors' header length has a zero third byte).
    """
    if len(head) < 3 or head[0] != 0x08 or head[8:9] == b"{":
        return False
    return 1 <= head[1] <= 32 and head[2] in _SECOND_FIELD_TAGS


register(FormatSpec(name="onnx", suffixes=frozenset({".onnx"}), sniff=sniff_onnx, opener=open_onnx))
