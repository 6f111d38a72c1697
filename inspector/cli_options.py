"""Settings as typer options: the command's flags are generated from `SettingSpec`s, never written by hand.

A command declares its own parameters (paths, `--debug`...) and takes the settings as `**flags`;
`setting_options(SETTINGS)` gives it one typer option per setting (and per shortcut such as `--json`), with
the help text, default, bounds and choices of the declaration. typer reads a command's parameters from its
signature, so the generated options are added to the function's `__signature__`. Each option defaults to
None, "not given", so that `[tool.wwinspect]` can fill in what the command line leaves out.

A second command (`describe`, `compare`) reuses this with the settings it understands.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from types import GenericAlias
from typing import Annotated, Any, TypeVar

import typer

from inspector.errors import UsageError
from inspector.settings import SettingSpec

Command = TypeVar("Command", bound=Callable[..., Any])


def _param_name(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def option_parameters(spec: SettingSpec) -> list[inspect.Parameter]:
    """The typer parameter of one setting, then one per shortcut flag."""
    meta = spec.meta
    declarations = [f"{spec.flag}/{meta.off_flag}" if meta.off_flag else spec.flag]
    if meta.short:
        declarations.append(meta.short)
    # list[kind], built at run time: a repeatable option
    value_type: Any = GenericAlias(list, (spec.kind,)) if spec.repeated else spec.kind
    option = typer.Option(
        *declarations,
        help=spec.help_text(),
        metavar=meta.metavar,
        # typer has no open bounds: an open lower bound is left to `resolve_run`, which checks every bound
        min=None if meta.min_open else meta.min,
        max=meta.max,
    )
    parameters = [
        inspect.Parameter(
            spec.param,
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[value_type | None, option],
        )
    ]
    for flag, value in meta.shortcuts:
        shown = value.value if hasattr(value, "value") else value
        parameters.append(
            inspect.Parameter(
                _param_name(flag),
                inspect.Parameter.KEYWORD_ONLY,
                default=False,
                annotation=Annotated[bool, typer.Option(flag, help=f"Short for {spec.flag} {shown}.")],
            )
        )
    return parameters


def setting_options(specs: Iterable[SettingSpec]) -> Callable[[Command], Command]:
    """Decorator: the command's own parameters, with the settings' options between its positional ones
    and its keyword-only ones (which `--help` then lists last). The command must take `**flags`."""
    generated = [parameter for spec in specs for parameter in option_parameters(spec)]

    def decorate(command: Command) -> Command:
        # eval_str: typer needs the Annotated objects, not the strings `from __future__ import annotations`
        # leaves in the function's own annotations.
        signature = inspect.signature(command, eval_str=True)
        own = list(signature.parameters.values())
        if not any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in own):
            raise TypeError(f"{command.__name__} must accept **flags to receive the settings")
        leading = [p for p in own if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        trailing = [p for p in own if p.kind is p.KEYWORD_ONLY]
        command.__signature__ = signature.replace(  # type: ignore[attr-defined]  # typer reads it
            parameters=[*leading, *generated, *trailing]
        )
        return command

    return decorate


def given_flags(specs: Iterable[SettingSpec], values: Mapping[str, Any]) -> dict[str, Any]:
    """The settings given on the command line, keyed like the config.

    Raises:
        UsageError: a shortcut and its setting given with different values (`--json --format csv`).
    """
    given: dict[str, Any] = {}
    for spec in specs:
        value = values.get(spec.param)
        if spec.repeated and value:  # a repeatable option not given arrives empty or None
            given[spec.key] = tuple(value)
        elif not spec.repeated and value is not None:
            given[spec.key] = value
        for flag, fixed in spec.meta.shortcuts:
            if not values.get(_param_name(flag)):
                continue
            if spec.key in given and given[spec.key] != fixed:
                shown = getattr(given[spec.key], "value", given[spec.key])
                raise UsageError(f"{flag} contradicts {spec.flag} {shown}: give one of them")
            given[spec.key] = fixed
    return given
