"""One declaration per setting, from which the command line, `[tool.wwinspect]` and the run's objects derive.

A setting is a field of the frozen object that uses it (`AnalysisOptions`, `GateRules` or `RunSettings`),
declared with `setting(default, help=...)`. The field gives its name, type and default; the metadata gives
what the field cannot: the help text, the flag's spelling, inclusive bounds. `collect()` reads such fields
back as `SettingSpec`s, and everything else is derived from those: the typer options
(`inspector.cli_options`), the validation of config values (`SettingSpec.parse`), and the resolution of
flags, config and defaults into the run's objects (`inspector.config`).

Adding an option is one `setting(...)` field on the object that carries it, plus its use.

This module is imported by the science core (through `inspector.options`), so it needs the standard library
only: no typer, no renderers.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

_METADATA_KEY = "wwinspect.setting"

#: The value types a setting may have (besides enums), and how each is spelled in TOML.
_SCALARS: dict[type, tuple[type, ...]] = {
    bool: (bool,),
    int: (int,),
    float: (int, float),
    str: (str,),
    Path: (str,),
}


@dataclass(frozen=True, slots=True)
class Setting:
    """What a setting's dataclass field cannot say about it.

    Attributes:
        help: one sentence for `--help`; the default is appended from the field.
        key: the config key, and the flag without its dashes (default: the field name with dashes).
        short: a one-letter flag ("-j").
        metavar: the value's name in `--help` (default: typer's, e.g. the choices of an enum).
        min, max: bounds, checked on the flag and the config key alike; inclusive unless `min_open`.
        min_open: the lower bound itself is refused (`--xmax` must be above 0, not 0).
        off_flag: a boolean's second flag ("--pooled"); without one the flag only switches it on.
        inverted: the flag and key say the opposite of the field (`--per-slice` sets `pool_conv` false).
        unset: what a default of None means, for `--help` ("no limit").
        in_config: whether `[tool.wwinspect]` may set it (an output file may not).
        shortcuts: flags that set this setting to a fixed value (`--json` for `--format json`); a shortcut
            wins over the setting's own flag.
    """

    help: str
    key: str | None = None
    short: str | None = None
    metavar: str | None = None
    min: int | float | None = None
    max: int | float | None = None
    min_open: bool = False
    off_flag: str | None = None
    inverted: bool = False
    unset: str | None = None
    in_config: bool = True
    shortcuts: tuple[tuple[str, object], ...] = ()


def setting(default: T, help: str, **details: Any) -> T:
    """A dataclass field holding a setting: `min_evals: int = setting(10, help="...", min=1)`."""
    field: T = dataclasses.field(default=default, metadata={_METADATA_KEY: Setting(help=help, **details)})
    return field


@dataclass(frozen=True, slots=True)
class SettingSpec:
    """One setting as the command line and the config see it: its key, value type and default.

    Values are in the key's sense (`per-slice`, not `pool_conv`); `to_field` turns one into the field's.

    Attributes:
        key: the config key; the flag is `--key`, the command's parameter `key` with underscores.
        owner: the dataclass whose field it feeds.
        field: that field's name.
        kind: the type of one value: bool, int, float, str, Path, or an enum.
        repeated: a tuple of values (a repeatable flag; a list, or one string, in the config).
        default: the default in the key's sense.
        meta: the rest of the declaration.
    """

    key: str
    owner: type
    field: str
    kind: type[Any]
    repeated: bool
    default: Any
    meta: Setting

    @property
    def flag(self) -> str:
        return f"--{self.key}"

    @property
    def param(self) -> str:
        """The command function's parameter name."""
        return self.key.replace("-", "_")

    def default_text(self) -> str | None:
        """The default as `--help` shows it, or None when there is nothing worth showing."""
        default = self.default
        if self.kind is bool:
            if self.meta.off_flag is None:
                return None
            return self.key if default else self.meta.off_flag.lstrip("-")
        if default is None:
            return self.meta.unset
        if self.repeated:
            return ", ".join(_shown(item) for item in default) or None
        return _shown(default)

    def help_text(self) -> str:
        shown = self.default_text()
        return self.meta.help if shown is None else f"{self.meta.help} [default: {shown}]"

    def parse(self, value: object) -> Any:
        """A config value checked against the declaration and converted to the setting's type.

        Raises:
            ValueError: with a phrase that completes "[tool.wwinspect] KEY ...".
        """
        if self.repeated:
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, list):
                raise ValueError(f"has the wrong type ({type(value).__name__})")
            if not all(isinstance(item, str) for item in items):
                raise ValueError("must be a list of strings")
            return tuple(self._one(item) for item in items)
        return self._one(value)

    def _one(self, value: object) -> Any:
        allowed = (str,) if issubclass(self.kind, enum.Enum) else _SCALARS[self.kind]
        # TOML booleans are Python ints: `min-evals = true` must not pass as 1.
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise ValueError(f"has the wrong type ({type(value).__name__})")
        if issubclass(self.kind, enum.Enum):
            try:
                return self.kind(value)
            except ValueError:
                choices = ", ".join(str(member.value) for member in self.kind)
                raise ValueError(f"has an invalid value {value!r} (choose from {choices})") from None
        converted = self.kind(value)
        self.check_bounds(converted)
        return converted

    def check_bounds(self, value: Any) -> None:
        """Raises ValueError when a number lies outside the inclusive bounds."""
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"must be a finite number, not {value}")
        if self.meta.min is not None and self.meta.min_open and value <= self.meta.min:
            raise ValueError(f"must be above {self.meta.min}, not {value}")
        if self.meta.min is not None and value < self.meta.min:
            raise ValueError(f"must be at least {self.meta.min}, not {value}")
        if self.meta.max is not None and value > self.meta.max:
            raise ValueError(f"must be at most {self.meta.max}, not {value}")

    def to_field(self, value: Any) -> Any:
        """A value in the key's sense as the field holds it."""
        return (not value) if self.meta.inverted else value


