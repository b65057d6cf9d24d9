"""2D particles (numpy): the binned FFT KDE against a direct Gaussian sum (mirror images at Neumann
walls, wrapped images on periodic axes), exact bilinear initial sampling, reflection keeps every
particle and all the mass inside, the lq2d particle solution against the closed form, seeds and
common random numbers, and the refusal of obstacles."""

import math

import numpy as np
import pytest

import mfg_core as mc
from mfg_core.kde import kde_on_grid_2d
from mfg_core.particles import FPParticleSolver, sample_bilinear


def direct_kde(samples, x, y, h, images_x=((0.0, 1.0),), images_y=((0.0, 1.0),)):
    """The O(N M) product-Gaussian sum at the nodes, over the given images ``shift + sign * X``."""
    dens = np.zeros((y.size, x.size))
    for sx, kx in images_x:
        gx = np.exp(-0.5 * ((x[None, :] - (sx + kx * samples[:, :1])) / h) ** 2)
        for sy, ky in images_y:
            gy = np.exp(-0.5 * ((y[None, :] - (sy + ky * samples[:, 1:])) / h) ** 2)
            dens += gy.T @ gx
    return dens / (samples.shape[0] * 2 * math.pi * h * h)


def test_kde_matches_the_direct_gaussian_sum_away_from_the_walls():
    rng = np.random.default_rng(4)
    X = np.column_stack([rng.normal(0.5, 0.1, 3000), rng.normal(0.45, 0.12, 3000)])
    X = X[(X.min(axis=1) > 0) & (X.max(axis=1) < 1)]
    x = y = np.linspace(0.0, 1.0, 161)
    h = 0.06
    ours = kde_on_grid_2d(X, x, y, h)
    exact = direct_kde(X, x, y, h)
    inner = (np.abs(x[None, :] - 0.5) <= 0.3) & (np.abs(y[:, None] - 0.5) <= 0.3)
    rel = np.abs(ours - exact)[inner].max() / exact[inner].max()
    assert rel < 1e-3, rel
    assert rel > 1e-6  # the binning error is really there: the comparison is not vacuous
    w = np.full(161, 1 / 160)
    w[[0, -1]] /= 2
    assert w @ ours @ w == pytest.approx(1.0, abs=1e-13) and ours.min() >= 0


@pytest.mark.parametrize("boundary", ["neumann", "periodic", ("periodic", "neumann")])
def test_kde_reflects_at_neumann_walls_and_wraps_on_periodic_axes(boundary):
    """Samples crowd the x = 0 and y = 0 walls: the estimate is the direct sum over the images
    (mirrored in both walls of a Neumann axis, shifted by the period of a periodic one), everywhere."""
    rng = np.random.default_rng(2)
    X = np.column_stack([rng.uniform(0.0, 0.15, 2000), rng.uniform(0.0, 0.2, 2000)])
    bx, by = (boundary, boundary) if isinstance(boundary, str) else boundary
    K, h = 141, 0.05
    images, nodes = {}, {}
    for axis, bc in (("x", bx), ("y", by)):
        if bc == "periodic":
            nodes[axis] = np.arange(K) / K
            images[axis] = tuple((s, 1.0) for s in (-1.0, 0.0, 1.0))
        else:
            nodes[axis] = np.linspace(0.0, 1.0, K)
            images[axis] = ((0.0, 1.0), (0.0, -1.0), (2.0, -1.0), (-2.0, 1.0), (2.0, 1.0))
    ours = kde_on_grid_2d(X, nodes["x"], nodes["y"], h, boundary=boundary)
    exact = direct_kde(X, nodes["x"], nodes["y"], h, images["x"], images["y"])
    exact /= _mass(exact, bx, by, K)
    assert np.abs(ours - exact).max() / exact.max() < 2e-3
    assert _mass(ours, bx, by, K) == pytest.approx(1.0, abs=1e-13)


def _mass(d, bx, by, K):
    def w(bc):
        if bc == "periodic":
            return np.full(K, 1.0 / K)
        v = np.full(K, 1.0 / (K - 1))
        v[[0, -1]] /= 2
        return v

    return w(by) @ d @ w(bx)


def test_bilinear_sampling_is_exact_cell_by_cell():
    rng = np.random.default_rng(9)
    dens = rng.random((4, 5)) + 0.1
    dens[1, 2] = 0.0
    X = sample_bilinear(dens, (0.0, 1.0), (0.5, 0.25), (False, False), rng.random((400_000, 3)))
    assert X[:, 0].min() >= 0 and X[:, 0].max() <= 1.5 and X[:, 1].min() >= 1.0 and X[:, 1].max() <= 2.0
    # cell frequencies against the cells' masses (mean of the four corners)
    cell = 0.25 * (dens[:-1, :-1] + dens[:-1, 1:] + dens[1:, :-1] + dens[1:, 1:])
    p = (cell / cell.sum()).ravel()
    jy = np.minimum((X[:, 0] / 0.5).astype(int), 2)
    jx = np.minimum(((X[:, 1] - 1.0) / 0.25).astype(int), 3)
    freq = np.bincount(jy * 4 + jx, minlength=12) / X.shape[0]
    assert np.all(np.abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / X.shape[0]))
    # inside one cell, the mean position is the bilinear density's
    j, i = 2, 1
    inside = X[(jy == j) & (jx == i)]
    fy, fx = inside[:, 0] / 0.5 - j, (inside[:, 1] - 1.0) / 0.25 - i
    a, b, c, d = dens[j, i], dens[j, i + 1], dens[j + 1, i], dens[j + 1, i + 1]
    tot = (a + b + c + d) / 4
    mean_fx = ((a + c) / 12 + (b + d) / 6) / tot  # int_0^1 int_0^1 fx * bilinear / mass
    mean_fy = ((a + b) / 12 + (c + d) / 6) / tot
    assert abs(fx.mean() - mean_fx) < 5 * 0.3 / math.sqrt(inside.shape[0])
    assert abs(fy.mean() - mean_fy) < 5 * 0.3 / math.sqrt(inside.shape[0])


