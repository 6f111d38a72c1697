"""Names for the tensors of an unpickled PyTorch object graph, and what their owning modules say.

Tensor names are paths in the graph, joined with ".":
- a state dict gives its keys ("fc1.weight");
- a whole module pickled with `torch.save(model)` gives its parameters and buffers by attribute path: the
  `_parameters`, `_buffers` and `_modules` levels collapse, so names match `model.state_dict()`;
- a TorchScript module gives its attributes by path, which are the same names;
- a checkpoint dict that wraps the weights under one conventional key (`state_dict` as Lightning writes,
  `model_state_dict`, `model`, `model_state`, `net`, `network`, `weights`) has that key dropped from the
  names, so a Lightning `.ckpt` reads like its model's state dict; other entries keep their full path
  ("optimizer_states.0.state.0.exp_avg"). If dropping the key would make two names equal it is kept.
- tensors under an optimizer state dict (a mapping with `state` and `param_groups`) are marked as
  optimizer state, listed and never analysed.

A tensor that is an attribute of a module placeholder also gets the module's class: `torch.nn.Conv2d`
says its weight is a convolution kernel (and with `groups`, whether it is depthwise), `LayerNorm` that
its parameters are norms, and so on (`FormatHint`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from formats._torch_records import Placeholder, TensorHandle, placeholder_name
from formats.errors import CorruptFileError
from formats.types import DType, FormatHint, Layout, WeightKind

#: Deepest object-graph nesting we follow, and most objects we visit while naming tensors.
MAX_DEPTH = 256
MAX_VISITS = 5_000_000

# Keys under which checkpoints conventionally keep the model's weights, in order of preference.
_WEIGHT_KEYS = ("state_dict", "model_state_dict", "model", "model_state", "net", "network", "weights")
OPTIMIZER_SKIP = "optimizer state (not a weight)"

# torch.nn classes and what their weights are; the key is the class name without its module.
_MODULE_KINDS: dict[str, WeightKind] = {
    **dict.fromkeys(
        ("Linear", "LazyLinear", "NonDynamicallyQuantizableLinear", "Bilinear"), WeightKind.DENSE
    ),
    **dict.fromkeys(
        (
            "Conv1d",
            "Conv2d",
            "Conv3d",
            "ConvTranspose1d",
            "ConvTranspose2d",
            "ConvTranspose3d",
            "LazyConv1d",
            "LazyConv2d",
            "LazyConv3d",
        ),
        WeightKind.CONV,
    ),
    **dict.fromkeys(("Embedding", "EmbeddingBag"), WeightKind.EMBEDDING),
    **dict.fromkeys(("LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell"), WeightKind.RECURRENT),
    **dict.fromkeys(
        (
            "LayerNorm",
            "BatchNorm1d",
            "BatchNorm2d",
            "BatchNorm3d",
            "GroupNorm",
            "InstanceNorm1d",
            "InstanceNorm2d",
            "InstanceNorm3d",
            "RMSNorm",
            "SyncBatchNorm",
            "LocalResponseNorm",
        ),
        WeightKind.NORM,
    ),
    "MultiheadAttention": WeightKind.DENSE,
}


@dataclass(frozen=True, slots=True)
class Found:
    """A tensor reached in the object graph, with what its owner says about it."""

    name: str
    handle: TensorHandle
    optimizer: bool
    owner: str | None  # global name of the module class that holds it, when it is a module's attribute
    attribute: str  # the last name component ("weight", "bias", "running_mean")
    groups: int


def _component(key: object, position: int) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, (int, float)) and not isinstance(key, bool):
        return str(key)
    return f"[{position}]"


def _attributes(value: Placeholder) -> dict[str, object]:
    """The attribute dict a placeholder received through BUILD (dict state, or (dict, slots) state)."""
    state = value.state
    merged: dict[str, object] = {}
    parts = state if isinstance(state, tuple) and len(state) == 2 else (state,)
    for part in parts:
        if isinstance(part, dict):
            merged.update((key, item) for key, item in part.items() if isinstance(key, str))
    return merged


def _is_module(attributes: Mapping[str, object]) -> bool:
    return isinstance(attributes.get("_parameters"), dict) and isinstance(attributes.get("_modules"), dict)


def _is_torchscript_object(value: Placeholder) -> bool:
    return (placeholder_name(value) or "").startswith("__torch__.")


def _groups(attributes: Mapping[str, object]) -> int:
    groups = attributes.get("groups")
    return groups if type(groups) is int and groups > 0 else 1


def _walk(root: object, path: Path) -> list[Found]:
    """Every tensor reachable from `root`, in pickle order, named by its path (see the module docstring)."""
    found: list[Found] = []
    visits = 0
    # Frames: (value, name parts, optimizer flag, owner class, groups, ancestors' ids).
    stack: list[tuple[object, tuple[str, ...], bool, str | None, int, tuple[int, ...]]] = [
        (root, (), False, None, 1, ())
    ]
    while stack:
        value, parts, optimizer, owner, groups, ancestors = stack.pop()
        visits += 1
        if visits > MAX_VISITS:
            raise CorruptFileError(f"the pickled object graph has more than {MAX_VISITS} paths", path=path)
        if isinstance(value, TensorHandle):
            found.append(Found(".".join(parts), value, optimizer, owner, parts[-1] if parts else "", groups))
            continue
        if id(value) in ancestors:
            continue  # a cycle: the object contains itself
        if len(ancestors) >= MAX_DEPTH:
            raise CorruptFileError(
                f"the pickled object graph nests deeper than {MAX_DEPTH} levels", path=path
            )
        inner = (*ancestors, id(value))
        children: list[tuple[object, tuple[str, ...], bool, str | None, int]] = []
        if isinstance(value, dict):
            is_optimizer = optimizer or ("state" in value and "param_groups" in value)
            for position, (key, item) in enumerate(value.items()):
                children.append((item, (*parts, _component(key, position)), is_optimizer, None, 1))
        elif isinstance(value, (list, tuple)):
            for position, item in enumerate(value):
                children.append((item, (*parts, str(position)), optimizer, None, 1))
        elif isinstance(value, Placeholder):
            attributes = _attributes(value)
            cls = placeholder_name(value)
            # A pickled optimizer object (not its state dict) keeps the same two attributes.
            optimizer = optimizer or ("state" in attributes and "param_groups" in attributes)
            if _is_module(attributes):
                # torch.nn.Module.__dict__: parameters, buffers, then child modules (state_dict() order).
                module_groups = _groups(attributes)
                for container in ("_parameters", "_buffers"):
                    members = attributes.get(container)
                    if isinstance(members, dict):
                        for key, item in members.items():
                            if isinstance(key, str):
                                children.append((item, (*parts, key), optimizer, cls, module_groups))
                submodules = attributes["_modules"]
                assert isinstance(submodules, dict)  # _is_module checked it
                for key, item in submodules.items():
                    if isinstance(key, str):
                        children.append((item, (*parts, key), optimizer, None, 1))
            else:
                # TorchScript objects and other pickled instances: every attribute, then any items.
                module_owner = cls if _is_torchscript_object(value) else None
                object_groups = _groups(attributes)
                for key, item in attributes.items():
                    children.append((item, (*parts, key), optimizer, module_owner, object_groups))
                for position, (key, item) in enumerate(value.items.items()):
                    children.append((item, (*parts, _component(key, position)), optimizer, None, 1))
                for position, item in enumerate(value.listitems):
                    children.append((item, (*parts, str(position)), optimizer, None, 1))
        for child, child_parts, child_optimizer, child_owner, child_groups in reversed(children):
            stack.append((child, child_parts, child_optimizer, child_owner, child_groups, inner))
    return found


def _weights_key(root: object) -> str | None:
    """The conventional key under which a checkpoint dict keeps its model's weights, if it has one."""
    if not isinstance(root, dict):
        return None
    for key in _WEIGHT_KEYS:
        value = root.get(key)
        if isinstance(value, dict) and any(isinstance(item, TensorHandle) for item in value.values()):
            return key
        if isinstance(value, Placeholder) and _is_module(_attributes(value)):
            return key
    return None


