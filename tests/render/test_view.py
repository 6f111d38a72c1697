"""What every human report shows (inspector.render.view): order, numbers, cells, skip categories, the
phase/band relation, the layers worth a look, legend and footer."""

from __future__ import annotations

import pytest

from inspector import AnalysisOptions
from inspector.records import Phase, Status
from inspector.render import attention, chars, view
from inspector.render.attention import Concern
from inspector.render.chars import ASCII, UNICODE
from inspector.render.view import RowOrder, SkipCategory
from tests.conftest import FIXTURES
from tests.render.helpers import fixture_report, layer, report_of


def test_digit_runs_sort_by_value_when_the_file_sorted_names_as_text() -> None:
    names = ["layers.0.w", "layers.1.w", "layers.10.w", "layers.11.w", "layers.2.w", "layers.9.w"]
    report = report_of(*(layer(name, index) for index, name in enumerate(names)))
    rows, order = view.rows(report)
    assert order is RowOrder.NATURAL
    assert [row.layer.name for row in rows] == [
        "layers.0.w",
        "layers.1.w",
        "layers.2.w",
        "layers.9.w",
        "layers.10.w",
        "layers.11.w",
    ]
    assert [row.number for row in rows] == [1, 2, 3, 4, 5, 6]


def test_a_model_order_in_the_file_is_kept() -> None:
    names = ["embed.weight", "layers.10.w", "layers.2.w", "head.weight"]  # not text order: the model's own
    rows, order = view.rows(report_of(*(layer(name, index) for index, name in enumerate(names))))
    assert order is RowOrder.FILE
    assert [row.layer.name for row in rows] == names


def test_numbers_count_measured_layers_without_gaps() -> None:
    report = report_of(
        layer(
            "a.bias", 0, status=Status.SKIPPED, reason="1-D tensor (a bias, scale or scalar), not a matrix"
        ),
        layer("a.weight", 1),
        layer("b.bias", 2, status=Status.SKIPPED, reason="bias parameters, not a weight matrix"),
        layer("b.weight", 3, status=Status.FAILED, reason="3 of 64 weights are NaN or infinite"),
        layer("c.weight", 4),
    )
    rows, _ = view.rows(report)
    assert [(row.layer.name, row.number) for row in rows] == [
        ("a.bias", None),
        ("a.weight", 1),
        ("b.bias", None),
        ("b.weight", 2),
        ("c.weight", 3),
    ]
    assert rows[0].category is SkipCategory.NOT_A_MATRIX


@pytest.mark.parametrize(
    ("options", "name", "category"),
    [
        (AnalysisOptions(layer_globs=("fc1*",)), "fc2.weight", SkipCategory.NOT_SELECTED),
        (AnalysisOptions(exclude_globs=("fc2*",)), "fc2.weight", SkipCategory.EXCLUDED),
        (AnalysisOptions(min_evals=11), "fc3.weight", SkipCategory.TOO_SMALL),
        (AnalysisOptions(max_evals=100), "fc2.weight", SkipCategory.TOO_LARGE),
        (AnalysisOptions(), "fc1.bias", SkipCategory.NOT_A_MATRIX),
    ],
)
def test_skips_caused_by_options_are_put_in_their_category(
    options: AnalysisOptions, name: str, category: SkipCategory
) -> None:
    report = fixture_report("digits_mlp.safetensors", options)
    record = next(record for record in report.layers if record.name == name)
    assert record.status is Status.SKIPPED
    assert view.skip_category(record.reason) is category


def test_every_skip_reason_of_the_fixtures_has_a_named_category() -> None:
    """Categories are read from the reasons' words: a reworded reason must fail here, not become OTHER."""
    paths = [
        path
        for path in sorted(FIXTURES.rglob("*"))
        if path.is_file() and path.suffix not in (".py", ".json", ".md", ".data")
    ]
    paths.append(FIXTURES / "sharded")
    uncategorised: set[str] = set()
    seen = 0
    for path in paths:
        try:
            report = fixture_report(str(path.relative_to(FIXTURES)))
        except Exception:  # noqa: S112 - fixtures meant to be unreadable are other tests' business
            continue
        for record in report.layers:
            if record.status is Status.SKIPPED:
                seen += 1
                if view.skip_category(record.reason) is SkipCategory.OTHER:
                    uncategorised.add(record.reason or "")
    assert seen > 100
    assert not uncategorised


def test_plurals_are_right_for_one() -> None:
    assert chars.plural(1, "eigenvalue") == "1 eigenvalue"
    assert chars.plural(3, "eigenvalue") == "3 eigenvalues"
    single = report_of(layer("w", 0, alpha=2.5))
    assert "over 1 layer" in (view.alpha_line(single.summary) or "")  # type: ignore[arg-type]
    hidden = view.hidden_line(
        view.rows(
            report_of(layer("b", 0, status=Status.SKIPPED, reason="2 eigenvalues, fewer than --min-evals 10"))
        )[0]
    )
    assert (
        hidden == "1 tensor not shown: 1 with fewer eigenvalues than --min-evals; --show-skipped lists them"
    )


def test_footer_names_the_option_that_hid_layers() -> None:
    report = fixture_report("digits_mlp.safetensors", AnalysisOptions(layer_globs=("fc1*",)))
    rows, _ = view.rows(report)
    footer = view.hidden_line([row for row in rows if row.category is not None])
    assert footer is not None
    assert "2 not selected by --layer" in footer and "3 biases, norms and other non-matrices" in footer


