"""Which datasets of an HDF5 file are Keras weights, what each is, and what to call it.

Works on the catalogue the HDF5 worker sends (groups with attributes, datasets with shape, dtype and
storage), never on the file, so it is plain Python and testable without libhdf5. Three Keras layouts:

- Keras 3 (`.weights.h5`, and `model.weights.h5` inside a `.keras` zip): one group per trackable object,
  `layers/<snake_case class>[_n]/...`, whose variables are `vars/0`, `vars/1`... in creation order; the
  `vars` group's `name` attribute (Keras >= 3.?) holds the layer's name. Sublayers hang off attribute
  names (`cell` of an LSTM, `forward_layer` of a Bidirectional, `query_dense` of MultiHeadAttention),
  nested models under their own `layers`. The top-level `optimizer` holds optimizer slots, not weights.
- Keras 2 full model (`model.save("m.h5")`): `model_weights` with a `layer_names` attribute, each layer
  group with `weight_names`; the model config is a JSON attribute of the root.
- Keras 2 weights only (`save_weights("w.h5")`): the same with `layer_names` on the root.

Layer classes come from the Keras config (`formats._keras_config`: read as plain JSON, never
deserialised); without one, from the Keras 3 group names or the Keras 2 variable names. Names are
`<layer>/<sublayer>/<variable>` as Keras 3 prints variable paths (`lstm/lstm_cell/kernel`), without the
enclosing model's name, so the three layouts of one model give the same names; Keras 2's `:0` suffix is
dropped (the stored name is kept in `stored_name`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from formats._keras_config import LayerClass
from formats.types import FormatHint, Layout, Role, WeightKind


class KerasLayout(str, Enum):
    """How the weights are arranged in the file."""

    KERAS3 = "keras3"
    KERAS2_MODEL = "keras2-model"
    KERAS2_WEIGHTS = "keras2-weights"
    PLAIN = "hdf5"


@dataclass(frozen=True, slots=True)
class Weight:
    """One dataset that holds a weight, with what is known about its layer.

    Attributes:
        name: the reported name (`lstm/lstm_cell/kernel`).
        dataset: its path in the HDF5 file.
        variable: the variable's name (`kernel`, `bias`...), or its index as text when unknown.
        layer: the Keras name of the top-level layer it belongs to.
        class_name: the class of the layer object that owns the variable, when known.
        stored_name: the name in the file when it differs from `name` (Keras 2 `weight_names`).
        merge: for MultiHeadAttention kernels, which axes fold into one: "tail" (in, heads, dim) ->
            (in, heads*dim), "head" (heads, dim, out) -> (heads*dim, out); None otherwise.
        groups: convolution groups from the config.
        order: sort key (position in the config, else in the file).
    """

    name: str
    dataset: str
    variable: str
    layer: str
    class_name: str | None
    stored_name: str | None = None
    merge: str | None = None
    groups: int = 1
    order: tuple[float, ...] = ()


# Variables of built-in Keras 3 layers, in the order `vars/<i>` stores them (creation order in build()).
_VARIABLES: dict[str, tuple[str, ...]] = {
    "Dense": ("kernel", "bias"),
    "EinsumDense": ("kernel", "bias"),
    "Conv1D": ("kernel", "bias"),
    "Conv2D": ("kernel", "bias"),
    "Conv3D": ("kernel", "bias"),
    "Conv1DTranspose": ("kernel", "bias"),
    "Conv2DTranspose": ("kernel", "bias"),
    "Conv3DTranspose": ("kernel", "bias"),
    "DepthwiseConv1D": ("kernel", "bias"),
    "DepthwiseConv2D": ("kernel", "bias"),
    "SeparableConv1D": ("depthwise_kernel", "pointwise_kernel", "bias"),
    "SeparableConv2D": ("depthwise_kernel", "pointwise_kernel", "bias"),
    "Embedding": ("embeddings",),
    "LSTMCell": ("kernel", "recurrent_kernel", "bias"),
    "GRUCell": ("kernel", "recurrent_kernel", "bias"),
    "SimpleRNNCell": ("kernel", "recurrent_kernel", "bias"),
    "LayerNormalization": ("gamma", "beta"),
    "RMSNormalization": ("scale",),
    "GroupNormalization": ("gamma", "beta"),
    "BatchNormalization": ("gamma", "beta", "moving_mean", "moving_variance"),
    "PReLU": ("alpha",),
}

_RECURRENT = frozenset(
    {"LSTM", "GRU", "SimpleRNN", "LSTMCell", "GRUCell", "SimpleRNNCell", "CuDNNLSTM", "CuDNNGRU"}
)
_CONV = frozenset(
    {"Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose", "Convolution2D"}
)
_DEPTHWISE = frozenset({"DepthwiseConv1D", "DepthwiseConv2D"})
_NORMS = frozenset(
    {
        "LayerNormalization",
        "BatchNormalization",
        "GroupNormalization",
        "RMSNormalization",
        "UnitNormalization",
    }
)

# Keras 3 names an object's group after its class in snake case (keras.src.utils.naming.to_snake_case),
# with _1, _2... for repeats; without a config, this is how a group's class is known.
_SNAKE_CLASSES: dict[str, str] = {
    "dense": "Dense",
    "einsum_dense": "EinsumDense",
    "conv1d": "Conv1D",
    "conv2d": "Conv2D",
    "conv3d": "Conv3D",
    "conv1d_transpose": "Conv1DTranspose",
    "conv2d_transpose": "Conv2DTranspose",
    "conv3d_transpose": "Conv3DTranspose",
    "depthwise_conv1d": "DepthwiseConv1D",
    "depthwise_conv2d": "DepthwiseConv2D",
    "separable_conv1d": "SeparableConv1D",
    "separable_conv2d": "SeparableConv2D",
    "embedding": "Embedding",
    "lstm": "LSTM",
    "gru": "GRU",
    "simple_rnn": "SimpleRNN",
    "bidirectional": "Bidirectional",
    "layer_normalization": "LayerNormalization",
    "batch_normalization": "BatchNormalization",
    "group_normalization": "GroupNormalization",
    "rms_normalization": "RMSNormalization",
    "multi_head_attention": "MultiHeadAttention",
    "p_re_lu": "PReLU",
    "sequential": "Sequential",
    "functional": "Functional",
    "lstm_cell": "LSTMCell",
    "gru_cell": "GRUCell",
    "simple_rnn_cell": "SimpleRNNCell",
}

# Sublayer attributes whose class is fixed by their parent's class.
_CHILD_CLASSES: dict[tuple[str, str], str] = {
    ("LSTM", "cell"): "LSTMCell",
    ("GRU", "cell"): "GRUCell",
    ("SimpleRNN", "cell"): "SimpleRNNCell",
    ("MultiHeadAttention", "query_dense"): "EinsumDense",
    ("MultiHeadAttention", "key_dense"): "EinsumDense",
    ("MultiHeadAttention", "value_dense"): "EinsumDense",
    ("MultiHeadAttention", "output_dense"): "EinsumDense",
}
_MHA_MERGE = {"query_dense": "tail", "key_dense": "tail", "value_dense": "tail", "output_dense": "head"}

#: Top-level groups of a Keras 3 weights file that hold no model weights.
_NOT_WEIGHTS = frozenset({"optimizer", "metrics", "loss", "compile_metrics", "_tracker"})


# ----------------------------------------------------------------------------------------------------
# Layouts.


def detect_layout(catalogue: Mapping[str, Any]) -> KerasLayout:
    """Which of the Keras layouts (or none) the file's groups follow."""
    groups = catalogue.get("groups", {})
    root = groups.get("/", {}).get("attrs", {})
    if "layer_names" in root:
        return KerasLayout.KERAS2_WEIGHTS
    if "layer_names" in groups.get("/model_weights", {}).get("attrs", {}):
        return KerasLayout.KERAS2_MODEL
    if "/layers" in groups or "/vars" in groups:
        return KerasLayout.KERAS3
    return KerasLayout.PLAIN


