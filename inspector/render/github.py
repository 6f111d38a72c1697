"""GitHub Actions workflow commands: annotations on the pull request, and a job summary.

* an `::error` per gate violation and per unreadable file, titled with the rule;
* a `::warning` per layer that could not be measured, per violation the baseline already had, and per
  layer the gate could not check (an `::error` instead under `--strict`);
* a `::notice` per file with its summary line.
A model file has no lines, so annotations name the file only (GitHub lists them on the run and the PR).
`step_summary` is the Markdown report, for `$GITHUB_STEP_SUMMARY`.

Every value from a model file is escaped (`%`, CR, LF, and `:` `,` in properties), so a layer name cannot
end the command and start another one (`::add-mask::`, `::stop-commands::`).
"""

from __future__ import annotations

from collections.abc import Sequence

from inspector.gate import GateResult, Rule
from inspector.records import ModelReport, Status
from inspector.render import chars, safe_text, view
from inspector.render.markdown import to_markdown
from inspector.render.sarif import RULES, rule_id

_RULE_TITLES = {rule.id: rule.short for rule in RULES}


def escape_data(text: str) -> str:
    """The message part of a workflow command."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A `key=value` property of a workflow command."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _command(kind: str, path: str, title: str, message: str) -> str:
    properties = f"file={escape_property(safe_text(path, 1000))},title={escape_property(title)}"
    return f"::{kind} {properties}::{escape_data(safe_text(message, 2000))}"


def to_github(reports: Sequence[ModelReport], gate: GateResult) -> str:
    """The annotations of one run, one command per line."""
    lines: list[str] = []
    for report in reports:
        if report.error is not None:
            lines.append(
                _command("error", report.path, "wwinspect: cannot read the file", report.error.message)
            )
            continue
        for record in report.layers:
            if record.status is Status.FAILED:
                lines.append(
                    _command(
                        "warning",
                        report.path,
                        "wwinspect: layer not measured",
                        f"{view.layer_label(record)}: {record.reason or 'no reason given'}",
                    )
                )
        if report.summary is not None:
            summary = report.summary
            parts = [view.counts_line(summary, len(report.layers))]
            alpha = view.alpha_line(summary, chars.ASCII)
            if alpha:
                parts.append(alpha)
            lines.append(_command("notice", report.path, "wwinspect summary", "; ".join(parts)))
    for violation in gate.violations:
        identifier = rule_id(violation)
        lines.append(
            _command(
                "error",
                violation.path,
                f"wwinspect: {_RULE_TITLES[identifier]} ({violation.rule})",
                f"{violation.layer}: {violation.describe()}",
            )
        )
    for violation in gate.known:
        lines.append(
            _command(
                "warning",
                violation.path,
                f"wwinspect: {_RULE_TITLES[rule_id(violation)]}, known from the baseline ({violation.rule})",
                f"{violation.layer}: {violation.describe()}",
            )
        )
    if not any(violation.rule_id is Rule.UNCHECKED for violation in gate.violations):
        for item in gate.unchecked:
            lines.append(
                _command(
                    "warning",
                    item.path,
                    "wwinspect: layer not checked by the gate",
                    f"{item.layer}: {item.reason}",
                )
            )
    return "\n".join(lines) + ("\n" if lines else "")


def step_summary(reports: Sequence[ModelReport], gate: GateResult, *, gate_active: bool) -> str:
    """Markdown for the job's summary page ($GITHUB_STEP_SUMMARY)."""
    return "## wwinspect\n\n" + to_markdown(reports, gate, gate_active=gate_active)
