"""ESD plots, with matplotlib (the optional extra `plot`): per measured layer the ESD on log-log and linear
axes with the power-law fit, xmin, the MP edge lambda_+ and the MP density overlaid; per model alpha by layer
number, coloured by phase. Figures become PNG bytes; only `write_plots` touches the disk.

The plots need the eigenvalues, which records do not keep. `EsdSample` is what a layer keeps of them when
plots are asked for: at most `SAMPLE_LIMIT` values, the largest `TAIL_KEEP` exactly (the tail is what the
fit is about) and evenly spaced order statistics of the rest, each weighted by the eigenvalues it stands
for, so memory stays bounded (64 KiB a layer) on any model.

matplotlib is imported inside the functions: `import inspector.render.plots` costs nothing, and a missing
extra is a usage error (`require_matplotlib`), raised before any file is read.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from inspector.errors import UsageError
from inspector.records import EsdSample, LayerRecord, ModelReport, Phase, Status
from inspector.render import chars, safe_text, view
from inspector.science.esd import SAMPLE_LIMIT, TAIL_KEEP, sample_spectrum  # noqa: F401 - re-exported
from inspector.science.mp import mp_edges, mp_pdf
from inspector.science.phases import OVER_TRAINED_BELOW, UNDER_TRAINED_ABOVE

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FloatArray = npt.NDArray[np.float64]

#: Figure sizes (inches) and resolution of the PNGs: 1000 x 400 pixels for a layer, 1000 x 420 for a model.
LAYER_FIGSIZE = (10.0, 4.0)
MODEL_FIGSIZE = (10.0, 4.2)
DPI = 100
#: Histogram bins: about the square root of the eigenvalue count, within these bounds.
MIN_BINS, MAX_BINS = 12, 80

#: A layer's key among a report's records (a conv layer in per-slice mode has one record per slice).
LayerKey = tuple[int, int | None]


def layer_key(layer: LayerRecord) -> LayerKey:
    return (layer.index, layer.slice_index)


def require_matplotlib() -> None:
    """Raise a usage error (exit 2) when matplotlib is not installed; call it before reading any file."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError(
            "plots need matplotlib, which is not installed",
            hint="pip install matplotlib (the 'plot' extra: pip install '.[plot]' in a checkout)",
        ) from None


# --- Curves the figures draw (pure functions, tested against the theory) --------------------------------


def esd_density(sample: EsdSample, edges: FloatArray) -> FloatArray:
    """The ESD as a density per unit lambda over `edges`: counts / (total eigenvalues x bin width)."""
    counts, _ = np.histogram(sample.values, bins=edges, weights=sample.weights)
    return counts / (sample.total * np.diff(edges))


def power_law_density(layer: LayerRecord, grid: FloatArray) -> FloatArray:
    """The fitted tail as a share of the whole ESD's density on `grid` (zero below xmin).

    A power law: (n_tail / n) (alpha - 1) / xmin (lambda / xmin)^-alpha; with --fit tpl, lambda^-alpha
    exp(-Lambda lambda) normalised numerically over [xmin, lambda_max].
    """
    metrics = layer.metrics
    density = np.zeros_like(grid)
    if metrics is None or metrics.alpha is None or metrics.xmin is None or not metrics.num_pl_spikes:
        return density
    alpha, xmin = metrics.alpha, metrics.xmin
    share = metrics.num_pl_spikes / metrics.num_evals
    inside = grid >= xmin
    if metrics.Lambda is not None and metrics.lambda_max is not None and metrics.lambda_max > xmin:
        support = np.geomspace(xmin, metrics.lambda_max, 2048)
        shape = (support / xmin) ** -alpha * np.exp(-metrics.Lambda * (support - xmin))
        norm = float(np.trapezoid(shape, support))
        density[inside] = (
            share * (grid[inside] / xmin) ** -alpha * np.exp(-metrics.Lambda * (grid[inside] - xmin)) / norm
        )
        return density
    density[inside] = share * (alpha - 1.0) / xmin * (grid[inside] / xmin) ** -alpha
    return density


def mp_density(layer: LayerRecord, grid: FloatArray) -> FloatArray:
    """The fitted Marchenko-Pastur density on the report's scale: MP(Q, sigma^2) of the mean-1 ESD, rescaled
    by the mean eigenvalue (the fit's own units, `inspector.science.mp`)."""
    metrics = layer.metrics
    if metrics is None or metrics.mp_sigma is None or metrics.log_norm is None or not layer.N or not layer.M:
        return np.zeros_like(grid)
    unit = 10.0**metrics.log_norm / metrics.num_evals
    density: FloatArray = mp_pdf(grid / unit, layer.N / layer.M, metrics.mp_sigma**2) / unit
    return density


def _mp_support(layer: LayerRecord) -> tuple[float, float] | None:
    metrics = layer.metrics
    if metrics is None or metrics.mp_sigma is None or metrics.log_norm is None or not layer.N or not layer.M:
        return None
    unit = 10.0**metrics.log_norm / metrics.num_evals
    low, high = mp_edges(layer.N / layer.M, metrics.mp_sigma**2)
    return low * unit, high * unit


