"""Observed convergence orders of the 2D FDM-FDM scheme against both 2D closed forms.

Three levels, ratio 2 (Nx = Ny = 16, 32, 64), max norm away from the walls; U absolute, M relative to
max |M|. The scheme is first order in h and dt, so log2(e_h / e_{h/2}) should approach 1.

* lq2d (no coupling: one HJB and one FP solve are the fixed point) is time dependent: Nt = N.
* stationary_log2d (F = log m, a real coupling, solved by the coupled iteration) has a stationary
  exact solution, so the time discretisation adds no truncation error: Nt is fixed (8; in 1D the
  errors change by under 10% for Nt from 4 to 16), which keeps the finest level cheap.
"""

import numpy as np
import pytest

import mfg_core as mc

LEVELS = (16, 32, 64)


def orders(errs):
    return np.log2(errs[:-1] / errs[1:])


def check(errs, label):
    oU, oM = orders(errs[:, 0]), orders(errs[:, 1])
    msg = f"{label}: errors U {errs[:, 0]}, M {errs[:, 1]}; orders U {oU}, M {oM}"
    assert np.all(oU >= 0.9), msg
    assert np.all(oM >= 0.8), msg
    assert errs[-1, 1] < 0.05, msg


def _errors(p, U, M, inner):
    ex = p.exact_solution()
    return (np.abs(U - ex.U)[:, inner].max(), np.abs(M - ex.M)[:, inner].max() / np.abs(ex.M).max())


def test_lq2d_separable_closed_form_first_order():
    errs = []
    for N in LEVELS:
        p = mc.problems.load("lq2d", Nx=N, Ny=N, Nt=N)
        # no coupling: U = HJB(anything), M = FP(U) is the solution
        U = mc.HJBFDMSolver(p).solve(np.broadcast_to(p.m_init, p.shape).copy())
        M = mc.FPFDMSolver(p).solve(U)
        inner = (np.abs(p.x)[None, :] <= 1.0) & (np.abs(p.y)[:, None] <= 1.0)  # the closed form lives on R^2
        errs.append(_errors(p, U, M, inner))
    check(np.array(errs), "lq2d")


def test_stationary_log2d_coupled_closed_form_first_order():
    errs = []
    for N in LEVELS:
        p = mc.problems.load("stationary_log2d", Nx=N, Ny=N, Nt=8)
        r = mc.solve(p, coupling="anderson", max_iterations=100, tolerance=1e-10)
        assert r.converged, r.reason
        errs.append(_errors(p, r.U, r.M, np.ones(p.grid.shape, dtype=bool)))  # exact up to the walls
    check(np.array(errs), "stationary_log2d")


@pytest.mark.parametrize("boundary", ["periodic", ("neumann", "periodic")])
def test_stationary_log2d_periodic_axes_give_the_neumann_solution(boundary):
    """cos(2 pi x) is even about the walls, so on a periodic axis the discrete solution is the Neumann
    one (the wrapped neighbour equals the mirrored ghost): the periodic code paths reach the same
    errors, to round-off, as the levels above."""
    runs = []
    for b in ("neumann", boundary):
        p = mc.problems.load("stationary_log2d", Nx=16, Ny=16, Nt=4, boundary=b)
        r = mc.solve(p, coupling="anderson", max_iterations=100, tolerance=1e-12)
        runs.append((p, r))
    (pn, rn), (pp, rp) = runs
    # restrict the Neumann solution to the periodic nodes (a periodic axis drops the node at xmax)
    sl = tuple(slice(0, n) for n in pp.grid.shape)
    assert np.abs(rn.U[(slice(None), *sl)] - rp.U).max() < 1e-10
    assert np.abs(rn.M[(slice(None), *sl)] - rp.M).max() < 1e-9


def test_orders_would_flag_a_zeroth_order_scheme():
    with pytest.raises(AssertionError):
        check(np.array([[1e-2, 1e-2]] * 3), "constant")
