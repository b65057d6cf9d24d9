"""HJBFDMSolver: Newton with the exact tridiagonal Jacobian, residual tolerance, frozen-M accuracy."""

import numpy as np
import pytest

import mfg_core as mc
from mfg_core.backends.numpy import fdm


@pytest.mark.parametrize("periodic", [False, True])
def test_jacobian_bands_are_the_derivative_of_the_residual(periodic):
    rng = np.random.default_rng(1)
    n, dt, dx, nu, lam = 12, 0.05, 0.1, 0.3, 1.5
    u = rng.normal(size=n)
    unext, src = rng.normal(size=n), rng.normal(size=n)

    def residual(v):
        _, _, ham, lap = fdm.upwind(v, dx, lam, periodic)
        return v - unext + dt * (-nu * lap + ham - src)

    ap, am, _, _ = fdm.upwind(u, dx, lam, periodic)
    lo, d, up = fdm.jacobian_bands(ap, am, dt=dt, dx=dx, nu=nu, periodic=periodic)
    J = np.diag(d) + np.diag(lo[1:], -1) + np.diag(up[:-1], 1)
    if periodic:
        J[0, -1] += lo[0]
        J[-1, 0] += up[-1]
    h = 1e-7
    Jfd = np.column_stack([(residual(u + h * e) - residual(u - h * e)) / (2 * h) for e in np.eye(n)])
    assert np.abs(J - Jfd).max() < 1e-6
    assert np.allclose(J.sum(axis=1), 1.0)  # A 1 = 0: rows of I + dt A sum to one
    assert np.all(J - np.diag(np.diag(J)) <= 0)  # M-matrix sign pattern


def test_newton_reaches_the_scaled_residual_tolerance_in_few_steps():
    p = mc.problems.load("congestion", Nx=400, Nt=400)
    hjb = mc.HJBFDMSolver(p)
    U = hjb.solve(np.tile(p.m_init, (p.Nt + 1, 1)))
    assert U.shape == p.shape and np.all(np.isfinite(U))
    assert np.all(hjb.newton_iterations >= 1) and hjb.newton_iterations.max() <= 8
    # check the residual of every time step directly
    S = p.V + p.F(np.tile(p.m_init, (p.Nt + 1, 1)))
    for n in (0, p.Nt // 2, p.Nt - 1):
        _, _, ham, lap = fdm.upwind(U[n], p.dx, p.lam, p.periodic)
        res = U[n] - U[n + 1] + p.dt * (-p.nu * lap + ham - S[n + 1])
        assert np.abs(res).max() <= 1e-12 * max(1, np.abs(U[n]).max())


def test_newton_failure_is_reported_with_the_time_step():
    p = mc.problems.load("congestion", Nx=50, Nt=20)
    hjb = mc.HJBFDMSolver(p, newton_tol=1e-30, newton_maxiter=1)
    with pytest.raises(mc.ConvergenceError, match="time index"):
        hjb.solve(np.tile(p.m_init, (p.Nt + 1, 1)))


def test_hjb_with_the_exact_density_matches_the_lq_value_function():
    p = mc.problems.load("lq", Nx=200, Nt=200)
    ex = p.exact_solution()
    U = mc.HJBFDMSolver(p).solve(ex.M)
    mask = np.abs(p.x) <= 1
    assert np.abs(U - ex.U)[:, mask].max() < 1e-2


@pytest.mark.parametrize("bad, match", [
    (lambda p: np.zeros((p.Nt, p.x.size)), "shape"),
    (lambda p: np.full(p.shape, np.nan), "NaN"),
])
def test_bad_density_is_rejected_before_solving(bad, match):
    p = mc.problems.load("congestion", Nx=20, Nt=10)
    with pytest.raises(ValueError, match=match):
        mc.HJBFDMSolver(p).solve(bad(p))
    with pytest.raises(ValueError, match="U"):
        mc.FPFDMSolver(p).solve(bad(p))


def test_bad_solver_settings_and_unknown_backend():
    p = mc.problems.load("congestion", Nx=20, Nt=10)
    with pytest.raises(ValueError, match="newton_tol"):
        mc.HJBFDMSolver(p, newton_tol=0)
    with pytest.raises(ValueError, match="backend"):
        mc.HJBFDMSolver(p, backend="fortran")
    with pytest.raises(ValueError, match="problem"):
        mc.FPFDMSolver("congestion")
