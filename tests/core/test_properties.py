"""Property-based tests (hypothesis): invariants of the FDM scheme over random data.

For random sigma, kappa, initial densities and boundaries: the FP solver conserves the discrete
mass to round-off and keeps m >= 0; the coupled iteration either converges or says clearly why not.
"""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mfg_core as mc

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def problems(draw):
    sigma = draw(st.floats(0.05, 1.5))
    kappa = draw(st.floats(0.0, 10.0))
    boundary = draw(st.sampled_from(["neumann", "periodic"]))
    nx = draw(st.integers(8, 40))
    nt = draw(st.integers(2, 30))
    # m0: a random non-negative mixture of bumps, possibly with zeros and touching the walls
    centres = draw(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=3))
    widths = draw(st.lists(st.floats(0.01, 0.5), min_size=len(centres), max_size=len(centres)))
    cut = draw(st.floats(0.0, 0.5))

    def m0(x):
        m = sum(np.exp(-((x - c) ** 2) / (2 * w * w)) for c, w in zip(centres, widths))
        m = np.where(m > cut * m.max(), m, 0.0)
        return m

    g_weight = draw(st.floats(-5.0, 5.0))
    return mc.MFGProblem(
        xmin=0.0, xmax=1.0, Nx=nx, T=draw(st.floats(0.1, 2.0)), Nt=nt, sigma=sigma,
        coupling=lambda m: kappa * m, coupling_dm=lambda m: np.full_like(m, kappa),
        terminal_cost=lambda x: g_weight * (x - 0.7) ** 2, m0=m0, boundary=boundary,
    )


@SETTINGS
@given(problems(), st.floats(-20, 20))
def test_fp_conserves_mass_and_positivity_for_any_drift(problem, amplitude):
    rng = np.random.default_rng(0)
    U = amplitude * rng.standard_normal(problem.shape).cumsum(axis=1) / problem.x.size
    M = mc.FPFDMSolver(problem).solve(U)
    assert np.abs(problem.mass(M) - 1.0).max() <= 1e-12
    assert M.min() >= 0.0


@SETTINGS
@given(problems(), st.sampled_from([0.3, 0.5, 1.0]))
def test_coupled_iteration_converges_or_reports_why(problem, theta):
    it = mc.FixedPointIterator(problem, mc.HJBFDMSolver(problem), mc.FPFDMSolver(problem), thetaUM=theta)
    r = it.solve(max_iterations=30, tolerance=1e-6)
    assert np.all(np.isfinite(r.U)) and np.all(np.isfinite(r.M))
    assert np.all(r.history["mass_error"] <= 1e-12)
    assert np.all(r.history["min_M"] >= 0.0)
    if r.converged:
        assert max(r.history["change_U"][-1], r.history["change_M"][-1]) < 1e-6
        assert r.reason.startswith("converged")
    else:
        assert ("max_iterations" in r.reason) or ("diverged" in r.reason)
