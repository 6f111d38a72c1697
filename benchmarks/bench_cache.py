"""The eigenvalue cache (`--cache DIR`) and fleets (several paths): wall time, process start included.

    python benchmarks/bench_cache.py              # 5 interleaved rounds
    python benchmarks/bench_cache.py --runs 3 --layers 8

Inputs (written under benchmarks/_data/, git-ignored): the repository's `fixtures/digits_mlp.safetensors`
(three small layers), and `bert-layers.safetensors`: `--layers` blocks of a BERT-base feed-forward pair
(3072 x 768 and 768 x 3072) and four 768 x 768 projections, float32, with trained-looking heavy tails
(W = U diag(s) V^T + noise, s^2 Pareto-distributed with an exponent that varies by layer). For fleets:
`--files` small files of four 384 x 384 layers each, given together as PATH arguments.

Each round runs, interleaved, in fresh processes (`python -m inspector FILE --format json --jobs 1`):
  no cache    without --cache;
  cold        --cache in an empty folder (the extra cost of hashing and writing entries);
  warm        --cache in the folder the cold run filled (a hash pass and the fits, no eigensolve).
and, for the small files, `--jobs 1` against `--jobs 0` (one queue for all the files). Every warm report is
checked equal to the uncached one. The table gives the best, median and worst of the rounds; the load
average is printed: the machine should be otherwise idle for the numbers to mean much.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / "_data"
SEED = 1234


def _trained(rng: np.random.Generator, n: int, m: int, exponent: float) -> np.ndarray:
    k = min(n, m)
    U, _ = np.linalg.qr(rng.standard_normal((n, k)))
    V, _ = np.linalg.qr(rng.standard_normal((m, k)))
    s = np.sqrt(rng.pareto(exponent, size=k) + 1.0)
    W = (U * s) @ V.T + 0.05 * rng.standard_normal((n, m))
    return (W / np.sqrt(m)).astype(np.float32)


def _write(path: Path, shapes: dict[str, tuple[int, int]], seed: int) -> Path:
    from safetensors.numpy import save_file

    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    tensors = {
        name: _trained(rng, n, m, 2.0 + 3.0 * i / max(1, len(shapes) - 1))
        for i, (name, (n, m)) in enumerate(shapes.items())
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path


def bert_layers(layers: int) -> Path:
    shapes: dict[str, tuple[int, int]] = {}
    for i in range(layers):
        for part in ("query", "key", "value", "output"):
            shapes[f"layer.{i}.attention.{part}.weight"] = (768, 768)
        shapes[f"layer.{i}.intermediate.weight"] = (3072, 768)
        shapes[f"layer.{i}.output.weight"] = (768, 3072)
    return _write(DATA / f"bert-layers-{layers}.safetensors", shapes, SEED + layers)


def small_files(count: int) -> list[Path]:
    shapes = {f"block{i}.weight": (384, 384) for i in range(4)}
    return [
        _write(DATA / "fleet" / f"small-{i:02d}.safetensors", shapes, SEED + 100 + i) for i in range(count)
    ]


def _run(arguments: list[str]) -> tuple[float, dict[str, object]]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    done = subprocess.run(  # noqa: S603 - our own interpreter and arguments
        [sys.executable, "-m", "inspector", *arguments, "--format", "json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"wwinspect {' '.join(arguments)} exited {done.returncode}: {done.stderr}")
    return elapsed, json.loads(done.stdout)


def _row(name: str, times: list[float]) -> str:
    return f"| {name} | {min(times):.2f} s | {statistics.median(times):.2f} s | {max(times):.2f} s |"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--layers", type=int, default=4, help="BERT blocks in the large file")
    parser.add_argument("--files", type=int, default=12, help="small files for the fleet rows")
    arguments = parser.parse_args()
    inputs = {
        "digits_mlp (fixture)": ROOT / "fixtures" / "digits_mlp.safetensors",
        "bert": bert_layers(arguments.layers),
    }
    fleet = small_files(arguments.files)
    times: dict[str, list[float]] = {}
    scratch = Path(tempfile.mkdtemp(prefix="wwinspect-bench-cache-"))
    try:
        for _ in range(arguments.runs):
            for label, path in inputs.items():
                folder = scratch / label.split()[0]
                shutil.rmtree(folder, ignore_errors=True)
                plain_time, plain = _run([str(path), "--jobs", "1"])
                cold_time, cold = _run([str(path), "--jobs", "1", "--cache", str(folder)])
                warm_time, warm = _run([str(path), "--jobs", "1", "--cache", str(folder)])
                assert plain["reports"] == cold["reports"] == warm["reports"], "a cached report differs"
                start = time.perf_counter()
                hashlib.sha256(path.read_bytes()).digest()
                hash_time = time.perf_counter() - start
                for kind, value in (
                    ("no cache", plain_time),
                    ("cold", cold_time),
                    ("warm", warm_time),
                    ("sha256 of the file", hash_time),
                ):
                    times.setdefault(f"{label}: {kind}", []).append(value)
            serial_time, serial = _run([*map(str, fleet), "--jobs", "1"])
            shared_time, shared = _run([*map(str, fleet), "--jobs", "0"])
            assert [r["path"] for r in serial["reports"]] == [r["path"] for r in shared["reports"]]
            times.setdefault(f"{len(fleet)} small files: --jobs 1", []).append(serial_time)
            times.setdefault(f"{len(fleet)} small files: --jobs 0 (one queue)", []).append(shared_time)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    sizes = ", ".join(f"{label} {path.stat().st_size / 1e6:.1f} MB" for label, path in inputs.items())
    print(
        f"{arguments.runs} rounds, interleaved; {sizes}; {os.cpu_count()} CPUs; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print()
    print("| run | best | median | worst |")
    print("|---|---|---|---|")
    for name, values in times.items():
        print(_row(name, values))


if __name__ == "__main__":
    main()
