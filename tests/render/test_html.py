"""The HTML report: parsed (self-contained, escaped, the table's content, every plot inline) and opened in a
real headless Chromium (no console error, images decoded, sorting works, a screenshot that is not blank)."""

from __future__ import annotations

import base64
import io
import os
from html.parser import HTMLParser
from pathlib import Path

import pytest
from matplotlib.image import imread

from inspector.gate import GateResult, Rule, Violation
from inspector.records import ModelReport, Phase, Status
from inspector.render import html, plots, view
from tests.render.chromium import browser, find_browser
from tests.render.helpers import fixture_path, fixture_report, layer, report_of, spectra_of

FIXTURE_FILES = ("digits_mlp.safetensors", "onnx/transformer.onnx")


class _Page(HTMLParser):
    """Tags with their attributes, and the text of the page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {key: value or "" for key, value in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parsed(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    return parser


@pytest.fixture(scope="module")
def page() -> tuple[str, list[ModelReport]]:
    reports, images = [], []
    for name in FIXTURE_FILES:
        report = fixture_report(name)
        reports.append(report)
        images.append(plots.report_images(report, spectra_of(fixture_path(name), report)))
    gate = GateResult(
        passed=False, violations=(Violation(reports[0].path, "fc3.weight", Rule.ALPHA_ABOVE, 4.63, 4.0),)
    )
    return html.to_html(reports, gate, gate_active=True, images=images), reports


def test_page_is_self_contained(page: tuple[str, list[ModelReport]]) -> None:
    parsed = _parsed(page[0])
    meta = [attrs for tag, attrs in parsed.tags if tag == "meta" and attrs.get("http-equiv")]
    assert meta and meta[0]["content"] == html.CONTENT_SECURITY_POLICY
    for tag, attrs in parsed.tags:
        for key in ("src", "href"):
            value = attrs.get(key, "")
            assert not value or value.startswith(("data:image/png;base64,", "#")), (tag, value[:60])
        assert tag not in ("link", "iframe", "object", "embed")


def test_every_plot_is_an_inline_png(page: tuple[str, list[ModelReport]]) -> None:
    text, reports = page
    images = [attrs["src"] for tag, attrs in _parsed(text).tags if tag == "img"]
    analysed = sum(1 for report in reports for record in report.layers if record.status is Status.ANALYZED)
    assert len(images) == analysed + len(reports)  # one per layer and one model plot per file
    for source in images:
        picture = imread(io.BytesIO(base64.b64decode(source.split(",", 1)[1])))
        assert picture.shape[1] == 1000 and picture[..., :3].std() > 0.05


def test_table_rows_say_what_the_terminal_says(page: tuple[str, list[ModelReport]]) -> None:
    text, reports = page
    parsed = _parsed(text)
    body = " ".join(parsed.text)
    for report in reports:
        rows, _ = view.rows(report)
        for row in rows:
            if row.number is not None:
                assert view.cell(row, "alpha") in body and view.cell(row, "phase") in body
        summary = report.summary
        assert summary is not None and view.counts_line(summary, len(report.layers)) in body
    assert "Gate: 1 violation" in body
    headers = [attrs for tag, attrs in parsed.tags if tag == "th"]
    assert len(headers) >= len(view.COLUMN_KEYS)
    anchors = {attrs["id"] for tag, attrs in parsed.tags if "id" in attrs}
    links = [attrs["href"][1:] for tag, attrs in parsed.tags if tag == "a"]
    assert links and all(link in anchors for link in links), "every layer link lands on its plot"


def test_names_from_files_are_escaped() -> None:
    hostile = "<script>alert(1)</script>.weight"
    report = report_of(layer(hostile, 0), layer("x' onmouseover='alert(2)", 1, phase=Phase.RANDOM_LIKE))
    page = html.to_html([report], GateResult(passed=True, violations=()), gate_active=False)
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page
    parsed = _parsed(page)
    assert not any("onmouseover" in attrs for _, attrs in parsed.tags)
    assert sum(1 for tag, _ in parsed.tags if tag == "script") == 1


def _chromium() -> str:
    executable = find_browser()
    if executable is None:
        message = "chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(message + ": CI must run the browser test")
        pytest.skip(message)
    return executable


def test_page_in_headless_chromium(page: tuple[str, list[ModelReport]], tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    target.write_text(page[0], encoding="utf-8")
    with browser(_chromium()) as chromium:
        chromium.open(target.as_uri())
        assert chromium.evaluate("document.body.getAttribute('data-ready')") == "1", chromium.problems()
        widths = chromium.evaluate("Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)")
        assert widths and all(width == 1000 for width in widths)
        alpha_column = view.COLUMN_KEYS.index("alpha")
        values = (
            "Array.from(document.querySelectorAll('table.layers')[1].tBodies[0].rows)"
            f".map(r => parseFloat(r.cells[{alpha_column}].getAttribute('data-sort')))"
        )
        click = f"document.querySelectorAll('table.layers')[1].querySelectorAll('th')[{alpha_column}].click()"
        unsorted = chromium.evaluate(values)
        assert unsorted != sorted(unsorted), "the fixture's alphas are not already in order"
        chromium.evaluate(click)
        assert chromium.evaluate(values) == sorted(unsorted)
        chromium.evaluate(click)
        assert chromium.evaluate(values) == sorted(unsorted, reverse=True)
        shot = imread(io.BytesIO(chromium.screenshot()))
        problems = chromium.problems()
    assert not problems
    assert shot.shape[0] > 1000 and shot.shape[1] >= 1000
    assert shot[..., :3].std() > 0.05, "the screenshot is blank"
    assert (shot[..., :3] < 0.5).mean() > 0.01, "there is dark text and lines on the page"


def test_the_browser_check_sees_script_errors(tmp_path: Path) -> None:
    """The check above can fail: a page whose script throws and logs an error is caught."""
    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><body><p>x</p><script>console.error('bad'); undefinedName();</script>")
    with browser(_chromium()) as chromium:
        chromium.open(broken.as_uri())
        chromium.evaluate("1")
        problems = chromium.problems()
    assert any("console.error" in problem for problem in problems)
    assert any("undefinedName" in problem for problem in problems)


def test_page_without_plots_still_has_everything_else() -> None:
    report = report_of(
        layer("a.weight", 0),
        layer("b.bias", 1, status=Status.SKIPPED, reason="bias parameters, not a weight matrix"),
    )
    page = html.to_html([report], GateResult(passed=True, violations=()), gate_active=True)
    parsed = _parsed(page)
    assert not any(tag == "img" for tag, _ in parsed.tags)
    body = " ".join(parsed.text)
    assert (
        "Gate: passed" in body and "bias parameters, not a weight matrix" in body and "not a matrix" in body
    )
