"""FPFDMSolver conserves the discrete (trapezoidal) mass to round-off and keeps m >= 0."""

import numpy as np
import pytest

import mfg_core as mc


@pytest.mark.parametrize("boundary", ["neumann", "periodic"])
@pytest.mark.parametrize("name", mc.problems.names())
def test_mass_conserved_every_time_step_and_positivity(name, boundary):
    p = mc.problems.load(name, Nx=60, Nt=40, boundary=boundary)
    it = mc.FixedPointIterator(p, mc.HJBFDMSolver(p), mc.FPFDMSolver(p), thetaUM=0.5)
    r = it.solve(max_iterations=8, tolerance=1e-12)
    # the iterate and every FP solve along the way
    assert np.abs(p.mass(r.M) - 1.0).max() <= 1e-12
    assert r.M.min() >= 0.0
    assert np.all(r.history["mass_error"] <= 1e-12)
    M = mc.FPFDMSolver(p).solve(r.U)
    assert np.abs(p.mass(M) - 1.0).max() <= 1e-12
    assert M.min() >= 0.0


def test_mass_is_conserved_in_the_trapezoidal_norm_not_the_plain_sum():
    """With walls on the end nodes, sum(m) * dx is not the conserved quantity."""
    p = mc.problems.load("congestion", Nx=30, Nt=30, m0_mean=0.05)  # mass touching the wall
    U = mc.HJBFDMSolver(p).solve(np.tile(p.m_init, (p.Nt + 1, 1)))
    M = mc.FPFDMSolver(p).solve(U)
    assert np.abs(M @ p.weights - 1).max() < 1e-13
    assert np.abs(M.sum(axis=1) * p.dx - 1).max() > 1e-6


def test_fp_of_a_flat_value_function_is_the_heat_equation():
    """u = const gives no drift: FP reduces to the implicit heat equation (symmetric spreading)."""
    p = mc.problems.load("congestion", Nx=200, Nt=100, m0_mean=0.5, sigma=0.1, T=0.5, boundary="periodic")
    M = mc.FPFDMSolver(p).solve(np.zeros(p.shape))
    assert np.allclose(M[-1], M[-1][::-1][np.r_[-1, 0:p.x.size - 1]], atol=1e-12)  # mirror about 0.5
    var = lambda m: p.mass(m * (p.x - 0.5) ** 2)  # noqa: E731
    # variance grows like 2 nu t (up to the O(dx^2 + dt) scheme error)
    assert var(M[-1]) - var(M[0]) == pytest.approx(2 * p.nu * p.T, rel=0.02)