def _shown(value: object) -> str:
    return str(value.value) if isinstance(value, enum.Enum) else str(value)


def collect(*owners: type) -> tuple[SettingSpec, ...]:
    """Every `setting(...)` field of these dataclasses, in declaration order.

    Raises:
        TypeError: a field's type is not one a flag and a TOML value can carry, or two settings share a key.
    """
    specs: list[SettingSpec] = []
    for owner in owners:
        hints = typing.get_type_hints(owner)
        for field in dataclasses.fields(owner):
            meta = field.metadata.get(_METADATA_KEY)
            if meta is None:
                continue
            kind, repeated = _value_type(hints[field.name], f"{owner.__name__}.{field.name}")
            specs.append(
                SettingSpec(
                    key=meta.key or field.name.replace("_", "-"),
                    owner=owner,
                    field=field.name,
                    kind=kind,
                    repeated=repeated,
                    default=(not field.default) if meta.inverted else field.default,
                    meta=meta,
                )
            )
    _check_unique(specs)
    return tuple(specs)


def _value_type(annotation: Any, where: str) -> tuple[type[Any], bool]:
    """(type of one value, repeated) of a field annotated `X`, `X | None` or `tuple[X, ...]`."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(members) == 1:
            annotation = members[0]
    repeated = typing.get_origin(annotation) is tuple
    if repeated:
        arguments = typing.get_args(annotation)
        if len(arguments) != 2 or arguments[1] is not Ellipsis:
            raise TypeError(f"{where}: a repeated setting is a tuple[X, ...]")
        annotation = arguments[0]
    supported = isinstance(annotation, type) and (annotation in _SCALARS or issubclass(annotation, enum.Enum))
    if not supported or (repeated and annotation is not str and not issubclass(annotation, enum.Enum)):
        raise TypeError(f"{where}: unsupported setting type {annotation!r}")
    return annotation, repeated


def _check_unique(specs: Sequence[SettingSpec]) -> None:
    seen: set[str] = set()
    for spec in specs:
        names = {spec.key, spec.param, *(flag.lstrip("-") for flag, _ in spec.meta.shortcuts)}
        if spec.meta.off_flag:
            names.add(spec.meta.off_flag.lstrip("-"))
        clash = seen & names
        if clash:
            raise TypeError(f"setting {spec.key!r} reuses the name {sorted(clash)[0]!r}")
        seen |= names