def _natural(text: str) -> tuple[Any, ...]:
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def _strings(value: Any) -> list[str]:
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    if isinstance(value, str):
        return [value]
    return []


def keras3_weights(
    catalogue: Mapping[str, Any], classes: Mapping[str, LayerClass], order: Mapping[str, int]
) -> list[Weight]:
    """Weights of a Keras 3 file: every `vars` group outside the optimizer, named by object names."""
    groups: Mapping[str, Any] = catalogue.get("groups", {})
    datasets: Mapping[str, Any] = catalogue.get("datasets", {})
    links: Mapping[str, Any] = catalogue.get("links", {})
    weights: list[Weight] = []

    def object_name(path: str) -> str:
        attrs = groups.get(f"{path}/vars", {}).get("attrs", {})
        name = attrs.get("name")
        return name if isinstance(name, str) and name else path.rsplit("/", 1)[-1]

    def class_of(path: str, parent: LayerClass | None, parent_class: str | None) -> LayerClass | None:
        key = path.rsplit("/", 1)[-1]
        name = object_name(path)
        if parent_class is not None and (parent_class, key) in _CHILD_CLASSES:
            return LayerClass(name, _CHILD_CLASSES[(parent_class, key)])
        if parent is not None and parent_class == "Bidirectional":
            # The config of a Bidirectional holds its wrapped layer ("layer") and maybe "backward_layer".
            child = parent.children.get("backward_layer" if key == "backward_layer" else "layer")
            if child is None and key == "backward_layer":
                child = parent.children.get("layer")
            if child is not None:
                return LayerClass(name, child.class_name, child.module, child.config)
        known = classes.get(name)
        if known is not None:
            return known
        for guess in (key, name):
            class_name = _SNAKE_CLASSES.get(re.sub(r"_\d+$", "", guess))
            if class_name is not None:
                return LayerClass(name, class_name)
        return None

    def visit(path: str, names: tuple[str, ...], parent: LayerClass | None, top: str) -> None:
        group = groups.get(path)
        if group is None:
            return
        members: list[str] = group.get("members", [])
        this = (
            class_of(path, parent, parent.class_name if parent is not None else None) if path != "/" else None
        )
        this_class = this.class_name if this is not None else None
        if "vars" in members and path != "/":
            vars_path = f"{path}/vars"
            # A variable may be a second hard link to another layer's dataset (shared weights).
            indices = sorted(
                (
                    m
                    for m in groups.get(vars_path, {}).get("members", [])
                    if m.isdigit() and (f"{vars_path}/{m}" in datasets or _is_link(links, f"{vars_path}/{m}"))
                ),
                key=int,
            )
            variables = _variable_names(this_class, this, len(indices))
            layer_config = this.config if this is not None else {}
            groups_setting = layer_config.get("groups", 1) if isinstance(layer_config, Mapping) else 1
            for position, index in enumerate(indices):
                variable = variables[position] if variables else index
                dataset = f"{vars_path}/{index}"
                weights.append(
                    Weight(
                        name="/".join((*names, variable)),
                        dataset=dataset,
                        variable=variable,
                        layer=top,
                        class_name=this_class,
                        merge=_MHA_MERGE.get(path.rsplit("/", 1)[-1])
                        if parent is not None and parent.class_name == "MultiHeadAttention"
                        else None,
                        groups=groups_setting
                        if isinstance(groups_setting, int) and groups_setting > 0
                        else 1,
                        # Config order when there is a config; else (and within a layer) the order the
                        # objects were created in, which their header addresses keep.
                        order=(
                            float(order.get(top, len(order))),
                            float(groups.get(vars_path, {}).get("addr", 0)),
                            float(int(index)),
                        ),
                    )
                )
        for member in sorted(members, key=_natural):
            if member == "vars":
                continue
            child = f"{path.rstrip('/')}/{member}"
            if child not in groups:
                continue
            if path == "/" and member in _NOT_WEIGHTS:
                continue
            if member == "layers":
                # A container of sublayers (the model's, or a nested model's): its members are objects.
                for layer in sorted(groups[child].get("members", []), key=_natural):
                    layer_path = f"{child}/{layer}"
                    if layer_path in groups:
                        name = object_name(layer_path)
                        visit(layer_path, (*names, name), this, top if names else name)
                continue
            name = object_name(child)
            visit(child, (*names, name), this, top if names else name)

    visit("/", (), None, "")
    return sorted(weights, key=lambda weight: weight.order)


