"""Peak resident memory of reading a ~2 GB safetensors file: it must stay near the largest tensor.

    python benchmarks/bench_rss_safetensors.py            # generate (once), measure, print the table
    python benchmarks/bench_rss_safetensors.py --no-cli   # only the reader
    python benchmarks/bench_rss_safetensors.py --size-gb 0.5

The file (float32, many tensors up to 4096x2048) is written under benchmarks/_data/ (git-ignored) with
numpy, one tensor at a time, and reused on later runs. Each measurement runs in a fresh process under
`/usr/bin/time -f %M` (Debian package `time`), which reports the peak resident set size:

- reader: a driver that iterates `open_model(path).tensors()`, reads each tensor, takes its norm and
  drops it. This is the wwinspect streaming contract.
- cli --jobs 1: `wwinspect FILE --format json --jobs 1 > /dev/null` end to end (the command's typer app
  in the measured process), one process.
- cli --jobs N: the same in N processes (N = the default, one per CPU: the command and N - 1 forked
  children). `time -f %M` would report
  only the largest single process, so this row samples the process tree every 20 ms and reports the peak
  of the summed proportional set sizes (PSS, /proc/PID/smaps_rollup: shared library pages split among
  the processes that map them, so nothing is counted twice). Its bound is per worker.
- mmap reference (informational): `safetensors.safe_open(framework="numpy")` reading every tensor
  while the file stays mapped, to show that the bound is tight enough to catch whole-file mapping.

Bound per row: largest tensor x 4 + 300 MB (a tensor, its float64 working copy and the Gram matrix,
plus interpreter, numpy and scipy); with N processes, 300 MB + N x (largest tensor x 4 + 100 MB), the
100 MB being a process's private interpreter pages. torch must not be imported by the measured wwinspect
processes; the drivers check and report it.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / "_data"
TIME = Path("/usr/bin/time")
MB = 1024 * 1024
OVERHEAD_MB = 300
SEED = 1234

#: (rows, cols, count) per tensor group; the default mix is 96 tensors, about 2.06 GB.
SHAPES = [(4096, 2048, 48), (2048, 2048, 32), (2048, 512, 16)]


WORKER_OVERHEAD_MB = 100


@dataclass(frozen=True)
class Measurement:
    name: str
    largest_mb: float
    peak_mb: float
    torch_imported: str
    exit_code: int
    gating: bool  # informational rows do not decide the benchmark's exit code
    workers: int = 0  # processes sharing the analysis (0: one process, measured by time -f %M)

    @property
    def bound_mb(self) -> float:
        if self.workers == 0:
            return self.largest_mb * 4 + OVERHEAD_MB
        return OVERHEAD_MB + self.workers * (self.largest_mb * 4 + WORKER_OVERHEAD_MB)

    @property
    def passed(self) -> bool:
        return self.exit_code == 0 and self.peak_mb <= self.bound_mb and self.torch_imported != "yes"


def plan_shapes(size_gb: float) -> list[tuple[int, int]]:
    """The default mix, scaled down by dropping tensors of each group when a smaller file is asked for."""
    full = sum(rows * cols * 4 * count for rows, cols, count in SHAPES)
    scale = min(1.0, size_gb * 2**30 / full)
    shapes = []
    for rows, cols, count in SHAPES:
        shapes += [(rows, cols)] * max(1, round(count * scale))
    return shapes


def generate(path: Path, shapes: list[tuple[int, int]]) -> None:
    """Write a safetensors file tensor by tensor, so generation itself never holds the whole file."""
    import numpy as np

    header, offset = {}, 0
    for index, (rows, cols) in enumerate(shapes):
        nbytes = rows * cols * 4
        header[f"model.layers.{index}.weight"] = {
            "dtype": "F32",
            "shape": [rows, cols],
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    rng = np.random.default_rng(SEED)
    partial = path.with_suffix(".partial")
    with partial.open("wb") as handle:
        handle.write(struct.pack("<Q", len(text)) + text)
        for rows, cols in shapes:
            # A heavy-ish tail so the analysis has something to fit; values are irrelevant to memory.
            values = rng.standard_normal((rows, cols), dtype=np.float32) / np.float32(np.sqrt(cols))
            handle.write(values.tobytes())
    partial.rename(path)


def drive_reader(path: str) -> None:
    """Measured process: stream every tensor through the reader, one at a time."""
    import numpy as np

    from formats import open_model

    total = 0.0
    with open_model(Path(path)) as reader:
        for ref in reader.tensors():
            values = ref.read()
            total += float(np.linalg.norm(values))
            del values
    print(json.dumps({"torch": "torch" in sys.modules, "checksum": total}), file=sys.stderr)


def drive_cli(path: str, jobs: str = "1") -> None:
    """Measured process: the CLI's command in this interpreter, then report whether torch was imported.

    It calls the typer app rather than `inspector.cli.main`, which ends the process with os._exit before
    this driver could report.
    """
    from inspector.cli import app

    sys.argv = ["wwinspect", path, "--format", "json", "--jobs", jobs]
    code: int | str | None = 0
    try:
        app()
    except SystemExit as exit_:
        code = exit_.code
    finally:
        print(json.dumps({"torch": "torch" in sys.modules}), file=sys.stderr)
    sys.exit(code)


def drive_mmap_reference(path: str) -> None:
    """Measured process: the safetensors package, which maps the whole file for the reader's lifetime."""
    import numpy as np
    from safetensors import safe_open

    total = 0.0
    with safe_open(path, framework="numpy") as handle:
        for name in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
            values = handle.get_tensor(name)
            total += float(np.linalg.norm(values))
            del values  # dropped like ours; the touched pages of the mapping stay resident anyway
    print(json.dumps({"torch": "torch" in sys.modules, "checksum": total}), file=sys.stderr)