# --- Figures --------------------------------------------------------------------------------------------


def plain_label(text: str) -> str:
    """A name from a model file as literal matplotlib text (no mathtext from `$`, no control characters)."""
    return safe_text(text, 120).replace("$", r"\$")


def _bins(count: int) -> int:
    return int(min(MAX_BINS, max(MIN_BINS, round(math.sqrt(max(count, 1))))))


def layer_figure(layer: LayerRecord, sample: EsdSample, number: int | None = None) -> Figure:
    """Two panels: the ESD on log-log axes and on linear axes, with the fit and the MP bulk."""
    from matplotlib.figure import Figure

    metrics = layer.metrics
    if metrics is None:
        raise ValueError(f"layer {layer.name!r} has no metrics to plot")
    figure = Figure(figsize=LAYER_FIGSIZE, dpi=DPI, layout="constrained")
    log_axes, linear_axes = figure.subplots(1, 2)
    positive = sample.values[sample.values > 0]
    bins = _bins(positive.size)
    if positive.size:
        low, high = float(positive[0]), float(positive[-1])
        log_edges = np.geomspace(low, high if high > low else low * 10, bins + 1)
        log_axes.stairs(
            esd_density(sample, log_edges), log_edges, fill=True, alpha=0.35, color="#444444", label="ESD"
        )
        grid = np.geomspace(log_edges[0], log_edges[-1], 512)
        _overlay(log_axes, layer, grid)
        log_axes.set_xscale("log")
        log_axes.set_yscale("log")
    linear_top = _linear_range(layer, sample)
    linear_edges = np.linspace(0.0, linear_top, bins + 1)
    density = esd_density(sample, linear_edges)
    beyond = round(float(sample.weights[sample.values > linear_top].sum()))
    if beyond:
        linear_axes.text(
            0.98,
            0.95,
            f"{chars.plural(beyond, 'eigenvalue')} beyond, up to {chars.number(metrics.lambda_max)}",
            transform=linear_axes.transAxes,
            ha="right",
            va="top",
            fontsize=7,
        )
    linear_axes.stairs(density, linear_edges, fill=True, alpha=0.35, color="#444444", label="ESD")
    _overlay(linear_axes, layer, np.linspace(linear_edges[0], linear_edges[-1], 1024))
    if density.size and density.max() > 0:
        linear_axes.set_ylim(0.0, float(density.max()) * 1.25)  # the MP density may diverge at 0 for Q = 1
    log_axes.set_title("log-log", fontsize=9)
    linear_axes.set_title("linear", fontsize=9)
    for axes in (log_axes, linear_axes):
        axes.set_xlabel(r"eigenvalue $\lambda$ of $W^TW$")
        axes.set_ylabel("density")
    log_axes.legend(fontsize=7, loc="best")
    label = f"#{number} " if number is not None else ""
    alpha = chars.number(metrics.alpha)
    phase = layer.phase.value if layer.phase is not None else "no phase"
    band = layer.alpha_label.value if layer.alpha_label is not None else "no band"
    figure.suptitle(
        f"{label}{plain_label(view.layer_label(layer))}    alpha {alpha} (D {chars.number(metrics.D, 3)}),"
        f" {phase}, {band}",
        fontsize=10,
    )
    return figure


#: The linear panel shows the bulk: up to the larger of LINEAR_EDGE_FACTOR x lambda_+ and the LINEAR_QUANTILE
#: of the eigenvalues (a heavy tail spread over two decades would squeeze the bulk into one bin); the
#: eigenvalues beyond are counted on the panel, and the log-log panel shows them all.
LINEAR_EDGE_FACTOR = 2.0
LINEAR_QUANTILE = 0.98


def _linear_range(layer: LayerRecord, sample: EsdSample) -> float:
    if not sample.values.size or sample.values[-1] <= 0:
        return 1.0
    top = float(sample.values[-1])
    cumulative = np.cumsum(sample.weights) / sample.total
    quantile = float(
        sample.values[min(int(np.searchsorted(cumulative, LINEAR_QUANTILE)), sample.values.size - 1)]
    )
    edge = (layer.metrics.mp_lambda_plus or 0.0) if layer.metrics is not None else 0.0
    return min(top, max(quantile, LINEAR_EDGE_FACTOR * edge)) or top


def _overlay(axes: Axes, layer: LayerRecord, grid: FloatArray) -> None:
    metrics = layer.metrics
    assert metrics is not None
    tail = power_law_density(layer, grid)
    if tail.any():
        kind = "truncated power law" if metrics.Lambda is not None else "power law"
        shown = tail > 0
        axes.plot(
            grid[shown],
            tail[shown],
            color="#D55E00",
            linewidth=1.6,
            label=f"{kind}, alpha {metrics.alpha:.2f}",
        )
    bulk = mp_density(layer, grid)
    if bulk.any():
        shown = bulk > 0
        axes.plot(grid[shown], bulk[shown], color="#0072B2", linewidth=1.4, label="MP density (fitted bulk)")
    if metrics.xmin is not None:
        axes.axvline(metrics.xmin, color="#D55E00", linestyle="--", linewidth=1.0, label=r"$x_{min}$")
    if metrics.mp_lambda_plus is not None:
        axes.axvline(
            metrics.mp_lambda_plus,
            color="#0072B2",
            linestyle=":",
            linewidth=1.2,
            label=r"$\lambda_+$ (MP edge)",
        )