def _is_link(links: Mapping[str, Any], path: str) -> bool:
    """A link of any kind: a second name (hard), or one the reader lists with its reason (soft, external)."""
    return isinstance(links.get(path), dict)


def _variable_names(class_name: str | None, layer: LayerClass | None, count: int) -> tuple[str, ...]:
    """Variable names of a built-in class when they account for exactly `count` variables."""
    names = _VARIABLES.get(class_name or "")
    if names is None:
        return ()
    if len(names) == count:
        return names
    config = layer.config if layer is not None else {}
    if config.get("use_bias") is False and names[-1] == "bias" and len(names) - 1 == count:
        return names[:-1]
    if class_name == "BatchNormalization" or class_name in ("LayerNormalization", "GroupNormalization"):
        present = [
            name
            for name in names
            if not (name == "gamma" and config.get("scale") is False)
            and not (name == "beta" and config.get("center") is False)
        ]
        if len(present) == count:
            return tuple(present)
    return ()


def keras2_weights(
    catalogue: Mapping[str, Any], base: str, classes: Mapping[str, LayerClass], model_name: str | None
) -> tuple[list[Weight], list[str]]:
    """Weights of a Keras 2 `.h5`: `layer_names` in order, each layer's `weight_names` in order."""
    groups: Mapping[str, Any] = catalogue.get("groups", {})
    datasets: Mapping[str, Any] = catalogue.get("datasets", {})
    notes: list[str] = []
    weights: list[Weight] = []
    base_attrs = groups.get(base, {}).get("attrs", {})
    for layer_position, layer in enumerate(_strings(base_attrs.get("layer_names"))):
        group_path = f"{base.rstrip('/')}/{layer}"
        if group_path not in groups:
            notes.append(f"layer {layer!r} is listed in layer_names but has no group")
            continue
        for weight_name in _strings(groups[group_path].get("attrs", {}).get("weight_names")):
            dataset = f"{group_path}/{weight_name}"
            if dataset not in datasets and not _is_link(catalogue.get("links", {}), dataset):
                notes.append(f"weight {weight_name!r} of layer {layer!r} is listed but missing")
                continue
            name = weight_name[:-2] if weight_name.endswith(":0") else weight_name
            parts = name.split("/")
            # Weights are scoped under their layer's name; what comes before it is an enclosing scope
            # (Keras 3's legacy writer prefixes the model's name, Keras 2 does not).
            if layer in parts[1:-1]:
                name = "/".join(parts[parts.index(layer, 1) :])
            elif model_name and name.startswith(f"{model_name}/"):
                name = name[len(model_name) + 1 :]
            parts = name.split("/")
            class_name = None
            for part in reversed(parts[:-1] or [layer]):
                if part in classes:
                    class_name = classes[part].class_name
                    break
            if class_name is None and layer in classes:
                class_name = classes[layer].class_name
            layer_config = classes[layer].config if layer in classes else {}
            groups_setting = layer_config.get("groups", 1) if isinstance(layer_config, Mapping) else 1
            weights.append(
                Weight(
                    name=name,
                    dataset=dataset,
                    variable=parts[-1],
                    layer=layer,
                    class_name=class_name,
                    stored_name=weight_name if weight_name != name else None,
                    groups=groups_setting if isinstance(groups_setting, int) and groups_setting > 0 else 1,
                    order=(float(layer_position), float(len(weights))),
                )
            )
    return weights, notes


