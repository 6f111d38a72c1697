"""The CI gate: thresholds on alpha and phases, evaluated over analysed layers, optionally against a baseline.

Bounds are inclusive: `--fail-alpha-above 6` lets alpha = 6 pass and fails alpha = 6.01.

A layer the gate cannot check (it failed to measure, or an alpha rule is set and its alpha could not be
fitted) is never passed silently: it is listed as unchecked, and `--strict` makes each one a violation.

With a baseline (an earlier JSON report, `inspector.baseline`), a violation that the baseline's own numbers
already commit under the same rule is *known*: reported, not failing. What fails is what is new: a layer
that crossed a bound since, a phase it entered, a layer the baseline did not have, and (with
`--max-alpha-shift X`) an alpha that moved by more than X either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from inspector.baseline import Baseline, BaselineLayer
from inspector.records import LayerRecord, ModelReport, Phase, Status
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
    strict: bool = setting(
        False, help="Gate: also fail on layers it could not check (failed, or no alpha for an alpha rule)."
    )
    baseline: Path | None = setting(
        None,
        metavar="FILE",
        help="Gate: compare with this earlier JSON report; fail only on what is new or moved.",
    )
    max_alpha_shift: float | None = setting(
        None,
        metavar="X",
        min=0,
        help="Gate, with --baseline: exit 1 if a layer's alpha moved by more than X (X itself passes).",
    )
    exit_zero: bool = setting(False, help="Exit 0 even when a gate is violated (codes 2-5 unchanged).")

    @property
    def alpha_rules(self) -> bool:
        """Whether a rule reads alpha (so a layer without one cannot be checked)."""
        return (
            self.alpha_above is not None or self.alpha_below is not None or self.max_alpha_shift is not None
        )

    @property
    def active(self) -> bool:
        """Whether anything is checked (`exit_zero` or a baseline alone check nothing)."""
        return self.alpha_rules or bool(self.phases) or self.strict


class Rule(str, Enum):
    """What a violation broke; the values are the SARIF rule ids and the JSON's `rule_id`."""

    ALPHA_ABOVE = "alpha-above"
    ALPHA_BELOW = "alpha-below"
    PHASE = "phase"
    ALPHA_SHIFT = "alpha-shift"
    UNCHECKED = "unchecked"


@dataclass(frozen=True, slots=True)
class Violation:
    """One layer breaking one rule.

    Attributes:
        path: the report's path.
        layer: the layer as reports name it (with `[slice]` in per-slice mode).
        rule_id: the rule broken.
        value: the layer's alpha, its phase, or (unchecked) why it could not be checked.
        bound: the rule's bound: X of an alpha rule or of `--max-alpha-shift`, the phase of a phase rule.
        baseline_alpha: the layer's alpha in the baseline, where one was compared.
    """

    path: str
    layer: str
    rule_id: Rule
    value: float | str
    bound: float | str | None = None
    baseline_alpha: float | None = None

    @property
    def rule(self) -> str:
        """The rule in one word, as the JSON report spells it: `alpha>6`, `phase=rank-collapse`."""
        bound = _shown(self.bound)
        if self.rule_id is Rule.ALPHA_ABOVE:
            return f"alpha>{bound}"
        if self.rule_id is Rule.ALPHA_BELOW:
            return f"alpha<{bound}"
        if self.rule_id is Rule.PHASE:
            return f"phase={bound}"
        if self.rule_id is Rule.ALPHA_SHIFT:
            return f"alpha-shift>{bound}"
        return "unchecked"

    def describe(self) -> str:
        """The reason in words, without the layer's name: what the log and the annotations say."""
        if self.rule_id is Rule.PHASE:
            return f"in phase {self.value} (gate --fail-phase)"
        if self.rule_id is Rule.UNCHECKED:
            return f"could not be checked: {self.value}"
        alpha = f"{self.value:.3f}" if isinstance(self.value, float) else str(self.value)
        bound = _shown(self.bound)
        if self.rule_id is Rule.ALPHA_ABOVE:
            return f"alpha {alpha} is above {bound} (gate --fail-alpha-above)"
        if self.rule_id is Rule.ALPHA_BELOW:
            return f"alpha {alpha} is below {bound} (gate --fail-alpha-below)"
        old = f"{self.baseline_alpha:.3f}" if self.baseline_alpha is not None else "?"
        return f"alpha moved from {old} to {alpha}, by more than {bound} (gate --max-alpha-shift)"


def _shown(value: float | str | None) -> str:
    return f"{value:g}" if isinstance(value, int | float) else str(value)


