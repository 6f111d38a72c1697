"""wwinspect's analysis: layer matrices, spectra, fits, records, renderers and the CLI.

The Python API is `wwinspect.analyze` (`inspector.api`: paths, state dicts, torch modules). `analyze` here
is its path-only core, returning the plain `ModelReport`:

    from inspector import AnalysisOptions, analyze

    report = analyze("model.safetensors", AnalysisOptions(min_evals=20))
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
        ModelNotFoundError: the path names nothing (not a corrupt file: it is not there).
        formats.FormatError: the file cannot be read.
    """
    from inspector.errors import ModelNotFoundError
    from inspector.pipeline import analyze_file
    from inspector.science.eigen import make_backend
    from inspector.workers import resolve_jobs

    chosen = options or AnalysisOptions()
    if not Path(path).exists():
        raise ModelNotFoundError(f"no such file or directory: {path}")
    return analyze_file(Path(path), chosen, make_backend(chosen.device), jobs=resolve_jobs(jobs))


__all__ = ["AnalysisOptions", "LayerMetrics", "LayerRecord", "ModelReport", "__version__", "analyze"]
