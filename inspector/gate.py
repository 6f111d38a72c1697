"""The CI gate: thresholds on alpha and phases, evaluated over analysed layers.

Bounds are inclusive: `--fail-alpha-above 6` lets alpha = 6 pass and fails alpha = 6.01.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from inspector.records import ModelReport, Phase, Status
from inspector.settings import setting


@dataclass(frozen=True, slots=True)
class GateRules:
    """Thresholds from the command line or `[tool.wwinspect]`, and whether a violation fails the run."""

    alpha_above: float | None = setting(
        None,
        key="fail-alpha-above",
        metavar="X",
        help="Gate: exit 1 if a layer's alpha is above X (X itself passes).",
    )
    alpha_below: float | None = setting(
        None,
        key="fail-alpha-below",
        metavar="X",
        help="Gate: exit 1 if a layer's alpha is below X (X itself passes).",
    )
    phases: tuple[Phase, ...] = setting(
        (), key="fail-phase", metavar="PHASE", help="Gate: exit 1 if a layer is in PHASE (repeatable)."
    )
    exit_zero: bool = setting(False, help="Exit 0 even when a gate is violated (codes 2-5 unchanged).")

    @property
    def active(self) -> bool:
        """Whether any rule is set (`exit_zero` alone checks nothing)."""
        return self.alpha_above is not None or self.alpha_below is not None or bool(self.phases)


@dataclass(frozen=True, slots=True)
class Violation:
    """One layer breaking one rule."""

    path: str
    layer: str
    rule: str
    value: float | str


@dataclass(frozen=True, slots=True)
class GateResult:
    passed: bool
    violations: tuple[Violation, ...]


def evaluate_gate(reports: Sequence[ModelReport], rules: GateRules) -> GateResult:
    """Check every analysed layer of every readable report against the rules."""
    violations: list[Violation] = []
    for report in reports:
        for layer in report.layers:
            if layer.status is not Status.ANALYZED or layer.metrics is None:
                continue
            name = layer.name if layer.slice_index is None else f"{layer.name}[{layer.slice_index}]"
            alpha = layer.metrics.alpha
            if alpha is not None and rules.alpha_above is not None and alpha > rules.alpha_above:
                violations.append(Violation(report.path, name, f"alpha>{rules.alpha_above:g}", alpha))
            if alpha is not None and rules.alpha_below is not None and alpha < rules.alpha_below:
                violations.append(Violation(report.path, name, f"alpha<{rules.alpha_below:g}", alpha))
            if layer.phase is not None and layer.phase in rules.phases:
                violations.append(
                    Violation(report.path, name, f"phase={layer.phase.value}", layer.phase.value)
                )
    return GateResult(passed=not violations, violations=tuple(violations))
