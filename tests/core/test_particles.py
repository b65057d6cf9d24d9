"""Particle Fokker-Planck solver (mfg_core.particles.FPParticleSolver) on the numpy reference backend.

Accuracy is checked against the law of the Euler-Maruyama chain itself on ``lq`` (affine drift: the
chain stays Gaussian, with a closed-form mean/variance recursion), which separates the Monte-Carlo/KDE
error from the O(dt) time-stepping bias, and then against the closed form ``lq.exact_solution()``.
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mfg_core as mc
from mfg_core.particles import FPParticleSolver, grid_gradient, sample_piecewise_linear


def l2(problem, X):
    """Space L2 norm (problem quadrature) of each row."""
    return np.sqrt((X * X) @ problem.weights)


def em_chain_law(problem, U):
    """Mean and variance of the Euler-Maruyama chain for u = P x^2/2 + r x + s (affine drift)."""
    x, dx = problem.x, problem.dx
    i = problem.x.size // 2
    P = (U[:, i + 1] - 2 * U[:, i] + U[:, i - 1]) / dx**2
    r = (U[:, i + 1] - U[:, i - 1]) / (2 * dx) - P * x[i]
    p = problem.params
    # the particles start from the piecewise-linear interpolant of m0: variance + dx^2/6
    mean, var = [p["m0_mean"]], [p["m0_std"] ** 2 + dx**2 / 6]
    for n in range(problem.Nt):
        mean.append(mean[-1] - problem.dt / problem.lam * (P[n] * mean[-1] + r[n]))
        var.append((1 - problem.dt * P[n] / problem.lam) ** 2 * var[-1] + problem.sigma**2 * problem.dt)
    return np.array(mean), np.array(var)


def gaussian(x, mean, var):
    return np.exp(-0.5 * (x[None, :] - mean[:, None]) ** 2 / var[:, None]) / np.sqrt(2 * np.pi * var[:, None])


@pytest.fixture(scope="module")
def lq():
    problem = mc.problems.load("lq", Nx=400, Nt=20)
    return problem, problem.exact_solution()


def test_lq_error_is_the_kde_variance_and_falls_with_n(lq):
    """Density error against the exact law follows the Monte-Carlo/KDE trade-off.

    For the KDE with bandwidth h of N samples of a density m, E[f_h] = m * phi_h (a Gaussian m stays
    Gaussian with variance + h^2, + dx^2/6 from linear binning), and
    E||f_h - E f_h||^2 = 1/(2 sqrt(pi) N h) - ||E f_h||^2 / N. The measured squared error, summed
    over the time steps, must be that variance (ratio in [0.5, 2]: its relative spread over the
    ~20 steps x ~100 independent bandwidth-cells is ~0.1) -- it fails if the drift, the noise, the
    bias model or the normalisation is wrong. Its square root then shrinks like (N h)^(-1/2).
    """
    problem, (U, M_exact) = lq
    mean, var = em_chain_law(problem, U)
    x = problem.x
    errors = {}
    for N in (100_000, 1_000_000):
        fp = FPParticleSolver(problem, num_particles=N, seed=11)
        M = fp.solve(U)
        h = fp.diagnostics["bandwidth"]
        expected = gaussian(x, mean[1:], var[1:] + h**2 + problem.dx**2 / 6)
        err2 = l2(problem, M[1:] - expected) ** 2
        predicted = 1.0 / (2 * math.sqrt(math.pi) * N * h) - l2(problem, expected) ** 2 / N
        ratio = err2.sum() / predicted.sum()
        assert 0.5 < ratio < 2.0, (N, ratio)
        errors[N] = math.sqrt(err2.sum())
        # against the closed form of the PDE: the KDE noise plus the deterministic gaps (kernel
        # smoothing h^2 and the O(dt) weak error of Euler-Maruyama), each computed, not fitted
        bias = l2(problem, expected - M_exact[1:])
        total = l2(problem, M[1:] - M_exact[1:])
        assert np.all(total <= bias + 4 * np.sqrt(predicted)), (N, total, bias, np.sqrt(predicted))
        assert bias.max() < 0.02  # dt = 0.05, h <= 0.03: the deterministic gap is small
    # Scott's h ~ N^(-1/5): the noise falls like N^(-2/5) (a factor 0.40 from 1e5 to 1e6)
    assert 0.25 < errors[1_000_000] / errors[100_000] < 0.6, errors


def test_mass_positivity_and_initial_density():
    problem = mc.problems.load("congestion", Nx=60, Nt=15)
    U = np.tile(2.0 * (problem.x - 0.7) ** 2, (problem.Nt + 1, 1))
    fp = FPParticleSolver(problem, num_particles=5000)
    M = fp.solve(U)
    assert M.shape == problem.shape
    np.testing.assert_array_equal(M[0], problem.m_init)
    assert np.all(M >= 0)
    np.testing.assert_allclose(problem.mass(M), 1.0, atol=1e-12)
    np.testing.assert_allclose(fp.diagnostics["mass"], 1.0, atol=1e-12)
    assert fp.diagnostics["num_particles"] == 5000
    assert fp.diagnostics["reflected_fraction"].shape == (problem.Nt,)
    assert fp.diagnostics["bandwidth"].shape == (problem.Nt,) and np.all(fp.diagnostics["bandwidth"] > 0)
    assert fp.last_seconds > 0
    # the drift -u_x = -4 (x - 0.7) pulls the crowd from 0.25 towards 0.7
    first_moment = (M * problem.x) @ problem.weights
    assert first_moment[0] < 0.3 and first_moment[-1] > 0.5


def test_same_seed_is_bit_identical_and_other_seeds_differ():
    problem = mc.problems.load("congestion", Nx=40, Nt=10)
    U = np.tile(np.sin(3 * problem.x), (problem.Nt + 1, 1))
    a = FPParticleSolver(problem, num_particles=3000, seed=5).solve(U)
    b = FPParticleSolver(problem, num_particles=3000, seed=5).solve(U)
    c = FPParticleSolver(problem, num_particles=3000, seed=6).solve(U)
    np.testing.assert_array_equal(a, b)
    assert np.max(np.abs(a - c)) > 1e-3


def test_common_random_numbers_make_the_map_deterministic():
    problem = mc.problems.load("congestion", Nx=40, Nt=10)
    U = np.tile(np.sin(3 * problem.x), (problem.Nt + 1, 1))
    crn = FPParticleSolver(problem, num_particles=3000, seed=1)
    first = crn.solve(U)
    crn.warmup()
    np.testing.assert_array_equal(crn.solve(U), first)
    fresh = FPParticleSolver(problem, num_particles=3000, seed=1, common_random_numbers=False)
    fresh.warmup()  # must not advance the stream
    f1 = fresh.solve(U)
    f2 = fresh.solve(U)
    np.testing.assert_array_equal(f1, first)  # both start from default_rng(seed)
    assert np.max(np.abs(f2 - f1)) > 1e-3
    # but both are samples of the same law: they differ by about the KDE noise, not more
    assert np.max(l2(problem, f2 - f1)) < 0.5


def test_initial_sampling_is_exact_for_the_piecewise_linear_density():
    problem = mc.problems.load("congestion", Nx=20)
    m = problem.m_init
    u = np.random.default_rng(0).random(200_000)
    X = sample_piecewise_linear(m, problem.xmin, problem.dx, False, u)
    # exact cell masses of the piecewise-linear density vs the observed fractions (chi-square)
    expected = 0.5 * problem.dx * (m[:-1] + m[1:])
    observed = np.bincount(np.minimum((X / problem.dx).astype(int), problem.Nx - 1), minlength=problem.Nx) / X.size
    keep = expected > 1e-3
    chi2 = (X.size * (observed[keep] - expected[keep]) ** 2 / expected[keep]).sum()
    assert chi2 < keep.sum() + 6 * math.sqrt(2 * keep.sum())
    # inside a cell the CDF is quadratic: F(x_j + f dx) matches the analytic value
    j = int(np.argmax(expected))
    inside = X[(X >= problem.x[j]) & (X < problem.x[j + 1])]
    f = 0.37
    a, b = m[j], m[j + 1]
    analytic = (a * f + (b - a) * f * f / 2) / ((a + b) / 2)
    frac = np.mean(inside < problem.x[j] + f * problem.dx)
    assert abs(frac - analytic) < 5 * math.sqrt(analytic * (1 - analytic) / inside.size)
    # a density vanishing on a region puts no particle there; periodic samples stay in [xmin, xmax)
    xp = np.arange(20) * 0.05  # periodic nodes of [0, 1)
    dens = np.where(xp < 0.5, 0.0, 1.0)
    Y = sample_piecewise_linear(dens, 0.0, 0.05, True, u)
    assert Y.min() >= 0.45 and Y.max() < 1.0
    assert np.mean(Y > 0.95) == pytest.approx(0.025 / 0.5, abs=0.005)  # the wrap cell (1 -> 0) is used


def test_gradient_is_centred_zero_at_neumann_walls_and_wrapped_if_periodic():
    x = np.linspace(0.0, 1.0, 11)
    G = grid_gradient(x**2, 0.1, periodic=False)
    np.testing.assert_allclose(G[1:-1], 2 * x[1:-1], atol=1e-12)
    assert G[0] == 0 and G[-1] == 0
    xp = np.arange(10) / 10
    Gp = grid_gradient(np.sin(2 * np.pi * xp), 0.1, periodic=True)
    np.testing.assert_allclose(Gp, 2 * np.pi * np.cos(2 * np.pi * xp) * np.sin(0.2 * np.pi) / (0.2 * np.pi),
                               atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(slope=st.floats(-1e8, 1e8), periodic=st.booleans(), seed=st.integers(0, 1000),
       nt=st.integers(1, 4))
def test_property_no_particle_leaves_the_domain_even_with_huge_drift(slope, periodic, seed, nt):
    problem = mc.problems.load("congestion", Nx=12, Nt=nt, boundary="periodic" if periodic else "neumann")
    # u = slope * x gives the constant drift -slope: a step moves a particle up to 1e8 * dt periods
    U = np.tile(slope * np.sin(2 * np.pi * problem.x) if periodic else slope * problem.x, (nt + 1, 1))
    fp = FPParticleSolver(problem, num_particles=500, seed=seed)
    M = fp.solve(U)
    X = fp.diagnostics["final_positions"]
    assert X.shape == (500,) and fp.diagnostics["num_particles"] == 500
    assert X.min() >= problem.xmin and X.max() <= problem.xmax
    assert np.all(np.isfinite(M)) and np.all(M >= 0)
    np.testing.assert_allclose(problem.mass(M), 1.0, atol=1e-12)
    key = "wrapped_fraction" if periodic else "reflected_fraction"
    frac = fp.diagnostics[key]
    assert np.all((frac >= 0) & (frac <= 1))
    if abs(slope) > 1e4 and not periodic:
        assert frac.min() > 0.9  # almost every particle is folded back at every step


def test_fold_reflects_exactly_for_large_displacements():
    from mfg_core.backends.numpy.particles import fold

    X = np.array([-0.25, 1.25, 2.5, -3.75, 10.1, 0.5])
    Y, crossed = fold(X, 0.0, 0.25, 5, periodic=False)  # [0, 1]: reflection modulo 2
    np.testing.assert_allclose(Y, [0.25, 0.75, 0.5, 0.25, 0.1, 0.5], atol=1e-12)
    assert crossed == 5
    Z, wrapped = fold(X, 0.0, 0.25, 4, periodic=True)  # period 1
    np.testing.assert_allclose(Z, [0.75, 0.25, 0.5, 0.25, 0.1, 0.5], atol=1e-12)
    assert wrapped == 5


def test_coupled_fdm_hjb_particle_fp_converges_near_the_fdm_solution():
    """With common random numbers the damped Picard map is deterministic and converges.

    The particle fixed point differs from the FDM-FDM one by the particle FP error: measured by
    feeding the FDM value function to both FP solvers (``gap``); the coupling may carry that gap
    over but must not amplify it, and the noise part is bounded by the KDE variance.
    """
    problem = mc.problems.load("congestion", Nx=50, Nt=20)
    ref = mc.FixedPointIterator(problem, mc.HJBFDMSolver(problem), mc.FPFDMSolver(problem),
                                thetaUM=0.5).solve(max_iterations=200, tolerance=1e-8)
    assert ref.converged
    fp = FPParticleSolver(problem, num_particles=20_000, seed=3)
    res = mc.FixedPointIterator(problem, mc.HJBFDMSolver(problem), fp,
                                thetaUM=0.5).solve(max_iterations=200, tolerance=1e-8)
    assert res.converged, res.reason

    def norm(X):
        return math.sqrt(problem.dt * float(((X * X) @ problem.weights).sum()))

    gap = norm(fp.solve(ref.U) - ref.M)
    h = fp.diagnostics["bandwidth"]
    noise = math.sqrt(problem.dt * float((1.0 / (2 * math.sqrt(math.pi) * fp.num_particles * h)).sum()))
    dist_M = norm(res.M - ref.M)
    assert dist_M <= 1.5 * gap + 3 * noise, (dist_M, gap, noise)
    assert dist_M / norm(ref.M) < 0.06
    assert norm(res.U - ref.U) / norm(ref.U) < 0.01
    np.testing.assert_allclose(problem.mass(res.M), 1.0, atol=1e-12)
    # without common random numbers the map is random and the iteration stalls at the noise level
    noisy = mc.FixedPointIterator(problem, mc.HJBFDMSolver(problem),
                                  FPParticleSolver(problem, num_particles=2_000, seed=3,
                                                   common_random_numbers=False),
                                  thetaUM=0.5).solve(max_iterations=25, tolerance=1e-8)
    assert not noisy.converged


def test_backend_attribute_and_use_backend():
    problem = mc.problems.load("congestion", Nx=20, Nt=5)
    fp = FPParticleSolver(problem, num_particles=100)
    assert fp.backend.name == "numpy"
    fp.use_backend(mc.get_backend("numpy"))
    assert fp.backend.name == "numpy"
    with pytest.raises(ValueError, match="backend"):
        fp.use_backend("cupy")
    assert mc.FPParticleSolver is FPParticleSolver
    assert "FPParticleSolver" in repr(fp)


@pytest.mark.parametrize("kwargs, name", [
    (dict(num_particles=0), "num_particles"),
    (dict(num_particles=-5), "num_particles"),
    (dict(num_particles=10.5), "num_particles"),
    (dict(num_particles=True), "num_particles"),
    (dict(num_particles=1), "num_particles"),  # a bandwidth rule needs a spread
    (dict(bandwidth=0.0), "bandwidth"),
    (dict(bandwidth=-1.0), "bandwidth"),
    (dict(bandwidth=float("nan")), "bandwidth"),
    (dict(bandwidth=float("inf")), "bandwidth"),
    (dict(bandwidth="gauss"), "bandwidth"),
    (dict(seed=-1), "seed"),
    (dict(seed=1.5), "seed"),
    (dict(common_random_numbers="yes"), "common_random_numbers"),
    (dict(backend="cupy"), "backend"),
])
def test_bad_constructor_input_raises_value_error_naming_the_argument(kwargs, name):
    problem = mc.problems.load("congestion", Nx=20, Nt=5)
    with pytest.raises(ValueError, match=name):
        FPParticleSolver(problem, **kwargs)


def test_one_particle_with_a_numeric_bandwidth_is_allowed():
    problem = mc.problems.load("congestion", Nx=20, Nt=5)
    M = FPParticleSolver(problem, num_particles=1, bandwidth=0.1).solve(np.zeros(problem.shape))
    np.testing.assert_allclose(problem.mass(M), 1.0, atol=1e-12)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_U_raises_before_any_work(bad):
    problem = mc.problems.load("congestion", Nx=20, Nt=5)
    fp = FPParticleSolver(problem, num_particles=100)
    U = np.zeros(problem.shape)
    U[2, 3] = bad
    with pytest.raises(ValueError, match="U"):
        fp.solve(U)
    assert fp.diagnostics == {} and fp.last_seconds == 0.0
    with pytest.raises(ValueError, match="U"):
        fp.solve(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="problem"):
        FPParticleSolver("congestion")


def test_drawing_the_increments_in_chunks_does_not_change_the_result(monkeypatch):
    import mfg_core.particles as particles

    problem = mc.problems.load("congestion", Nx=30, Nt=7)
    U = np.tile(np.sin(3 * problem.x), (problem.Nt + 1, 1))
    whole = FPParticleSolver(problem, num_particles=1000, seed=4).solve(U)
    monkeypatch.setattr(particles, "CHUNK_NUMBERS", 2500)  # 3 chunks of 3, 3, 1 steps
    fp = FPParticleSolver(problem, num_particles=1000, seed=4)
    np.testing.assert_array_equal(fp.solve(U), whole)


def test_step_diagnostics_reach_the_result_and_its_dataset():
    """The boundary-crossing fraction and bandwidth of every step are kept in the stored result."""
    for boundary, key in (("neumann", "reflected_fraction"), ("periodic", "wrapped_fraction")):
        p = mc.problems.load("evacuation", Nx=30, Nt=12, boundary=boundary)
        fp = mc.FPParticleSolver(p, num_particles=3000, seed=1)
        r = mc.FixedPointIterator(p, mc.HJBFDMSolver(p), fp).solve(3, 1e-12)
        ds = r.to_xarray()
        assert ds[key].dims == ("t",) and np.isnan(ds[key].values[0])
        np.testing.assert_array_equal(ds[key].values[1:], fp.diagnostics[key])
        assert 0 < np.nanmax(ds[key].values) <= 1  # this crowd walks into the exits
        assert np.all(ds["bandwidth"].values[1:] > 0)
    r = mc.FixedPointIterator(p, mc.HJBFDMSolver(p), mc.FPFDMSolver(p)).solve(2, 1e-12)
    assert "bandwidth" not in r.to_xarray()  # nothing of the kind for finite differences


# ---------------------------------------------------------------------------------------------
# common random numbers on the attractive quick-start problem: a deterministic map whose damped
# iteration converges, then runs away (the finding is written up in mfg_core/particles.py)


def attractive_crn(bandwidth, max_iterations, tolerance=1e-6):
    p = mc.problems.load("attractive_quickstart")
    return mc.solve(p, fp="particle", coupling="damping", max_iterations=max_iterations, tolerance=tolerance,
                    num_particles=10_000, seed=0, common_random_numbers=True, bandwidth=bandwidth)


def test_crn_damping_on_an_attractive_crowd_runs_away_from_its_fixed_point_and_says_why():
    r = attractive_crn(0.05, 100)
    res = np.maximum(r.history["residual_U"], r.history["residual_M"])
    assert not r.converged
    best = int(np.argmin(res))
    assert best < 40 and res[best] < 1e-3  # measured 4.7e-4 at iteration 24
    assert res[-1] > 2 * res[best]  # then it grows (measured 1.6e-3 at 100)
    assert "moves away from a fixed point" in r.reason and f"iteration {best + 1}" in r.reason


def test_crn_damping_converges_when_the_density_is_smoothed_at_the_crowd_scale():
    # h = 0.1: the damped map contracts (measured: residual 1e-4 at iteration 87, 3.4e-6 at 200)
    r = attractive_crn(0.1, 150, tolerance=5e-5)
    res = np.maximum(r.history["residual_U"], r.history["residual_M"])
    assert r.converged, r.reason
    assert res[-1] <= 1e-4
    assert np.all(r.history["mass_error"] <= 1e-12) and np.all(r.history["min_M"] >= 0)
