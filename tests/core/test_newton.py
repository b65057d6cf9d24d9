"""Newton on the whole discrete system: the Jacobian, the linear solves, convergence, globalisation.

Measured numbers in comments are from Nx = Nt = 50 on numpy (the assertions have margins).
"""


import numpy as np
import pytest

import mfg_core as mc
from mfg_core import methods
from mfg_core import newton as nw
from mfg_core.backends.numpy import fdm

N = 50


def system(p, scale=1.0):
    return nw.DiscreteSystem(p.scheme, nw.SystemData.of(p), scale)


def away_from_kinks(p, seed=0):
    """Random (U, M) whose neighbour differences are all >= 1e-2 in size: no upwind kink within reach
    of a finite difference."""
    rng = np.random.default_rng(seed)
    steps = rng.choice([-1.0, 1.0], size=p.shape) * (0.01 + rng.random(p.shape)) * p.dx
    U = np.cumsum(steps, axis=1)
    if p.periodic:  # the seam difference too
        bad = np.abs(U[:, 0] - U[:, -1]) < 0.01 * p.dx
        U[bad, 0] += 0.5 * p.dx
    M = 0.5 + rng.random(p.shape)
    return U, M


# ---------------------------------------------------------------------------------------------
# the Jacobian


@pytest.mark.parametrize("boundary", ["neumann", "periodic"])
@pytest.mark.parametrize("name, scale", [("congestion", 1.0), ("stationary_log", 0.7)])
def test_jacobian_matches_finite_differences_of_the_residual(boundary, name, scale):
    p = mc.problems.load(name, Nx=9, Nt=4, boundary=boundary)
    S = system(p, scale)
    U, M = away_from_kinks(p)
    z = S.pack(U, M)
    J = S.jacobian(U, M).toarray()
    h = 1e-6
    fd = np.empty_like(J)
    for j in range(z.size):
        e = np.zeros(z.size)
        e[j] = h
        fd[:, j] = (S.residual_vector(z + e) - S.residual_vector(z - e)) / (2 * h)
    assert np.abs(J - fd).max() <= 1e-6 * np.abs(J).max()
    # the upwind derivative of the FP rows is really there (not just the adjoint blocks)
    fp_rows, u_cols = np.arange(1, z.size, 2), np.arange(0, z.size, 2)
    assert np.abs(J[np.ix_(fp_rows, u_cols)]).max() > 1.0


@pytest.mark.parametrize("boundary", ["neumann", "periodic"])
def test_block_form_is_the_assembled_jacobian_and_the_block_solves_invert_their_blocks(boundary):
    p = mc.problems.load("congestion", Nx=12, Nt=6, boundary=boundary)
    S = system(p)
    U, M = away_from_kinks(p, seed=3)
    lin = S.linearise(U, M)
    J = lin.assemble("csr")
    rng = np.random.default_rng(1)
    dU, dM = rng.standard_normal((2, S.Nt, S.N))
    hjb, fp = lin.matvec(dU, dM)
    np.testing.assert_allclose(S.interleave(hjb, fp), J @ S.interleave(dU, dM), rtol=0, atol=1e-11)
    # back solves the HJB rows for dU with dM = 0; fwd the FP rows for dM with dU = 0
    x = lin.back(dU)
    np.testing.assert_allclose(lin.matvec(x, np.zeros_like(x))[0], dU, atol=1e-12)
    y = lin.fwd(dM)
    np.testing.assert_allclose(lin.matvec(np.zeros_like(y), y)[1], dM, atol=1e-12)
    # both linear solvers solve J d = r
    for solve in (lambda: nw.solve_direct(lin, dU, dM), lambda: nw.solve_gmres(lin, dU, dM, 1e-12, 50, 500)):
        ls = solve()
        np.testing.assert_allclose(J @ S.interleave(ls.dU, ls.dM), S.interleave(dU, dM), atol=1e-9)


def test_the_picard_solution_solves_the_newton_system():
    p = mc.problems.load("congestion", Nx=30, Nt=30)
    r = mc.solve(p, coupling="anderson", max_iterations=200, tolerance=1e-12)
    assert r.converged
    assert system(p).max_residual(r.U, r.M) < 1e-10  # the same discrete system


# ---------------------------------------------------------------------------------------------
# convergence


