#!/usr/bin/env bash
# The GPU checks, as one prepared script for a machine with an NVIDIA GPU (the `device` tool runs
# it from the repository root): the gpu-marked tests (jax and torch on device "cuda" against numpy),
# then the 2D benchmark at 128^2 and 256^2 with jax and torch on the GPU (target: >= 5x numba at
# 256^2). Results: $OUT (or results/bench) gets gpu_tests.txt, 2d.md and 2d.csv.
#
#   bash benchmarks/gpu_check.sh            # needs .venv with jax[cuda] and a CUDA torch
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-results/bench}"
mkdir -p "$out"
py=".venv/bin/python"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
"$py" -c "import jax, torch; print('jax', jax.__version__, jax.devices()); print('torch', torch.__version__, torch.cuda.is_available())" | tee -a "$out/gpu.txt"
"$py" -m pytest -q -rs -m gpu tests/backends/test_gpu.py 2>&1 | tee "$out/gpu_tests.txt"
MFG_BENCH_DEVICE=cuda MFG_BENCH_2D_SIZES=128,256 OPENBLAS_NUM_THREADS=1 \
    "$py" -c "import pathlib, benchmarks.bench_2d as b; b.main(pathlib.Path('$out'))"
