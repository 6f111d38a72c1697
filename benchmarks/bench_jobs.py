"""Processes or BLAS threads: `--jobs 2` (two processes), `--jobs 1` (one, BLAS on every core) and the default
`--jobs 0`, interleaved, on 4 trained-looking 2048 x 2048 float32 matrices, idle and under load.

    python benchmarks/bench_jobs.py                 # 4 rounds as the machine is, then 4 with 2 busy loops
    python benchmarks/bench_jobs.py --rounds 6 --load 0 --load 2 --load 4

`--load K` starts K busy-looping processes for the rounds of that row (an artificial load on top of whatever
else the machine runs); the load average and the number of processes `--jobs 0` chose are printed with each
row. The file is written under benchmarks/_data/ once.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_end_to_end import ENV, ROOT
from llm_shapes import DATA, write_model

BUSY = "while True: pass"


def matrices_file() -> Path:
    specs = [(f"layers.{i}.weight", (2048, 2048), "F32", True) for i in range(4)]
    return write_model(DATA / "four-2048", specs, {"model_type": "custom"}) / "model.safetensors"


def run(path: Path, jobs: int) -> tuple[float, str]:
    command = [sys.executable, "-m", "inspector", str(path), "--format", "json", "--jobs", str(jobs)]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT, env=ENV)  # noqa: S603
    if result.returncode not in (0, 1):
        raise RuntimeError(result.stderr[-2000:])
    return time.perf_counter() - start, result.stderr


def chosen_processes() -> int:
    sys.path.insert(0, str(ROOT))
    from inspector.workers import resolve_jobs

    return resolve_jobs(0)


def row(path: Path, rounds: int, load: int) -> None:
    busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(load)]  # noqa: S603
    try:
        if busy:
            time.sleep(3.0)  # let the load average notice them
        times: dict[int, list[float]] = {2: [], 1: [], 0: []}
        loads, picks = [], []
        for _ in range(rounds):
            for jobs in times:
                if jobs == 0:
                    picks.append(chosen_processes())
                times[jobs].append(run(path, jobs)[0])
            loads.append(os.getloadavg()[0])
        cells = " | ".join(f"{statistics.median(t):6.2f} ({min(t):.2f}-{max(t):.2f})" for t in times.values())
        print(
            f"| {load:>2} busy | {min(loads):4.1f}-{max(loads):4.1f} | {cells} | "
            f"{', '.join(str(p) for p in picks)} |",
            flush=True,
        )
    finally:
        for process in busy:
            process.kill()
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--load", type=int, action="append", help="busy processes (default: 0 and 2)")
    args = parser.parse_args()
    path = matrices_file()
    print(f"{os.cpu_count()} CPUs, {len(os.sched_getaffinity(0))} usable; seconds, median (min-max)")
    print("| load | load avg | --jobs 2 | --jobs 1 | --jobs 0 (default) | --jobs 0 chose |")
    print("|---|---|---|---|---|---|")
    for load in args.load or [0, 2]:
        row(path, args.rounds, load)


if __name__ == "__main__":
    main()
