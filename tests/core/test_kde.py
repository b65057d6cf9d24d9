"""Binned FFT kernel density estimate (mfg_core.kde) against scipy's exact O(N M) Gaussian KDE.

The binned estimate at a node is the exact KDE with the kernel replaced by its piecewise-linear
interpolant on the grid, so at every node

    |binned - exact| <= (dx^2 / 8) * (1/N) sum_i max_{|z - (x - X_i)| <= dx} |phi_h''(z)|,

which the tests evaluate (a rigorous bound, not a fitted tolerance), and the error falls like dx^2.
"""

import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import gaussian_kde

from mfg_core.backends.kde_rules import IMAGE_LIMIT
from mfg_core.backends.numpy.particles import periodic_gaussian
from mfg_core.kde import kde_on_grid


def trapezoid_mass(grid, dens):
    dx = grid[1] - grid[0]
    return dx * (dens.sum() - 0.5 * (dens[0] + dens[-1]))


def exact_kde(samples, x, h):
    """Direct O(N M) Gaussian KDE with bandwidth h (scipy), at points x."""
    kd = gaussian_kde(samples, bw_method=h / np.std(samples, ddof=1))
    return kd(x)


def binning_bound(samples, grid, h, images=(0.0,)):
    """(dx^2/8) mean_i max over a cell of |phi_h''| at every node (summed over kernel images)."""
    dx = grid[1] - grid[0]
    bound = np.zeros_like(grid)
    for shift, sign in images:
        z = np.abs(grid[:, None] - (sign * samples[None, :] + shift))
        # |phi''(z)| = phi(z) |z^2/h^2 - 1| / h^2; bound its max over [z - dx, z + dx] by using the
        # nearest distance for phi and the farther one for the polynomial factor
        zn = np.maximum(z - dx, 0.0)
        poly = np.maximum(np.abs((z + dx) ** 2 / h**2 - 1.0), np.abs(zn**2 / h**2 - 1.0))
        poly = np.maximum(poly, 1.0)
        phi = np.exp(-0.5 * (zn / h) ** 2) / (h * math.sqrt(2 * math.pi))
        bound += (phi * poly / h**2).mean(axis=1)
    return dx * dx / 8.0 * bound


@pytest.fixture(scope="module")
def interior_samples():
    return np.random.default_rng(7).normal(0.5, 0.08, 3000)


def test_agrees_with_scipy_away_from_walls_within_the_binning_bound(interior_samples):
    X = interior_samples
    for K in (101, 401):
        grid = np.linspace(0.0, 1.0, K)
        h = gaussian_kde(X).factor * np.std(X, ddof=1)
        ours = kde_on_grid(X, grid, "scott")
        exact = exact_kde(X, grid, h)
        err = np.abs(ours - exact)
        bound = binning_bound(X, grid, h, images=((0.0, 1.0),))
        # the samples are > 5 sigma from the walls, so reflection and normalisation change < 1e-12
        assert np.all(err <= bound + 1e-10), (K, float(np.max(err / (bound + 1e-10))))
        assert err.max() > 1e-6  # the comparison is not vacuous: binning error is really there


def test_binning_error_is_second_order_in_dx(interior_samples):
    X = interior_samples
    h = 0.02
    errs = []
    for K in (201, 401, 801):
        grid = np.linspace(0.0, 1.0, K)
        errs.append(np.max(np.abs(kde_on_grid(X, grid, h) - exact_kde(X, grid, h))))
    ratios = np.array(errs[:-1]) / np.array(errs[1:])
    assert np.all((ratios > 3.0) & (ratios < 5.0)), ratios


def test_bandwidth_rules_match_scipy_factors(interior_samples):
    X = interior_samples
    grid = np.linspace(0.0, 1.0, 201)
    for rule in ("scott", "silverman"):
        h = gaussian_kde(X, bw_method=rule).factor * np.std(X, ddof=1)
        np.testing.assert_allclose(kde_on_grid(X, grid, rule), kde_on_grid(X, grid, h), rtol=1e-12, atol=1e-13)
    assert not np.allclose(kde_on_grid(X, grid, "scott"), kde_on_grid(X, grid, "silverman"))