def test_ascii_glyphs_for_encodings_without_box_drawing() -> None:
    assert chars.glyphs_for_encoding("utf-8") is UNICODE
    assert chars.glyphs_for_encoding("cp1252") is ASCII
    assert chars.glyphs_for_encoding("latin-1") is ASCII
    assert chars.glyphs_for_encoding(None) is ASCII
    assert chars.glyphs_for_encoding("no-such-codec") is ASCII
    counts = (0, 1, 5, 40, 100, 7, 0, 1)
    assert chars.sparkline(counts, ASCII).isascii() and len(chars.sparkline(counts, ASCII)) == len(counts)
    assert chars.sparkline(counts, UNICODE)[4] == "█" and chars.sparkline(counts, UNICODE)[0] == " "
    assert chars.display_text("naïve…name", ASCII).isascii()


def test_the_band_is_marked_where_the_phase_overrules_it() -> None:
    report = report_of(
        layer("trained", 0, phase=Phase.HEAVY_TAILED, alpha=3.1),
        layer("noise", 1, phase=Phase.RANDOM_LIKE, alpha=4.2),
        layer("very.heavy", 2, phase=Phase.HEAVY_TAILED, alpha=1.6),
    )
    rows, _ = view.rows(report)
    assert [view.cell(row, "band") for row in rows] == ["well-trained", "well-trained*", "over-trained"]
    assert [view.cell(row, "band", short=True) for row in rows] == ["well", "well*", "over"]
    legend = " ".join(view.legend(rows))
    assert "heavy-tailed = " in legend and "random-like = " in legend and "bulk-decay" not in legend
    assert "* marks a band the phase overrules" in legend


def test_alpha_cell_marks_low_confidence_and_missing_values() -> None:
    rows, _ = view.rows(
        report_of(
            layer("a", 0, alpha=2.345, fit_low_confidence=True, num_fit_evals=12), layer("b", 1, alpha=None)
        )
    )
    assert view.cell(rows[0], "alpha") == "2.35?"
    assert view.cell(rows[1], "alpha") == "–" and view.cell(rows[1], "alpha", ASCII) == "-"
    assert "fewer than 20 eigenvalues" in " ".join(view.legend(rows))


def test_layers_worth_a_look_rank_by_urgency_and_group_shared_concerns() -> None:
    report = report_of(
        layer("ok", 0, phase=Phase.HEAVY_TAILED, alpha=3.0),
        layer("broken", 1, status=Status.FAILED, reason="every weight is zero: the spectrum is empty"),
        layer("vht", 2, phase=Phase.HEAVY_TAILED, alpha=1.5),
        *(layer(f"noise.{i}", 3 + i, phase=Phase.RANDOM_LIKE, alpha=5.0) for i in range(4)),
        layer("collapsed", 8, phase=Phase.RANK_COLLAPSE, alpha=3.0, near_zero_fraction=0.4),
    )
    rows, _ = view.rows(report)
    worth = attention.attention(rows)
    concerns = [line.concern for line in worth.lines]
    assert concerns == [Concern.FAILED, Concern.RANK_COLLAPSE, Concern.VERY_HEAVY_TAIL, Concern.RANDOM_LIKE]
    assert "every weight is zero" in worth.lines[0].reasons[0]
    assert "40%" in worth.lines[1].reasons[0]
    assert "alpha 1.50 < 2" in worth.lines[2].reasons[0]
    assert len(worth.lines[3].rows) == 4  # one line for four random-like layers
    assert all(row.layer.name != "ok" for line in worth.lines for row in line.rows)
    assert attention.attention(rows, limit=2).more == 1 + 4


def test_counts_line_keeps_the_words_scripts_look_for() -> None:
    report = fixture_report("digits_mlp.safetensors")
    assert report.summary is not None
    assert (
        view.counts_line(report.summary, len(report.layers)) == "analysed 3 of 6 tensors; 3 skipped, 0 failed"
    )


def test_a_phase_on_a_boundary_shows_its_neighbour() -> None:
    """The hook for the phase classifier's evidence: records that carry `phase_neighbour` and
    `phase_confidence` show the boundary (mark, legend, look at); records without them do not."""
    import dataclasses

    from inspector.records import LayerRecord
    from tests.render.helpers import layer, report_of

    base = layer("blk.0.attn.weight", 0, phase=Phase.BULK_DECAY, alpha=3.1)
    names = {field.name for field in dataclasses.fields(LayerRecord)}
    if {"phase_neighbour", "phase_confidence"} <= names:
        record = dataclasses.replace(base, phase_neighbour=Phase.HEAVY_TAILED, phase_confidence=0.55)  # type: ignore[call-arg]
    else:

        @dataclasses.dataclass(frozen=True, slots=True)
        class WithEvidence(LayerRecord):
            phase_confidence: float | None = None
            phase_neighbour: Phase | None = None

        fields = {field.name: getattr(base, field.name) for field in dataclasses.fields(LayerRecord)}
        record = WithEvidence(**fields, phase_confidence=0.55, phase_neighbour=Phase.HEAVY_TAILED)
    rows, _ = view.rows(report_of(record, base))
    assert view.cell(rows[0], "phase") == "bulk-decay~" and view.cell(rows[1], "phase") == "bulk-decay"
    assert any(line.startswith("~ = a phase on the boundary") for line in view.legend(rows))
    (line,) = [line for line in attention.attention(rows).lines if line.rows[0] is rows[0]]
    assert "on the boundary with heavy-tailed, confidence 0.55" in line.reasons
