"""Observed convergence orders of the FDM-FDM scheme against closed-form solutions.

Nx and Nt are refined together (ratio 2, three levels); the scheme is first order in dx and dt
(implicit Euler, upwinding), so the observed order log2(e_h / e_{h/2}) should approach 1.
"""

import numpy as np
import pytest

import mfg_core as mc

LEVELS = (50, 100, 200)


def solve(name, N, boundary):
    p = mc.problems.load(name, Nx=N, Nt=N, boundary=boundary)
    it = mc.FixedPointIterator(p, mc.HJBFDMSolver(p), mc.FPFDMSolver(p), thetaUM=0.5)
    r = it.solve(max_iterations=300, tolerance=1e-11)
    assert r.converged, r.reason
    return p, r


def errors(name, boundary, interior):
    out = []
    for N in LEVELS:
        p, r = solve(name, N, boundary)
        ex = p.exact_solution()
        mask = interior(p.x)
        eU = np.abs(r.U - ex.U)[:, mask].max()
        eM = np.abs(r.M - ex.M)[:, mask].max() / np.abs(ex.M).max()
        out.append((eU, eM))
    return np.array(out)


def orders(errs):
    return np.log2(errs[:-1] / errs[1:])


def check(errs, label):
    oU, oM = orders(errs[:, 0]), orders(errs[:, 1])
    msg = f"{label}: errors U {errs[:, 0]}, M {errs[:, 1]}; orders U {oU}, M {oM}"
    assert np.all(oU >= 0.9), msg
    assert np.all(oM >= 0.8), msg
    assert errs[-1, 1] < 0.05, msg


def test_lq_linear_quadratic_closed_form_first_order():
    # the closed form lives on R: compare away from the walls at +-2
    errs = errors("lq", "neumann", lambda x: np.abs(x) <= 1.0)
    check(errs, "lq")


@pytest.mark.parametrize("boundary", ["neumann", "periodic"])
def test_stationary_log_coupling_closed_form_first_order(boundary):
    # a real m-coupling (F = log m): the stationary pair is exact up to the walls
    errs = errors("stationary_log", boundary, lambda x: np.ones_like(x, dtype=bool))
    check(errs, f"stationary_log/{boundary}")


def test_orders_would_flag_a_zeroth_order_scheme():
    """The order check itself can fail: constant errors give order 0."""
    with pytest.raises(AssertionError):
        check(np.array([[1e-2, 1e-2]] * 3), "constant")
