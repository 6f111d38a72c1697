#!/usr/bin/env bash
# The GPU run of issue 14, from the checkout, on a machine with a CUDA GPU and torch, numpy, scipy, rich and
# typer (nothing is installed): generates a 7B-shaped bf16 checkpoint, times `--device cuda` end to end and
# compares a sample of layers with the CPU float64 route. Under 8 minutes; see benchmarks/gpu_check.py.
#   bash benchmarks/gpu_check.sh            # WWINSPECT_GPU_DATA=/somewhere to keep the checkpoint elsewhere
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=.
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
timeout 470 python benchmarks/gpu_check.py "$@"
