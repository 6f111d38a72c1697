"""The names ONNX weights are reported by: their own, or their consumer's when the exporter made one up.

An initializer keeps its name (`fc1.weight`). A name the exporter generated (`onnx::MatMul_12`, `val_7`,
`Constant_3`) is replaced by the torch parameter the dynamo exporter recorded in the node's metadata
when that is unambiguous, else a real-named Identity output on the way, else `<consumer node name>` plus
the slot's suffix (`.weight`, `.bias`, `.W`, `.R`...). The constants' own names are reserved, so a derived
name never takes one; clashes get `_1`, `_2`...
"""

from __future__ import annotations

import ast
import re
from typing import TYPE_CHECKING

from formats._onnx_chains import Constant, Use
from formats._onnx_slots import Slot, SlotRole

if TYPE_CHECKING:
    import onnx

#: Longest metadata string parsed for the torch exporter's module scopes.
MAX_METADATA_CHARS = 65536


# Names exporters generate for tensors they create (constant folding, fused or transposed weights). A
# weight with such a name is named after the node that consumes it instead, keeping the stored name.
_GENERATED_NAME = re.compile(
    r"""^(?:
        onnx::.*                                  # torch.onnx TorchScript exporter: onnx::MatMul_123
      | (?:.*/)?Constant(?:_\d+)?(?:_output_0)?   # Constant nodes: Constant_42, /lstm/Constant_3_output_0
      | _?val_\d+ | .*_val_\d+                    # torch.onnx dynamo exporter / onnxscript: val_7, _val_3
      | \d+                                       # bare value numbers
      | _v_\d+ | const_fold_opt__\d+              # onnxscript / tf2onnx constant folding
      | (?:initializer|const)_?\d+
    )$""",
    re.VERBOSE,
)


def is_generated_name(name: str) -> bool:
    """True for names an exporter made up rather than took from the model (`onnx::MatMul_12`, `val_7`)."""
    return not name or _GENERATED_NAME.match(name) is not None


def torch_module_name(node: onnx.NodeProto, slot: Slot) -> str | None:
    """The torch parameter name the dynamo exporter recorded for a folded weight, if it is clear.

    torch.onnx (dynamo) stores the module path of each node in `pkg.torch.onnx.name_scopes` and the FX
    call in `pkg.torch.onnx.fx_node`, whose arguments name parameters as `%p_<path with dots as _>`.
    A weight it constant-folded (a transposed Linear weight becomes `val_86`) keeps only this trace.
    """
    properties = {prop.key: prop.value for prop in node.metadata_props}
    scopes_text = properties.get("pkg.torch.onnx.name_scopes", "")
    fx_text = properties.get("pkg.torch.onnx.fx_node", "")
    if (
        not scopes_text
        or not fx_text
        or len(scopes_text) > MAX_METADATA_CHARS
        or len(fx_text) > MAX_METADATA_CHARS
    ):
        return None
    try:
        scopes = ast.literal_eval(scopes_text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    if not isinstance(scopes, list) or len(scopes) < 2 or not all(isinstance(s, str) for s in scopes):
        return None
    module = scopes[-2]
    prefix = module.replace(".", "_") + "_" if module else ""
    tokens = dict.fromkeys(re.findall(r"%p_([A-Za-z0-9_]+)", fx_text))
    candidates = [
        (f"{module}.{token[len(prefix) :]}" if module else token)
        for token in tokens
        if token.startswith(prefix) and len(token) > len(prefix)
    ]
    wanted = "bias" if slot.role is SlotRole.BIAS else "weight"
    matching = [name for name in candidates if wanted in name.rsplit(".", 1)[-1]]
    if slot.role is SlotRole.WEIGHT:
        matching = [name for name in matching if "bias" not in name.rsplit(".", 1)[-1]]
    return matching[0] if len(matching) == 1 else None


def consumer_base(use: Use) -> str:
    return use.node_label


class Names:
    """Reported names: the constants' own names are reserved, so a derived name never takes one."""

    def __init__(self, reserved: set[str]) -> None:
        self.reserved = reserved
        self.used: set[str] = set()

    def is_free(self, name: str) -> bool:
        return name not in self.reserved and name not in self.used

    def claim(self, name: str, *, own: bool) -> str:
        """Take `name` (a constant's own name only clashes with names already used), else `name_1`..."""
        if name not in self.used and (own or name not in self.reserved):
            self.used.add(name)
            return name
        number = 1
        while not self.is_free(f"{name}_{number}"):
            number += 1
        self.used.add(f"{name}_{number}")
        return f"{name}_{number}"


def base_name(constant: Constant, use: Use, names: Names) -> tuple[str, bool]:
    """The reported name and whether it is the constant's own: its own unless the exporter generated
    it, else the torch parameter the exporter recorded, an Identity alias, or the consumer's name."""
    if not is_generated_name(constant.name):
        return constant.name, True
    if not use.slot.split_directions:
        torch_name = torch_module_name(use.node, use.slot)
        if torch_name is not None and names.is_free(torch_name):
            return torch_name, False
    # An Identity output with a real name: the consumer refers to the weight by that name.
    for value_name in use.chain_names:
        if not is_generated_name(value_name) and value_name not in names.used:
            return value_name, False
    return consumer_base(use) + use.slot.suffix, False


def aliases_of(name: str, uses: list[Use], constant: Constant, primary: Use | None) -> tuple[str, ...]:
    """Other names of the same values: real-named Identity outputs on the way to a consumer (torch
    deduplicates equal parameters that way) and, for generated names, what other consumers call it."""
    aliases: list[str] = []
    for use in uses:
        aliases.extend(alias for alias in use.chain_names if not is_generated_name(alias))
        if use is not primary and is_generated_name(constant.name) and use.slot.role is not SlotRole.UNKNOWN:
            aliases.append(consumer_base(use) + use.slot.suffix)
    return tuple(alias for alias in dict.fromkeys(aliases) if alias != name)


def direction_aliases(
    name: str, index: int, count: int, uses: list[Use], constant: Constant
) -> tuple[str, ...]:
    if not is_generated_name(constant.name):
        return ()
    aliases = []
    for use in uses:
        base = consumer_base(use) + use.slot.suffix
        aliases.append(
            base if count == 1 else f"{base}.{('forward', 'reverse')[index] if count == 2 else index}"
        )
    return tuple(alias for alias in dict.fromkeys(aliases) if alias != name)
