"""Run settings from command-line flags and `[tool.wwinspect]` in the nearest pyproject.toml (flags win).

Keys use the flag names without dashes in front (`fail-alpha-above = 6`); underscores work too. An
unknown key or a value of the wrong type is a usage error (exit code 2), so a typo never silently
disables a gate. `resolve_run` turns flags and config into the frozen objects the run uses.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from inspector.errors import UsageError
from inspector.gate import GateRules
from inspector.options import (
    AnalysisOptions,
    Device,
    FitMethod,
    FixFingers,
    MPMethod,
    Normalization,
    SpikeRule,
)
from inspector.outcome import OutputFormat
from inspector.records import Phase

EnumType = TypeVar("EnumType", bound=Enum)

#: Each key and the Python types its value may have.
CONFIG_KEYS: dict[str, tuple[type, ...]] = {
    "device": (str,),
    "format": (str,),
    "min-evals": (int,),
    "max-evals": (int,),
    "layer": (list, str),
    "exclude": (list, str),
    "fail-alpha-above": (int, float),
    "fail-alpha-below": (int, float),
    "fail-phase": (list, str),
    "exit-zero": (bool,),
    "normalize": (str,),
    "fit": (str,),
    "xmax": (int, float),
    "fix-fingers": (str,),
    "spike-rule": (str,),
    "randomize": (bool,),
    "seed": (int,),
    "mp-fit": (str,),
    "xmin-max": (int, float),
    "max-fingers": (int,),
    "finger-thresh": (int, float),
    "per-slice": (bool,),
    "show-skipped": (bool,),
    "jobs": (int,),
}


def find_pyproject(start: Path) -> Path | None:
    """The nearest pyproject.toml in `start` or its parents."""
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def read_config(pyproject: Path) -> dict[str, Any]:
    """The validated `[tool.wwinspect]` table of one pyproject.toml (empty when absent)."""
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read {pyproject}: {exc}") from exc
    section = data.get("tool", {}).get("wwinspect", {})
    if not isinstance(section, Mapping):
        raise UsageError(f"{pyproject}: [tool.wwinspect] must be a table")
    return validate_config(section, pyproject)


def validate_config(section: Mapping[str, Any], source: Path) -> dict[str, Any]:
    """Normalise key spelling and check every key and type."""
    config: dict[str, Any] = {}
    for raw_key, value in section.items():
        key = str(raw_key).replace("_", "-")
        allowed = CONFIG_KEYS.get(key)
        if allowed is None:
            known = ", ".join(sorted(CONFIG_KEYS))
            raise UsageError(f"{source}: unknown key {raw_key!r} in [tool.wwinspect] (known: {known})")
        if isinstance(value, bool) and bool not in allowed:
            raise UsageError(
                f"{source}: [tool.wwinspect] {raw_key} has the wrong type ({type(value).__name__})"
            )
        if not isinstance(value, allowed):
            raise UsageError(
                f"{source}: [tool.wwinspect] {raw_key} has the wrong type ({type(value).__name__})"
            )
        if isinstance(value, list) and not all(isinstance(item, str) for item in value):
            raise UsageError(f"{source}: [tool.wwinspect] {raw_key} must be a list of strings")
        config[key] = value
    return config


@dataclass(frozen=True, slots=True)
class RunSettings:
    """Everything one run needs besides its paths."""

    options: AnalysisOptions
    rules: GateRules
    output_format: OutputFormat
    exit_zero: bool
    show_skipped: bool
    jobs: int = 0  # worker processes per file; 0: one per usable CPU


def resolve_run(flags: Mapping[str, Any], config: Mapping[str, Any]) -> RunSettings:
    """Combine flags (keyed like the config; None or empty when not given) with the config and defaults."""

    def pick(key: str, default: Any) -> Any:
        value = flags.get(key)
        if value is not None and value != () and value != []:
            return value
        return config.get(key, default)

    def choice(kind: type[EnumType], key: str, default: str | None) -> EnumType | None:
        value = pick(key, default)
        if value is None or isinstance(value, kind):
            return value
        try:
            return kind(value)
        except ValueError:
            choices = ", ".join(str(member.value) for member in kind)
            raise UsageError(f"invalid value {value!r} for {key} (choose from {choices})") from None

    def names(key: str) -> tuple[str, ...]:
        value = pick(key, ())
        return (value,) if isinstance(value, str) else tuple(value)

    options = AnalysisOptions(
        min_evals=int(pick("min-evals", 10)),
        max_evals=pick("max-evals", None),
        layer_globs=names("layer"),
        exclude_globs=names("exclude"),
        device=choice(Device, "device", "cpu") or Device.CPU,
        normalization=choice(Normalization, "normalize", "none") or Normalization.NONE,
        pool_conv=not bool(pick("per-slice", False)),
        fit=choice(FitMethod, "fit", "pl") or FitMethod.POWER_LAW,
        xmax=pick("xmax", None),
        fix_fingers=choice(FixFingers, "fix-fingers", None),
        spike_rule=choice(SpikeRule, "spike-rule", "tw") or SpikeRule.TRACY_WIDOM,
        randomize=bool(pick("randomize", False)),
        seed=int(pick("seed", 0)),
        mp_method=choice(MPMethod, "mp-fit", "quantile") or MPMethod.QUANTILE,
        xmin_max=pick("xmin-max", None),
        max_fingers=int(pick("max-fingers", 10)),
        finger_thresh=float(pick("finger-thresh", 1.0)),
    )
    if options.max_evals is not None and options.max_evals < options.min_evals:
        raise UsageError(f"--max-evals {options.max_evals} is below --min-evals {options.min_evals}")
    phases: list[Phase] = []
    for name in names("fail-phase"):
        try:
            phases.append(Phase(name))
        except ValueError:
            choices = ", ".join(phase.value for phase in Phase)
            raise UsageError(f"invalid value {name!r} for fail-phase (choose from {choices})") from None
    rules = GateRules(
        alpha_above=pick("fail-alpha-above", None),
        alpha_below=pick("fail-alpha-below", None),
        phases=tuple(phases),
    )
    jobs = int(pick("jobs", 0))
    if jobs < 0:
        raise UsageError(f"jobs must be 0 (one per CPU) or more, not {jobs}")
    return RunSettings(
        options=options,
        rules=rules,
        output_format=choice(OutputFormat, "format", "table") or OutputFormat.TABLE,
        exit_zero=bool(pick("exit-zero", False)),
        show_skipped=bool(pick("show-skipped", False)),
        jobs=jobs,
    )
