"""ESD plots: the curves against the theory, the figures' content, bounded samples, and real PNGs."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from inspector.records import Status
from inspector.render import plots, view
from inspector.science.mp import mp_pdf
from tests.render.helpers import fixture_path, fixture_report, layer, spectra_of


def test_sample_keeps_the_tail_exactly_and_the_counts_of_the_bulk() -> None:
    rng = np.random.default_rng(0)
    values = rng.pareto(2.0, 50_000) + 1.0
    sample = plots.sample_spectrum(values)
    assert sample.values.size == plots.SAMPLE_LIMIT and sample.total == values.size
    assert np.array_equal(sample.values[-plots.TAIL_KEEP :], np.sort(values)[-plots.TAIL_KEEP :])
    assert sample.weights.sum() == pytest.approx(values.size)
    edges = np.geomspace(values.min(), values.max(), 40)
    full, _ = np.histogram(values, bins=edges)
    kept, _ = np.histogram(sample.values, bins=edges, weights=sample.weights)
    assert np.abs(full - kept).max() <= 0.01 * values.size
    small = plots.sample_spectrum(values[:100])
    assert small.values.size == 100 and np.all(small.weights == 1)


def test_power_law_curve_is_the_fitted_density_share() -> None:
    record = layer("w", alpha=2.5, xmin=2.0, num_pl_spikes=16, num_evals=64)
    grid = np.array([1.0, 2.0, 4.0])
    density = plots.power_law_density(record, grid)
    share = 16 / 64
    assert density[0] == 0.0
    assert density[1] == pytest.approx(share * 1.5 / 2.0)
    assert density[2] == pytest.approx(share * 1.5 / 2.0 * 2.0**-2.5)
    tail = np.geomspace(2.0, 1e6, 200_001)
    assert np.trapezoid(plots.power_law_density(record, tail), tail) == pytest.approx(share, rel=1e-3)


def test_mp_curve_is_the_fitted_law_on_the_report_scale() -> None:
    record = layer("w", shape=(256, 64), mp_sigma=0.9, log_norm=np.log10(64 * 3.0), num_evals=64)
    grid = np.linspace(0.01, 20.0, 20_000)
    density = plots.mp_density(record, grid)
    assert np.trapezoid(density, grid) == pytest.approx(1.0, abs=2e-3)
    assert density[1000] == pytest.approx(mp_pdf(grid[1000] / 3.0, 4.0, 0.81) / 3.0)


def test_layer_figure_draws_both_axes_with_fit_xmin_edge_and_mp() -> None:
    report = fixture_report("digits_mlp.safetensors")
    samples = spectra_of(fixture_path("digits_mlp.safetensors"), report)
    record = next(r for r in report.layers if r.name == "fc1.weight")
    figure = plots.layer_figure(record, samples[plots.layer_key(record)], 1)
    log_axes, linear_axes = figure.axes
    assert log_axes.get_xscale() == "log" and log_axes.get_yscale() == "log"
    assert linear_axes.get_xscale() == "linear"
    labels = {line.get_label() for line in log_axes.get_lines()}
    assert {
        "power law, alpha 2.54",
        "MP density (fitted bulk)",
        "$x_{min}$",
        r"$\lambda_+$ (MP edge)",
    } <= labels
    assert record.metrics is not None
    xmin_line = next(line for line in log_axes.get_lines() if line.get_label() == "$x_{min}$")
    assert np.asarray(xmin_line.get_xdata())[0] == pytest.approx(record.metrics.xmin)
    data = plots.png(figure)
    image = imread(io.BytesIO(data))
    assert image.shape[:2] == (400, 1000)
    assert image[..., :3].std() > 0.05, "not a blank image"
    assert plots.png(plots.layer_figure(record, samples[plots.layer_key(record)], 1)) == data, "reproducible"


def test_write_plots_names_files_like_the_table(tmp_path: Path) -> None:
    report = fixture_report("onnx/transformer.onnx")
    samples = spectra_of(fixture_path("onnx/transformer.onnx"), report)
    written = plots.write_plots(report, samples, tmp_path / "plots")
    names = sorted(path.name for path in written)
    measured = [r for r in report.layers if r.status is Status.ANALYZED]
    assert len(names) == len(measured) + 1 and "model.png" in names
    assert names[0] == "001-emb.weight.png"
    model = imread(io.BytesIO((tmp_path / "plots" / "model.png").read_bytes()))
    assert model[..., :3].std() > 0.05
    figure = plots.model_figure(report)
    points = sum(np.asarray(collection.get_offsets()).shape[0] for collection in figure.axes[0].collections)
    assert points == len(measured)


def test_names_are_plain_text_in_figures() -> None:
    record = layer("cost$in$dollars", alpha=3.0)
    figure = plots.layer_figure(record, plots.sample_spectrum(np.linspace(0.1, 5.0, 64)))
    plots.png(figure)  # a name with $ signs must not be parsed as mathtext
    assert "cost$in$dollars" in figure.get_suptitle().replace("\\$", "$")
    assert view.layer_label(record) == "cost$in$dollars"
