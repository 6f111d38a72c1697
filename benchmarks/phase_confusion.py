"""Confusion matrices of the phase classifier on the known-phase suite (tests/science/phase_suite.py).

    python benchmarks/phase_confusion.py                 # tuning and held-out suites, Markdown tables
    python benchmarks/phase_confusion.py --suite held-out --errors
    python benchmarks/phase_confusion.py --suite pareto  # Pareto entries mu in (2, 4): how the label moves

Every matrix is first checked against its theory (`Case.check`), then measured with default options and
labelled. Rows are the true phase, columns the label; the last column is the share labelled right, and
"boundary" counts the cases whose label came with a neighbouring phase (confidence < 1). The tuning suite is
what inspector/science/phases.py's thresholds were chosen on; the held-out suite (other seeds, shapes and
construction variants) was not looked at while choosing them.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inspector.options import AnalysisOptions  # noqa: E402
from inspector.records import Phase  # noqa: E402
from inspector.science.eigen import CpuBackend  # noqa: E402
from inspector.science.metrics import measure_layer  # noqa: E402
from inspector.science.phases import PHASE_ORDER, PhaseLabel, label  # noqa: E402
from tests.science.phase_suite import (  # noqa: E402
    Case,
    held_out_cases,
    pareto_entries,
    spectrum,
    tuning_cases,
)

ORDER = sorted(Phase, key=lambda phase: PHASE_ORDER[phase])
BACKEND = CpuBackend()


def run(case: Case, check: bool) -> PhaseLabel:
    W = case.matrix()
    if W.shape[0] < W.shape[1]:
        W = np.ascontiguousarray(W.T)
    if check:
        case.check(spectrum(W))
    N, M = W.shape
    return label(measure_layer([W], N=N, M=M, scale=1.0, options=AnalysisOptions(), backend=BACKEND))


def confusion(name: str, cases: list[Case], errors: bool, check: bool) -> None:
    table: dict[Phase, Counter[Phase | None]] = defaultdict(Counter)
    boundary: Counter[Phase] = Counter()
    wrong = []
    start = time.process_time()
    for case in cases:
        result = run(case, check)
        table[case.truth][result.phase] += 1
        boundary[case.truth] += result.neighbour is not None
        if result.phase is not case.truth:
            wrong.append((case, result))
    seconds = time.process_time() - start
    print(f"\n{name}: {len(cases)} matrices, {seconds:.0f} CPU s\n")
    print("| true \\ label | " + " | ".join(p.value for p in ORDER) + " | right | boundary |")
    print("|---" * (len(ORDER) + 3) + "|")
    for truth in ORDER:
        row = table[truth]
        total = sum(row.values())
        if not total:
            continue
        cells = [str(row[p]) if row[p] else "·" for p in ORDER]
        print(
            f"| {truth.value} | " + " | ".join(cells) + f" | {row[truth] / total:.1%} ({total}) | "
            f"{boundary[truth]} |"
        )
    if errors:
        for case, result in wrong:
            neighbour = f" (neighbour {result.neighbour.value})" if result.neighbour else ""
            print(
                f"  {case.name}: {result.phase.value if result.phase else None}{neighbour}, "
                f"confidence {result.confidence:.2f}, {result.rule}"
            )


def pareto_table() -> None:
    """Pareto entries with 2 < mu < 4: finite variance, an MP bulk plus localised outliers whose number
    and reach grow with the size; the theory gives no phase at a given size. Printed: the label per mu and
    shape."""
    shapes = ((128, 128), (256, 128), (512, 256), (1024, 512))
    mus = (2.2, 2.6, 3.0, 3.5, 3.9)
    print("\nPareto entries, 2 < mu < 4 (no asserted truth): label per mu and shape\n")
    print("| mu | " + " | ".join(f"{N}x{M}" for N, M in shapes) + " |")
    print("|---" * (len(shapes) + 1) + "|")
    for mu in mus:
        cells = []
        for N, M in shapes:
            case = Case(
                f"Pareto mu={mu}",
                Phase.HEAVY_TAILED,
                N,
                M,
                77,
                lambda rng, N=N, M=M, mu=mu: pareto_entries(rng, N, M, mu),
                lambda evals: None,
            )
            result = run(case, check=False)
            cells.append(result.phase.value if result.phase else "-")
        print(f"| {mu} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=("tuning", "held-out", "both", "pareto"), default="both")
    parser.add_argument("--errors", action="store_true", help="list every wrong label")
    parser.add_argument("--no-check", action="store_true", help="skip the theory checks (they need SVDs)")
    args = parser.parse_args()
    if args.suite in ("tuning", "both"):
        confusion("tuning suite", tuning_cases(), args.errors, not args.no_check)
    if args.suite in ("held-out", "both"):
        confusion("held-out suite", held_out_cases(), args.errors, not args.no_check)
    if args.suite == "pareto":
        pareto_table()


if __name__ == "__main__":
    main()
