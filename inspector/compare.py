"""`wwinspect compare A B`: two checkpoints of one architecture (a base and its fine-tune) layer by layer.

Both files are analysed as `wwinspect` analyses one; layers are matched by name. For every layer measured
in both, the comparison holds the change of alpha, phase and norms, and the update itself, `W_B - W_A`,
measured like a layer: its ESD's alpha, its numerical rank (a fine-tune's update is often of low rank, a
LoRA's exactly so), and its size relative to the base, `||W_B - W_A||_F / ||W_A||_F`.

Layers only in one file, and layers whose shapes differ, are listed as mismatches, never silently dropped.
Conv kernels are pooled (as by default): one update per tensor.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from formats import open_model
from formats.errors import TensorError
from inspector.gate import layer_label
from inspector.layers import layer_matrices, plan_layer
from inspector.options import AnalysisOptions
from inspector.pipeline import analyze_file, measure_record
from inspector.records import FileError, LayerRecord, ModelReport, Status
from inspector.science.eigen import EigenBackend


@dataclass(frozen=True, slots=True)
class LayerPair:
    """One layer measured in both checkpoints.

    Attributes:
        name: the layer's name.
        a, b: its records in A and in B.
        update: the update W_B - W_A measured as a layer (its metrics, phase); None when it could not be
            read. FAILED with a reason when it is zero (the layer did not change) or not finite.
        relative_change: ||W_B - W_A||_F / ||W_A||_F; None when it could not be read or W_A is zero.
    """

    name: str
    a: LayerRecord
    b: LayerRecord
    update: LayerRecord | None
    relative_change: float | None

    @property
    def unchanged(self) -> bool:
        return self.relative_change == 0.0


@dataclass(frozen=True, slots=True)
class ShapeMismatch:
    name: str
    shape_a: tuple[int, ...]
    shape_b: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Comparison:
    """A against B: the pairs in A's order, and what could not be paired."""

    a: ModelReport
    b: ModelReport
    pairs: tuple[LayerPair, ...] = ()
    only_a: tuple[str, ...] = ()
    only_b: tuple[str, ...] = ()
    mismatched: tuple[ShapeMismatch, ...] = ()

    @property
    def readable(self) -> bool:
        return self.a.error is None and self.b.error is None


def _report(path: Path, options: AnalysisOptions, backend: EigenBackend, jobs: int) -> ModelReport:
    from formats.errors import FormatError

    try:
        return analyze_file(path, options, backend, jobs=jobs)
    except FormatError as exc:
        message = exc.message if exc.path is None or exc.path == path else str(exc)
        return ModelReport(
            path=str(path), format=None, error=FileError(kind=type(exc).__name__, message=message)
        )


def _measured(report: ModelReport) -> dict[str, LayerRecord]:
    return {layer_label(layer): layer for layer in report.layers if layer.status is not Status.SKIPPED}


def compare_files(
    path_a: Path, path_b: Path, options: AnalysisOptions, backend: EigenBackend, *, jobs: int = 1
) -> Comparison:
    """Analyse both files and measure the update of every layer they share."""
    pooled = replace(options, pool_conv=True)
    a, b = _report(path_a, pooled, backend, jobs), _report(path_b, pooled, backend, jobs)
    if a.error is not None or b.error is not None:
        return Comparison(a, b)
    in_a, in_b = _measured(a), _measured(b)
    shared = [name for name in in_a if name in in_b]
    mismatched = tuple(
        ShapeMismatch(name, in_a[name].shape, in_b[name].shape)
        for name in shared
        if in_a[name].shape != in_b[name].shape
    )
    paired = [name for name in shared if in_a[name].shape == in_b[name].shape]
    updates = _updates(path_a, path_b, [in_a[name] for name in paired], pooled, backend)
    pairs = tuple(LayerPair(name, in_a[name], in_b[name], *updates[name]) for name in paired)
    return Comparison(
        a=a,
        b=b,
        pairs=pairs,
        only_a=tuple(name for name in in_a if name not in in_b),
        only_b=tuple(name for name in in_b if name not in in_a),
        mismatched=mismatched,
    )


def _updates(
    path_a: Path,
    path_b: Path,
    records: list[LayerRecord],
    options: AnalysisOptions,
    backend: EigenBackend,
) -> dict[str, tuple[LayerRecord | None, float | None]]:
    """The update of each record's tensor, read from both files one tensor at a time."""
    found: dict[str, tuple[LayerRecord | None, float | None]] = {}
    strict = options.strict_pickles
    with (
        open_model(path_a, strict_pickles=strict) as reader_a,
        open_model(path_b, strict_pickles=strict) as reader_b,
    ):
        refs_a = {ref.info.name: ref for ref in reader_a.tensors()}
        refs_b = {ref.info.name: ref for ref in reader_b.tensors()}
        for record in records:
            ref_a, ref_b = refs_a.get(record.name), refs_b.get(record.name)
            if ref_a is None or ref_b is None:
                found[layer_label(record)] = (None, None)
                continue
            try:
                values_a, values_b = ref_a.read(), ref_b.read()
            except TensorError:
                found[layer_label(record)] = (None, None)
                continue
            # The difference is exact in float64; it is then held in the stored precision, so that the
            # update's numerical rank is judged against the rounding its values carry (float32 weights
            # differ by float32 rounding everywhere, which a float64 tolerance would count as rank).
            stored = np.result_type(values_a.dtype, values_b.dtype)
            base = np.asarray(values_a, dtype=np.float64)
            exact = np.asarray(values_b, dtype=np.float64) - base
            base_norm = float(np.linalg.norm(base))
            change = float(np.linalg.norm(exact)) / base_norm if base_norm > 0 else None
            delta = exact.astype(stored)
            del exact
            plan = plan_layer(ref_a.info, options)
            if plan.skip_reason is not None:
                found[layer_label(record)] = (None, change)
                continue
            start = replace(
                record, status=Status.ANALYZED, reason=None, metrics=None, phase=None, alpha_label=None
            )
            update = measure_record(start, layer_matrices(plan, delta), plan.scale, options, backend)
            if change == 0.0:
                update = replace(update, status=Status.FAILED, reason="unchanged: W_B equals W_A")
            found[layer_label(record)] = (update, change)
            del base, delta, values_a, values_b
    return found