def test_neumann_reflection_near_a_wall_keeps_mass_and_matches_mirrored_exact_kde():
    rng = np.random.default_rng(3)
    X = np.abs(rng.normal(0.0, 0.05, 4000))  # half-normal: piled up against the wall at 0
    grid = np.linspace(0.0, 1.0, 401)
    h = 0.03
    ours = kde_on_grid(X, grid, h)
    assert abs(trapezoid_mass(grid, ours) - 1.0) < 1e-14
    # without reflection about 17% of the kernel mass would leak through the wall
    assert trapezoid_mass(grid, exact_kde(X, grid, h)) < 0.9
    # reflected exact KDE: the kernel plus its mirror images in both walls (further images < 1e-300)
    exact = exact_kde(X, grid, h) + exact_kde(X, -grid, h) + exact_kde(X, 2.0 - grid, h)
    bound = binning_bound(X, grid, h, images=((0.0, 1.0), (0.0, -1.0)))
    assert np.all(np.abs(ours - exact) <= bound + 1e-10)
    # a reflected density has zero slope at the wall: f(dx) - f(0) = O(dx^2)
    assert abs(ours[1] - ours[0]) < 0.01 * ours[0]


def test_periodic_wraps_the_kernel_around_the_period():
    rng = np.random.default_rng(4)
    L = 2.0
    X = np.mod(rng.normal(0.05, 0.1, 4000), L) - 1.0  # straddles the seam at -1 == 1
    grid = -1.0 + L * np.arange(400) / 400
    h = 0.05
    ours = kde_on_grid(X, grid, h, boundary="periodic")
    assert abs(grid[1] - grid[0]) * ours.sum() == pytest.approx(1.0, abs=1e-14)
    exact = sum(exact_kde(X, grid + m * L, h) for m in (-1, 0, 1))
    bound = binning_bound(X, grid, h, images=((-L, 1.0), (0.0, 1.0), (L, 1.0)))
    assert np.all(np.abs(ours - exact) <= bound + 1e-10)
    assert ours[0] > 0.5 * ours.max() and ours[-1] > 0.5 * ours.max()  # density on both sides of the seam
    # samples outside the period are wrapped, not rejected
    np.testing.assert_allclose(kde_on_grid(X + 3 * L, grid, h, boundary="periodic"), ours, atol=1e-12)


def test_periodic_scott_uses_the_circular_spread():
    # a cloud straddling the seam has a huge linear std but a small circular one
    rng = np.random.default_rng(5)
    X = np.mod(rng.normal(0.0, 0.03, 2000), 1.0)
    grid = np.arange(200) / 200
    narrow = kde_on_grid(X, grid, "scott", boundary="periodic")
    assert narrow[0] > 5.0  # peak of a N(0, 0.03) bump is ~13; a linear-std bandwidth flattens it to ~1
    shifted = kde_on_grid(np.mod(X + 0.5, 1.0), grid, "scott", boundary="periodic")
    np.testing.assert_allclose(np.roll(shifted, -100), narrow, atol=1e-9)


def test_kernel_representations_agree_at_the_switch():
    P, dx = 300, 0.01
    h = IMAGE_LIMIT * P * dx
    below = periodic_gaussian(P, dx, h * (1 - 1e-12))
    above = periodic_gaussian(P, dx, h * (1 + 1e-12))
    # the Fourier sum carries round-off absolute to the peak, hence atol
    np.testing.assert_allclose(below, above, rtol=1e-9, atol=1e-13 * below.max())
    # the Fourier series equals a brute-force image sum for a wide kernel
    Lp = P * dx
    h = 0.1 * Lp
    d = np.arange(P) * dx
    brute = sum(np.exp(-0.5 * ((d + m * Lp) / h) ** 2) for m in range(-20, 21)) / (h * math.sqrt(2 * math.pi))
    np.testing.assert_allclose(periodic_gaussian(P, dx, h), brute, rtol=1e-12, atol=1e-13 * brute.max())
    assert dx * brute.sum() == pytest.approx(1.0, rel=1e-13)


