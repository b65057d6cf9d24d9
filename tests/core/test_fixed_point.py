"""FixedPointIterator (damping): convergence, non-convergence, divergence, and the xarray result."""

import json

import numpy as np
import pytest

import mfg_core as mc


def iterator(p, **kw):
    return mc.FixedPointIterator(p, mc.HJBFDMSolver(p), mc.FPFDMSolver(p), **kw)


def test_congestion_defaults_converge_under_standard_damping_within_50_iterations():
    p = mc.problems.load("congestion")
    r = iterator(p, thetaUM=0.5).solve(max_iterations=50, tolerance=1e-6)
    assert r.converged, r.reason
    assert r.iterations <= 50
    assert r.U.shape == r.M.shape == (p.t.size, p.x.size)
    assert r.history["change_U"].shape == (r.iterations,)
    assert max(r.history["change_U"][-1], r.history["change_M"][-1]) < 1e-6
    # the converged pair is a fixed point: one more Picard map changes little
    U1 = mc.HJBFDMSolver(p).solve(r.M)
    assert np.abs(U1 - r.U).max() < 1e-4 * np.abs(r.U).max()


def test_reaching_max_iterations_is_a_result_with_a_reason_not_an_exception():
    p = mc.problems.load("congestion_strong", Nx=50, Nt=50)
    r = iterator(p, thetaUM=0.5).solve(max_iterations=15, tolerance=1e-8)
    assert not r.converged
    assert r.iterations == 15 or "diverged" in r.reason
    assert "tolerance" in r.reason or "diverged" in r.reason


def test_non_finite_iterate_raises_naming_the_iteration(poisoned_fp):
    p = mc.problems.load("congestion", Nx=30, Nt=20)


    it = mc.FixedPointIterator(p, mc.HJBFDMSolver(p), poisoned_fp(p, at=3), thetaUM=0.5)
    with pytest.raises(mc.DivergenceError, match="iteration 3"):
        it.solve(max_iterations=10, tolerance=1e-12)


@pytest.mark.parametrize("theta", [0.0, -0.1, 1.5, "half"])
def test_bad_theta_is_rejected(theta):
    p = mc.problems.load("congestion", Nx=20, Nt=10)
    with pytest.raises(ValueError, match="thetaUM"):
        iterator(p, thetaUM=theta)


def test_bad_solve_arguments_are_rejected():
    p = mc.problems.load("congestion", Nx=20, Nt=10)
    with pytest.raises(ValueError, match="max_iterations"):
        iterator(p).solve(max_iterations=0)
    with pytest.raises(ValueError, match="tolerance"):
        iterator(p).solve(tolerance=-1)


def test_theta_one_is_plain_picard_and_lq_converges_in_two_iterations():
    # no m-coupling: HJB(M) does not depend on M, so plain Picard is exact after one map
    p = mc.problems.load("lq", Nx=40, Nt=40)
    r = iterator(p, thetaUM=1.0).solve(max_iterations=5, tolerance=1e-12)
    assert r.converged and r.iterations == 2


def test_to_xarray_has_fields_history_and_json_clean_attrs():
    p = mc.problems.load("congestion", Nx=30, Nt=20, kappa=0.5)
    r = iterator(p, thetaUM=0.5).solve(max_iterations=40, tolerance=1e-6)
    ds = r.to_xarray()
    assert ds["u"].dims == ("t", "x") and ds["m"].dims == ("t", "x")
    np.testing.assert_array_equal(ds["u"].values, r.U)
    np.testing.assert_array_equal(ds["x"].values, p.x)
    assert ds.sizes["iteration"] == r.iterations
    for key in ("change_U", "change_M", "mass_error"):
        assert ds[key].dims == ("iteration",)
    for key in ("problem_Nx", "problem_sigma", "problem_boundary", "problem_params", "solver_thetaUM",
                "converged", "reason"):
        assert key in ds.attrs, key
    assert json.loads(ds.attrs["problem_params"])["kappa"] == 0.5
    json.dumps(ds.attrs)  # plain JSON
    assert np.allclose(ds["mass"].values, 1.0, atol=1e-12)


def test_a_coupling_that_blows_up_mid_iteration_is_divergence_naming_the_iteration():
    """A solver's NonFiniteError inside the loop becomes DivergenceError with the iteration."""
    calls = {"n": 0, "bad": None}

    def F(m):
        calls["n"] += 1  # one call per HJB solve once the problem is built
        return np.full_like(m, np.inf) if calls["n"] == calls["bad"] else m

    p = mc.problems.load("congestion", Nx=20, Nt=10, coupling=F)
    calls["bad"] = calls["n"] + 3  # after validation: the HJB solve of iteration 3
    with pytest.raises(mc.DivergenceError, match="iteration 3"):
        iterator(p).solve(max_iterations=10, tolerance=1e-12)


def test_other_solver_failures_keep_their_type_and_name_the_iteration():
    p = mc.problems.load("congestion", Nx=20, Nt=10)
    it = mc.FixedPointIterator(p, mc.HJBFDMSolver(p, newton_tol=1e-30, newton_maxiter=1), mc.FPFDMSolver(p))
    with pytest.raises(mc.ConvergenceError) as info:
        it.solve(max_iterations=5, tolerance=1e-12)
    assert not isinstance(info.value, mc.DivergenceError)
    assert "iteration 1" in "".join(getattr(info.value, "__notes__", []))


def test_non_finite_initial_guess_is_rejected():
    p = mc.problems.load("congestion", Nx=20, Nt=10)
    U0, M0 = iterator(p).initial_guess()
    U0[3, 3] = np.nan
    with pytest.raises(ValueError, match="initial U"):
        iterator(p).solve(initial=(U0, M0))
