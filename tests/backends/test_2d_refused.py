"""numba, jax and torch have no 2D kernels: each refuses a 2D grid with an error naming the backend
(never a silent numpy run), from its factories, through the solvers, and through ``mc.solve`` (the
registry: 2D runs on numpy only)."""

import numpy as np
import pytest

import mfg_core as mc


@pytest.fixture(scope="module")
def problem():
    return mc.problems.load("lq2d", Nx=8, Ny=6, Nt=3)


def test_factories_refuse_2d_naming_the_backend(accelerated_backend, problem):
    be = mc.get_backend(accelerated_backend)
    msg = rf"backend '{accelerated_backend}' has no 2D .* kernel \(it has 1D only\)"
    with pytest.raises(ValueError, match=msg):
        be.make_hjb_sweep(problem.scheme)
    with pytest.raises(ValueError, match=msg):
        be.make_fp_sweep(problem.scheme)
    with pytest.raises(ValueError, match=msg):
        be.make_particle_sweep(problem.scheme, bandwidth=0.1, scale_by_std=False)
    with pytest.raises(ValueError, match=msg):
        be.make_kde(problem.grid)


def test_solvers_and_solve_refuse_2d_on_accelerated_backends(accelerated_backend, problem):
    from mfg_core.particles import FPParticleSolver

    for build in (lambda: mc.HJBFDMSolver(problem, backend=accelerated_backend),
                  lambda: mc.FPFDMSolver(problem, backend=accelerated_backend),
                  lambda: FPParticleSolver(problem, num_particles=10, backend=accelerated_backend)):
        with pytest.raises(ValueError, match=f"backend '{accelerated_backend}' has no 2D"):
            build()
    hjb, fp = mc.HJBFDMSolver(problem), mc.FPFDMSolver(problem)
    with pytest.raises(ValueError, match=f"backend '{accelerated_backend}' has no 2D"):
        mc.FixedPointIterator(problem, hjb, fp, backend=accelerated_backend)
    with pytest.raises(ValueError, match=rf"solves 2D problems only on backend\(s\) \['numpy'\], not on "
                                         rf"'{accelerated_backend}'"):
        mc.solve(problem, fp="fdm", backend=accelerated_backend)


def test_numpy_runs_2d(problem):
    r = mc.solve(problem, backend="numpy", max_iterations=2, tolerance=1e-8)
    assert r.solver["hjb_backend"] == "numpy" and np.all(np.isfinite(r.U))
