"""The terminal report: layout by width, names elided in the middle, ASCII fallback, and the real thing in a
pseudo-terminal 80 and 160 columns wide."""

from __future__ import annotations

import re

import pytest
from rich.cells import cell_len

from inspector import AnalysisOptions
from inspector.gate import GateResult
from inspector.records import Phase, Status
from inspector.render import table, view
from inspector.render.chars import UNICODE
from tests.render.helpers import fixture_report, layer, render, report_of, run_in_pty, strip_ansi

HF_NAMES = [
    f"model.layers.{block}.{module}.weight"
    for block in range(12)
    for module in ("self_attn.q_proj", "self_attn.k_proj", "mlp.down_proj")
]
PASSED = GateResult(passed=True, violations=())


def _hf_report() -> object:
    return report_of(*(layer(name, index) for index, name in enumerate(HF_NAMES)))


def test_elide_keeps_block_numbers_and_the_end() -> None:
    name = "model.layers.11.self_attn.q_proj.weight"
    short = table.elide(name, 28)
    assert cell_len(short) <= 28
    assert "11" in short and short.endswith("q_proj.weight") and short.startswith("model.")
    assert table.elide(name, 100) == name
    assert cell_len(table.elide("a" * 50, 10)) == 10  # no components: characters from the middle
    assert table.elide("x" * 30, 12, "...").count("...") == 1


def test_colliding_names_keep_the_components_they_differ_in() -> None:
    # At 29 cells the gate and down projections of one block both read `model.layers.0.mlp.….weight`, and a
    # cut by characters loses the block number ("model.layer….gate_proj.weight" for blocks 0 and 1).
    projections = ("gate_proj", "up_proj", "down_proj")
    names = [f"model.layers.{block}.mlp.{proj}.weight" for block in (0, 1) for proj in projections]
    short = table.elide_all(names, 29)
    assert len(set(short)) == len(names)
    assert all(cell_len(text) <= 29 for text in short)
    assert short[0] == "model.….0.….gate_proj.weight" and short[5] == "model.….1.….down_proj.weight"
    assert table.names_are_distinct(names, short)


def test_elided_names_stay_distinct() -> None:
    names = ["bi/backward_lstm/lstm_cell/recurrent_kernel", "bi/forward_lstm/lstm_cell/recurrent_kernel"]
    short = table.elide_all(names, 24)
    assert len(set(short)) == 2 and all(cell_len(text) <= 24 for text in short)


@pytest.mark.parametrize("width", [60, 80, 100, 120, 160, 240])
def test_layout_fits_the_width_and_never_drops_the_essentials(width: int) -> None:
    rows, _ = view.rows(_hf_report())  # type: ignore[arg-type]
    layout = table.plan_layout(rows, width, UNICODE)
    assert layout.total <= width
    assert {"number", "layer", "alpha", "phase"} <= set(layout.keys)
    shown = view.column_keys(rows)  # the --randomize columns only when randomised
    dropped = {key for key in shown if key not in layout.keys}
    drop_order = [key for action, key in table.SHRINK_STEPS if action == "drop" and key in shown]
    assert dropped == set(drop_order[: len(dropped)]), "columns go in the stated order"


def test_wide_terminals_get_more_columns() -> None:
    rows, _ = view.rows(_hf_report())  # type: ignore[arg-type]
    narrow = table.plan_layout(rows, 80, UNICODE)
    wide = table.plan_layout(rows, 120, UNICODE)
    widest = table.plan_layout(rows, 200, UNICODE)
    assert set(narrow.keys) < set(wide.keys) < set(widest.keys) == set(view.column_keys(rows))
    assert narrow.widths["layer"] >= table.NAME_TARGET


def test_rendered_table_at_80_columns_reads_whole_headers_and_distinct_names() -> None:
    text = render(table.build_tables([_hf_report()], PASSED, gate_active=False, show_skipped=False), 80)  # type: ignore[list-item]
    lines = text.splitlines()
    assert all(cell_len(line) <= 80 for line in lines)
    header = next(line for line in lines if line.lstrip().startswith("#"))
    for word in ("layer", "alpha", "phase"):
        assert re.search(rf"\b{word}\b", header), header
    assert "…" not in header
    rows = [line for line in lines if re.match(r"\s*\d+\s+model\.", line)]
    assert len(rows) == len(HF_NAMES)
    names = [line.split()[1] for line in rows]
    assert len(set(names)) == len(names)


def test_ascii_encoding_gets_an_ascii_report() -> None:
    report = fixture_report("digits_mlp.safetensors")
    text = render(table.build_tables([report], PASSED, gate_active=True, show_skipped=True), 100, "cp1252")
    assert text.isascii()
    assert "fc1.weight" in text and "gate: passed" in text and "lambda" in text


