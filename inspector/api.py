"""The Python API: `wwinspect.analyze(source, **options)` for notebooks, scripts and training loops.

    import wwinspect

    report = wwinspect.analyze("model.safetensors", min_evals=20)
    report = wwinspect.analyze(model.state_dict())      # names to numpy arrays or torch tensors
    report = wwinspect.analyze(model)                    # a torch.nn.Module: kinds from its modules
    report.to_dataframe()                                # one row per layer (pandas)
    report                                               # a table in Jupyter

The options are the `AnalysisOptions` fields (`min_evals=20`, `layer_globs=("*attn*",)`, `fit="tpl"`),
checked against the same declarations as the command line's flags; `options=AnalysisOptions(...)` gives
them all at once. torch is imported only by the caller: a torch object is recognised by its type.

Errors are typed: a path that does not exist raises `ModelNotFoundError` (also a `FileNotFoundError`), a
file that cannot be read a `formats.FormatError` (`CorruptFileError`, `UnsafeFileError`...), an unknown or
out-of-bounds option an `OptionError` (also a `ValueError`).
"""

from __future__ import annotations

import dataclasses
import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inspector.errors import ModelNotFoundError, OptionError
from inspector.options import AnalysisOptions, ReasonWords
from inspector.records import LayerRecord, ModelReport, Status
from inspector.settings import collect

if TYPE_CHECKING:
    from inspector.science.eigen import EigenBackend

#: Option names the API takes: the fields of AnalysisOptions, and their command-line keys.
_OPTION_SPECS = {spec.field: spec for spec in collect(AnalysisOptions)}
_BY_KEY = {spec.key.replace("-", "_"): spec for spec in _OPTION_SPECS.values()}
_FIXED = {field.name for field in dataclasses.fields(AnalysisOptions)} - set(_OPTION_SPECS)


@dataclass(frozen=True, slots=True)
class Report(ModelReport):
    """One analysed model: a frozen `ModelReport` (`path`, `format`, `layers`, `summary`, `metadata`,
    `warnings`) with ways to look at it."""

    @property
    def analysed(self) -> tuple[LayerRecord, ...]:
        """The layers that were measured."""
        return tuple(layer for layer in self.layers if layer.status is Status.ANALYZED)

    def layer(self, name: str) -> LayerRecord:
        """The record of the layer (or tensor) named `name`.

        Raises:
            KeyError: no layer has that name or alias.
        """
        for record in self.layers:
            if record.name == name or name in record.aliases:
                return record
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """The report as the JSON report's `reports[i]` holds it: layers with every metric, the summary."""
        from inspector.render.json import report_dict

        return report_dict(self)

    def to_dataframe(self) -> Any:
        """One row per layer (every JSON key a column), as a pandas DataFrame.

        Raises:
            ImportError: pandas is not installed.
        """
        import pandas as pd  # type: ignore[import-untyped]  # optional; no stubs in the dev extra

        return pd.DataFrame(self.to_dict().get("layers", []))

    def _repr_html_(self) -> str:
        """Jupyter's view: the report's section of the HTML page (summary, table, legend)."""
        from inspector.render.html import model_section

        return model_section(self, 0, None)

    def __rich__(self) -> Any:
        """rich's view (also what Jupyter shows with rich's extension): the terminal report."""
        from inspector.render.table import error_view, model_view

        return error_view(self) if self.error is not None else model_view(self, show_skipped=False)


def _options(options: AnalysisOptions | None, settings: Mapping[str, Any]) -> AnalysisOptions:
    """`options` (or the defaults) with the settings given by name, each checked like its flag."""
    base = options or AnalysisOptions()
    changes: dict[str, Any] = {}
    for name, value in settings.items():
        spec = _OPTION_SPECS.get(name) or _BY_KEY.get(name)
        if spec is None:
            if name in _FIXED:
                raise OptionError(f"{name} is a fixed convention, not an option")
            known = ", ".join(sorted(_OPTION_SPECS))
            raise OptionError(f"unknown option {name!r} (options: {known})")
        value = _checked(spec, value)
        # By field name the value is the field's (pool_conv=False); by flag name the flag's (per_slice=True).
        changes[spec.field] = value if name == spec.field else spec.to_field(value)
    # Reasons in the API's words: `min_evals=10`, not the command line's `--min-evals 10`.
    chosen = dataclasses.replace(base, reason_words=ReasonWords.PYTHON, **changes)
    if chosen.max_evals is not None and chosen.max_evals < chosen.min_evals:
        raise OptionError(f"max_evals {chosen.max_evals} is below min_evals {chosen.min_evals}")
    return chosen


