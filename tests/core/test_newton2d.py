"""Newton on the whole 2D discrete system (numpy, FDM FP): the Jacobian against finite differences,
the block solves, convergence to the Anderson solution, obstacles, the registry.

Measured numbers in comments are from the sizes used here, on numpy (the assertions have margins).
"""

import numpy as np
import pytest

import mfg_core as mc
from mfg_core import grid as gr
from mfg_core import methods
from mfg_core import newton as nw
from mfg_core.newton2d import DiscreteSystem2D


def linear_coupling(**kw):
    """lq2d with the congestion coupling F(m) = m (lq2d itself has none)."""
    return mc.problems.load("lq2d", coupling=lambda m: m, coupling_dm=lambda m: np.ones_like(m), **kw)


def small_system(boundary, obstacle=False, seed=0):
    """A 6 x 5 node system (Nt = 4) with a nonlinear coupling F(m) = m^2 + log m, and a random
    (U, M) whose neighbour differences over every uncut link are all >= 1e-2 in size (no upwind
    kink within reach of a finite difference)."""
    periodic = boundary == "periodic"
    nx, ny = (6, 5) if periodic else (5, 4)  # intervals: 6 x 5 nodes either way
    mask = None
    if obstacle:
        mask = np.zeros((5, 6), dtype=bool)
        mask[2, 2] = mask[2, 3] = True
    g = gr.rectangle(0.0, 1.0, nx, 0.0, 0.8, ny, (boundary, boundary), obstacle=mask)
    scheme = gr.Scheme(g, T=0.5, Nt=4, sigma=0.4, lam=0.7)
    rng = np.random.default_rng(seed)
    data = nw.SystemData(V=rng.random(g.shape), g=rng.random(g.shape), m_init=1.0 + rng.random(g.shape),
                         weights=np.asarray(g.weights), F=lambda m: m * m + np.log(m), dF=lambda m: 2 * m + 1 / m)
    S = nw.discrete_system(scheme, data)
    assert isinstance(S, DiscreteSystem2D)
    shape = scheme.shape
    for _ in range(100):
        U = rng.standard_normal(shape)
        U0 = U[:-1].reshape(S.Nt, S.N)
        diffs = np.concatenate([(U0[:, nb] - U0)[:, nb != np.arange(S.N)].ravel() for nb in S.nbrs])
        if np.abs(diffs).min() >= 1e-2:
            break
    else:
        raise AssertionError("no kink-free U drawn")
    M = 0.5 + rng.random(shape)
    return S, U, M


def fd_jacobian(S, z, h=1e-6):
    fd = np.empty((z.size, z.size))
    for j in range(z.size):
        e = np.zeros(z.size)
        e[j] = h
        fd[:, j] = (S.residual_vector(z + e) - S.residual_vector(z - e)) / (2 * h)
    return fd


# ---------------------------------------------------------------------------------------------
# the Jacobian


@pytest.mark.parametrize("boundary, obstacle", [("neumann", False), ("periodic", False), ("neumann", True)])
def test_2d_jacobian_matches_finite_differences_of_the_residual(boundary, obstacle):
    S, U, M = small_system(boundary, obstacle)
    z = S.pack(U, M)
    U, M = S.unpack(z)
    J = S.jacobian(U, M).toarray()
    fd = fd_jacobian(S, z)
    assert np.abs(J - fd).max() <= 1e-6 * np.abs(J).max()  # measured 5e-10 against max 2.2
    # the upwind derivative of the FP rows is really there (not just the adjoint blocks), and so is F'
    fp_rows, u_cols = np.arange(1, z.size, 2), np.arange(0, z.size, 2)
    assert np.abs(J[np.ix_(fp_rows, u_cols)]).max() > 1.0
    assert np.abs(J[np.ix_(u_cols, fp_rows)]).max() > 0.1
    if obstacle:  # rows of blocked nodes: identities in time, touching nothing else
        blocked = np.flatnonzero(~S.scheme.grid.free.ravel())
        for n in range(S.Nt):
            for p in blocked:
                for row in (2 * (n * S.N + p), 2 * (n * S.N + p) + 1):
                    cols = np.flatnonzero(J[row])
                    assert J[row, row] == 1.0 and set(cols) <= {row, row + 2 * S.N, row - 2 * S.N}, (n, p, row, cols)