def test_show_skipped_lists_each_tensor_with_its_category() -> None:
    report = fixture_report("digits_mlp.safetensors", AnalysisOptions(min_evals=11))
    text = render(table.build_tables([report], PASSED, gate_active=False, show_skipped=True), 160)
    skipped = {
        line.split()[0]: line for line in text.splitlines() if line.startswith(("fc1.bias", "fc3.weight"))
    }
    assert "not a matrix" in skipped["fc1.bias"]
    assert "too small" in skipped["fc3.weight"] and "fewer than --min-evals 11" in skipped["fc3.weight"]
    hidden = render(table.build_tables([report], PASSED, gate_active=False, show_skipped=False), 160)
    assert "1 with fewer eigenvalues than --min-evals" in hidden
    assert "biases, norms, small layers" not in hidden


def test_failed_layers_stay_in_the_table_and_lead_the_summary() -> None:
    report = report_of(
        layer("good.weight", 0),
        layer("nan.weight", 1, status=Status.FAILED, reason="3 of 8192 weights are NaN or infinite"),
        layer("noise.weight", 2, phase=Phase.RANDOM_LIKE, alpha=6.5),
    )
    text = render(table.build_tables([report], PASSED, gate_active=False, show_skipped=False), 120)
    row = next(line for line in text.splitlines() if "nan.weight" in line and line.lstrip()[0].isdigit())
    assert "failed" in row
    look = text[text.index("look at") :]
    assert look.index("nan.weight") < look.index("noise.weight")
    assert "NaN or infinite" in look


def test_report_width_honours_columns_when_piped() -> None:
    assert table.report_width(is_terminal=False, environ={"COLUMNS": "80"}, terminal_columns=None) == 80
    assert table.report_width(is_terminal=True, environ={"COLUMNS": "100"}, terminal_columns=80) == 100
    assert table.report_width(is_terminal=True, environ={}, terminal_columns=93) == 93
    assert table.report_width(is_terminal=False, environ={}, terminal_columns=None) == table.PIPE_WIDTH
    assert table.report_width(is_terminal=False, environ={"COLUMNS": "wide"}, terminal_columns=None) == (
        table.PIPE_WIDTH
    )


def _screen(data: bytes) -> list[str]:
    return [line.rstrip() for line in strip_ansi(data.decode("utf-8")).splitlines()]


@pytest.mark.parametrize("fixture", ["digits_mlp.safetensors", "torch/hf_sharded", "keras/tx.keras"])
def test_80_columns_in_a_real_pseudo_terminal(fixture: str) -> None:
    code, data, stderr = run_in_pty([f"fixtures/{fixture}"], 80)
    assert code == 0, stderr
    assert b"\x1b[" in data, "a terminal gets colour"
    lines = _screen(data)
    assert all(cell_len(line) <= 80 for line in lines), [line for line in lines if cell_len(line) > 80]
    header = next(line for line in lines if line.lstrip().startswith("#  "))
    assert re.search(r"\balpha\b", header) and re.search(r"\bphase\b", header) and "…" not in header
    report = fixture_report(fixture)
    measured = [record for record in report.layers if record.status is not Status.SKIPPED]
    table_rows = [line for line in lines if re.match(r"\s*\d+\s{2}\S", line)]
    assert len(table_rows) == len(measured)
    shown = [line.split()[1] for line in table_rows]
    assert len(set(shown)) == len(shown), "every row's name tells it apart"
    for record, name in zip(view.ordered_layers(measured)[0], shown, strict=True):
        last = re.split(r"[./]", record.name)[-1]
        assert name == record.name or (name.endswith(last) and cell_len(name) >= table.NAME_TARGET - 4)
    assert any(line.startswith("summary analysed") for line in lines)


def test_160_columns_in_a_real_pseudo_terminal_show_more() -> None:
    _, narrow, _ = run_in_pty(["fixtures/torch/hf_sharded"], 80)
    code, wide, stderr = run_in_pty(["fixtures/torch/hf_sharded"], 160)
    assert code == 0, stderr
    wide_lines, narrow_lines = _screen(wide), _screen(narrow)
    assert all(cell_len(line) <= 160 for line in wide_lines)
    wide_header = next(line for line in wide_lines if line.lstrip().startswith("#  "))
    narrow_header = next(line for line in narrow_lines if line.lstrip().startswith("#  "))
    assert len(wide_header.split()) > len(narrow_header.split())
    assert "kind" in wide_header and "model.layers.1.self_attn.q_proj.weight" in "\n".join(wide_lines)


def test_a_cp1252_terminal_gets_ascii_not_an_internal_error() -> None:
    code, data, stderr = run_in_pty(
        ["fixtures/digits_mlp.safetensors"], 80, env={"PYTHONIOENCODING": "cp1252"}
    )
    assert code == 0, stderr
    assert data.isascii()
    assert b"fc1.weight" in data and b"heavy-tailed" in data
