"""--plot DIR and --html FILE through the command line (issue 11, plots and HTML).

The eigenvalues the plots draw are those the pipeline measured (kept as a bounded sample on each record):
checked against eigenvalues recomputed from the file, in one process and in forked workers, per slice and
with --randomize (whose shuffled spectra must not be the ones kept). The page the command writes is opened
in a real headless Chromium.
"""

from __future__ import annotations

import builtins
import io
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.image import imread

import inspector.cli
from inspector.options import AnalysisOptions, Normalization
from inspector.pipeline import analyze_file
from inspector.render.plots import layer_key
from inspector.science.eigen import CpuBackend
from tests.conftest import FIXTURES, run_cli
from tests.render.chromium import browser, find_browser
from tests.render.helpers import spectra_of

DEFAULT = FIXTURES / "digits_mlp.safetensors"
TRANSFORMER = FIXTURES / "onnx" / "transformer.onnx"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _no_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(inspector.cli, "find_pyproject", lambda start: None)


@pytest.mark.parametrize(
    ("path", "options", "jobs"),
    [
        (DEFAULT, AnalysisOptions(), 1),
        (DEFAULT, AnalysisOptions(randomize=True), 1),
        (FIXTURES / "onnx" / "cnn.onnx", AnalysisOptions(pool_conv=False), 1),
        (FIXTURES / "keras" / "cnn.keras", AnalysisOptions(), 2),
        (TRANSFORMER, AnalysisOptions(normalization=Normalization.PER_N), 1),
    ],
)
def test_the_kept_spectra_are_the_measured_ones(path: Path, options: AnalysisOptions, jobs: int) -> None:
    report = analyze_file(path, options, CpuBackend(), jobs=jobs, min_parallel_work=0.0, keep_spectra=True)
    expected = spectra_of(path, report, options)
    kept = {layer_key(record): record.spectrum for record in report.layers if record.spectrum is not None}
    assert kept.keys() == expected.keys() and kept
    for key, sample in kept.items():
        assert sample is not None
        assert sample.total == expected[key].total
        np.testing.assert_allclose(sample.values, expected[key].values, rtol=1e-9, atol=0)
    plain = analyze_file(path, options, CpuBackend(), keep_spectra=False)
    assert all(record.spectrum is None for record in plain.layers), "kept only when asked"
    assert plain.layers == report.layers, "records compare equal without their spectra"


def test_plot_writes_one_png_per_analysed_layer_and_one_of_the_model(tmp_path: Path) -> None:
    result = run_cli(DEFAULT, "--plot", tmp_path / "plots")
    assert result.exit_code == 0, result.output
    files = sorted(path.name for path in (tmp_path / "plots").iterdir())
    assert files[-1] == "model.png" and len(files) == 4
    assert all((tmp_path / "plots" / name).read_bytes().startswith(PNG) for name in files)
    image = imread(io.BytesIO((tmp_path / "plots" / files[0]).read_bytes()))
    assert image.shape[1] == 1000 and image[..., :3].std() > 0.05


def test_plots_of_several_files_go_in_one_folder_each(tmp_path: Path) -> None:
    other = tmp_path / "again" / DEFAULT.name
    other.parent.mkdir()
    shutil.copy(DEFAULT, other)
    result = run_cli(DEFAULT, TRANSFORMER, other, "--plot", tmp_path / "plots")
    assert result.exit_code == 0, result.output
    folders = sorted(path.name for path in (tmp_path / "plots").iterdir())
    assert folders == ["digits_mlp.safetensors", "digits_mlp.safetensors-2", "transformer.onnx"]
    assert (tmp_path / "plots" / "transformer.onnx" / "model.png").exists()


def test_plots_need_matplotlib_and_say_so_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    truncated = tmp_path / "t.safetensors"
    truncated.write_bytes(DEFAULT.read_bytes()[:100])
    for args in (["--plot", tmp_path / "p"], ["--html", tmp_path / "r.html"], ["-o", tmp_path / "r.html"]):
        result = run_cli(truncated, *args)
        assert result.exit_code == 2, result.output  # 3 would mean the model was read
        assert "matplotlib" in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "p").exists()


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.sources.append(dict(attrs).get("src") or "")


def test_html_page_from_the_command_line_in_headless_chromium(tmp_path: Path) -> None:
    result = run_cli(
        DEFAULT, TRANSFORMER, "--fail-alpha-above", "4", "--html", tmp_path / "report.html", "--json"
    )
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    analysed = sum(
        layer["status"] == "analyzed" for report in document["reports"] for layer in report["layers"]
    )
    violations = len(document["gate"]["violations"])
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    parser = _Images()
    parser.feed(page)
    assert len(parser.sources) == analysed + 2, "one plot per analysed layer and one per model"
    assert all(source.startswith("data:image/png;base64,") for source in parser.sources)
    assert f"Gate: {violations} violations" in page and violations > 1
    executable = find_browser()
    if executable is None:
        import os

        message = "chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(message + ": CI must run the browser test")
        pytest.skip(message)
    with browser(executable) as chromium:
        chromium.open((tmp_path / "report.html").as_uri())
        assert chromium.evaluate("document.body.getAttribute('data-ready')") == "1", chromium.problems()
        widths = chromium.evaluate("Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)")
        shot = imread(io.BytesIO(chromium.screenshot()))
        problems = chromium.problems()
    assert not problems
    assert len(widths) == analysed + 2 and all(width == 1000 for width in widths)
    assert shot[..., :3].std() > 0.05, "the screenshot is blank"
