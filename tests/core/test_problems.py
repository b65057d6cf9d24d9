"""Named benchmark problems: the registry, overrides, and rejection of unknown parameters."""

import numpy as np
import pytest

import mfg_core as mc


def test_names_include_the_contract_problems():
    names = mc.problems.names()
    for required in ("lq", "congestion"):
        assert required in names
    assert len(names) >= 3


@pytest.mark.parametrize("name", mc.problems.names())
def test_every_problem_loads_on_both_boundaries(name):
    for b in ("neumann", "periodic"):
        p = mc.problems.load(name, Nx=20, Nt=10, boundary=b)
        assert p.name == name and p.boundary == b
        assert p.mass(p.m_init) == pytest.approx(1.0, abs=1e-14)


def test_overrides_of_grid_and_problem_parameters():
    p = mc.problems.load("congestion", Nx=40, Nt=25, sigma=0.4, kappa=3.0, lam=2.0)
    assert (p.Nx, p.Nt, p.sigma, p.lam) == (40, 25, 0.4, 2.0)
    assert p.params["kappa"] == 3.0
    m = np.full(p.shape, 2.0)
    assert np.allclose(p.F(m), 6.0)


def test_unknown_problem_and_unknown_override_are_rejected_by_name():
    with pytest.raises(ValueError, match="nosuch"):
        mc.problems.load("nosuch")
    with pytest.raises(ValueError, match="kapa"):
        mc.problems.load("congestion", kapa=2.0)
    with pytest.raises(ValueError, match="kappa"):
        mc.problems.load("congestion", kappa="strong")
    with pytest.raises(ValueError, match="sigma"):
        mc.problems.load("stationary_log", sigma=0.0)


def test_exact_solution_shapes_and_initial_data():
    for name in ("lq", "stationary_log"):
        p = mc.problems.load(name, Nx=40, Nt=20)
        ex = p.exact_solution()
        assert ex.U.shape == p.shape and ex.M.shape == p.shape
        assert np.allclose(ex.U[-1], p.g, atol=1e-10)  # terminal condition
        rel = np.abs(ex.M[0] - p.m_init).max() / ex.M[0].max()
        assert rel < 1e-2  # only the discrete renormalisation differs


def test_exact_solution_refused_without_closed_form_or_after_callable_override():
    with pytest.raises(ValueError, match="no closed-form"):
        mc.problems.load("congestion").exact_solution()
    p = mc.problems.load("lq", potential=lambda x: 0 * x)
    assert not p.has_exact_solution
    with pytest.raises(ValueError, match="potential"):
        p.exact_solution()


def test_lq_exact_solution_satisfies_the_pde():
    """Residuals of HJB and FP of the closed form, by centred differences, are small."""
    p = mc.problems.load("lq", Nx=400, Nt=400)
    U, M = p.exact_solution()
    nu, dx, dt = p.nu, p.dx, p.dt
    i, n = slice(1, -1), slice(1, -1)
    ut = (U[2:, i] - U[:-2, i]) / (2 * dt)
    ux = (U[n, 2:] - U[n, :-2]) / (2 * dx)
    uxx = (U[n, 2:] - 2 * U[n, i] + U[n, :-2]) / dx**2
    hjb = -ut - nu * uxx + ux**2 / 2 - p.V[i]
    assert np.abs(hjb).max() < 1e-3
    mt = (M[2:, i] - M[:-2, i]) / (2 * dt)
    flux = M * np.gradient(U, dx, axis=1)
    fx = (flux[n, 2:] - flux[n, :-2]) / (2 * dx)
    mxx = (M[n, 2:] - 2 * M[n, i] + M[n, :-2]) / dx**2
    assert np.abs(mt - nu * mxx - fx).max() < 1e-2 * M.max()
