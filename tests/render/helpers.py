"""Shared helpers of the renderer tests: records made by hand, real reports of fixtures, rendering to text,
and a real pseudo-terminal."""

from __future__ import annotations

import fcntl
import io
import os
import re
import struct
import subprocess
import sys
import termios
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console, RenderableType

from inspector import AnalysisOptions, analyze
from inspector.records import (
    AlphaLabel,
    LayerKind,
    LayerMetrics,
    LayerRecord,
    ModelReport,
    Phase,
    Status,
)
from inspector.science.phases import alpha_label
from inspector.science.summary import summarize
from tests.conftest import FIXTURES, ROOT

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-Za-z]")


def strip_ansi(text: str) -> str:
    """Text without terminal escape sequences (colours, cursor, hyperlinks) and carriage returns."""
    return _ANSI.sub("", text).replace("\r", "")


def fixture_report(name: str, options: AnalysisOptions | None = None) -> ModelReport:
    """The real report of a fixture file (analysed in this process)."""
    return analyze(FIXTURES / name, options)


def metrics(alpha: float | None = 3.0, **overrides: Any) -> LayerMetrics:
    """Plausible metrics of an analysed layer, with `overrides`."""
    values: dict[str, Any] = {
        "num_evals": 64,
        "lambda_max": 12.0,
        "lambda_min": 0.1,
        "alpha": alpha,
        "xmin": 2.0,
        "xmax": 12.0,
        "D": 0.05,
        "num_pl_spikes": 20,
        "num_fit_evals": 64,
        "stable_rank": 8.0,
        "log_norm": 2.0,
        "log_spectral_norm": 1.08,
        "alpha_weighted": None if alpha is None else alpha * 1.08,
        "mp_sigma": 1.0,
        "mp_lambda_plus": 3.0,
        "num_spikes": 4,
        "near_zero_fraction": 0.0,
        "esd_histogram": (1, 4, 9, 16, 9, 4, 2, 1, 0, 1, 0, 0, 1, 0, 0, 1),
    }
    values.update(overrides)
    return LayerMetrics(**values)


def layer(
    name: str,
    index: int = 0,
    *,
    status: Status = Status.ANALYZED,
    phase: Phase | None = Phase.HEAVY_TAILED,
    alpha: float | None = 3.0,
    reason: str | None = None,
    shape: tuple[int, ...] = (128, 64),
    **metric_overrides: Any,
) -> LayerRecord:
    """A record as the pipeline makes it: analysed ones carry metrics, a phase and the alpha label."""
    base = LayerRecord(
        index=index,
        name=name,
        kind=LayerKind.DENSE,
        role=None,
        shape=shape,
        dtype="F32",
        status=status,
        reason=reason,
        N=max(shape),
        M=min(shape) if len(shape) > 1 else None,
    )
    if status is not Status.ANALYZED:
        return base
    label: AlphaLabel | None = alpha_label(alpha)
    return replace(base, metrics=metrics(alpha, **metric_overrides), phase=phase, alpha_label=label)


def report_of(*layers: LayerRecord, path: str = "model.safetensors") -> ModelReport:
    """A readable report of these records, with its summary."""
    return ModelReport(path=path, format="safetensors", layers=tuple(layers), summary=summarize(layers))


def render(renderable: RenderableType, width: int, encoding: str = "utf-8") -> str:
    """What rich prints for `renderable` on a stream of `encoding`, `width` cells wide, without colour."""
    stream = io.TextIOWrapper(io.BytesIO(), encoding=encoding, errors="strict")
    console = Console(file=stream, width=width, color_system=None, force_terminal=False, legacy_windows=False)
    with console.capture() as capture:
        console.print(renderable)
    return "\n".join(line.rstrip() for line in capture.get().splitlines())


def run_in_pty(
    args: list[str], columns: int, *, env: dict[str, str] | None = None, rows: int = 200
) -> tuple[int, bytes, bytes]:
    """Run `python -m inspector ARGS` with stdout on a real pseudo-terminal `columns` wide (stderr a pipe, so
    progress does not mix in). Returns the exit code, the bytes the terminal received, and stderr."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    child_env = {
        key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES", "NO_COLOR")
    }
    child_env.update({"TERM": "xterm-256color", "PYTHONPATH": str(ROOT)})
    child_env.update(env or {})
    process = subprocess.Popen(
        [sys.executable, "-m", "inspector", *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=child_env,
    )
    os.close(slave)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    _, stderr = process.communicate(timeout=120)
    return process.returncode, b"".join(chunks), stderr


def fixture_path(name: str) -> Path:
    return FIXTURES / name


def spectra_of(path: Path, report: ModelReport, options: AnalysisOptions | None = None) -> dict[Any, Any]:
    """Each analysed record's eigenvalues on the report's scale, recomputed from the file the way the
    pipeline measures them (what phase two's pipeline will keep for the plots), as EsdSamples."""
    import numpy as np

    from formats import open_model
    from inspector.layers import layer_matrices, plan_layer
    from inspector.options import Normalization
    from inspector.render.plots import samples_from
    from inspector.science.eigen import CpuBackend, layer_eigenvalues

    chosen = options or AnalysisOptions()
    backend = CpuBackend()
    pairs = []
    with open_model(path) as reader:
        refs = list(reader.tensors())
        for record in report.layers:
            if record.status is not Status.ANALYZED or record.metrics is None:
                continue
            ref = refs[record.index]
            plan = plan_layer(ref.info, chosen)
            matrices = layer_matrices(plan, ref.read())
            if record.slice_index is not None:
                matrices = [matrices[record.slice_index]]
            evals = np.sort(np.concatenate(layer_eigenvalues(matrices, backend))) * plan.scale
            if chosen.normalization == Normalization.PER_N:
                evals = evals / (record.N or 1)
            assert abs(evals[-1] - (record.metrics.lambda_max or 0.0)) <= 1e-9 * evals[-1], record.name
            pairs.append((record, evals))
    return samples_from(pairs)
