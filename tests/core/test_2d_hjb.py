"""2D HJB (numpy reference): the assembled 5-point Jacobian is the derivative of the residual (finite
differences), an M-matrix with unit row sums, with walls, wraps and obstacles; Newton reaches its
tolerance; the FP matrix is its transpose (column sums 1)."""

import numpy as np
import pytest

import mfg_core as mc
from mfg_core.backends import checks
from mfg_core.backends.numpy import fdm2d
from mfg_core.grid import Scheme, rectangle

CASES = [
    (("neumann", "neumann"), None),
    (("periodic", "periodic"), None),
    (("neumann", "periodic"), None),
    (("periodic", "neumann"), "block"),
    (("neumann", "neumann"), "block"),
]


def _constants(boundary, obstacle, nx=7, ny=6):
    mask = None
    if obstacle == "block":
        mask = np.zeros((ny + (boundary[1] != "periodic"), nx + (boundary[0] != "periodic")), dtype=bool)
        mask[2:4, 3] = True  # a wall segment inside
        mask[0, 0] = True  # and a blocked corner on the outer wall
    scheme = Scheme(rectangle(0.0, 1.0, nx, 0.0, 0.8, ny, boundary, obstacle=mask), 0.4, 4, 0.7, lam=1.3)
    return checks.fdm2d_constants(scheme, "numpy", "test"), scheme


def _residual(c, u, unext, src):
    _, ham, lap = fdm2d.upwind2d(u, c)
    free = c.stencil.free
    return u - unext + c.dt * free * (-c.nu * lap + ham - src)


@pytest.mark.parametrize("boundary, obstacle", CASES)
def test_jacobian_is_the_derivative_of_the_residual_and_an_m_matrix(boundary, obstacle):
    c, _ = _constants(boundary, obstacle)
    rng = np.random.default_rng(3)
    n = c.stencil.size
    u, unext, src = rng.normal(size=n), rng.normal(size=n), rng.normal(size=n)
    a, _, _ = fdm2d.upwind2d(u, c)
    J = fdm2d.Assembly(c).matrix(a).toarray()
    h = 1e-7
    Jfd = np.column_stack([(_residual(c, u + h * e, unext, src) - _residual(c, u - h * e, unext, src)) / (2 * h)
                           for e in np.eye(n)])
    assert np.abs(J - Jfd).max() < 1e-6
    assert np.allclose(J.sum(axis=1), 1.0, atol=1e-13)  # A 1 = 0
    off = J - np.diag(np.diag(J))
    assert np.all(off <= 0)  # M-matrix sign pattern
    assert np.all(np.diag(J) >= 1.0 - 1e-14)
    assert np.all(np.linalg.inv(J) >= -1e-12)  # monotone: J^{-1} >= 0 (so J^{-T} keeps mu >= 0)
    if obstacle:
        blocked = np.flatnonzero(~c.stencil.free)
        # a blocked node is decoupled: its row and column are those of the identity
        assert np.allclose(J[blocked][:, blocked], np.eye(blocked.size))
        assert np.all(J[blocked][:, c.stencil.free] == 0) and np.all(J[c.stencil.free][:, blocked] == 0)


@pytest.mark.parametrize("boundary, obstacle", CASES[:3] + CASES[4:])
def test_hjb_newton_reaches_the_tolerance_and_blocked_nodes_keep_g(boundary, obstacle):
    c, scheme = _constants(boundary, obstacle, nx=20, ny=16)
    y, x = scheme.grid.mesh()
    g = 3.0 * np.sin(2 * np.pi * x) * np.cos(2 * np.pi * y) + 2.0 * x
    src = np.broadcast_to(1.0 + np.cos(2 * np.pi * x), scheme.shape).copy()
    sweep = mc.get_backend("numpy").make_hjb_sweep(scheme)
    U, its = sweep(src, g)
    assert U.shape == scheme.shape and np.all(its >= 1) and its.max() <= 10
    S = src.reshape(src.shape[0], -1)
    Uf = U.reshape(U.shape[0], -1)
    for n in range(scheme.Nt):
        res = _residual(c, Uf[n], Uf[n + 1], S[n + 1])
        assert np.abs(res).max() <= 1e-12 * max(1.0, np.abs(Uf[n]).max())
    if obstacle:
        assert np.all(U[:, scheme.grid.obstacle] == g[scheme.grid.obstacle])


def test_fp_matrix_is_the_transpose_and_conserves_mass_column_by_column():
    c, scheme = _constants(("neumann", "neumann"), "block", nx=9, ny=8)
    rng = np.random.default_rng(5)
    u = 4.0 * rng.normal(size=c.stencil.size)
    J = fdm2d.Assembly(c).matrix(fdm2d.upwind2d(u, c)[0]).toarray()
    # each column of J^T sums to one: every unit of mass at a node goes somewhere
    assert np.allclose(J.T.sum(axis=0), 1.0, atol=1e-13)
    mu0 = np.where(c.stencil.free, rng.random(c.stencil.size), 0.0)
    U = np.broadcast_to(u.reshape(scheme.grid.shape), scheme.shape).copy()
    mu = mc.get_backend("numpy").make_fp_sweep(scheme)(U, mu0.reshape(scheme.grid.shape))
    assert np.allclose(mu[1].ravel(), np.linalg.solve(J.T, mu0), atol=1e-14)
    assert np.abs(mu.reshape(mu.shape[0], -1).sum(axis=1) / mu0.sum() - 1.0).max() <= 1e-14
    assert mu.min() >= 0 and np.all(mu[:, scheme.grid.obstacle] == 0)


def test_newton_failure_names_the_time_step_in_2d():
    p = mc.problems.load("lq2d", Nx=8, Ny=8, Nt=4)
    hjb = mc.HJBFDMSolver(p, newton_tol=1e-30, newton_maxiter=1)
    with pytest.raises(mc.ConvergenceError, match="time index"):
        hjb.solve(np.broadcast_to(p.m_init, p.shape).copy())


def test_hjb_with_the_exact_density_matches_the_lq2d_value_function():
    p = mc.problems.load("lq2d", Nx=32, Ny=32, Nt=32)
    ex = p.exact_solution()
    U = mc.HJBFDMSolver(p).solve(ex.M)
    inner = (np.abs(p.x)[None, :] <= 1) & (np.abs(p.y)[:, None] <= 1)
    assert np.abs(U - ex.U)[:, inner].max() < 0.05
