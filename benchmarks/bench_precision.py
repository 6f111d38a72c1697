"""Which eigenvalue route keeps every reported number: float32 Gram and the float64 SVD against float64 Gram.

    python benchmarks/bench_precision.py                     # resnet50, llama-1b-block0, gpt2
    python benchmarks/bench_precision.py --model gpt2 --svd  # the SVD row too (slow: minutes per model)

The bar (issue 14): on every benchmark layer, alpha, xmin and D equal the float64 route's to 1e-6 relative,
the phase is the same, and so is the matrix rank. Each route analyses the same file in this process
(benchmarks/llm_shapes.py writes them); the table gives the largest relative differences, how many layers
meet the bar, how many SVD fallbacks each route took (the rank rule, `rank_is_settled`) and its time. The
float64 SVD row (weightwatcher's computation; always for llama-1b-block0, whose square q/o projections are
what the rank rule is about) checks the default route itself. A route that fails the bar on any layer is
not used for that shape: this table is why `CpuBackend` and `TorchBackend` default to float64.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llm_shapes import generate

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inspector.options import AnalysisOptions  # noqa: E402
from inspector.pipeline import analyze_file  # noqa: E402
from inspector.records import LayerRecord  # noqa: E402
from inspector.science import eigen  # noqa: E402
from inspector.science.eigen import CpuBackend, EigenBackend  # noqa: E402

BAR = 1e-6
ROUTES: dict[str, EigenBackend] = {
    "float32 Gram": CpuBackend(precision="float32"),
    "float64 SVD": CpuBackend(route="svd"),
}


def analysed(path: Path, backend: EigenBackend) -> tuple[dict[str, LayerRecord], float, int]:
    """The analysed records by (name, slice), the seconds taken and how many SVD fallbacks ran."""
    real = eigen._svd_eigenvalues
    calls = 0

    def counted(matrix: Any) -> Any:
        nonlocal calls
        calls += 1
        return real(matrix)

    eigen._svd_eigenvalues = counted  # type: ignore[assignment]
    try:
        start = time.perf_counter()
        report = analyze_file(path, AnalysisOptions(), backend, jobs=1)
        seconds = time.perf_counter() - start
    finally:
        eigen._svd_eigenvalues = real  # type: ignore[assignment]
    records = {f"{r.name}#{r.slice_index}": r for r in report.layers if r.metrics is not None}
    return records, seconds, calls


def relative(a: float | None, b: float | None) -> float:
    if a is None or b is None:
        return 0.0 if a is b else float("inf")
    return abs(a - b) / max(abs(b), 1e-300)


def compare(model: str, svd: bool) -> None:
    path = generate(model)
    reference, ref_seconds, ref_fallbacks = analysed(path, CpuBackend())
    print(
        f"| {model} | float64 Gram (default, reference) | {len(reference)} | - | - | - | - | - | - | "
        f"{ref_seconds:.1f} ({ref_fallbacks} SVD) |"
    )
    for route, backend in ROUTES.items():
        if route == "float64 SVD" and not (svd or model == "llama-1b-block0"):
            continue
        ours, seconds, fallbacks = analysed(path, backend)
        worst = {"alpha": 0.0, "xmin": 0.0, "D": 0.0}
        within = same_phase = same_rank = 0
        for key, ref in reference.items():
            got = ours[key]
            assert got.metrics is not None and ref.metrics is not None
            diffs = {
                field: relative(getattr(got.metrics, field), getattr(ref.metrics, field)) for field in worst
            }
            for field, value in diffs.items():
                worst[field] = max(worst[field], value)
            phase_ok = got.phase == ref.phase
            rank_ok = got.metrics.matrix_rank == ref.metrics.matrix_rank
            same_phase += phase_ok
            same_rank += rank_ok
            within += phase_ok and rank_ok and max(diffs.values()) <= BAR
        n = len(reference)
        print(
            f"| {model} | {route} | {n} | {worst['alpha']:.1e} | {worst['xmin']:.1e} | {worst['D']:.1e} | "
            f"{same_phase}/{n} | {same_rank}/{n} | **{within}/{n}** | {seconds:.1f} ({fallbacks} SVD) |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", action="append", choices=["gpt2", "resnet50", "llama-1b-block0"])
    parser.add_argument("--svd", action="store_true", help="the float64 SVD row for every model")
    args = parser.parse_args()
    print(
        "| model | route | layers | max rel. diff alpha | xmin | D | same phase | same rank | "
        f"within {BAR:g} | seconds |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for model in args.model or ["llama-1b-block0", "resnet50", "gpt2"]:
        compare(model, args.svd)


if __name__ == "__main__":
    main()
