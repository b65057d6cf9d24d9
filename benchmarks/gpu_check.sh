#!/usr/bin/env bash
# The GPU checks, as one prepared script for a machine with an NVIDIA GPU (the `device` tool runs
# it from the repository root): the gpu-marked tests (jax and torch on device "cuda" against numpy),
# then the 2D benchmark at 128^2 and 256^2 with jax and torch on the GPU (target: >= 5x numba at
# 256^2). Results: $OUT (or results/bench) gets gpu.txt (the machine and the libraries),
# gpu_tests.txt, 2d.md and 2d.csv.
#
#   bash benchmarks/gpu_check.sh
#
# Python: $PYTHON, else .venv/bin/python where there is one, else python3 -- on the device machine
# the image's python3 already holds CUDA builds of jax and torch, numba, numpy, scipy and pytest,
# which is all this needs; the checkout is put on PYTHONPATH, so nothing is installed. Not yet run
# on a GPU machine: on this project's 2-core CPU machine the same steps take about 4 minutes, so give
# the device call its 10-minute limit. MFG_BENCH_2D_SIZES replaces "128,256"; MFG_GPU_CHECK_DEVICE=cpu
# runs the same steps on the CPU device without nvidia-smi (tests/study/test_gpu_check.py does, tiny).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-results/bench}"
mkdir -p "$out"
device="${MFG_GPU_CHECK_DEVICE:-cuda}"
py="${PYTHON:-}"
if [ -z "$py" ]; then
    if [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [ "$device" = cpu ]; then
    echo "no GPU asked for (MFG_GPU_CHECK_DEVICE=cpu)" > "$out/gpu.txt"
else
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
fi
"$py" -c "import sys, numpy, numba, jax, torch; print('python', sys.version.split()[0], 'numpy', numpy.__version__, 'numba', numba.__version__); print('jax', jax.__version__, jax.devices()); print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$out/gpu.txt"
# a failing GPU test must not stop the benchmark: its exit status is kept and returned at the end
set +e
MFG_TEST_DEVICE="$device" "$py" -m pytest -q -rs -p no:cacheprovider -m gpu tests/backends/test_gpu.py 2>&1 \
    | tee "$out/gpu_tests.txt"
tests=${PIPESTATUS[0]}
set -e
MFG_BENCH_DEVICE="$device" MFG_BENCH_2D_SIZES="${MFG_BENCH_2D_SIZES:-128,256}" OPENBLAS_NUM_THREADS=1 \
    "$py" -c "import pathlib, sys, benchmarks.bench_2d as b; b.main(pathlib.Path(sys.argv[1]))" "$out"
exit "$tests"
