"""The GPU run: a 7B-shaped bf16 checkpoint through `--device cuda`, checked against the CPU float64 route.

    bash benchmarks/gpu_check.sh             # from the checkout, on a machine with a CUDA GPU
    PYTHONPATH=. python benchmarks/gpu_check.py --blocks 4   # a shorter run

Needs only torch (a CUDA build), numpy, scipy, rich and typer; nothing is installed or downloaded. Steps, each
timed and printed:

1. generate: Llama-2-7B's shapes (hidden 4096, MLP 11008, 32 blocks, 32000 vocabulary, untied output), bf16,
   sharded safetensors with an index, under $WWINSPECT_GPU_DATA (default /tmp/wwinspect-gpu-check). The
   Student-t + low-rank entries of benchmarks/llm_shapes.py are drawn on the GPU (numpy would need some 10
   minutes for 6.7B values); skipped when the directory is already there.
2. `python -m inspector DIR --device cuda --format json`, end to end, a fresh process: wall time.
3. The CPU float64 route (`--device cpu`'s backend) on a fixed sample of layers (block 0's seven matrices and
   the output head) in this process: seconds per layer, and alpha, xmin, D and phase against the CUDA
   report (the bar: 1e-6 relative, the same phase).
4. The CPU backend's time for the whole model, estimated from the sample per matrix shape, against the
   CUDA wall time. Targets (issue 14): under 60 s end to end on one H100/H200, >= 20x the CPU backend.

Exit status 0 when every sampled layer meets the bar, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llm_shapes import LLAMA_7B, LlamaLayout, Spec, small_values, to_bf16, write_model

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BAR = 1e-6


DEVICE = "cuda"  # --smoke: "cpu"


def gpu_encoder(spec: Spec) -> bytes:
    """llm_shapes.trained_like's recipe, drawn with torch on the GPU, returned as bf16 bytes."""
    import torch

    name, shape, _, is_weight = spec
    if not is_weight:
        return to_bf16(small_values(name, shape)).tobytes()
    seed = int.from_bytes(name.encode()[-8:].ljust(8, b"\0"), "little") % (2**31)
    torch.manual_seed(seed)
    rows, cols = shape
    nu = 2.5 + 2.0 * float(torch.rand(1))
    W = torch.distributions.StudentT(torch.tensor(nu, device=DEVICE)).sample((rows, cols))
    left = torch.randn(rows, 8, device=DEVICE)
    right = torch.randn(8, cols, device=DEVICE) * (3.0 / 8**0.5)
    W += left @ right
    W *= 1.0 / (cols * 10.0) ** 0.5
    data: bytes = W.to(torch.bfloat16).view(torch.int16).cpu().numpy().tobytes()
    return data


def generate(directory: Path, layout: LlamaLayout) -> float:
    start = time.perf_counter()
    write_model(directory, layout.specs(), layout.config(), shards=8, encoder=gpu_encoder)
    return time.perf_counter() - start


def cuda_report(directory: Path) -> tuple[float, dict[str, dict[str, object]]]:
    command = [sys.executable, "-m", "inspector", str(directory), "--device", DEVICE, "--format", "json"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)  # noqa: S603
    wall = time.perf_counter() - start
    if result.returncode not in (0, 1):
        raise SystemExit(f"--device cuda failed ({result.returncode}):\n{result.stderr[-3000:]}")
    report = json.loads(result.stdout)["reports"][0]
    return wall, {layer["name"]: layer for layer in report["layers"] if layer["status"] == "analyzed"}


def relative(a: object, b: object) -> float:
    if a is None or b is None:
        return 0.0 if a is b else float("inf")
    return abs(float(a) - float(b)) / max(abs(float(b)), 1e-300)  # type: ignore[arg-type]