def residual_ratios(r):
    res = r.history["newton_residual"][r.history["phase"] != nw.PHASE_WARMUP]
    return res, res[1:] / res[:-1] ** 2


@pytest.mark.parametrize("name", ["congestion", "congestion_strong"])
def test_newton_converges_quadratically_to_the_anderson_solution(name):
    p = mc.problems.load(name, Nx=N, Nt=N)
    r = mc.solve(p, coupling="newton", max_iterations=30, tolerance=1e-10)
    assert r.converged, r.reason
    h = r.history
    assert h["newton_residual"][-1] <= 1e-10
    assert r.extra["newton_steps"] == r.iterations <= 10  # measured 5 on both
    assert r.extra["warmup_iterations"] == 0 and np.all(h["phase"] == nw.PHASE_NEWTON)
    res, ratio = residual_ratios(r)
    # quadratic: r_{k+1} <= C r_k^2 over the last three steps (measured C <= 0.2), and far faster than linear
    assert np.all(ratio[-3:] < 1.0), ratio
    assert res[-1] < 1e-4 * res[-3]
    assert np.all(h["linear_iterations"] == 1)  # direct solve at this size
    assert np.all(h["mass_error"] <= 1e-12) and np.all(h["min_M"] >= 0.0)
    aa = mc.solve(p, coupling="anderson", max_iterations=300, tolerance=1e-11)
    assert aa.converged
    assert np.abs(r.U - aa.U).max() < 1e-8 and np.abs(r.M - aa.M).max() < 1e-8
    # the converged iterate's Picard residual is recorded (comparable across methods)
    assert max(h["residual_U"][-1], h["residual_M"][-1]) < 1e-9


def test_warmup_is_counted_separately_and_newton_still_takes_at_most_10_steps():
    p = mc.problems.load("congestion_strong", Nx=N, Nt=N)
    for method in ("damping", "anderson"):
        r = mc.solve(p, coupling="newton", max_iterations=40, tolerance=1e-10, warmup_iterations=4,
                     warmup_method=method)
        assert r.converged, r.reason
        h = r.history
        warm = h["phase"] == nw.PHASE_WARMUP
        assert warm.sum() == r.extra["warmup_iterations"] == 4
        assert h["newton_event"][3] == nw.EVENT_WARMUP_DONE and np.all(h["linear_iterations"][warm] == 0)
        assert r.extra["newton_steps"] == r.iterations - 4 <= 10
        assert "4 warm-up iterations" in r.reason
        assert np.all(h["mass_error"] <= 1e-12) and np.all(h["min_M"] >= 0.0)
        if method == "anderson":  # Anderson's own keys, neutral in the Newton steps
            assert np.all(h["anderson_status"][~warm] == -1) and h["accepted"][~warm].all()


def test_the_heat_initial_guess_reaches_the_same_solution():
    # U = 0 everywhere (also at t = T, where U = g is data): Newton works with the data rows in place
    p = mc.problems.load("congestion_strong", Nx=30, Nt=30)
    ref = mc.solve(p, coupling="newton", tolerance=1e-10)
    for kw in ({}, {"warmup_iterations": 3}, {"continuation": "coupling"}):
        r = mc.solve(p, coupling="newton", tolerance=1e-10, initial_guess="heat", **kw)
        assert r.converged, (kw, r.reason)
        assert np.abs(r.U - ref.U).max() < 1e-9 and np.abs(r.M - ref.M).max() < 1e-9


def test_direct_and_gmres_take_the_same_newton_steps():
    p = mc.problems.load("congestion_strong", Nx=30, Nt=30)
    d = mc.solve(p, coupling="newton", max_iterations=30, tolerance=1e-10, linear_solver="direct")
    g = mc.solve(p, coupling="newton", max_iterations=30, tolerance=1e-10, linear_solver="gmres")
    assert d.converged and g.converged
    assert d.iterations == g.iterations
    assert np.all(g.history["linear_iterations"] > 1)  # Krylov iterations, counted
    np.testing.assert_allclose(g.history["newton_residual"][:-1], d.history["newton_residual"][:-1], rtol=1e-2)
    assert np.abs(d.U - g.U).max() < 1e-9 and np.abs(d.M - g.M).max() < 1e-9
    assert np.all(g.history["mass_error"] <= 1e-12)


