"""Model-local functions of an ONNX model, expanded at each call so the weights passed in reach their layers.

An exporter (torch.onnx with `export_modules_as_functions`, onnxscript) can put a module's body in a
`FunctionProto` of the model and call it like an operator; the weights come in as the call's inputs. The
walker (`formats._onnx_graph`) sees only the operators, so each call is replaced by its body first, the way
onnx's own inliner does it (onnx/inliner): the body's formal inputs and outputs become the call's actual
names, its other values are prefixed with the call's name (two calls never share one), and attributes that
refer to the function's (`ref_attr_name`) take the call's value or the function's default. Only node
protos are copied, never tensors. Subgraphs inside a body keep their own names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx

#: Deepest nesting of model-local function calls expanded (a function calling a function...).
MAX_FUNCTION_DEPTH = 16
#: Most nodes the expansion of model-local functions may produce in one graph.
MAX_INLINED_NODES = 1_000_000

FunctionKey = tuple[str, str, str]  # (domain, name, overload)


def function_key(node: onnx.NodeProto) -> FunctionKey:
    return (node.domain, node.op_type, getattr(node, "overload", ""))


def functions_of(model: onnx.ModelProto) -> dict[FunctionKey, onnx.FunctionProto]:
    return {
        (function.domain, function.name, getattr(function, "overload", "")): function
        for function in model.functions
    }


def inline_functions(
    nodes: list[onnx.NodeProto],
    functions: Mapping[FunctionKey, onnx.FunctionProto],
    notes: list[str],
    depth: int = 0,
) -> list[onnx.NodeProto]:
    """`nodes` with every call of a model-local function replaced by the function's body (recursively, at
    most `MAX_FUNCTION_DEPTH` deep); a call left unexpanded is noted in `notes`."""
    if not functions:
        return nodes
    expanded: list[onnx.NodeProto] = []
    for position, node in enumerate(nodes):
        function = functions.get(function_key(node))
        if function is None:
            expanded.append(node)
            continue
        if depth >= MAX_FUNCTION_DEPTH or len(expanded) > MAX_INLINED_NODES:
            note = f"calls of {node.op_type!r} nested deeper than {MAX_FUNCTION_DEPTH} were not expanded"
            if note not in notes:
                notes.append(note)
            expanded.append(node)
            continue
        expanded.extend(inline_functions(call_body(node, function, position), functions, notes, depth + 1))
    return expanded


def call_body(node: onnx.NodeProto, function: onnx.FunctionProto, position: int) -> list[onnx.NodeProto]:
    """The nodes of `function`'s body as this call of it runs them."""
    import onnx

    call = node.name or f"{node.op_type}#{position}"
    rename = dict(zip(function.input, node.input, strict=False))
    rename.update(zip(function.output, node.output, strict=False))
    for formal in list(function.input)[len(node.input) :]:
        rename[formal] = ""  # an optional input the call leaves out
    given = {attribute.name: attribute for attribute in node.attribute}
    defaults = {attribute.name: attribute for attribute in getattr(function, "attribute_proto", [])}

    def renamed(value: str) -> str:
        if not value:
            return ""
        return rename.get(value, f"{call}/{value}")

    body: list[onnx.NodeProto] = []
    for number, inner in enumerate(function.node):
        copy = onnx.NodeProto()
        copy.CopyFrom(inner)
        copy.name = f"{call}/{inner.name or f'{inner.op_type}#{number}'}"
        del copy.input[:]
        copy.input.extend(renamed(value) for value in inner.input)
        del copy.output[:]
        copy.output.extend(renamed(value) for value in inner.output)
        del copy.attribute[:]
        for attribute in inner.attribute:
            if attribute.ref_attr_name:
                source = given.get(attribute.ref_attr_name) or defaults.get(attribute.ref_attr_name)
                if source is None:
                    continue  # the call and the function both leave it out: the operator's default
                resolved = copy.attribute.add()
                resolved.CopyFrom(source)
                resolved.name = attribute.name
            else:
                copy.attribute.add().CopyFrom(attribute)
        body.append(copy)
    return body