def cpu_sample(
    directory: Path, cuda: dict[str, dict[str, object]], names: list[str]
) -> tuple[dict[tuple[int, int], float], bool]:
    """Seconds per layer by (N, M) on the CPU float64 route, and whether every sampled layer met the bar."""
    from formats import open_model
    from inspector.options import AnalysisOptions
    from inspector.science.eigen import CpuBackend

    per_shape: dict[tuple[int, int], float] = {}
    passed = True
    options = AnalysisOptions()
    with open_model(directory) as reader:
        from inspector.layers import layer_matrices, plan_layer
        from inspector.pipeline import measure_record
        from inspector.records import LayerRecord, Status

        for ref in reader.tensors():
            if ref.info.name not in names:
                continue
            plan = plan_layer(ref.info, options, reader.structure)
            matrices = layer_matrices(plan, ref.read())
            blank = LayerRecord(
                index=0, name=ref.info.name, kind=plan.kind, role=plan.role, shape=ref.info.shape,
                dtype="bf16", status=Status.ANALYZED, N=plan.N, M=plan.M,
            )  # fmt: skip
            start = time.perf_counter()
            record = measure_record(blank, matrices, plan.scale, options, CpuBackend())
            seconds = time.perf_counter() - start
            per_shape[(plan.N or 0, plan.M or 0)] = seconds
            theirs = cuda[ref.info.name]
            assert record.metrics is not None
            diffs = {
                key: relative(theirs.get(key), getattr(record.metrics, key)) for key in ("alpha", "xmin", "D")
            }
            ok = max(diffs.values()) <= BAR and theirs.get("phase") == (
                record.phase.value if record.phase else None
            )
            passed &= ok
            print(
                f"| {ref.info.name} | {plan.N} x {plan.M} | {seconds:.2f} | "
                + " | ".join(f"{value:.1e}" for value in diffs.values())
                + f" | {'yes' if ok else 'NO'} |",
                flush=True,
            )
    return per_shape, passed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--blocks", type=int, default=LLAMA_7B.blocks, help="blocks of the 7B layout (32)")
    parser.add_argument(
        "--smoke", action="store_true", help="a tiny layout on the CPU: tests this script only"
    )
    args = parser.parse_args()
    import torch

    global DEVICE
    if args.smoke:
        DEVICE = "cpu"
        layout = LlamaLayout(hidden=256, intermediate=512, blocks=2, kv=128, vocab=1000, tied=False)
    elif not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this check needs a GPU")
    else:
        layout = LlamaLayout(**{**LLAMA_7B.__dict__, "blocks": args.blocks})
    directory = Path(
        os.environ.get("WWINSPECT_GPU_DATA", Path(tempfile.gettempdir()) / "wwinspect-gpu-check")
    ) / ("smoke" if args.smoke else f"llama-7b-{args.blocks}")
    gpu = torch.cuda.get_device_name(0) if DEVICE == "cuda" else "none (--smoke)"
    print(f"GPU: {gpu}; torch {torch.__version__}; {os.cpu_count()} CPUs")
    print(f"generate: {generate(directory, layout):.0f} s ({directory})")
    wall, cuda = cuda_report(directory)
    print(f"--device cuda end to end: {wall:.1f} s for {len(cuda)} layers (target < 60 s for 32 blocks)")
    sample = [name for name, *_ in layout.specs(0, 1, embedding=False) if name.endswith("proj.weight")]
    sample.append("lm_head.weight")
    print("\n| layer | N x M | CPU float64 s | alpha rel. diff | xmin | D | within 1e-6, same phase |")
    print("|---|---|---|---|---|---|---|")
    per_shape, passed = cpu_sample(directory, cuda, sample)
    shapes = Counter((int(layer["N"]), int(layer["M"])) for layer in cuda.values())  # type: ignore[call-overload]
    missing = [shape for shape in shapes if shape not in per_shape]
    if missing:
        print(f"shapes not sampled, left out of the estimate: {missing}")
    estimate = sum(per_shape[shape] * count for shape, count in shapes.items() if shape in per_shape)
    print(
        f"\nCPU backend, estimated from the sample: {estimate:.0f} s; --device cuda {wall:.1f} s: "
        f"{estimate / wall:.1f}x (target >= 20x)"
    )
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