def test_positivity_damping_and_projection_keep_m_nonnegative():
    # evacuation from the terminal guess: the first Newton step pushes the near-zero tails negative
    p = mc.problems.load("evacuation", Nx=N, Nt=N)
    r = mc.solve(p, coupling="newton", max_iterations=30, tolerance=1e-10)
    assert r.converged, r.reason
    h = r.history
    assert h["step_bound"].min() < 1e-3 and h["projected"].any()  # measured bound 1.7e-6 at step 1
    assert np.all(h["min_M"] >= 0.0) and np.all(h["mass_error"] <= 1e-12)
    assert r.M.min() > 0


# ---------------------------------------------------------------------------------------------
# continuation


def test_viscosity_sweep_newton_converges_wherever_any_method_does():
    """congestion at N = 40, sigma 0.5 / 0.2 / 0.1: damped Picard (thetaUM 0.5, 150 iterations)
    converges only at 0.5 (measured 29 iterations; it does not at 0.3 either), Anderson at 0.5 and
    0.2 (15, 70) but not at 0.1; Newton with continuation in sigma (from 5 sigma, 4 stages) converges
    at every value (measured 10 / 15 / 17 Newton steps, stages included)."""
    converged = {}
    for sigma in (0.5, 0.2, 0.1):
        p = mc.problems.load("congestion", Nx=40, Nt=40, sigma=sigma)
        for method in ("damping", "anderson"):
            converged[method, sigma] = mc.solve(p, coupling=method, max_iterations=150, tolerance=1e-8).converged
        r = mc.solve(p, coupling="newton", max_iterations=60, tolerance=1e-10, continuation="sigma")
        assert r.converged, (sigma, r.reason)
        converged["newton", sigma] = True
        h = r.history
        values = h["continuation_value"]
        assert values[0] == pytest.approx(5 * sigma) and values[-1] == pytest.approx(sigma)
        assert np.all(np.diff(values) <= 1e-15)  # monotone towards the target (no back-off here)
        assert r.extra["continuation_stages"] >= 1
        assert np.all(h["phase"][h["continuation_value"] > sigma] == nw.PHASE_CONTINUATION)
    assert converged["damping", 0.5] and not converged["damping", 0.1]
    assert not any(converged[m, s] for m in ("damping", "anderson") for s in (0.1,))


def test_a_failed_stage_backs_off_and_the_history_says_so():
    p = mc.problems.load("congestion_strong", Nx=N, Nt=N, sigma=0.05)
    # straight from sigma = 0.5 to 0.05 in one stage, at most 4 Newton steps a stage: it must back off
    r = mc.solve(p, coupling="newton", max_iterations=60, tolerance=1e-10, continuation="sigma",
                 continuation_start=0.5, continuation_steps=1, stage_iterations=4)
    assert r.converged, r.reason
    h = r.history
    back = np.flatnonzero(h["newton_event"] == nw.EVENT_BACKOFF)
    assert back.size == r.extra["backoffs"] >= 1
    assert not h["accepted"][back].any()
    # after the back-off: an intermediate value between the last converged one and the target
    after = h["continuation_value"][back[0] + 1]
    assert 0.05 < after < 0.5
    np.testing.assert_array_equal(h["newton_event"][h["newton_event"] == nw.EVENT_STAGE_DONE], nw.EVENT_STAGE_DONE)
    assert "1 back-offs" in r.reason


def test_coupling_continuation_reaches_the_target_solution():
    p = mc.problems.load("congestion_strong", Nx=30, Nt=30)
    r = mc.solve(p, coupling="newton", max_iterations=60, tolerance=1e-10, continuation="coupling")
    plain = mc.solve(p, coupling="newton", max_iterations=60, tolerance=1e-10)
    assert r.converged and plain.converged
    assert r.history["continuation_value"][0] == 0.0 and r.history["continuation_value"][-1] == 1.0
    assert np.abs(r.U - plain.U).max() < 1e-9 and np.abs(r.M - plain.M).max() < 1e-9


def test_a_step_without_decrease_stops_with_a_reason(monkeypatch):
    p = mc.problems.load("congestion", Nx=20, Nt=10)
    real = nw.solve_direct

    def uphill(lin, rU, rM):
        ls = real(lin, rU, rM)
        ls.dU, ls.dM = -ls.dU, -ls.dM
        return ls

    monkeypatch.setattr(nw, "solve_direct", uphill)
    r = mc.solve(p, coupling="newton", max_iterations=20, tolerance=1e-10)
    assert r.status == "not_converged" and r.iterations == 1
    assert "line search" in r.reason and "continuation" in r.reason
    assert r.history["newton_event"][-1] == nw.EVENT_FAILED


