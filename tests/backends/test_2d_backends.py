"""Every accelerated backend's 2D kernels against the numpy reference (one parametrised suite).

The backends solve the same discrete 2D system as numpy (the reference factorises; the others use a
Krylov method preconditioned by line solves, solved tightly), so U and M agree to 1e-10 relative
and the FP mass stays exact (1e-12) at every step, with and without an obstacle, on both boundaries.
No backend may quietly run numpy's or scipy's 2D code inside its sweeps. jax and torch take a device;
one this machine does not have is refused naming it and the devices found.
"""

from __future__ import annotations

import numpy as np
import pytest

import mfg_core as mc
from mfg_core.backends import checks, get_backend, krylov2d
from mfg_core.particles import FPParticleSolver

RTOL = 1e-10


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _room(boundary="neumann", obstacle=True, N=14, Nt=6):
    def pillar(x, y):
        return (np.abs(x - 0.55) < 0.12) & (np.abs(y - 0.5) < 0.2)

    return mc.MFGProblem(xmin=0, xmax=1, Nx=N, ymin=0, ymax=1, Ny=N + 2, T=0.5, Nt=Nt, sigma=0.4,
                         coupling=lambda m: 0.5 * m, coupling_dm=lambda m: np.full_like(m, 0.5),
                         terminal_cost=lambda x, y: 2.0 * ((x - 0.9) ** 2 + (y - 0.3) ** 2),
                         potential=lambda x, y: 0.3 * np.cos(2 * np.pi * x) * np.sin(np.pi * y),
                         # no mass inside the pillar (a problem with some there is refused)
                         m0=lambda x, y: np.exp(-30 * ((x - 0.25) ** 2 + (y - 0.6) ** 2)) * ~pillar(x, y),
                         boundary=boundary, obstacle=pillar if obstacle else None)


CASES = [("neumann", False), ("periodic", False), ("neumann", True), (("periodic", "neumann"), True)]


def _bumpy(p, seed=0):
    rng = np.random.default_rng(seed)
    M = np.broadcast_to(p.m_init, p.shape) * (1.0 + 0.5 * rng.random(p.shape))
    return M / p.mass(M)[:, None, None]


@pytest.mark.parametrize("boundary,obstacle", CASES)
def test_2d_sweeps_match_numpy(accelerated_backend, boundary, obstacle):
    p = _room(boundary, obstacle)
    source = p.V[None] + p.F(_bumpy(p))
    ref, be = get_backend("numpy"), get_backend(accelerated_backend)
    U_ref, its_ref = ref.make_hjb_sweep(p.scheme)(source, p.g)
    hjb = be.make_hjb_sweep(p.scheme)
    U, its = hjb(source, p.g)
    U = be.to_host(U)
    assert U.shape == p.shape and _rel(U, U_ref) < RTOL
    assert np.all(np.asarray(be.to_host(its)) > 0)
    assert hjb.diagnostics["krylov_iterations"] > 0  # the linear solves are iterative and counted
    mu0 = p.weights * p.m_init
    mu_ref = ref.make_fp_sweep(p.scheme)(U_ref, mu0)
    mu = be.to_host(be.make_fp_sweep(p.scheme)(U_ref, mu0))
    assert _rel(mu, mu_ref) < RTOL
    np.testing.assert_allclose(mu.reshape(p.Nt + 1, -1).sum(axis=1), mu0.sum(), rtol=0, atol=1e-12)
    assert mu.min() >= -1e-14
    if obstacle:
        assert np.all(mu[:, p.grid.obstacle] == 0.0) or np.abs(mu[:, p.grid.obstacle]).max() < 1e-14


@pytest.mark.parametrize("boundary,obstacle", CASES)
def test_2d_sweeps_with_the_shifted_preconditioner_match_numpy(accelerated_backend, boundary, obstacle,
                                                               monkeypatch):
    """The Peaceman-Rachford shift from the first solve on (SWITCH = 0) solves the same systems."""
    p = _room(boundary, obstacle)
    source = p.V[None] + p.F(_bumpy(p))
    ref, be = get_backend("numpy"), get_backend(accelerated_backend)
    U_ref, _ = ref.make_hjb_sweep(p.scheme)(source, p.g)
    mu0 = p.weights * p.m_init
    mu_ref = ref.make_fp_sweep(p.scheme)(U_ref, mu0)
    counts = {}
    for switch in (10**9, 0):  # never shifted, shifted from the start
        monkeypatch.setattr(krylov2d, "SWITCH", switch)
        hjb, fp = be.make_hjb_sweep(p.scheme), be.make_fp_sweep(p.scheme)
        U = be.to_host(hjb(source, p.g)[0])
        mu = be.to_host(fp(U_ref, mu0))
        assert _rel(U, U_ref) < RTOL and _rel(mu, mu_ref) < RTOL
        np.testing.assert_allclose(mu.reshape(p.Nt + 1, -1).sum(axis=1), mu0.sum(), rtol=0, atol=1e-12)
        assert mu.min() >= -1e-14
        counts[switch] = (hjb.diagnostics["krylov_iterations"], fp.diagnostics["krylov_iterations"])
    assert counts[0] != counts[10**9]  # the shifted line factors were used