def _checked(spec: Any, value: Any) -> Any:
    """A value for a field, in the field's type, within its declared bounds."""
    if value is None:
        if spec.default is not None:
            raise OptionError(f"{spec.field} cannot be None")
        return None
    parsed: Any
    try:
        if spec.repeated:
            items = (value,) if isinstance(value, str | enum.Enum) else tuple(value)
            parsed = tuple(spec.kind(item) for item in items)
        elif issubclass(spec.kind, enum.Enum):
            parsed = spec.kind(value)
        elif spec.kind is bool:
            if not isinstance(value, bool):
                raise ValueError(f"must be True or False, not {value!r}")
            parsed = value
        elif spec.kind in (int, float) and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError(f"must be a number, not {type(value).__name__}")
        elif spec.kind is int and not float(value).is_integer():
            raise ValueError(f"must be a whole number, not {value}")
        else:
            parsed = spec.kind(value)
        if not spec.repeated and spec.kind in (int, float):
            spec.check_bounds(parsed)
    except ValueError as exc:
        raise OptionError(f"{spec.field} {exc}") from None
    return parsed


def analyze(
    source: str | os.PathLike[str] | Mapping[str, Any] | Any,
    *,
    options: AnalysisOptions | None = None,
    jobs: int = 1,
    cache: str | os.PathLike[str] | None = None,
    **settings: Any,
) -> Report:
    """Analyse a model file or folder, a mapping of names to arrays or tensors, or a `torch.nn.Module`.

    Args:
        source: a path; a `state_dict`-like mapping; or a module.
        options: every analysis setting at once (keyword settings override its fields).
        jobs: worker processes for a file (0: one per CPU); the numbers do not depend on it.
        cache: a folder of cached eigenvalues, as `--cache DIR` (created if missing, shared safely with other
            runs, bounded, pruned at the end); the numbers do not depend on it.
        settings: `AnalysisOptions` fields by name (`min_evals=20`).

    Raises:
        ModelNotFoundError: the path names nothing.
        formats.FormatError: the file cannot be read.
        OptionError: an unknown option, or a value of the wrong type or out of bounds.
        UsageError: the cache folder cannot be created.
        TypeError: `source` is none of the above.
    """
    from inspector.cache import cached
    from inspector.science.eigen import make_backend

    chosen = _options(options, settings)
    with cached(make_backend(chosen.device), Path(cache) if cache is not None else None) as backend:
        report = _analyze_source(source, chosen, backend, jobs)
    fields = {field.name: getattr(report, field.name) for field in dataclasses.fields(ModelReport)}
    return Report(**fields)


def _analyze_source(source: Any, chosen: AnalysisOptions, backend: EigenBackend, jobs: int) -> ModelReport:
    """The report of `analyze`'s source: a path (one model), a mapping or a module."""
    from inspector.pipeline import analyze_file, analyze_reader
    from inspector.workers import resolve_jobs

    if isinstance(source, str | os.PathLike):
        from inspector.targets import expand

        path = Path(source)
        if not path.exists():
            raise ModelNotFoundError(f"no such file or directory: {path}")
        found = expand([path]).paths
        if len(found) != 1:
            names = ", ".join(str(item) for item in found[:5])
            raise OptionError(f"{path} holds {len(found)} models ({names}...): analyse each one")
        return analyze_file(found[0], chosen, backend, jobs=resolve_jobs(jobs))
    else:
        from inspector import memory

        if isinstance(source, Mapping):
            reader = memory.from_mapping(source)
        elif memory.is_torch(source) and hasattr(source, "named_modules"):
            reader = memory.from_module(source)
        else:
            raise TypeError(
                f"analyze() takes a path, a mapping of names to arrays or tensors, or a torch.nn.Module,"
                f" not {type(source).__name__}"
            )
        return analyze_reader(reader, reader.path, chosen, backend, reopen=False)