# ---------------------------------------------------------------------------------------------
# the method by name


def test_registry_entry_and_refusals():
    m = methods.get("coupling", "newton")
    assert "newton" in methods.names("coupling")
    assert m.runs_on() == ("numpy", "numba") and m.dims == (1, 2)  # 2D: tests/core/test_newton2d.py
    m.check("numba", 1)
    for backend in ("jax", "torch"):  # what mc.build checks before building anything
        with pytest.raises(ValueError, match=r"does not run on backend '%s'; it runs on \['numpy', 'numba'\]"
                           % backend):
            m.check(backend, 1)
    with pytest.raises(ValueError, match="3D"):
        m.check("numpy", 3)
    p = mc.problems.load("congestion", Nx=10, Nt=5)
    with pytest.raises(ValueError, match="fp method 'particle'"):
        mc.build(p, fp="particle", coupling="newton")
    assert m.works_with("fdm") and not m.works_with("particle")
    assert all(methods.get("coupling", c).works_with("particle") for c in methods.names("coupling") if c != "newton")
    # the loop built by hand with another FP solver is refused when it starts
    from mfg_core.fixed_point import FixedPointLoop
    from mfg_core.particles import FPParticleSolver

    loop = FixedPointLoop(p, mc.HJBFDMSolver(p), FPParticleSolver(p, num_particles=10), nw.Newton())
    with pytest.raises(ValueError, match="FPFDMSolver"):
        loop.run(5, 1e-6, warmup=False)


@pytest.mark.parametrize("option, value", [
    ("linear_solver", "lu"), ("continuation", "viscosity"), ("warmup_method", "newton"),
    ("system_tolerance", 0.0), ("positivity_fraction", 1.5), ("stage_iterations", 0),
    ("picard_residual", True), ("continuation_start", -1.0),
])
def test_bad_options_are_refused_by_name(option, value):
    p = mc.problems.load("congestion", Nx=10, Nt=5)
    kw = {"continuation": "sigma"} if option == "continuation_start" else {}
    with pytest.raises(ValueError, match=option):
        mc.build(p, coupling="newton", **{option: value, **kw})


def test_result_goes_to_xarray_with_the_newton_history():
    p = mc.problems.load("congestion", Nx=20, Nt=10)
    r = mc.solve(p, coupling="newton", max_iterations=20, tolerance=1e-10, warmup_iterations=2)
    ds = r.to_xarray()
    for key in ("change_U", "change_M", "residual_U", "residual_M", "mass_error", "min_M", "phase",
                "newton_event", "newton_residual", "linear_iterations", "line_search_step",
                "continuation_value"):
        assert ds[key].dims == ("iteration",) and ds[key].size == r.iterations, key
    assert ds.attrs["solver_coupling"] == "newton" and ds.attrs["newton_steps"] == r.iterations - 2
    assert ds.attrs["warmup_iterations"] == 2
    assert '"2": "newton"' in ds.attrs["solver_phase_codes"]
    assert ds.attrs["status"] == "converged"


# ---------------------------------------------------------------------------------------------
# the attractive quick-start problem: two equilibria, and which methods can reach which


def picard_eigenvalues(p, U, M, count=3):
    """Largest eigenvalues of the derivative of the Picard map M -> FP(HJB(M)) at (U, M): the Schur
    operator K of the Newton linearisation (ARPACK on its products)."""
    from scipy.sparse.linalg import LinearOperator, eigs

    S = system(p)
    lin = S.linearise(U, M)
    n = S.Nt * S.N
    K = LinearOperator((n, n), dtype=np.float64,
                       matvec=lambda x: lin.fwd(lin.A_MU(lin.back(lin.D * x.reshape(S.Nt, S.N)))).ravel())
    ev = eigs(K, k=count, which="LM", return_eigenvectors=False, v0=np.ones(n), tol=1e-8)
    return ev[np.argsort(-np.abs(ev))]