def test_the_shift_cuts_the_iterations_where_diffusion_dominates(accelerated_backend, monkeypatch):
    """evacuation2d at dt nu / h^2 ~ 4: alpha = 1 leaves the error dt^2 A_y A_x, the shift balances it."""
    p = mc.problems.load("evacuation2d", Nx=48, Ny=48, Nt=10)
    assert krylov2d.adi_shift(checks.fdm2d_constants(p.scheme, "numpy", "test")) > 2.5
    be = get_backend(accelerated_backend)
    M = np.broadcast_to(p.m_init, p.shape).copy()
    source = p.V[None] + p.F(M)
    its = {}
    for switch in (10**9, 0):
        monkeypatch.setattr(krylov2d, "SWITCH", switch)
        hjb, fp = be.make_hjb_sweep(p.scheme), be.make_fp_sweep(p.scheme)
        U = be.to_host(hjb(source, p.g)[0])
        fp(U, p.weights * p.m_init)
        its[switch] = hjb.diagnostics["krylov_iterations"] + fp.diagnostics["krylov_iterations"]
    assert its[0] < 0.75 * its[10**9], its


def test_restarted_cycles_still_reach_numpy_and_the_caps_hold(accelerated_backend, monkeypatch):
    """krylov2d's caps on every backend: cycles of 3 iterations restart from the current iterate
    (true residual, new shadow) and still solve the same systems; with one cycle of 2 iterations
    no solve runs longer, and the solves left short are counted."""
    p = _room("neumann", obstacle=True)
    source = p.V[None] + p.F(_bumpy(p))
    ref, be = get_backend("numpy"), get_backend(accelerated_backend)
    U_ref, _ = ref.make_hjb_sweep(p.scheme)(source, p.g)
    mu0 = p.weights * p.m_init
    mu_ref = ref.make_fp_sweep(p.scheme)(U_ref, mu0)
    monkeypatch.setattr(krylov2d, "SWITCH", 10**9)  # unshifted: more iterations per solve
    monkeypatch.setattr(krylov2d, "CYCLE", 3)
    monkeypatch.setattr(krylov2d, "CYCLES", 1000)
    hjb, fp = be.make_hjb_sweep(p.scheme), be.make_fp_sweep(p.scheme)
    U = be.to_host(hjb(source, p.g)[0])
    mu = be.to_host(fp(U_ref, mu0))
    assert _rel(U, U_ref) < RTOL and _rel(mu, mu_ref) < RTOL
    assert hjb.diagnostics["krylov_unconverged"] == fp.diagnostics["krylov_unconverged"] == 0
    assert fp.diagnostics["krylov_iterations"] > 3 * p.Nt  # restarts were needed
    monkeypatch.setattr(krylov2d, "CYCLE", 2)
    monkeypatch.setattr(krylov2d, "CYCLES", 1)
    hjb, fp = be.make_hjb_sweep(p.scheme), be.make_fp_sweep(p.scheme)
    hjb(source, p.g)
    mu = be.to_host(fp(U_ref, mu0))
    assert fp.diagnostics["krylov_iterations"] == 2 * p.Nt and fp.diagnostics["krylov_unconverged"] == p.Nt
    assert hjb.diagnostics["krylov_iterations"] <= 2 * hjb.diagnostics["newton_steps"]
    assert hjb.diagnostics["krylov_unconverged"] > 0
    np.testing.assert_allclose(mu.reshape(p.Nt + 1, -1).sum(axis=1), mu0.sum(), rtol=0, atol=1e-12)


def test_the_density_around_the_pillar_stays_nonnegative(accelerated_backend):
    """evacuation2d at 128^2: the Krylov solve's error leaves negatives of ~1e-14 max(mu) where the
    density is 0 unless they are cleared (krylov2d.FP_CLIP); m >= 0 and the mass hold exactly."""
    p = mc.problems.load("evacuation2d", Nx=128, Ny=128, Nt=50)
    U = mc.HJBFDMSolver(p, "numba" if "numba" in mc.backends.available() else "numpy").solve(
        np.broadcast_to(p.m_init, p.shape).copy())
    M = mc.FPFDMSolver(p, accelerated_backend).solve(U)
    assert M.min() >= 0.0
    assert np.abs(p.mass(M) - 1.0).max() < 1e-12