def plain_weights(catalogue: Mapping[str, Any]) -> list[Weight]:
    """Every dataset of a non-Keras HDF5 file, named by its path, in the file's order; then the soft and
    external links, which the reader lists with their reason when it does not follow them."""
    links = catalogue.get("links", {})
    paths = [
        *catalogue.get("datasets", {}),
        *(path for path, link in links.items() if isinstance(link, dict) and link.get("type") != "hard"),
    ]
    return [
        Weight(
            name=path.lstrip("/"), dataset=path, variable=path.rsplit("/", 1)[-1], layer="", class_name=None
        )
        for path in paths
    ]


# ----------------------------------------------------------------------------------------------------
# What each weight is.


def describe(weight: Weight, shape: tuple[int, ...]) -> tuple[FormatHint, tuple[int, ...]]:
    """The hint and presented shape of one weight (MultiHeadAttention kernels are folded to 2-D: a fused
    projection is one matrix). Whether the kind rules out a matrix is worded by `formats.skip_reasons`."""
    class_name = weight.class_name
    variable = weight.variable
    op = class_name
    layer_name = weight.layer or None

    def hint(
        kind: WeightKind | None, layout: Layout = Layout.IN_OUT, role: Role | None = None, groups: int = 1
    ) -> FormatHint:
        return FormatHint(kind=kind, layout=layout, role=role, op=op, layer_name=layer_name, groups=groups)

    if variable == "bias":
        return hint(WeightKind.BIAS, Layout.UNKNOWN), shape
    if class_name in _NORMS or variable in ("gamma", "beta", "moving_mean", "moving_variance"):
        return hint(WeightKind.NORM, Layout.UNKNOWN), shape
    if class_name in _DEPTHWISE or variable == "depthwise_kernel":
        # Keras depthwise kernels are (*spatial, channels, multiplier): one group per input channel.
        channels = shape[-2] if len(shape) >= 2 else 1
        return hint(WeightKind.DEPTHWISE_CONV, groups=channels), shape
    if variable == "embeddings" or class_name == "Embedding":
        return hint(WeightKind.EMBEDDING, Layout.UNKNOWN, Role.EMBEDDING), shape
    if (
        class_name in _RECURRENT
        or variable == "recurrent_kernel"
        or (class_name == "Bidirectional" and variable == "kernel")
    ):
        return hint(WeightKind.RECURRENT), shape
    if weight.merge is not None and len(shape) == 3:
        folded = (
            (shape[0], shape[1] * shape[2]) if weight.merge == "tail" else (shape[0] * shape[1], shape[2])
        )
        return hint(WeightKind.DENSE, role=Role.ATTENTION), folded
    if class_name in _CONV or (
        variable in ("kernel", "pointwise_kernel") and len(shape) >= 3 and class_name is None
    ):
        if weight.groups > 1 and len(shape) >= 3 and shape[-2] == 1:
            return hint(WeightKind.DEPTHWISE_CONV, groups=weight.groups), shape
        return hint(WeightKind.CONV, groups=weight.groups), shape
    if variable == "pointwise_kernel":
        return hint(WeightKind.CONV), shape
    if class_name in ("Dense", "EinsumDense") or (variable == "kernel" and len(shape) == 2):
        return hint(WeightKind.DENSE), shape
    if variable == "alpha" and class_name == "PReLU":
        return hint(WeightKind.OTHER, Layout.UNKNOWN), shape  # PReLU slopes: one per channel
    # An unknown class: the variable's layout is Keras's (inputs first) but its kind is not known.
    return hint(None), shape
