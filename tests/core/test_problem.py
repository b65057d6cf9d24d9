"""MFGProblem: grid, quadrature, normalisation, and a clear ValueError for every bad input."""

import numpy as np
import pytest

import mfg_core as mc


def gauss(x):
    return np.exp(-((x - 0.5) ** 2) / 0.02)


def make(**kw):
    base = dict(xmin=0.0, xmax=1.0, Nx=20, T=1.0, Nt=10, sigma=0.3, m0=gauss)
    base.update(kw)
    return mc.MFGProblem(**base)


def test_neumann_grid_is_vertex_centred_with_trapezoid_weights():
    p = make(Nx=10)
    assert p.x.size == 11 and p.x[0] == 0.0 and p.x[-1] == 1.0
    assert p.weights[0] == pytest.approx(p.dx / 2) and p.weights[-1] == pytest.approx(p.dx / 2)
    assert p.weights.sum() == pytest.approx(1.0)
    assert p.t.size == 11 and p.t[-1] == 1.0
    assert p.shape == (11, 11)


def test_periodic_grid_excludes_the_identified_endpoint():
    p = make(Nx=10, boundary="periodic")
    assert p.x.size == 10 and p.x[-1] == pytest.approx(0.9)
    assert np.allclose(p.weights, 0.1)


def test_m0_is_normalised_to_discrete_mass_one():
    for b in ("neumann", "periodic"):
        p = make(boundary=b, m0=lambda x: 7.0 * gauss(x))
        assert p.mass(p.m_init) == pytest.approx(1.0, abs=1e-14)


def test_callables_are_evaluated_and_none_means_zero():
    p = make(potential=lambda x: x**2, terminal_cost=None)
    assert np.allclose(p.V, p.x**2) and np.all(p.g == 0)
    assert np.all(p.F(np.ones((2, p.x.size))) == 0)


def test_a_correct_derivative_passes_and_df_matches_it():
    p = make(coupling=lambda m: m**3, coupling_dm=lambda m: 3 * m**2)
    M = np.full((2, p.x.size), 0.5)
    assert np.allclose(p.dF(M), 0.75)
    q = make(coupling=lambda m: m**3)  # no derivative given: dF by central differences
    assert np.allclose(q.dF(M), 0.75, rtol=1e-6)


def test_a_kink_is_not_judged_by_the_derivative_check():
    p = make(m0=lambda x: np.ones_like(x), coupling=lambda m: np.maximum(m - 1.0, 0.0),
             coupling_dm=lambda m: (m > 1.0).astype(float))  # m0 sits exactly on the kink
    assert p.coupling_dm is not None


def test_parameters_are_json_friendly():
    import json

    json.dumps(make(coupling=lambda m: m, coupling_dm=np.ones_like).parameters())


@pytest.mark.parametrize(
    "kw, field",
    [
        (dict(Nx=2), "Nx"),
        (dict(Nx=10.5), "Nx"),
        (dict(Nt=0), "Nt"),
        (dict(sigma=0.0), "sigma"),
        (dict(sigma=-1.0), "sigma"),
        (dict(sigma=float("nan")), "sigma"),
        (dict(T=0.0), "T"),
        (dict(T=-1.0), "T"),
        (dict(xmin=1.0, xmax=1.0), "xmax"),
        (dict(xmin=2.0, xmax=1.0), "xmax"),
        (dict(lam=0.0), "lam"),
        (dict(boundary="dirichlet"), "boundary"),
        (dict(m0=None), "m0"),
        (dict(m0=lambda x: gauss(x) - 0.5), "m0"),
        (dict(m0=lambda x: np.zeros_like(x)), "m0"),
        (dict(m0=lambda x: np.full_like(x, np.nan)), "m0"),
        (dict(m0=lambda x: gauss(x)[:-1]), "m0"),
        (dict(potential=lambda x: np.ones(3)), "potential"),
        (dict(potential=lambda x: np.full_like(x, np.inf)), "potential"),
        (dict(terminal_cost=lambda x: x * np.nan), "terminal_cost"),
        (dict(terminal_cost=3.0), "terminal_cost"),
        (dict(coupling=lambda m: m[..., :-1]), "coupling"),
        (dict(coupling=lambda m: np.log(m - 10.0)), "coupling"),
        (dict(coupling=lambda m: m, coupling_dm=lambda m: m.ravel()), "coupling_dm"),
        (dict(coupling_dm=lambda m: m), "coupling_dm"),
        (dict(coupling=lambda m: m**2, coupling_dm=lambda m: m), "coupling_dm is not the derivative"),
    ],
)
def test_bad_input_raises_value_error_naming_the_parameter(kw, field):
    with pytest.raises(ValueError, match=field):
        with np.errstate(all="ignore"):
            make(**kw)