@pytest.mark.parametrize("name", ["lq2d", "stationary_log2d", "evacuation2d"])
def test_fixed_point_on_named_2d_problems_matches_numpy(accelerated_backend, name):
    overrides = {"Nx": 12, "Ny": 12, "Nt": 6} if name != "stationary_log2d" else {"Nx": 12, "Ny": 12}
    p = mc.problems.load(name, **overrides)
    ref = mc.solve(p, backend="numpy", max_iterations=3, tolerance=1e-14)
    res = mc.solve(p, backend=accelerated_backend, max_iterations=3, tolerance=1e-14)
    assert res.iterations == ref.iterations == 3
    assert _rel(res.U, ref.U) < RTOL and _rel(res.M, ref.M) < RTOL
    assert np.abs(res.mass - 1.0).max() < 1e-12
    assert res.history["hjb_krylov_iterations"].min() > 0 and res.history["fp_krylov_iterations"].min() > 0
    assert res.history["hjb_krylov_unconverged"].max() == res.history["fp_krylov_unconverged"].max() == 0


@pytest.mark.parametrize("boundary", ["neumann", "periodic"])
def test_2d_particles_and_kde_match_numpy(accelerated_backend, boundary):
    p = _room(boundary, obstacle=False, N=16, Nt=5)
    t, x, y = p.t[:, None, None], p.x[None, None, :], p.y[None, :, None]
    U = 2.0 * (1 - t) * ((x - 0.5) ** 2 + 0.5 * np.sin(np.pi * y)) if boundary == "neumann" else \
        0.3 * (1 + t) * np.sin(2 * np.pi * x) * np.cos(2 * np.pi * y)
    U = np.broadcast_to(U, p.shape).copy()
    M_ref = FPParticleSolver(p, num_particles=3000, seed=3).solve(U)
    fp = FPParticleSolver(p, num_particles=3000, seed=3, backend=accelerated_backend)
    M = fp.solve(U)
    assert _rel(M, M_ref) < RTOL
    np.testing.assert_allclose(p.mass(M), 1.0, atol=1e-12)
    samples = np.random.default_rng(1).uniform([0.1, 0.2], [0.9, 0.8], (2000, 2))
    dens_ref = get_backend("numpy").make_kde(p.grid)(samples, 0.08, False)
    dens = get_backend(accelerated_backend).to_host(get_backend(accelerated_backend).make_kde(p.grid)(samples, 0.08, False))
    assert _rel(dens, dens_ref) < RTOL


def test_no_backend_runs_numpy_or_scipy_in_its_2d_sweeps(accelerated_backend, monkeypatch):
    import scipy.sparse.linalg as spla

    from mfg_core.backends.numpy import fdm, fdm2d, particles, particles2d

    def broken(*a, **k):
        raise AssertionError("numpy's or scipy's 2D code ran")

    for module, names in ((fdm, ("make_hjb_sweep", "make_fp_sweep")), (fdm2d, ("make_hjb_sweep", "make_fp_sweep")),
                          (particles, ("make_particle_sweep", "make_kde")),
                          (particles2d, ("make_particle_sweep", "make_kde")),
                          (spla, ("splu", "spsolve", "bicgstab", "gmres"))):
        for name in names:
            if hasattr(module, name):
                monkeypatch.setattr(module, name, broken)
    p = _room("neumann", obstacle=True)
    r = mc.solve(p, backend=accelerated_backend, max_iterations=2, tolerance=1e-12)
    assert np.all(np.isfinite(r.U)) and np.all(np.isfinite(r.M))


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_a_device_that_is_not_there_is_refused_naming_it(backend):
    pytest.importorskip(backend)
    import importlib

    module = importlib.import_module(f"mfg_core.backends.{backend}")
    assert module.resolve_device("cpu") is not None
    try:
        module.resolve_device("cuda")
    except ValueError:
        pass
    else:
        pytest.skip(f"{backend} finds a GPU here: the refusal is for machines without one (tests/backends/test_gpu.py)")
    with pytest.raises(ValueError, match=r"device 'cuda'.*found"):
        get_backend(backend, device="cuda")
    p = mc.problems.load("congestion", Nx=10, Nt=5)
    with pytest.raises(ValueError, match=r"device 'cuda'"):
        mc.solve(p, backend=backend, device="cuda")
    r = mc.solve(p, backend=backend, device="cpu", max_iterations=2)
    assert r.iterations == 2


def test_cpu_backends_refuse_a_device():
    with pytest.raises(ValueError, match="runs on the CPU only"):
        get_backend("numpy", device="cuda")