def model_figure(report: ModelReport) -> Figure:
    """alpha by layer number (the table's #), one colour per phase, the band's bounds drawn."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=MODEL_FIGSIZE, dpi=DPI, layout="constrained")
    axes = figure.subplots()
    rows, _ = view.rows(report)
    measured = [row for row in rows if row.layer.metrics is not None and row.layer.metrics.alpha is not None]
    points = {id(row): (float(row.number or 0), _alpha(row)) for row in measured}
    axes.axhspan(OVER_TRAINED_BELOW, UNDER_TRAINED_ABOVE, color="#009E73", alpha=0.08, label="alpha band 2-6")
    for bound in (OVER_TRAINED_BELOW, UNDER_TRAINED_ABOVE):
        axes.axhline(bound, color="#009E73", linewidth=0.8, linestyle="--")
    for phase in [*Phase, None]:
        members = [row for row in measured if row.layer.phase is phase]
        if not members:
            continue
        axes.scatter(
            [points[id(row)][0] for row in members],
            [points[id(row)][1] for row in members],
            color=view.PHASE_COLOURS.get(phase, "#777777") if phase is not None else "#777777",
            label=phase.value if phase is not None else "no phase",
            s=28,
            zorder=3,
        )
    alphas = [points[id(row)][1] for row in measured]
    if measured:
        axes.plot([points[id(row)][0] for row in measured], alphas, color="#999999", linewidth=0.6, zorder=2)
    missing = sum(1 for row in rows if row.layer.status is not Status.SKIPPED) - len(measured)
    title = f"{plain_label(report.path)}: alpha by layer"
    if missing:
        title += f" ({chars.plural(missing, 'layer')} without alpha not drawn)"
    axes.set_title(title, fontsize=10)
    from matplotlib.ticker import MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("layer # (as in the table)")
    axes.set_ylabel("alpha")
    if (
        alphas and max(a for a in alphas if a is not None) > 20
    ):  # a failed-looking alpha would flatten the rest
        axes.set_yscale("log")
    axes.legend(fontsize=7, loc="best")
    return figure


def _alpha(row: view.Row) -> float:
    metrics = row.layer.metrics
    return float(metrics.alpha) if metrics is not None and metrics.alpha is not None else math.nan


def png(figure: Figure) -> bytes:
    """The figure as PNG bytes, without a timestamp or version in its metadata (same input, same bytes)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


# --- Files ----------------------------------------------------------------------------------------------

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def plot_file_name(number: int, layer: LayerRecord) -> str:
    """`003-layers.2.mlp.weight.png`: the table's number first, so files sort like the table."""
    stem = _UNSAFE.sub("_", view.layer_label(layer)).strip("._") or "layer"
    return f"{number:03d}-{stem[:120]}.png"


def layer_plots(
    report: ModelReport, samples: Mapping[LayerKey, EsdSample]
) -> list[tuple[int, LayerRecord, bytes]]:
    """(number, record, PNG) for every analysed layer of `report` that has a sample, in table order."""
    rows, _ = view.rows(report)
    plots: list[tuple[int, LayerRecord, bytes]] = []
    for row in rows:
        sample = samples.get(layer_key(row.layer))
        if row.number is None or row.layer.metrics is None or sample is None:
            continue
        figure = layer_figure(row.layer, sample, row.number)
        plots.append((row.number, row.layer, png(figure)))
    return plots


def write_plots(report: ModelReport, samples: Mapping[LayerKey, EsdSample], directory: Path) -> list[Path]:
    """`model.png` and one PNG per analysed layer into `directory` (created); returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = [directory / "model.png"]
    written[0].write_bytes(png(model_figure(report)))
    for number, record, data in layer_plots(report, samples):
        path = directory / plot_file_name(number, record)
        path.write_bytes(data)
        written.append(path)
    return written


def samples_from(pairs: Sequence[tuple[LayerRecord, npt.ArrayLike]]) -> dict[LayerKey, EsdSample]:
    """Samples keyed as `layer_plots` looks them up, from (record, its eigenvalues) pairs."""
    return {layer_key(record): sample_spectrum(values) for record, values in pairs}


@dataclass(frozen=True, slots=True)
class ReportImages:
    """The PNGs of one report for the HTML page: the model plot and each analysed layer's, by layer key."""

    model: bytes | None
    layers: dict[LayerKey, bytes]


def report_images(report: ModelReport, samples: Mapping[LayerKey, EsdSample]) -> ReportImages:
    """Every plot of a readable report as PNG bytes."""
    if report.error is not None:
        return ReportImages(model=None, layers={})
    layers = {layer_key(record): data for _, record, data in layer_plots(report, samples)}
    return ReportImages(model=png(model_figure(report)), layers=layers)
