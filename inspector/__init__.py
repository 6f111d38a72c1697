"""wwinspect's analysis: layer matrices, spectra, fits, records, renderers and the CLI.

A small Python API for scripts:

    from pathlib import Path
    from inspector import AnalysisOptions, analyze

    report = analyze(Path("model.safetensors"))
    for layer in report.layers:
        print(layer.name, layer.metrics.alpha if layer.metrics else layer.reason)
"""

from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"

from inspector.options import AnalysisOptions
from inspector.records import LayerMetrics, LayerRecord, ModelReport


def analyze(path: Path | str, options: AnalysisOptions | None = None, *, jobs: int = 1) -> ModelReport:
    """Analyse one model file or sharded directory.

    `jobs`: worker processes (0: one per CPU). Workers are forked on Linux when the model is large enough
    to gain from them; the report is the same either way (to rounding).

    Raises:
        formats.FormatError: the file cannot be read.
    """
    from inspector.pipeline import analyze_file
    from inspector.science.eigen import make_backend
    from inspector.workers import resolve_jobs

    chosen = options or AnalysisOptions()
    return analyze_file(Path(path), chosen, make_backend(chosen.device), jobs=resolve_jobs(jobs))


__all__ = ["AnalysisOptions", "LayerMetrics", "LayerRecord", "ModelReport", "__version__", "analyze"]