@pytest.mark.parametrize("boundary, obstacle", [("neumann", True), ("periodic", False)])
def test_2d_block_form_is_the_assembled_jacobian_and_the_block_solves_invert_their_blocks(boundary, obstacle):
    S, U, M = small_system(boundary, obstacle, seed=3)
    lin = S.linearise(U, M)
    J = lin.assemble("csr")
    rng = np.random.default_rng(1)
    dU, dM = rng.standard_normal((2, S.Nt, S.N))
    hjb, fp = lin.matvec(dU, dM)
    np.testing.assert_allclose(S.interleave(hjb, fp), J @ S.interleave(dU, dM), rtol=0, atol=1e-11)
    x = lin.back(dU)
    np.testing.assert_allclose(lin.matvec(x, np.zeros_like(x))[0], dU, atol=1e-12)
    y = lin.fwd(dM)
    np.testing.assert_allclose(lin.matvec(np.zeros_like(y), y)[1], dM, atol=1e-12)
    for solve in (lambda: nw.solve_direct(lin, dU, dM), lambda: nw.solve_gmres(lin, dU, dM, 1e-12, 50, 500)):
        ls = solve()
        np.testing.assert_allclose(J @ S.interleave(ls.dU, ls.dM), S.interleave(dU, dM), atol=1e-9)


def test_the_2d_picard_solution_solves_the_2d_newton_system():
    p = linear_coupling(Nx=16, Ny=12, Nt=8)
    r = mc.solve(p, coupling="anderson", max_iterations=200, tolerance=1e-12)
    assert r.converged
    S = nw.discrete_system(p.scheme, nw.SystemData.of(p))
    assert S.max_residual(r.U, r.M) < 1e-10  # the same discrete system as the 2D kernels'


def test_the_2d_system_refuses_a_1d_scheme():
    p = mc.problems.load("congestion", Nx=10, Nt=5)
    with pytest.raises(ValueError, match="2D scheme"):
        DiscreteSystem2D(p.scheme, nw.SystemData.of(p))


# ---------------------------------------------------------------------------------------------
# convergence


def check_newton(r, max_steps=10, coupled=True):
    assert r.converged, r.reason
    h = r.history
    assert h["newton_residual"][-1] <= 1e-10
    assert r.extra["newton_steps"] == r.iterations <= max_steps
    if coupled:  # auto is GMRES in 2D, its iterations counted
        assert np.all(h["linear_iterations"] > 1)
    else:  # F = 0: A_UM = 0, the Schur complement is the identity, one GMRES iteration solves it
        assert np.all(h["linear_iterations"] == 1)
    assert np.all(h["mass_error"] <= 1e-12) and np.all(h["min_M"] >= 0.0) and r.M.min() >= 0.0
    return h["newton_residual"]


@pytest.mark.parametrize("coupled", [False, True])
def test_2d_newton_converges_quadratically_to_the_anderson_solution(coupled):
    kw = dict(Nx=32, Ny=32, Nt=16)
    p = linear_coupling(**kw) if coupled else mc.problems.load("lq2d", **kw)
    r = mc.solve(p, coupling="newton", max_iterations=30, tolerance=1e-10)
    res = check_newton(r, coupled=coupled)  # measured 4 steps either way, 4-5 GMRES iterations each coupled
    # quadratic tail: r_{k+1} <= C r_k^2 (measured C <= 1.1 with the inexact GMRES forcing), and the
    # contraction r_{k+1} / r_k falls at every step
    assert np.all(res[1:] <= 2.0 * res[:-1] ** 2), res
    contraction = res[1:] / res[:-1]
    assert np.all(np.diff(contraction) < 0), contraction
    aa = mc.solve(p, coupling="anderson", max_iterations=300, tolerance=1e-12)
    assert aa.converged
    assert np.abs(r.U - aa.U).max() < 1e-8 and np.abs(r.M - aa.M).max() < 1e-8
    assert max(r.history["residual_U"][-1], r.history["residual_M"][-1]) < 1e-9


def test_2d_newton_on_a_periodic_grid_matches_damping():
    p = linear_coupling(Nx=20, Ny=16, Nt=8, boundary="periodic", xmin=-1.0, xmax=1.0, ymin=-1.0, ymax=1.0)
    r = mc.solve(p, coupling="newton", max_iterations=30, tolerance=1e-10)
    check_newton(r)
    d = mc.solve(p, coupling="damping", max_iterations=400, tolerance=1e-13)
    assert d.converged
    assert np.abs(r.U - d.U).max() < 1e-8 and np.abs(r.M - d.M).max() < 1e-8


def test_2d_newton_with_an_obstacle_keeps_the_obstacle_empty():
    # evacuation2d from the terminal guess: the first step is positivity-damped and projected
    p = mc.problems.load("evacuation2d", Nx=20, Ny=20, Nt=10)
    r = mc.solve(p, coupling="newton", max_iterations=30, tolerance=1e-10)
    check_newton(r)  # measured 7 steps, 11-14 GMRES iterations each
    assert np.all(r.M[:, p.grid.obstacle] == 0.0)
    aa = mc.solve(p, coupling="anderson", max_iterations=300, tolerance=1e-12)
    assert aa.converged
    assert np.abs(r.U - aa.U).max() < 1e-8 and np.abs(r.M - aa.M).max() < 1e-8


