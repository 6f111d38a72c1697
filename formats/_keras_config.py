"""A Keras model config (`config.json` of a `.keras`, the `model_config` attribute of a full `.h5`), read
as plain JSON data and never deserialised: which class each layer is, where it sits, and which layers
would run code if the model were loaded the usual way (Lambda layers, custom objects: reported only).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Deepest nesting of a config walked for Lambda layers and custom objects.
MAX_CONFIG_DEPTH = 200

_LAMBDA = frozenset({"Lambda", "TFOpLambda", "SlicingOpLambda"})


@dataclass(frozen=True, slots=True)
class LayerClass:
    """What the config says about one layer: its class, the module it comes from, and its settings."""

    name: str
    class_name: str
    module: str | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    children: Mapping[str, LayerClass] = field(default_factory=dict)  # Bidirectional halves, by name


def _inner(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The `config` object of a serialised Keras object, or an empty one."""
    inner = entry.get("config")
    return inner if isinstance(inner, dict) else {}


def parse_config(text: str) -> Any:
    """The model config as JSON data; never deserialised, so nothing in it can run."""
    return json.loads(text)


def layer_classes(config: Any) -> dict[str, LayerClass]:
    """Every layer of a model config, by name, nested models included (Keras 2 and 3 configs)."""
    found: dict[str, LayerClass] = {}

    def visit(entry: Any) -> None:
        if not isinstance(entry, dict):
            return
        class_name = entry.get("class_name")
        inner = _inner(entry)
        name = entry.get("name") or inner.get("name")
        if isinstance(class_name, str) and isinstance(name, str):
            children: dict[str, LayerClass] = {}
            for key in ("layer", "backward_layer"):
                child = inner.get(key)
                if isinstance(child, dict) and isinstance(child.get("class_name"), str):
                    child_config = _inner(child)
                    child_name = str(child_config.get("name", key))
                    children[key] = LayerClass(
                        child_name, child["class_name"], child.get("module"), child_config
                    )
            found.setdefault(name, LayerClass(name, class_name, entry.get("module"), inner, children))
        for sub in inner.get("layers", []) if isinstance(inner.get("layers"), list) else []:
            visit(sub)

    if isinstance(config, dict):
        inner = _inner(config)
        for entry in inner.get("layers", []) if isinstance(inner.get("layers"), list) else []:
            visit(entry)
    return found


def config_order(config: Any) -> dict[str, int]:
    """Position of each top-level and nested layer name in the config, depth first."""
    order: dict[str, int] = {}

    def visit(entries: Any) -> None:
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict):
                continue
            inner = _inner(entry)
            name = entry.get("name") or inner.get("name")
            if isinstance(name, str):
                order.setdefault(name, len(order))
            visit(inner.get("layers"))

    if isinstance(config, dict) and isinstance(config.get("config"), dict):
        visit(config["config"].get("layers"))
    return order


def unsafe_objects(config: Any) -> tuple[list[str], list[str]]:
    """Lambda layers and custom objects named in a config: reported, never executed.

    Returns:
        (lambda layer names, "Class (module)" for classes from outside Keras). A Keras 3 object from
        outside Keras has a module not under `keras` (or, without a module, a `package>Class`
        registered name); Keras 2 configs carry no modules, so only their Lambda layers are reported.
    """
    lambdas: list[str] = []
    custom: list[str] = []

    def visit(value: Any, depth: int) -> None:
        if depth > MAX_CONFIG_DEPTH:
            return
        if isinstance(value, dict):
            class_name = value.get("class_name")
            inner = _inner(value)
            if isinstance(class_name, str):
                name = value.get("name") or inner.get("name") or "?"
                module = value.get("module")
                registered = value.get("registered_name")
                if class_name in _LAMBDA:
                    lambdas.append(str(name))
                elif class_name == "__lambda__":
                    pass  # the Lambda's function itself; the layer is already reported
                elif isinstance(module, str) and not (
                    module == "keras" or module.startswith(("keras.", "builtins"))
                ):
                    custom.append(f"{class_name} ({module})")
                elif (
                    not isinstance(module, str)
                    and isinstance(registered, str)
                    and ">" in registered
                    and not registered.startswith("keras")
                ):
                    custom.append(f"{class_name} (registered as {registered})")
            for item in value.values():
                visit(item, depth + 1)
        elif isinstance(value, list):
            for item in value:
                visit(item, depth + 1)

    visit(config, 0)
    return list(dict.fromkeys(lambdas)), list(dict.fromkeys(custom))


def model_name(config: Any) -> str | None:
    """The model's own name in its config."""
    if isinstance(config, dict):
        name = _inner(config).get("name")
        if isinstance(name, str):
            return name
    return None