@dataclass(frozen=True, slots=True)
class Unchecked:
    """A measured layer the active rules could not check, and why."""

    path: str
    layer: str
    reason: str


@dataclass(frozen=True, slots=True)
class GateResult:
    """The gate's verdict.

    Attributes:
        passed: no violation fails the run.
        violations: the violations that fail it (new ones, when a baseline is compared).
        known: violations the baseline already had: reported, not failing.
        unchecked: layers the rules could not check (also in `violations` under `--strict`).
        baseline: the baseline file compared against, if any.
    """

    passed: bool
    violations: tuple[Violation, ...]
    known: tuple[Violation, ...] = ()
    unchecked: tuple[Unchecked, ...] = ()
    baseline: str | None = None


def layer_label(layer: LayerRecord) -> str:
    return layer.name if layer.slice_index is None else f"{layer.name}[{layer.slice_index}]"


def _breaks(
    path: str, name: str, alpha: float | None, phase: Phase | None, rules: GateRules
) -> list[Violation]:
    """The threshold rules (not the shift) one layer's numbers break."""
    found: list[Violation] = []
    if alpha is not None and rules.alpha_above is not None and alpha > rules.alpha_above:
        found.append(Violation(path, name, Rule.ALPHA_ABOVE, alpha, rules.alpha_above))
    if alpha is not None and rules.alpha_below is not None and alpha < rules.alpha_below:
        found.append(Violation(path, name, Rule.ALPHA_BELOW, alpha, rules.alpha_below))
    if phase is not None and phase in rules.phases:
        found.append(Violation(path, name, Rule.PHASE, phase.value, phase.value))
    return found


def _unchecked_reason(layer: LayerRecord, rules: GateRules) -> str | None:
    if layer.status is Status.FAILED:
        return f"the layer failed: {layer.reason or 'no reason given'}"
    if rules.alpha_rules and (layer.metrics is None or layer.metrics.alpha is None):
        return "no alpha could be fitted, so the alpha rules could not be applied"
    return None


def evaluate_gate(
    reports: Sequence[ModelReport], rules: GateRules, baseline: Baseline | None = None
) -> GateResult:
    """Check every measured layer of every readable report against the rules (and the baseline)."""
    failing: list[Violation] = []
    known: list[Violation] = []
    unchecked: list[Unchecked] = []
    if not rules.active:
        return GateResult(passed=True, violations=())
    for report in reports:
        before = baseline.report_for(report.path, len(reports)) if baseline is not None else None
        for layer in report.layers:
            if layer.status is Status.SKIPPED:
                continue
            name = layer_label(layer)
            reason = _unchecked_reason(layer, rules)
            if reason is not None:
                unchecked.append(Unchecked(report.path, name, reason))
                if rules.strict:
                    failing.append(Violation(report.path, name, Rule.UNCHECKED, reason))
            if layer.status is not Status.ANALYZED or layer.metrics is None:
                continue
            alpha = layer.metrics.alpha
            old = before.get(name) if before is not None else None
            for violation in _breaks(report.path, name, alpha, layer.phase, rules):
                if old is not None and _also_broken(violation, old, report.path, name, rules):
                    known.append(_with_baseline(violation, old))
                else:
                    failing.append(_with_baseline(violation, old))
            shifted = _shift(report.path, name, alpha, old, rules.max_alpha_shift)
            if shifted is not None:
                failing.append(shifted)
    return GateResult(
        passed=not failing,
        violations=tuple(failing),
        known=tuple(known),
        unchecked=tuple(unchecked),
        baseline=str(baseline.path) if baseline is not None else None,
    )


def _shift(
    path: str, name: str, alpha: float | None, old: BaselineLayer | None, limit: float | None
) -> Violation | None:
    """An alpha-shift violation when alpha moved from the baseline's by more than `limit`."""
    if limit is None or alpha is None or old is None or old.alpha is None:
        return None
    if abs(alpha - old.alpha) <= limit:
        return None
    return Violation(path, name, Rule.ALPHA_SHIFT, alpha, limit, old.alpha)


def _also_broken(violation: Violation, old: BaselineLayer, path: str, name: str, rules: GateRules) -> bool:
    """Whether the baseline's numbers for the layer break the same rule (same phase for a phase rule)."""
    return any(
        earlier.rule_id is violation.rule_id and earlier.bound == violation.bound
        for earlier in _breaks(path, name, old.alpha, old.phase, rules)
    )


def _with_baseline(violation: Violation, old: BaselineLayer | None) -> Violation:
    if old is None or old.alpha is None:
        return violation
    return Violation(
        violation.path, violation.layer, violation.rule_id, violation.value, violation.bound, old.alpha
    )