def test_reflected_particles_and_mass_stay_inside():
    p = mc.problems.load("lq2d", Nx=16, Ny=12, Nt=10, boundary=("neumann", "periodic"))
    # a strong push into the x = xmax wall and along y across the seam
    U = np.broadcast_to(-6.0 * p.x[None, :] - 4.0 * np.sin(2 * np.pi * p.y[:, None] / 4), p.shape).copy()
    fp = FPParticleSolver(p, num_particles=5000, seed=3)
    M = fp.solve(U)
    X = fp.diagnostics["final_positions"]
    assert X.shape == (5000, 2)
    assert X[:, 1].min() >= p.xmin and X[:, 1].max() <= p.xmax
    assert X[:, 0].min() >= p.ymin and X[:, 0].max() < p.ymax
    assert fp.diagnostics["reflected_fraction"].max() > 0.1
    assert np.abs(p.mass(M) - 1.0).max() <= 1e-12 and M.min() >= 0.0
    assert fp.diagnostics["bandwidth"].shape == (p.Nt, 2)


def test_lq2d_particle_solution_is_within_15_percent_of_the_closed_form():
    p = mc.problems.load("lq2d")
    ex = p.exact_solution()
    U = mc.HJBFDMSolver(p).solve(ex.M)  # no coupling: the value function does not depend on M
    M = FPParticleSolver(p, num_particles=100_000, seed=1).solve(U)
    for n in range(1, p.Nt + 1):
        err = np.abs(M[n] - ex.M[n]).max() / ex.M[n].max()
        assert err < 0.15, (n, err)


def test_same_seed_gives_identical_results_and_common_random_numbers_work():
    p = mc.problems.load("lq2d", Nx=12, Ny=12, Nt=6, boundary="periodic")
    U = mc.HJBFDMSolver(p).solve(np.broadcast_to(p.m_init, p.shape).copy())
    a = FPParticleSolver(p, num_particles=3000, seed=7)
    b = FPParticleSolver(p, num_particles=3000, seed=7)
    Ma = a.solve(U)
    assert np.array_equal(Ma, b.solve(U)) and np.array_equal(Ma, a.solve(U))  # and again: the same numbers
    assert not np.array_equal(Ma, FPParticleSolver(p, num_particles=3000, seed=8).solve(U))
    fresh = FPParticleSolver(p, num_particles=3000, seed=7, common_random_numbers=False)
    M1, M2 = fresh.solve(U), fresh.solve(U)
    assert np.array_equal(M1, Ma) and not np.array_equal(M1, M2)  # a fresh stream on every call


def test_particle_method_through_solve_and_xarray():
    p = mc.problems.load("lq2d", Nx=12, Ny=10, Nt=5)
    r = mc.solve(p, fp="particle", coupling="damping", num_particles=2000, max_iterations=2, tolerance=1e-8)
    ds = r.to_xarray()
    assert ds["m"].dims == ("t", "y", "x") and ds["bandwidth"].dims == ("t", "axis")
    assert list(ds["axis"].values) == ["y", "x"] and np.all(np.isfinite(ds["bandwidth"].values[1:]))


def test_a_problem_with_an_obstacle_is_refused_by_the_particle_method():
    p = mc.problems.load("evacuation2d", Nx=12, Ny=12, Nt=4)
    with pytest.raises(ValueError, match="obstacle.*fp='fdm'"):
        FPParticleSolver(p)
    with pytest.raises(ValueError, match="obstacle"):
        mc.solve(p, fp="particle")
    # and the kernel factory itself, whoever calls it
    with pytest.raises(ValueError, match="backend 'numpy' particle sweep: the grid has an obstacle"):
        mc.get_backend("numpy").make_particle_sweep(p.scheme, bandwidth=0.1, scale_by_std=False)


@pytest.mark.parametrize("kw, field", [
    (dict(samples=np.zeros((5, 3))), "samples"),
    (dict(samples=np.full((5, 2), 2.0)), "samples must lie in"),
    (dict(samples=np.full((5, 2), 0.5), bandwidth="scott"), "positive spread"),
    (dict(bandwidth=-1.0), "bandwidth"),
    (dict(boundary=("neumann", "wall")), "boundary"),
])
def test_kde_2d_bad_input_is_refused_naming_it(kw, field):
    args = dict(samples=np.random.default_rng(0).random((50, 2)), x=np.linspace(0, 1, 11), y=np.linspace(0, 1, 9),
                bandwidth=0.1)
    args.update(kw)
    with pytest.raises(ValueError, match=field):
        kde_on_grid_2d(**args)
