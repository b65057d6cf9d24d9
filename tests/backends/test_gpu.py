"""jax and torch on a GPU (``device="cuda"``): the 2D and 1D solves match numpy, and the damped
loop's iterate stays on the device. Marked ``gpu``; skipped, saying why, on a machine without one
(``benchmarks/gpu_check.sh`` runs these and the 2D benchmark on a GPU machine).
``MFG_TEST_DEVICE=cpu`` runs the same tests on the CPU device (a check of the tests themselves)."""

import importlib
import os

import numpy as np
import pytest

import mfg_core as mc
from mfg_core.backends import get_backend

pytestmark = pytest.mark.gpu
DEVICE = os.environ.get("MFG_TEST_DEVICE", "cuda")


@pytest.fixture(params=["jax", "torch"])
def gpu_backend(request):
    name = request.param
    pytest.importorskip(name)
    try:
        importlib.import_module(f"mfg_core.backends.{name}").resolve_device(DEVICE)
    except ValueError as exc:
        pytest.skip(f"no GPU for {name}: {exc}")
    return name


def _close(a, b, tol):
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-300)) <= tol


@pytest.mark.parametrize("name, grid", [("evacuation2d", dict(Nx=24, Ny=24, Nt=10)),
                                        ("lq2d", dict(Nx=20, Ny=20, Nt=10)),
                                        ("congestion", dict(Nx=60, Nt=40))])
def test_fdm_on_the_gpu_matches_numpy(gpu_backend, name, grid):
    p = mc.problems.load(name, **grid)
    ref = mc.solve(p, fp="fdm", coupling="damping", backend="numpy", max_iterations=5, tolerance=1e-14)
    r = mc.solve(p, fp="fdm", coupling="damping", backend=gpu_backend, device=DEVICE, max_iterations=5,
                 tolerance=1e-14)
    assert r.iterations == ref.iterations
    assert _close(r.U, ref.U, 1e-10) and _close(r.M, ref.M, 1e-10)
    assert np.abs(r.mass - 1.0).max() <= 1e-12 and r.M.min() >= 0.0


def test_particles_2d_on_the_gpu_match_numpy(gpu_backend):
    p = mc.problems.load("lq2d", Nx=16, Ny=16, Nt=8)
    U = mc.HJBFDMSolver(p).solve(np.broadcast_to(p.m_init, p.shape).copy())
    ref = mc.FPParticleSolver(p, num_particles=5000, seed=3).solve(U)
    fp = mc.FPParticleSolver(p, num_particles=5000, seed=3, backend=get_backend(gpu_backend, device=DEVICE))
    assert _close(fp.solve(U), ref, 1e-10)


def test_the_damped_iterate_stays_on_the_gpu(gpu_backend):
    p = mc.problems.load("lq2d", Nx=12, Ny=12, Nt=6)
    loop = mc.build(p, fp="fdm", coupling="damping", backend=gpu_backend, device=DEVICE)
    X = loop.fields.asarray(np.ones(p.shape))
    where = str(X.devices() if hasattr(X, "devices") else X.device).lower()
    wanted = ("cuda", "gpu") if DEVICE in ("cuda", "gpu") else (DEVICE,)
    assert any(w in where for w in wanted), where
