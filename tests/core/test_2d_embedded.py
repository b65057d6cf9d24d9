"""A 1D problem embedded in 2D (data constant in y, Neumann in y) reproduces the 1D solution to 1e-10.

With u constant in y every y-difference vanishes, the Hamiltonian and Laplacian reduce to the 1D ones
term by term, and the y part of the FP operator (the adjoint of a Neumann Laplacian, self-adjoint in
the trapezoidal weights) keeps a y-constant density constant. So U2d(t, y, x) = U1d(t, x) and
M2d(t, y, x) = M1d(t, x) / (ymax - ymin), up to the round-off of the sparse LU against ``gtsv``.
"""

import numpy as np
import pytest

import mfg_core as mc


@pytest.mark.parametrize("x_boundary, coupling", [("neumann", "damping"), ("periodic", "anderson")])
def test_1d_problem_embedded_in_2d_reproduces_the_1d_solution(x_boundary, coupling):
    one = mc.problems.load("congestion", Nx=40, Nt=30, boundary=x_boundary)
    Ly = 2.0
    two = mc.MFGProblem(
        xmin=one.xmin, xmax=one.xmax, Nx=one.Nx, ymin=-1.0, ymax=-1.0 + Ly, Ny=5, T=one.T, Nt=one.Nt,
        sigma=one.sigma, lam=one.lam, boundary=(x_boundary, "neumann"),
        # the 2D density is the 1D one spread over Ly: F sees the 1D value
        coupling=lambda m: one.coupling(Ly * m), coupling_dm=lambda m: Ly * one.coupling_dm(Ly * m),
        terminal_cost=lambda x, y: one.terminal_cost(x), m0=lambda x, y: one.m0(x),
    )
    r1 = mc.solve(one, coupling=coupling, max_iterations=100, tolerance=1e-12)
    r2 = mc.solve(two, coupling=coupling, max_iterations=100, tolerance=1e-12)
    assert r1.converged and r2.converged, (r1.reason, r2.reason)
    if coupling == "damping":  # the same iteration, step by step (Anderson may stop one step apart)
        assert r1.iterations == r2.iterations
        assert np.allclose(r2.history["change_U"], r1.history["change_U"], rtol=1e-6, atol=1e-14)
    assert np.abs(r2.U - r1.U[:, None, :]).max() < 1e-10
    assert np.abs(r2.M * Ly - r1.M[:, None, :]).max() < 1e-10 * np.abs(r1.M).max()


def test_1d_data_along_y_matches_the_1d_solution_on_the_transposed_axis():
    one = mc.problems.load("evacuation", Nx=30, Nt=20)
    two = mc.MFGProblem(
        xmin=0.0, xmax=0.5, Nx=4, ymin=one.xmin, ymax=one.xmax, Ny=one.Nx, T=one.T, Nt=one.Nt,
        sigma=one.sigma, potential=lambda x, y: one.potential(y), coupling=lambda m: one.coupling(0.5 * m),
        coupling_dm=lambda m: 0.5 * one.coupling_dm(0.5 * m), terminal_cost=lambda x, y: one.terminal_cost(y), m0=lambda x, y: one.m0(y),
    )
    M0 = np.broadcast_to(one.m_init, one.shape).copy()
    U1 = mc.HJBFDMSolver(one).solve(M0)
    U2 = mc.HJBFDMSolver(two).solve(np.repeat(M0[:, :, None] / 0.5, 5, axis=2))
    assert np.abs(U2 - U1[:, :, None]).max() < 1e-10
    M1, M2 = mc.FPFDMSolver(one).solve(U1), mc.FPFDMSolver(two).solve(U2)
    assert np.abs(M2 * 0.5 - M1[:, :, None]).max() < 1e-10 * M1.max()
