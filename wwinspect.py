"""wwinspect: how well each layer of a trained model is trained, from the model file alone.

The Python API (see `inspector.api`):

    import wwinspect

    report = wwinspect.analyze("model.safetensors")     # a path, a state_dict or a torch.nn.Module
    report.to_dataframe()

`python -m wwinspect` runs the command line, as the `wwinspect` script does.
"""

from __future__ import annotations

from formats.errors import (
    CorruptFileError,
    FormatError,
    UnknownFormatError,
    UnsafeFileError,
    UnsupportedFormatError,
    WWInspectError,
)
from inspector import __version__
from inspector.api import Report, analyze
from inspector.errors import ModelNotFoundError, OptionError, UsageError
from inspector.options import AnalysisOptions
from inspector.records import LayerMetrics, LayerRecord, ModelReport, Phase, Status

__all__ = [
    "AnalysisOptions",
    "CorruptFileError",
    "FormatError",
    "LayerMetrics",
    "LayerRecord",
    "ModelNotFoundError",
    "ModelReport",
    "OptionError",
    "Phase",
    "Report",
    "Status",
    "UnknownFormatError",
    "UnsafeFileError",
    "UnsupportedFormatError",
    "UsageError",
    "WWInspectError",
    "__version__",
    "analyze",
]

if __name__ == "__main__":
    from inspector.cli import main

    main()
