"""Every accelerated backend's particle kernels (Euler-Maruyama sweep, binned FFT KDE) against numpy.

All backends receive the same random numbers (drawn once in numpy) and implement the same formulas,
so their densities agree with the reference to round-off (asked: 1e-10 relative in the max norm).
The test value functions are smooth: with a rough one the particle map is chaotic (its Lipschitz
constant ``1 + dt |u_xx| / lam`` per step), and any round-off difference is amplified.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

import mfg_core as mc
from mfg_core.backends import BackendUnavailableError, get_backend
from mfg_core.kde import kde_on_grid
from mfg_core.particles import FPParticleSolver

RTOL = 1e-10


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _problem(boundary, Nx=50, Nt=12):
    return mc.problems.load("congestion", Nx=Nx, Nt=Nt, boundary=boundary)


def _smooth_U(p):
    # a time-dependent smooth value function that pushes particles into both walls / across the seam
    t = p.t[:, None]
    if p.periodic:
        return (1.0 + t) * 0.4 * np.sin(2 * np.pi * p.x)[None, :]
    return 3.0 * (1.0 - t) * (p.x[None, :] - 0.5) ** 2 - 2.0 * t * p.x[None, :]


@pytest.mark.parametrize("boundary", ["neumann", "periodic"])
@pytest.mark.parametrize("bandwidth", ["scott", "silverman", 0.04, 2.0])
def test_particle_density_matches_numpy(accelerated_backend, boundary, bandwidth):
    p = _problem(boundary)
    U = _smooth_U(p)
    ref = FPParticleSolver(p, num_particles=4000, seed=2, bandwidth=bandwidth)
    M_ref = ref.solve(U)
    fp = FPParticleSolver(p, num_particles=4000, seed=2, bandwidth=bandwidth, backend=accelerated_backend)
    assert fp.backend.name == accelerated_backend
    M = fp.solve(U)
    assert isinstance(M, np.ndarray) and M.dtype == np.float64 and M.shape == p.shape
    assert _rel(M, M_ref) < RTOL
    np.testing.assert_allclose(fp.diagnostics["bandwidth"], ref.diagnostics["bandwidth"], rtol=RTOL)
    np.testing.assert_allclose(p.mass(M), 1.0, atol=1e-12)
    assert np.all(M >= 0)
    key = "wrapped_fraction" if p.periodic else "reflected_fraction"
    # a crossing count may differ only where round-off puts a particle on the other side of a wall
    assert np.max(np.abs(fp.diagnostics[key] - ref.diagnostics[key])) * fp.num_particles <= 2
    assert fp.diagnostics[key].sum() > 0  # the boundary was exercised


def test_lq_density_matches_numpy_with_many_particles(accelerated_backend):
    p = mc.problems.load("lq", Nx=200, Nt=10)
    U, _ = p.exact_solution()
    M_ref = FPParticleSolver(p, num_particles=100_000, seed=4).solve(U)
    fp = FPParticleSolver(p, num_particles=100_000, seed=4, backend=accelerated_backend)
    fp.warmup()
    assert _rel(fp.solve(U), M_ref) < RTOL


def test_same_seed_is_bit_identical_on_the_backend(accelerated_backend):
    p = _problem("neumann", Nx=30, Nt=6)
    U = _smooth_U(p)
    a = FPParticleSolver(p, num_particles=2000, seed=9, backend=accelerated_backend)
    first = a.solve(U)
    np.testing.assert_array_equal(a.solve(U), first)  # common random numbers: deterministic map
    np.testing.assert_array_equal(
        FPParticleSolver(p, num_particles=2000, seed=9, backend=accelerated_backend).solve(U), first)
    fresh = FPParticleSolver(p, num_particles=2000, seed=9, backend=accelerated_backend,
                             common_random_numbers=False)
    np.testing.assert_array_equal(fresh.solve(U), first)
    assert np.max(np.abs(fresh.solve(U) - first)) > 1e-3


@pytest.mark.parametrize("boundary", ["neumann", "periodic"])
def test_huge_drift_keeps_every_particle_inside(accelerated_backend, boundary):
    p = _problem(boundary, Nx=20, Nt=3)
    U = np.tile(1e7 * (np.sin(2 * np.pi * p.x) if p.periodic else p.x), (p.Nt + 1, 1))
    fp = FPParticleSolver(p, num_particles=1000, backend=accelerated_backend)
    M = fp.solve(U)
    X = fp.diagnostics["final_positions"]
    assert X.shape == (1000,) and X.min() >= p.xmin and X.max() <= p.xmax
    np.testing.assert_allclose(p.mass(M), 1.0, atol=1e-12)
    ref = FPParticleSolver(p, num_particles=1000)
    ref.solve(U)
    # 1e7 dt / dx cells per step: positions are chaotic in round-off, but their count and domain are not
    assert ref.diagnostics["num_particles"] == fp.diagnostics["num_particles"] == 1000


@pytest.mark.parametrize("boundary", ["neumann", "periodic"])
@pytest.mark.parametrize("bandwidth", ["scott", 0.003, 0.05, 50.0])
def test_kde_matches_numpy(accelerated_backend, boundary, bandwidth):
    rng = np.random.default_rng(8)
    X = np.concatenate([np.abs(rng.normal(0.0, 0.05, 3000)), rng.uniform(0.0, 1.0, 2000)])
    grid = np.linspace(0.0, 1.0, 161) if boundary == "neumann" else np.arange(160) / 160
    ref = kde_on_grid(X, grid, bandwidth, boundary=boundary)
    out = kde_on_grid(X, grid, bandwidth, backend=accelerated_backend, boundary=boundary)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64 and out.shape == grid.shape
    assert _rel(out, ref) < RTOL


def test_kernels_are_the_backends_own(accelerated_backend):
    p = _problem("neumann", Nx=10, Nt=2)
    be = get_backend(accelerated_backend)
    for kernel in (be.make_kde(p.grid), be.make_particle_sweep(p.scheme, bandwidth=0.1, scale_by_std=False)):
        assert kernel.__module__ == f"mfg_core.backends.{accelerated_backend}.particles"


def test_missing_library_raises_instead_of_falling_back(accelerated_backend, monkeypatch):
    from mfg_core.backends import REGISTRY

    library = REGISTRY[accelerated_backend][1]
    monkeypatch.setitem(sys.modules, library, None)  # makes `import <library>` fail
    p = _problem("neumann", Nx=10, Nt=2)
    with pytest.raises(BackendUnavailableError, match=library):
        FPParticleSolver(p, num_particles=10, backend=accelerated_backend)
    with pytest.raises(BackendUnavailableError, match=library):
        kde_on_grid([0.2, 0.5], np.linspace(0, 1, 5), 0.1, backend=accelerated_backend)