@pytest.mark.parametrize("name, x_boundary, guess", [("congestion_strong", "neumann", "terminal"),
                                                     ("congestion", "periodic", "heat")])
def test_a_1d_problem_embedded_in_2d_takes_the_1d_newton_steps(name, x_boundary, guess):
    """Data constant in y on a Neumann y-axis of length 1: the 2D system is the 1D one per y-row
    (U2d = U1d, M2d = M1d), so Newton takes the same steps (both with GMRES; measured: the residual
    histories agree to 1e-5 relative above 1e-6, 5 / 6 steps)."""
    one = mc.problems.load(name, Nx=30, Nt=15, boundary=x_boundary)
    two = mc.MFGProblem(xmin=one.xmin, xmax=one.xmax, Nx=one.Nx, ymin=0.0, ymax=1.0, Ny=4, T=one.T, Nt=one.Nt,
                        sigma=one.sigma, lam=one.lam, boundary=(x_boundary, "neumann"),
                        coupling=one.coupling, coupling_dm=one.coupling_dm,
                        terminal_cost=lambda x, y: one.terminal_cost(x), m0=lambda x, y: one.m0(x))
    r1 = mc.solve(one, coupling="newton", tolerance=1e-10, initial_guess=guess, linear_solver="gmres")
    r2 = mc.solve(two, coupling="newton", tolerance=1e-10, initial_guess=guess)
    assert r1.converged and r2.converged, (r1.reason, r2.reason)
    assert r1.iterations == r2.iterations
    h1, h2 = r1.history["newton_residual"], r2.history["newton_residual"]
    far = h1 > 1e-6  # below that the inexact GMRES solves differ in their round-off-level tail
    np.testing.assert_allclose(h2[far], h1[far], rtol=1e-4)
    assert np.abs(r2.U - r1.U[:, None, :]).max() < 1e-10 and np.abs(r2.M - r1.M[:, None, :]).max() < 1e-10


def test_2d_direct_and_gmres_take_the_same_newton_steps():
    p = linear_coupling(Nx=10, Ny=8, Nt=6)
    d = mc.solve(p, coupling="newton", max_iterations=30, tolerance=1e-10, linear_solver="direct")
    g = mc.solve(p, coupling="newton", max_iterations=30, tolerance=1e-10)  # auto: GMRES in 2D
    assert d.converged and g.converged
    assert np.all(d.history["linear_iterations"] == 1) and np.all(g.history["linear_iterations"] > 1)
    assert d.iterations == g.iterations
    assert np.abs(d.U - g.U).max() < 1e-9 and np.abs(d.M - g.M).max() < 1e-9


def test_2d_coupling_continuation_reaches_the_target_solution():
    p = mc.problems.load("evacuation2d", Nx=12, Ny=12, Nt=6, kappa=2.0)
    r = mc.solve(p, coupling="newton", max_iterations=60, tolerance=1e-10, continuation="coupling")
    plain = mc.solve(p, coupling="newton", max_iterations=60, tolerance=1e-10)
    assert r.converged and plain.converged, (r.reason, plain.reason)
    assert r.history["continuation_value"][0] == 0.0 and r.history["continuation_value"][-1] == 1.0
    assert np.abs(r.U - plain.U).max() < 1e-9 and np.abs(r.M - plain.M).max() < 1e-9


# ---------------------------------------------------------------------------------------------
# the registry


def test_registry_runs_newton_in_2d_on_numpy_fdm_only_and_says_where_it_runs():
    m = methods.get("coupling", "newton")
    assert m.dims == (1, 2) and m.runs_on(2) == ("numpy",) and m.obstacles
    m.check("numpy", 2, fp="fdm", obstacle=True)
    p = linear_coupling(Nx=8, Ny=8, Nt=4)
    for backend in ("jax", "torch"):
        with pytest.raises(ValueError, match=r"'newton' does not run on backend '%s'" % backend):
            m.check(backend, 2)
    # numba runs newton in 1D only (its compiled time sweeps are tridiagonal)
    with pytest.raises(ValueError, match=r"'newton' solves 2D problems only on backend\(s\) \['numpy'\], not on 'numba'"):
        mc.build(p, coupling="newton", backend="numba")
    with pytest.raises(ValueError, match="'newton' does not work with fp method 'particle'"):
        mc.build(p, fp="particle", coupling="newton")