@pytest.mark.parametrize("h", [1e-4, 0.01, 0.2, 5.0, 1e6])
@pytest.mark.parametrize("boundary", ["neumann", "periodic"])
def test_any_bandwidth_gives_a_finite_nonnegative_density_of_mass_one(h, boundary):
    grid = np.linspace(0.0, 1.0, 51) if boundary == "neumann" else np.arange(50) / 50
    X = np.random.default_rng(0).uniform(0.0, 1.0, 500)
    d = kde_on_grid(X, grid, h, boundary=boundary)
    w = np.full(grid.size, grid[1] - grid[0])
    if boundary == "neumann":
        w[[0, -1]] *= 0.5
    assert np.all(np.isfinite(d)) and np.all(d >= 0)
    assert abs(w @ d - 1.0) < 1e-13
    if h >= 5.0:  # a huge bandwidth smooths the sample to the uniform density
        np.testing.assert_allclose(d, 1.0, atol=1e-3 if h == 5.0 else 1e-12)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 300),
    K=st.integers(3, 120),
    periodic=st.booleans(),
    h=st.floats(1e-3, 10.0),
    seed=st.integers(0, 2**31),
    offset=st.floats(-100.0, 100.0),
)
def test_property_mass_one_and_nonnegative(n, K, periodic, h, seed, offset):
    rng = np.random.default_rng(seed)
    length = 3.0
    if periodic:
        grid = offset + length * np.arange(K) / K
        X = offset + rng.uniform(-5, 5, n)
        w = np.full(K, length / K)
    else:
        grid = np.linspace(offset, offset + length, K)
        X = offset + length * rng.beta(0.3, 0.3, n)  # many samples on/near the walls
        X = np.clip(X, grid[0], grid[-1])
        w = np.full(K, grid[1] - grid[0])
        w[[0, -1]] *= 0.5
    d = kde_on_grid(X, grid, h, boundary="periodic" if periodic else "neumann")
    assert d.shape == (K,)
    assert np.all(np.isfinite(d)) and np.all(d >= 0.0)
    assert abs(w @ d - 1.0) < 1e-12


GRID = np.linspace(0.0, 1.0, 11)
SAMPLES = np.array([0.2, 0.5, 0.7])


@pytest.mark.parametrize("kwargs, name", [
    (dict(samples=[]), "samples"),
    (dict(samples=[0.1, np.nan]), "samples"),
    (dict(samples=[0.1, np.inf]), "samples"),
    (dict(samples=[[0.1, 0.2]]), "samples"),
    (dict(samples=[0.1, 1.5]), "samples"),  # outside the Neumann walls
    (dict(samples=[0.3, 0.3]), "bandwidth"),  # a rule needs a positive spread
    (dict(grid=[]), "grid"),
    (dict(grid=[0.0, 1.0]), "grid"),
    (dict(grid=[0.0, 0.1, 0.3, 0.4]), "grid"),
    (dict(grid=[0.0, 0.5, np.nan]), "grid"),
    (dict(grid=[1.0, 0.5, 0.0]), "grid"),
    (dict(grid=np.ones((3, 3))), "grid"),
    (dict(bandwidth=0.0), "bandwidth"),
    (dict(bandwidth=-0.1), "bandwidth"),
    (dict(bandwidth=np.nan), "bandwidth"),
    (dict(bandwidth=np.inf), "bandwidth"),
    (dict(bandwidth="normal"), "bandwidth"),
    (dict(bandwidth=None), "bandwidth"),
    (dict(boundary="dirichlet"), "boundary"),
    (dict(backend="cupy"), "backend"),
])
def test_bad_input_raises_value_error_naming_the_argument(kwargs, name):
    args = dict(samples=SAMPLES, grid=GRID, bandwidth="scott")
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        kde_on_grid(**args)


def test_contract_access_through_the_package_attribute():
    # a fresh interpreter: mc.kde must resolve lazily without mfg_core.kde imported beforehand
    code = ("import numpy as np, mfg_core as mc; "
            "d = mc.kde.kde_on_grid(np.array([0.2, 0.4]), np.linspace(0, 1, 11), 0.1); "
            "assert abs(d.sum() * 0.1 - 0.05 * (d[0] + d[-1]) - 1) < 1e-12")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120)
