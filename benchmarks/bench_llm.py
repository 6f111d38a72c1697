"""The shapes users bring: wwinspect against weightwatcher 0.7.7, and against the eigensolver floor.

    python benchmarks/bench_llm.py                          # every model, 2 interleaved runs each
    python benchmarks/bench_llm.py --model gpt2 --runs 3
    python benchmarks/bench_llm.py --model llama-1b --floor # the floor table too (minutes)

The checkpoints come from benchmarks/llm_shapes.py (generated on first use, trained-looking heavy-tailed
weights). Table 1, per model: both tools on the same directory in the same run, runs interleaved, each a
fresh process: wall time, CPU time (user + system of the process and its children), peak RSS (wait4), the
peak of the process tree's summed PSS (sampled every 50 ms: forked workers included, shared pages counted
once), time per analysed layer and alpha agreement (to 1e-3 relative, PRODUCT.md's bar). wwinspect runs as
installed: `python -m inspector DIR --format json`, `--jobs 0` (the default). weightwatcher runs
`WeightWatcher(model=DIR).analyze()`.

On a loaded machine weightwatcher on the whole 1B layout would take well over 20 minutes (a float64 SVD of
the 128256 x 2048 embedding, and seven 2048-wide SVDs per block), so for llama-1b it is timed on a fixed
sample, block 0 (`llama-1b-block0`, the same bytes), and the row says so; wwinspect is timed on both.
`--ww-whole` times it on the whole file instead (5-6 minutes a run on the idle 2-CPU machine).

Table 2 (`--floor`): the floor, the cheapest exact-enough eigensolver call on the same matrices in a tight
loop, in this process: per matrix the float64 Gram product (`gram64`, blocked dsyrk; faster than widening
all of W and `W.T @ W`) + `numpy.linalg.eigvalsh` (syevd), and the float32 Gram product + float32
`eigvalsh`; reading excluded. wwinspect's wall time is set against both.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_end_to_end import ENV, ROOT, WW_SCRIPT
from bench_rss_safetensors import _pss_kb, _tree
from llm_shapes import generate

#: weightwatcher's sample where the whole model would take it over ~20 minutes.
WW_SAMPLE = {"llama-1b": "llama-1b-block0"}
MODELS = ("gpt2", "resnet50", "llama-1b-block0", "llama-1b")
#: --blocks: the llama-1b layout cut to this many blocks (the embedding, the largest tensor, stays).
BLOCKS: int | None = None
#: --ww-whole: weightwatcher on the whole llama-1b file too, not on its sample (minutes on an idle machine).
WW_WHOLE = False


def checkpoint(model: str) -> Path:
    return generate(model, BLOCKS if model == "llama-1b" else None)


def label(model: str) -> str:
    return f"{model} ({BLOCKS} of 16 blocks)" if model == "llama-1b" and BLOCKS else model


@dataclass(frozen=True)
class Run:
    wall: float
    cpu: float
    rss_mb: float
    pss_mb: float
    alphas: dict[str, float]


def measured(command: list[str]) -> tuple[Run, str]:
    """Run `command`, sampling its process tree's PSS; returns its measurements and stdout."""
    with tempfile.TemporaryFile("w+") as out:
        start = time.perf_counter()
        process = subprocess.Popen(  # noqa: S603 - our interpreter, our scripts and files
            command, stdout=out, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=ENV
        )
        peak_kb = 0
        while True:
            finished, status, usage = os.wait4(process.pid, os.WNOHANG)
            if finished:
                break
            peak_kb = max(peak_kb, sum(_pss_kb(pid) for pid in _tree(process.pid)))
            time.sleep(0.05)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        stderr = process.stderr.read() if process.stderr is not None else ""
        if process.returncode not in (0, 1):
            raise RuntimeError(f"{command[:3]} failed ({process.returncode}): {stderr[-2000:]}")
        out.seek(0)
        text = out.read()
    run = Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, peak_kb / 1024, {})
    return run, text


def ours(path: Path) -> Run:
    run, text = measured([sys.executable, "-m", "inspector", str(path), "--format", "json"])
    report = json.loads(text)["reports"][0]
    alphas = {
        layer["name"].removesuffix(".weight"): layer["alpha"]
        for layer in report["layers"]
        if layer["status"] == "analyzed" and layer.get("alpha") is not None
    }
    return Run(run.wall, run.cpu, run.rss_mb, run.pss_mb, alphas)


def weightwatcher(path: Path) -> Run:
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "alphas.json"
        run, _ = measured([sys.executable, "-c", WW_SCRIPT, str(path), str(target)])
        alphas = {key: value for key, value in json.loads(target.read_text()).items() if value == value}
    return Run(run.wall, run.cpu, run.rss_mb, run.pss_mb, alphas)


def spread(values: list[float], digits: int = 1) -> str:
    """median (min-max)"""
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def agreement(a: dict[str, float], b: dict[str, float]) -> str:
    shared = sorted(set(a) & set(b))
    within = sum(1 for key in shared if abs(a[key] / b[key] - 1.0) <= 1e-3)
    return f"{within}/{len(shared)}"


