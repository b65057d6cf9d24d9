"""The prepared GPU script (``benchmarks/gpu_check.sh``) runs through: its steps on the CPU device
(``MFG_GPU_CHECK_DEVICE=cpu``, no nvidia-smi), tiny sizes, with this interpreter the way the device
machine runs it (the checkout on PYTHONPATH, nothing installed), writing what it promises to $OUT."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_gpu_script_runs_its_steps_and_writes_its_results(tmp_path):
    pytest.importorskip("jax")
    pytest.importorskip("torch")
    env = dict(os.environ, OUT=str(tmp_path), PYTHON=sys.executable, MFG_GPU_CHECK_DEVICE="cpu",
               MFG_BENCH_2D_SIZES="8", MFG_BENCH_2D_PARTICLES="2000")
    run = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert {"gpu.txt", "gpu_tests.txt", "2d.md", "2d.csv"} <= {f.name for f in tmp_path.iterdir()}
    assert "jax" in (tmp_path / "gpu.txt").read_text() and "torch" in (tmp_path / "gpu.txt").read_text()
    tests = (tmp_path / "gpu_tests.txt").read_text()
    assert " passed" in tests and "failed" not in tests and "skipped" not in tests, tests
    table = (tmp_path / "2d.md").read_text()
    assert all(f"| {backend} |" in table for backend in ("numpy", "numba", "jax", "torch")), table
