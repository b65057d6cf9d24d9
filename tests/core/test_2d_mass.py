"""2D FP-FDM: mass within 1e-12 of 1 at every time step and m >= 0, on every named 2D problem (the
obstacle included: m = 0 on blocked nodes) and, by hypothesis, over random 2D problems (sigma, kappa,
m0, boundary per axis, random rectangular obstacles) and random drifts."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mfg_core as mc

NAMED_2D = [n for n in mc.problems.names() if n.endswith("2d")]
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(problem, M):
    assert np.abs(problem.mass(M) - 1.0).max() <= 1e-12
    assert M.min() >= 0.0
    if problem.grid.obstacle is not None:
        assert np.all(M[:, problem.grid.obstacle] == 0.0)


@pytest.mark.parametrize("boundary", ["neumann", ("periodic", "neumann")])
@pytest.mark.parametrize("name", NAMED_2D)
def test_named_2d_problems_conserve_mass_and_positivity(name, boundary):
    p = mc.problems.load(name, Nx=20, Ny=16, Nt=10, boundary=boundary)
    r = mc.solve(p, fp="fdm", coupling="damping", max_iterations=4, tolerance=1e-12)
    _check(p, r.M)
    assert np.all(r.history["mass_error"] <= 1e-12) and np.all(r.history["min_M"] >= 0)
    # and for a rough, strong drift: the scheme's invariants do not depend on U being a solution
    rng = np.random.default_rng(1)
    U = 30.0 * rng.standard_normal(p.shape)
    _check(p, mc.FPFDMSolver(p).solve(U))


def test_the_crowd_goes_around_the_pillar_to_the_exit():
    p = mc.problems.load("evacuation2d", Nx=16, Ny=16, Nt=16)
    r = mc.solve(p, coupling="anderson", max_iterations=60, tolerance=1e-5)
    assert r.converged, r.reason
    _check(p, r.M)
    # the room, the pillar and the exit are symmetric about y = 1/2, and so is the crowd
    assert np.abs(r.M - r.M[:, ::-1, :]).max() < 1e-10
    right = p.x > p.params["pillar_x"] + p.params["pillar_half_width"]
    assert (p.weights * r.M[0])[:, right].sum() == 0.0
    assert (p.weights * r.M[-1])[:, right].sum() > 0.5  # most of it is past the pillar at T


@st.composite
def problems_2d(draw):
    sigma = draw(st.floats(0.05, 1.5))
    kappa = draw(st.floats(0.0, 10.0))
    bx = draw(st.sampled_from(["neumann", "periodic"]))
    by = draw(st.sampled_from(["neumann", "periodic"]))
    nx, ny = draw(st.integers(6, 16)), draw(st.integers(6, 16))
    nt = draw(st.integers(2, 8))
    # up to two rectangular obstacles, each at most 40% of a side, anywhere (also on the walls)
    rects = draw(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0.05, 0.4), st.floats(0.05, 0.4)),
                          max_size=2))

    def obstacle(x, y):
        out = np.zeros(x.shape, dtype=bool)
        for cx, cy, w, h in rects:
            out |= (np.abs(x - cx) <= w / 2) & (np.abs(y - cy) <= h / 2)
        return out

    centres = draw(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=3))
    width = draw(st.floats(0.05, 0.5))

    def m0(x, y):
        m = sum(np.exp(-((x - a) ** 2 + (y - b) ** 2) / (2 * width**2)) for a, b in centres)
        return np.where(obstacle(x, y), 0.0, m + 1e-3)  # positive on every free node: none is cut off

    g_weight = draw(st.floats(-5.0, 5.0))
    return mc.MFGProblem(
        xmin=0.0, xmax=1.0, Nx=nx, ymin=0.0, ymax=1.0, Ny=ny, T=draw(st.floats(0.1, 2.0)), Nt=nt, sigma=sigma,
        coupling=lambda m: kappa * m, coupling_dm=lambda m: np.full_like(m, kappa),
        terminal_cost=lambda x, y: g_weight * ((x - 0.7) ** 2 + (y - 0.2) ** 2), m0=m0, boundary=(bx, by),
        obstacle=obstacle if rects else None,
    )


@SETTINGS
@given(problems_2d(), st.floats(-20, 20))
def test_fp_conserves_mass_and_positivity_for_any_2d_drift(problem, amplitude):
    rng = np.random.default_rng(0)
    U = amplitude * rng.standard_normal(problem.shape).cumsum(axis=2).cumsum(axis=1) / problem.grid.size
    _check(problem, mc.FPFDMSolver(problem).solve(U))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems_2d(), st.sampled_from([0.3, 0.5, 1.0]))
def test_coupled_2d_iteration_keeps_the_invariants(problem, theta):
    r = mc.solve(problem, coupling="damping", thetaUM=theta, max_iterations=6, tolerance=1e-6)
    assert np.all(np.isfinite(r.U)) and np.all(np.isfinite(r.M))
    assert np.all(r.history["mass_error"] <= 1e-12) and np.all(r.history["min_M"] >= 0.0)
    _check(problem, r.M)
    assert r.converged or "max_iterations" in r.reason or "diverged" in r.reason
