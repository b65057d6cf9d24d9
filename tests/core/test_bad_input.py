"""Bad API input is a ValueError naming the parameter -- never a bare TypeError, a truncation, a
dropped imaginary part or a stop that is silently switched off (the bad-input issue's API list)."""

import math

import numpy as np
import pytest

import mfg_core as mc
from mfg_core.kde import kde_on_grid


@pytest.fixture(scope="module")
def loop():
    p = mc.problems.load("congestion", Nx=10, Nt=5)
    return mc.FixedPointIterator(p, mc.HJBFDMSolver(p), mc.FPFDMSolver(p))


@pytest.mark.parametrize("kwargs, name", [
    (dict(tolerance=math.inf), "tolerance"),       # used to converge after one iteration
    (dict(tolerance=math.nan), "tolerance"),
    (dict(tolerance="1e-6"), "tolerance"),         # used to raise a bare TypeError
    (dict(tolerance=[1e-6]), "tolerance"),
    (dict(tolerance=0.0), "tolerance"),
    (dict(tolerance=1.0), "tolerance"),
    (dict(tolerance=True), "tolerance"),
    (dict(max_iterations=None), "max_iterations"),  # bare TypeError
    (dict(max_iterations=2.7), "max_iterations"),   # used to be truncated to 2
    (dict(max_iterations="5"), "max_iterations"),   # used to be accepted
    (dict(max_iterations=True), "max_iterations"),
    (dict(max_iterations=0), "max_iterations"),
    (dict(blowup_factor=math.nan), "blowup_factor"),  # used to switch the blow-up stop off
    (dict(blowup_factor=0.5), "blowup_factor"),
    (dict(initial_guess="zero"), "initial_guess"),
])
def test_solve_arguments_are_refused_naming_them(loop, kwargs, name):
    with pytest.raises(ValueError, match=name):
        loop.solve(**kwargs)


@pytest.mark.parametrize("kwargs, name", [
    (dict(max_iterations=2.0), "max_iterations"),
    (dict(tolerance=float("inf")), "tolerance"),
    (dict(thetaUM="0.5"), "thetaUM"),
    (dict(thetaUM=math.nan), "thetaUM"),
    (dict(anderson_depth=2.0), "anderson_depth"),
    (dict(num_particles=100.5), "num_particles"),
    (dict(nonsense=1), "nonsense"),
])
def test_mc_solve_refuses_bad_options_before_any_work(kwargs, name):
    p = mc.problems.load("congestion", Nx=10, Nt=5)
    coupling = "anderson" if "anderson_depth" in kwargs else "damping"
    fp = "particle" if "num_particles" in kwargs else "fdm"
    with pytest.raises(ValueError, match=name):
        mc.solve(p, fp=fp, coupling=coupling, **kwargs)


@pytest.mark.parametrize("field", ["m0", "potential", "terminal_cost", "coupling"])
def test_a_callable_returning_complex_values_is_refused(field):
    good = dict(m0=lambda x: np.exp(-x**2))
    bad = (lambda m: m + 0j) if field == "coupling" else (lambda x: np.exp(-x**2) + 1e-3j)
    with pytest.raises(ValueError, match=f"{field}.*complex"):
        mc.MFGProblem(Nx=10, Nt=4, **{**good, field: bad})


@pytest.mark.parametrize("kwargs, name", [
    (dict(Nx=10**9), "Nx"),
    (dict(Nx=100_000, Nt=1_000_000), "Nt"),
    (dict(Nx="100"), "Nx"),
    (dict(Nt=4.5), "Nt"),
    (dict(sigma="0.2"), "sigma"),
    (dict(T=math.inf), "T"),
])
def test_absurd_or_mistyped_sizes_are_refused_before_allocating(kwargs, name):
    with pytest.raises(ValueError, match=name) as info:
        mc.MFGProblem(m0=lambda x: np.ones_like(x), **kwargs)
    if "Nx" in kwargs and isinstance(kwargs["Nx"], int) and kwargs["Nx"] > 1000:
        assert "GiB" in str(info.value)  # says how much memory it would need


def test_a_uniform_float32_grid_is_accepted_by_the_kde():
    grid = np.linspace(0.0, 1.0, 201, dtype=np.float32)  # uniform to float32 rounding only
    dens = kde_on_grid(np.random.default_rng(0).uniform(0.2, 0.8, 500), grid, 0.05)
    assert dens.shape == (201,) and np.all(np.isfinite(dens))
    with pytest.raises(ValueError, match="uniform"):
        kde_on_grid([0.5], np.array([0.0, 0.1, 0.3, 0.4]), 0.1)
    with pytest.raises(ValueError, match="samples"):
        kde_on_grid([0.5 + 0.1j], grid, 0.1)