def measure(name: str, driver: str, path: Path, largest_mb: float, *, gating: bool) -> Measurement:
    with tempfile.TemporaryDirectory() as scratch:
        time_out = Path(scratch) / "time.txt"
        command = [str(TIME), "-f", "%M", "-o", str(time_out), sys.executable, __file__, driver, str(path)]
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        result = subprocess.run(  # noqa: S603 - our own interpreter, script and generated file
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, check=False
        )
        peak_kb = int(time_out.read_text().strip().splitlines()[-1])
    torch_imported = "?"
    for line in reversed(result.stderr.strip().splitlines()):
        if line.startswith("{"):
            torch_imported = "yes" if json.loads(line).get("torch") else "no"
            break
    if result.returncode not in (0, 1):  # the CLI's 1 means a gate was violated, which is not a failure here
        print(f"{name}: exit {result.returncode}: {result.stderr.strip()[-2000:]}", file=sys.stderr)
    code = 0 if result.returncode in (0, 1) else result.returncode
    return Measurement(name, largest_mb, peak_kb / 1024, torch_imported, code, gating)


def _tree(root: int) -> list[int]:
    """`root` and its descendants, from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="utf-8") as stat:
                    parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = [root], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="utf-8") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure_tree(name: str, path: Path, largest_mb: float, jobs: int) -> Measurement:
    """Peak of the process tree's summed PSS, sampled every 20 ms, for the CLI with `jobs` workers."""
    import time

    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    command = [sys.executable, __file__, "_drive-cli", str(path), str(jobs)]
    process = subprocess.Popen(  # noqa: S603 - our own interpreter, script and generated file
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    )
    peak_kb, most_processes = 0, 1
    while process.poll() is None:
        pids = _tree(process.pid)
        most_processes = max(most_processes, len(pids))
        peak_kb = max(peak_kb, sum(_pss_kb(pid) for pid in pids))
        time.sleep(0.02)
    stderr = process.stderr.read() if process.stderr is not None else ""
    torch_imported = "?"
    for line in reversed(stderr.strip().splitlines()):
        if line.startswith("{"):
            torch_imported = "yes" if json.loads(line).get("torch") else "no"
            break
    code = 0 if process.returncode in (0, 1) else process.returncode
    if code:
        print(f"{name}: exit {process.returncode}: {stderr.strip()[-2000:]}", file=sys.stderr)
    print(f"{name}: at most {most_processes} processes at once", file=sys.stderr)
    return Measurement(name, largest_mb, peak_kb / 1024, torch_imported, code, True, workers=jobs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size-gb", type=float, default=2.0)
    parser.add_argument("--no-cli", action="store_true", help="skip the end-to-end CLI measurement")
    parser.add_argument("--no-reference", action="store_true", help="skip the whole-file mmap reference")
    args = parser.parse_args()
    if not TIME.exists():
        print("needs /usr/bin/time: apt-get install -y time", file=sys.stderr)
        return 2
    shapes = plan_shapes(args.size_gb)
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"bench_{len(shapes)}_tensors.safetensors"
    if not path.exists():
        print(f"generating {path} ...", file=sys.stderr)
        generate(path, shapes)
    largest_mb = max(rows * cols * 4 for rows, cols in shapes) / MB
    rows = [measure("reader", "_drive-reader", path, largest_mb, gating=True)]
    if not args.no_cli:
        rows.append(measure("cli --jobs 1", "_drive-cli", path, largest_mb, gating=True))
        from inspector.workers import resolve_jobs

        jobs = resolve_jobs(0)
        if jobs > 1:
            rows.append(measure_tree(f"cli --jobs {jobs} (tree PSS)", path, largest_mb, jobs))
    if not args.no_reference and _has_safetensors():
        rows.append(measure("safetensors mmap (reference)", "_drive-mmap", path, largest_mb, gating=False))
    print(f"file: {path.relative_to(ROOT)}  {path.stat().st_size / MB:.0f} MB, {len(shapes)} float32 tensors")
    print(f"{'measurement':<30} {'largest MB':>10} {'bound MB':>9} {'peak RSS MB':>12} {'torch':>6}  result")
    for row in rows:
        verdict = "pass" if row.passed else "FAIL"
        if not row.gating:
            verdict += " (informational)"
        print(
            f"{row.name:<30} {row.largest_mb:>10.1f} {row.bound_mb:>9.1f} {row.peak_mb:>12.1f} "
            f"{row.torch_imported:>6}  {verdict}"
        )
    return 0 if all(row.passed for row in rows if row.gating) else 1


def _has_safetensors() -> bool:
    import importlib.util

    return importlib.util.find_spec("safetensors") is not None


if __name__ == "__main__":
    if len(sys.argv) in (3, 4) and sys.argv[1].startswith("_drive-"):
        drivers = {
            "_drive-reader": drive_reader,
            "_drive-cli": drive_cli,
            "_drive-mmap": drive_mmap_reference,
        }
        drivers[sys.argv[1]](*sys.argv[2:])
    else:
        sys.exit(main())
