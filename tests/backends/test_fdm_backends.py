"""Every accelerated backend's FDM kernels against the numpy reference, and their own invariants.

Agreement is asked to 1e-10 relative in the max norm: the kernels implement the same scheme with the
same stopping rules, so only round-off may differ (PCR in torch, reciprocal pivots in numba).
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest

import mfg_core as mc
from mfg_core.backends import get_backend

RTOL = 1e-10
CASES = [("lq", "neumann"), ("lq", "periodic"), ("congestion", "neumann"), ("congestion", "periodic")]


def _problem(name, boundary, N=40):
    return mc.problems.load(name, Nx=N, Nt=N, boundary=boundary)


def _hjb(name, p, **kw):
    return get_backend(name).make_hjb_sweep(p.scheme, **kw)


def _fp(name, p):
    return get_backend(name).make_fp_sweep(p.scheme)


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _kernels(name):
    return importlib.import_module(f"mfg_core.backends.{name}.fdm")


def _bumpy_density(p, seed=0):
    """A density history that is not the initial one at every time (exercises the coupling)."""
    rng = np.random.default_rng(seed)
    M = np.tile(p.m_init, (p.Nt + 1, 1)) * (1.0 + 0.5 * rng.random(p.shape))
    return M / p.mass(M)[:, None]


@pytest.mark.parametrize("name,boundary", CASES)
def test_single_sweeps_match_numpy(accelerated_backend, name, boundary):
    p = _problem(name, boundary)
    source = p.V[None, :] + p.F(_bumpy_density(p))
    U_ref, its_ref = _hjb("numpy", p)(source, p.g)
    U, its = _hjb(accelerated_backend, p)(source, p.g)
    assert isinstance(U, np.ndarray) and U.dtype == np.float64 and U.shape == p.shape
    assert isinstance(its, np.ndarray) and its.shape == (p.Nt,)
    assert _rel(U, U_ref) < RTOL
    assert np.all(its > 0)
    # same stopping rules: the Newton counts may only differ where round-off tips a test
    assert np.max(np.abs(its - its_ref)) <= 1

    mu0 = p.weights * p.m_init
    mu_ref = _fp("numpy", p)(U_ref, mu0)
    mu = _fp(accelerated_backend, p)(U_ref, mu0)
    assert isinstance(mu, np.ndarray) and mu.dtype == np.float64 and mu.shape == p.shape
    assert _rel(mu, mu_ref) < RTOL


@pytest.mark.parametrize("name,boundary", CASES)
def test_fixed_point_solve_matches_numpy(accelerated_backend, name, boundary):
    p = _problem(name, boundary)

    def run(backend):
        it = mc.FixedPointIterator(p, mc.HJBFDMSolver(p), mc.FPFDMSolver(p), thetaUM=0.5, backend=backend)
        return it.solve(max_iterations=4, tolerance=1e-14)

    base, res = run("numpy"), run(accelerated_backend)
    assert res.iterations == base.iterations == 4
    assert res.solver["hjb_backend"] == res.solver["fp_backend"] == accelerated_backend
    assert _rel(res.U, base.U) < RTOL
    assert _rel(res.M, base.M) < RTOL


@pytest.mark.parametrize("boundary", ["neumann", "periodic"])
def test_fp_conserves_mass_and_positivity_every_step(backend, boundary):
    p = _problem("congestion", boundary, N=48)
    # a drift with steep gradients, from the HJB of a bumpy density
    U, _ = _hjb(backend, p)(p.V[None, :] + 5.0 * _bumpy_density(p), 3.0 * p.g)
    mu0 = p.weights * p.m_init
    mu = _fp(backend, p)(U, mu0)
    assert np.max(np.abs(mu.sum(axis=1) - mu0.sum())) < 1e-12
    assert mu.min() >= -1e-15


def test_newton_failure_is_reported_like_numpy(accelerated_backend):
    """One Newton step with an unreachable tolerance: every step reports -1, as the reference does."""
    p = _problem("congestion", "neumann", N=20)
    source = p.V[None, :] + p.F(_bumpy_density(p))
    kw = dict(newton_tol=1e-300, newton_maxiter=1)
    _, its_ref = _hjb("numpy", p, **kw)(source, p.g)
    _, its = _hjb(accelerated_backend, p, **kw)(source, p.g)
    assert np.all(its_ref == -1)
    np.testing.assert_array_equal(its, its_ref)


def test_solver_runs_backend_kernels_not_numpy(accelerated_backend, monkeypatch):
    """No silent fallback: with the numpy kernels broken, another backend still solves."""
    p = _problem("congestion", "neumann", N=20)

    def broken(*args, **kwargs):
        raise AssertionError("the numpy kernel ran")

    ref = _kernels("numpy")
    monkeypatch.setattr(ref, "make_hjb_sweep", broken)
    monkeypatch.setattr(ref, "make_fp_sweep", broken)
    hjb = mc.HJBFDMSolver(p, backend=accelerated_backend)
    fp = mc.FPFDMSolver(p, backend=accelerated_backend)
    M = fp.solve(hjb.solve(np.tile(p.m_init, (p.Nt + 1, 1))))
    assert np.all(np.isfinite(M))
    with pytest.raises(AssertionError, match="numpy kernel ran"):
        mc.HJBFDMSolver(p, backend="numpy").solve(M)


@pytest.mark.parametrize("sweep", ["hjb", "fp"])
def test_bad_input_raises_valueerror_naming_argument(backend, sweep):
    p = _problem("lq", "neumann", N=10)
    good = np.zeros(p.shape)
    call = _hjb(backend, p) if sweep == "hjb" else _fp(backend, p)
    first = "source" if sweep == "hjb" else "U"
    with pytest.raises(ValueError, match=rf"^{first} "):
        call(good[:, :-1].ravel(), p.g)
    with pytest.raises(ValueError, match="terminal" if sweep == "hjb" else "mu0"):
        call(good, p.g[:-1])


def test_bad_settings_are_refused_when_the_kernel_is_built(backend):
    p = _problem("lq", "neumann", N=10)
    be = get_backend(backend)
    with pytest.raises(ValueError, match="newton_tol"):
        be.make_hjb_sweep(p.scheme, newton_tol=0.0)
    with pytest.raises(ValueError, match="newton_maxiter"):
        be.make_hjb_sweep(p.scheme, newton_maxiter=0)
    with pytest.raises(ValueError, match="Scheme"):
        be.make_fp_sweep(p.grid)


def test_numba_second_solve_reuses_compiled_code():
    pytest.importorskip("numba")
    fdm = _kernels("numba")
    p = _problem("congestion", "neumann", N=16)
    src = np.tile(p.V, (p.Nt + 1, 1))
    _hjb("numba", p)(src, p.g)
    _fp("numba", p)(src, p.weights * p.m_init)
    n_hjb, n_fp = len(fdm._hjb_sweep.signatures), len(fdm._fp_sweep.signatures)
    q = mc.problems.load("congestion", Nx=24, Nt=24, T=0.5, boundary="periodic")  # other shape, flags
    _hjb("numba", q)(np.tile(q.V, (q.Nt + 1, 1)), q.g)
    _fp("numba", q)(np.tile(q.V, (q.Nt + 1, 1)), q.weights * q.m_init)
    assert len(fdm._hjb_sweep.signatures) == n_hjb
    assert len(fdm._fp_sweep.signatures) == n_fp
    # cache=True: compiled code is written to disk for the next process
    assert fdm._hjb_sweep._cache.cache_path


def test_jax_second_solve_of_same_shape_does_not_recompile():
    pytest.importorskip("jax")
    fdm = _kernels("jax")
    p = _problem("congestion", "neumann", N=16)
    src = np.tile(p.V, (p.Nt + 1, 1))
    _hjb("jax", p)(src, p.g)
    _fp("jax", p)(src, p.weights * p.m_init)
    n_hjb, n_fp = fdm._hjb_sweep._cache_size(), fdm._fp_sweep._cache_size()
    # same shapes, other parameter values (traced, not static): reuse the executable
    q = mc.problems.load("congestion", Nx=16, Nt=16, T=0.5, sigma=0.7)
    _hjb("jax", q, newton_tol=1e-11, newton_maxiter=20)(src + 1.0, q.g)
    _fp("jax", q)(src + 1.0, q.weights * q.m_init)
    assert fdm._hjb_sweep._cache_size() == n_hjb
    assert fdm._fp_sweep._cache_size() == n_fp


def test_warmup_then_solve(accelerated_backend):
    """``warmup()`` compiles for the problem's shape; the solve after it gives the numpy answer."""
    p = _problem("congestion", "periodic", N=24)
    hjb = mc.HJBFDMSolver(p, backend=accelerated_backend)
    assert hjb.warmup() >= 0.0
    M = np.tile(p.m_init, (p.Nt + 1, 1))
    assert _rel(hjb.solve(M), mc.HJBFDMSolver(p).solve(M)) < RTOL