def row(tool: str, model: str, runs: list[Run], note: str = "", versus: list[Run] | None = None) -> None:
    layers = len(runs[-1].alphas) or 1
    walls = [r.wall for r in runs]
    ratio = " | "
    if versus is not None:
        walls_ratio = [v.wall / o.wall for o, v in zip(runs, versus, strict=False)]
        cpu_ratio = [v.cpu / o.cpu for o, v in zip(runs, versus, strict=False)]
        ratio = f"{spread(walls_ratio)} | {spread(cpu_ratio)}"
    print(
        f"| {model}{note} | {tool} | {spread(walls)} | {spread([r.cpu for r in runs])} | "
        f"{max(r.rss_mb for r in runs):.0f} | {max(r.pss_mb for r in runs):.0f} | "
        f"{1000 * statistics.median(walls) / layers:.0f} | {layers} | {ratio} |",
        flush=True,
    )


def compare(model: str, runs: int) -> None:
    path = checkpoint(model)
    sample = None if WW_WHOLE else WW_SAMPLE.get(model)
    ww_path = checkpoint(sample) if sample else path
    mine: list[Run] = []
    theirs: list[Run] = []
    mine_on_sample: list[Run] = []
    for number in range(runs):  # interleaved: both tools see the same moments of a shared machine's load
        mine.append(ours(path))
        if sample:
            mine_on_sample.append(ours(ww_path))
        theirs.append(weightwatcher(ww_path))
        done = [("wwinspect", mine[-1]), ("weightwatcher", theirs[-1])]
        if sample:
            done.insert(1, (f"wwinspect on {sample}", mine_on_sample[-1]))
        for tool, run in done:  # as it goes, for long runs on a loaded machine
            print(
                f"run {number + 1} {model} {tool}: {run.wall:.1f} s wall, {run.cpu:.1f} s CPU, "
                f"{run.rss_mb:.0f} MB RSS, {run.pss_mb:.0f} MB PSS",
                file=sys.stderr,
                flush=True,
            )
    if sample:
        row("wwinspect", label(model), mine)
        row("wwinspect", sample, mine_on_sample, " (ww's sample)", theirs)
        row("weightwatcher", sample, theirs, " (ww's sample)")
        print(
            f"|  | alphas within 1e-3 (on {sample}) | "
            f"{agreement(mine_on_sample[-1].alphas, theirs[-1].alphas)} |"
        )
    else:
        row("wwinspect", model, mine, versus=theirs)
        row("weightwatcher", model, theirs)
        print(f"|  | alphas within 1e-3 | {agreement(mine[-1].alphas, theirs[-1].alphas)} |")


def floor(model: str, wall: float | None) -> None:
    """Table 2's row: the float64 and float32 eigensolver floor of the model's analysed matrices."""
    sys.path.insert(0, str(ROOT))
    from formats import open_model
    from inspector.layers import layer_matrices, plan_layer
    from inspector.options import AnalysisOptions
    from inspector.science import blas
    from inspector.science.eigen import gram64

    options = AnalysisOptions()
    f64 = f32 = 0.0
    count = 0
    # BLAS threads as wwinspect chooses them, matrix by matrix (one per idle CPU, this process's own use not
    # counted): with OpenBLAS's default of every CPU, this loop ran 5x slower than wwinspect itself on the
    # loaded machine (spinning threads, see blas.py); with one choice made at the start, the load the previous
    # run left in the 1-minute average held it to one thread on an idle machine.
    with open_model(checkpoint(model)) as reader:
        for ref in reader.tensors():
            plan = plan_layer(ref.info, options, reader.structure)
            if plan.skip_reason is not None:
                continue
            for W in layer_matrices(plan, ref.read()):
                count += 1
                with blas.for_large_problem():
                    start = time.perf_counter()
                    np.linalg.eigvalsh(gram64(W))
                    f64 += time.perf_counter() - start
                    start = time.perf_counter()
                    W32 = np.asarray(W, dtype=np.float32)
                    np.linalg.eigvalsh(W32.T @ W32)
                    f32 += time.perf_counter() - start
    ours_cell = f"{wall:.1f} | {wall / f64:.2f}x | {wall / f32:.2f}x" if wall else "- | - | -"
    print(f"| {label(model)} | {count} | {f64:.1f} | {f32:.1f} | {ours_cell} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", action="append", choices=MODELS, help="default: all")
    parser.add_argument("--runs", type=int, default=2, help="interleaved runs per tool")
    parser.add_argument(
        "--floor", action="store_true", help="also the floor table (wwinspect timed once more)"
    )
    parser.add_argument("--no-ww", action="store_true", help="skip the comparison table")
    parser.add_argument(
        "--blocks", type=int, help="llama-1b: only this many of its 16 blocks (and the embedding)"
    )
    parser.add_argument(
        "--ww-whole",
        action="store_true",
        help="llama-1b: weightwatcher on the whole file, not block 0 (about 5 minutes a run, idle machine)",
    )
    args = parser.parse_args()
    global BLOCKS, WW_WHOLE
    BLOCKS = args.blocks
    WW_WHOLE = args.ww_whole
    models = args.model or list(MODELS)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start; median (min-max) of runs")
    if not args.no_ww:
        print(
            "| model | tool | wall s | CPU s | peak RSS MB | peak tree PSS MB | ms / layer | layers fitted | "
            "ww / wwinspect wall | ww / wwinspect CPU |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for model in models:
            if model != "llama-1b-block0" or "llama-1b" not in models:
                compare(model, args.runs)
    if args.floor:
        print(
            "\n| model | matrices | float64 floor s | float32 floor s | wwinspect s | "
            "vs float64 | vs float32 |"
        )
        print("|---|---|---|---|---|---|---|")
        for model in models:
            wall = ours(checkpoint(model)).wall
            floor(model, wall)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