def test_attractive_problem_has_a_picard_stable_and_a_picard_unstable_equilibrium():
    p = mc.problems.load("attractive_quickstart")
    damp = mc.solve(p, coupling="damping", max_iterations=200, tolerance=1e-10)
    acc = mc.solve(p, coupling="anderson", max_iterations=200, tolerance=1e-10)
    newton = mc.solve(p, coupling="newton", max_iterations=40, tolerance=1e-10, warmup_iterations=10)
    assert damp.converged and acc.converged and newton.converged
    for r in (damp, acc, newton):  # all three are solutions of the one discrete system
        assert system(p).max_residual(r.U, r.M) < 1e-8
    assert np.abs(acc.M - damp.M).max() > 10  # two peaks (max m 16.7) against one (39.7)
    assert np.abs(newton.M - damp.M).max() < 1e-8 * damp.M.max() and newton.extra["newton_steps"] <= 10  # measured 7
    one = picard_eigenvalues(p, damp.U, damp.M)
    two = picard_eigenvalues(p, acc.U, acc.M)
    # one peak: top eigenvalue 0.44, damped multiplier 0.5 + 0.5 * 0.44 = 0.72 -- damping's rate
    assert abs(one[0]) < 0.6 and abs(0.5 + 0.5 * one[0]) < 0.8
    # two peaks: a real eigenvalue 3.75 > 1, so no damping converges there; Anderson does
    assert two[0].real > 2 and abs(two[0].imag) < 1e-8
    # without a warm-up, Newton's line search stalls on this problem and says so
    bare = mc.solve(p, coupling="newton", max_iterations=40, tolerance=1e-10)
    assert bare.status == "not_converged" and "warmup_iterations" in bare.reason


# ---------------------------------------------------------------------------------------------
# numba: the linear solves' time sweeps compiled, the rest the same Newton


@pytest.mark.parametrize("boundary", ["neumann", "periodic"])
def test_numba_block_sweeps_solve_the_same_block_bidiagonal_systems(boundary):
    pytest.importorskip("numba")
    from mfg_core.backends import get_backend

    p = mc.problems.load("congestion", Nx=30, Nt=12, boundary=boundary)
    data = nw.SystemData.of(p)
    rng = np.random.default_rng(3)
    U, M = rng.standard_normal(p.shape), rng.uniform(0.1, 1.0, p.shape)
    ref = nw.discrete_system(p.scheme, data).linearise(U, M)
    lin = nw.discrete_system(p.scheme, data, backend=get_backend("numba")).linearise(U, M)
    r = rng.standard_normal((p.Nt, p.Nx + 1 - (boundary == "periodic")))
    for name in ("back", "fwd"):
        x, x_ref = getattr(lin, name)(r), getattr(ref, name)(r)
        assert np.abs(x - x_ref).max() <= 1e-12 * np.abs(x_ref).max(), name
    # and they are solutions: the block-bidiagonal residuals vanish
    x = lin.back(r)
    lower, diag, upper = lin.jbands
    right, left = fdm.neighbours(x, p.grid.axes[0].periodic)
    res = diag * x + lower * left + upper * right - r
    res[:-1] -= x[1:]
    assert np.abs(res).max() <= 1e-12 * np.abs(r).max()


def test_newton_on_numba_takes_numpys_steps_to_the_same_solution():
    pytest.importorskip("numba")
    p = mc.problems.load("congestion", Nx=120, Nt=100)  # 24,000 unknowns: the GMRES path
    # the loop's warm-up compiles the rule's sweeps too (not timed as a Newton step)
    assert mc.build(p, fp="fdm", coupling="newton", backend="numba").warmup() >= 0.0
    a = mc.solve(p, fp="fdm", coupling="newton", backend="numpy", tolerance=1e-10)
    b = mc.solve(p, fp="fdm", coupling="newton", backend="numba", tolerance=1e-10)
    assert a.converged and b.converged and a.iterations == b.iterations
    assert list(a.history["linear_iterations"]) == list(b.history["linear_iterations"])
    assert np.abs(a.U - b.U).max() <= 1e-10 and np.abs(a.M - b.M).max() <= 1e-10


def test_a_backend_without_block_sweeps_is_refused_by_name():
    from mfg_core.backends import get_backend

    p = mc.problems.load("congestion", Nx=10, Nt=5)
    with pytest.raises(ValueError, match="backend 'jax' has no block time sweeps"):
        get_backend("jax").make_block_sweeps(p.scheme)
