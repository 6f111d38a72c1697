"""Wall time of `wwinspect describe` on multi-GB checkpoints: it reads metadata only.

    python benchmarks/bench_describe.py                # the table, 7 runs each
    python benchmarks/bench_describe.py --runs 15

The files are safetensors checkpoints of real model shapes (a 7B-parameter llama layout: 291 tensors,
13.5 GB in bfloat16; and 24 float32 layers of 4096 x 8192, 3.2 GB), written under benchmarks/_data/ as
sparse files: a genuine header followed by a data region of the declared size that takes no disk space.
`describe` must not read that region, so its time is the header's parse plus the process start; for
comparison the table shows `wwinspect --version` (the start-up alone) in the same interleaved runs.
weightwatcher has no counterpart of `describe` (its `describe()` loads the model into torch first).
"""

from __future__ import annotations

import argparse
import json
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / "_data"


def _write_sparse(path: Path, tensors: list[tuple[str, str, list[int], int]]) -> int:
    """A safetensors file with these (name, dtype, shape, itemsize) tensors and an unwritten data region."""
    header: dict[str, object] = {}
    offset = 0
    for name, dtype, shape, itemsize in tensors:
        size = itemsize
        for dim in shape:
            size *= dim
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", len(encoded)) + encoded)
        handle.truncate(8 + len(encoded) + offset)
    return len(header)


def llama_7b(path: Path) -> int:
    layers = []
    dim, hidden, vocab = 4096, 11008, 32000
    layers.append(("model.embed_tokens.weight", "BF16", [vocab, dim], 2))
    for i in range(32):
        prefix = f"model.layers.{i}"
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            layers.append((f"{prefix}.self_attn.{proj}.weight", "BF16", [dim, dim], 2))
        layers.append((f"{prefix}.mlp.gate_proj.weight", "BF16", [hidden, dim], 2))
        layers.append((f"{prefix}.mlp.up_proj.weight", "BF16", [hidden, dim], 2))
        layers.append((f"{prefix}.mlp.down_proj.weight", "BF16", [dim, hidden], 2))
        layers.append((f"{prefix}.input_layernorm.weight", "BF16", [dim], 2))
        layers.append((f"{prefix}.post_attention_layernorm.weight", "BF16", [dim], 2))
    layers.append(("model.norm.weight", "BF16", [dim], 2))
    layers.append(("lm_head.weight", "BF16", [vocab, dim], 2))
    return _write_sparse(path, layers)


def wide_f32(path: Path) -> int:
    return _write_sparse(path, [(f"layers.{i}.weight", "F32", [4096, 8192], 4) for i in range(24)])


def _time(command: list[str]) -> float:
    start = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, check=False, cwd=ROOT)  # noqa: S603 - our CLI
    elapsed = time.perf_counter() - start
    if completed.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {completed.stderr.decode()[-400:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    DATA.mkdir(parents=True, exist_ok=True)
    files = {
        "llama-7b shape, BF16": DATA / "sparse_llama7b.safetensors",
        "24 x 4096x8192 F32": DATA / "sparse_wide.safetensors",
    }
    counts = {}
    for label, path in files.items():
        counts[label] = (llama_7b if "llama" in label else wide_f32)(path)
    wwinspect = [sys.executable, "-m", "inspector"]
    rows: dict[str, list[float]] = {"start-up (wwinspect --version)": []}
    rows.update({label: [] for label in files})
    for _ in range(args.runs):  # interleaved, so drift of the shared machine hits every row alike
        rows["start-up (wwinspect --version)"].append(_time([*wwinspect, "--version"]))
        for label, path in files.items():
            rows[label].append(_time([*wwinspect, "describe", str(path), "--format", "json"]))
    title = f"`python benchmarks/bench_describe.py --runs {args.runs}`"
    print(f"| {title} | size | tensors | best | median | worst |")
    print("|---|---|---|---|---|---|")
    for label, times in rows.items():
        path = files.get(label)
        size = f"{path.stat().st_size / 1e9:.1f} GB" if path else ""
        count = str(counts[label]) if label in counts else ""
        print(
            f"| {label} | {size} | {count} | {min(times):.2f} s | {statistics.median(times):.2f} s |"
            f" {max(times):.2f} s |"
        )


if __name__ == "__main__":
    main()
