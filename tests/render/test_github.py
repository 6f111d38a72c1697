"""GitHub annotations: one command per finding, nothing from a model file can start another command."""

from __future__ import annotations

from inspector.gate import GateResult, GateRules, Rule, Violation, evaluate_gate
from inspector.records import FileError, ModelReport, Status
from inspector.render import github
from tests.render.helpers import fixture_report, layer, report_of


def test_annotations_for_violations_failures_and_summaries() -> None:
    report = fixture_report("digits_mlp.safetensors")
    gate = evaluate_gate([report], GateRules(alpha_above=2.4))
    text = github.to_github([report], gate)
    lines = text.splitlines()
    errors = [line for line in lines if line.startswith("::error ")]
    assert len(errors) == len(gate.violations) == 2
    assert all(
        "title=wwinspect%3A Layer alpha above the gate's upper bound (alpha>2.4)" in line for line in errors
    )
    assert any(line.startswith("::notice ") and "analysed 3 of 6 tensors" in line for line in lines)
    failed = report_of(layer("w", 0, status=Status.FAILED, reason="every weight is zero"))
    broken = ModelReport(path="x.pt", format=None, error=FileError("UnsafeFileError", "refused: os.system"))
    more = github.to_github([failed, broken], GateResult(passed=True, violations=())).splitlines()
    assert more[0].startswith("::warning ") and "every weight is zero" in more[0]
    assert (
        more[-1].startswith("::error ") and "refused%3A" not in more[-1] and "refused: os.system" in more[-1]
    )


def test_names_cannot_inject_workflow_commands() -> None:
    hostile = "w\n::add-mask::secret\r\n::error file=x::fake,%0A"
    gate = GateResult(
        passed=False, violations=(Violation("m,odel:1.onnx", hostile, Rule.ALPHA_ABOVE, 7.0, 6.0),)
    )
    text = github.to_github([], gate)
    assert text.count("\n") == 1 and text.startswith("::error file=m%2Codel%3A1.onnx,")
    assert "\\x0a::add-mask::secret\\x0d\\x0a" in text and "%250A" in text  # shown, never obeyed


def test_step_summary_is_the_markdown_report() -> None:
    report = fixture_report("digits_mlp.safetensors")
    summary = github.step_summary([report], GateResult(passed=True, violations=()), gate_active=True)
    assert (
        summary.startswith("## wwinspect\n") and "| # | layer |" in summary and "**Gate: passed**" in summary
    )