def name_tensors(root: object, path: Path) -> list[Found]:
    """Every tensor of the graph, named by its path, with a conventional weights key dropped."""
    found = _walk(root, path)
    key = _weights_key(root)
    if key is None:
        return found
    prefix = key + "."
    stripped = [
        replace(item, name=item.name[len(prefix) :]) if item.name.startswith(prefix) else item
        for item in found
    ]
    names = [item.name for item in stripped]
    return stripped if len(set(names)) == len(names) else found


def _class_short_name(owner: str) -> str:
    """The class name without its module (`__torch__.torch.nn.modules.linear.___torch_mangle_3.Linear`)."""
    return owner.rsplit(".", 1)[-1]


def hint_for(item: Found) -> FormatHint:
    """What the owning module's class says about a tensor (kind, groups); layout is torch's (out, in)."""
    if item.owner is None:
        return FormatHint(layout=Layout.OUT_IN)
    short = _class_short_name(item.owner)
    module_kind = _MODULE_KINDS.get(short)
    kind: WeightKind | None = module_kind
    if module_kind is WeightKind.NORM:
        kind = WeightKind.NORM
    elif item.attribute == "bias" or item.attribute.startswith("bias_") or item.attribute.endswith("_bias"):
        kind = WeightKind.BIAS
    elif (
        module_kind is WeightKind.CONV
        and item.groups > 1
        and len(item.handle.shape) >= 2
        and (item.handle.shape[1] == 1)
    ):
        kind = WeightKind.DEPTHWISE_CONV
    elif (
        module_kind is not None
        and item.attribute not in ("weight", "in_proj_weight")
        and not (module_kind is WeightKind.RECURRENT and item.attribute.startswith("weight_"))
    ):
        kind = None  # buffers and extra parameters of a known module: let the name and shape decide
    layer_name = item.name.rsplit(".", 1)[0] if "." in item.name else None
    return FormatHint(kind=kind, layout=Layout.OUT_IN, op=short, layer_name=layer_name, groups=item.groups)


def skip_reason_for(item: Found) -> str | None:
    """Facts only a torch checkpoint states: optimizer state, quantized tensors, unread element types."""
    handle = item.handle
    if item.optimizer:
        return OPTIMIZER_SKIP
    if handle.quantized and handle.quantizer is None:
        return f"quantized tensor ({handle.element.name}) of a quantisation scheme that is not read"
    if handle.element.dtype is DType.OTHER:
        return f"{handle.element.name} values are not read"
    return None
