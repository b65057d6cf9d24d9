r"""Reference finite-difference kernels (numpy): the backward HJB sweep and the forward FP sweep.

This module states the 1D scheme; the factories dispatch on ``scheme.grid.dim`` and return the 2D
kernels of :mod:`mfg_core.backends.numpy.fdm2d` (the same scheme per axis) for a 2D grid.

Grid and boundary
-----------------
Nodes ``x_i``, ``i = 0..N-1``, spacing ``dx``. ``neumann``: vertex-centred, ``x_0 = xmin`` and
``x_{N-1} = xmax`` are nodes and the wall sits *on* them; a ghost value reflected about the wall
(``u_{-1} = u_1``, ``u_N = u_{N-2}``) closes the stencil. ``periodic``: ``x_{N} \equiv x_0``.
The quadrature weights matching this stencil are the trapezoidal ones (``dx/2`` at the two walls,
``dx`` elsewhere; all ``dx`` if periodic); with them the stencil is self-adjoint.

HJB (implicit Euler, Engquist-Osher upwinding, Newton)
------------------------------------------------------
With ``D^\pm u_i = \pm(u_{i\pm1} - u_i)/dx`` and ``\Delta_h u_i = (u_{i+1} - 2u_i + u_{i-1})/dx^2``,
the monotone numerical Hamiltonian for ``|p|^2/(2 lam)`` is

    H_h(u)_i = ( min(D^+u_i, 0)^2 + max(D^-u_i, 0)^2 ) / (2 lam).

Given ``u^{n+1}`` and the source ``S^{n+1} = V + F(m^{n+1})``, ``u^n`` solves (scaled by dt, so
that the residual is in units of u and does not grow like 1/dt on fine grids)

    R(u)_i = u_i - u^{n+1}_i + dt * ( -nu \Delta_h u_i + H_h(u)_i - S^{n+1}_i ) = 0.

Its Jacobian ``J = I + dt A(u)`` is tridiagonal: with ``a^+_i = min(D^+u_i,0)/lam <= 0`` and
``a^-_i = max(D^-u_i,0)/lam >= 0``,

    J_{i,i-1} = dt(-nu/dx^2 - a^-_i/dx) <= 0,   J_{i,i+1} = dt(-nu/dx^2 + a^+_i/dx) <= 0,
    J_{i,i}   = 1 - J_{i,i-1} - J_{i,i+1}         (every row sums to 1: A 1 = 0).

So ``J`` is a strictly diagonally dominant M-matrix and ``R`` a convex M-function: Newton converges
from any start (we start from ``u^{n+1}``). It stops when ``max|R| <= newton_tol * max(1, max|u|)``
or when the update is at round-off level.

FP (the discrete adjoint, Achdou & Capuzzo-Dolcetta 2010)
---------------------------------------------------------
With ``mu = w * m`` (mass per node, ``w`` the quadrature weights),

    (I + dt A(u^n))^T mu^{n+1} = mu^n,

i.e. the FP operator is ``W^{-1} A^T W``, the weighted adjoint of the linearised HJB operator.
Because ``A 1 = 0`` the column sums of ``J^T`` are 1 and ``sum(mu)`` (the trapezoidal mass) is
conserved to round-off; because ``J^T`` is an M-matrix, ``mu >= 0`` is preserved.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import lapack

from .. import checks

_ROUNDOFF = 16 * np.finfo(np.float64).eps


def neighbours(u: np.ndarray, periodic: bool) -> tuple[np.ndarray, np.ndarray]:
    """Right and left neighbours along the last axis (ghost reflection at a Neumann wall)."""
    if periodic:
        return np.roll(u, -1, axis=-1), np.roll(u, 1, axis=-1)
    right = np.empty_like(u)
    left = np.empty_like(u)
    right[..., :-1] = u[..., 1:]
    right[..., -1] = u[..., -2]
    left[..., 1:] = u[..., :-1]
    left[..., 0] = u[..., 1]
    return right, left


def upwind(u: np.ndarray, dx: float, lam: float, periodic: bool):
    """Return ``(a_plus, a_minus, H_h(u), Laplacian(u))`` along the last axis."""
    right, left = neighbours(u, periodic)
    a_plus = np.minimum(right - u, 0.0) / (dx * lam)
    a_minus = np.maximum(u - left, 0.0) / (dx * lam)
    ham = 0.5 * lam * (a_plus * a_plus + a_minus * a_minus)
    lap = (right - 2.0 * u + left) / (dx * dx)
    return a_plus, a_minus, ham, lap


def jacobian_bands(a_plus, a_minus, *, dt, dx, nu, periodic):
    """Bands ``(lower, diag, upper)`` of ``J = I + dt A(u)`` (row i: ``J[i,i-1], J[i,i], J[i,i+1]``).

    Periodic: ``lower[0] = J[0, N-1]`` and ``upper[-1] = J[N-1, 0]`` are the corners. Neumann: the
    ghost node folds the outer band into the inner one, and ``lower[0] = upper[-1] = 0``.
    """
    lower = dt * (-nu / (dx * dx) - a_minus / dx)
    upper = dt * (-nu / (dx * dx) + a_plus / dx)
    if not periodic:
        upper[..., 0] += lower[..., 0]
        lower[..., 0] = 0.0
        lower[..., -1] += upper[..., -1]
        upper[..., -1] = 0.0
    diag = 1.0 - lower - upper
    return lower, diag, upper


def transpose_bands(lower, diag, upper):
    """Bands of ``J^T`` from those of ``J`` (works for the periodic corners too)."""
    return np.roll(upper, 1, axis=-1), diag, np.roll(lower, -1, axis=-1)


def solve_tridiagonal(lower, diag, upper, rhs, periodic: bool) -> np.ndarray:
    """Solve the (cyclic, if ``periodic``) tridiagonal system by LAPACK ``gtsv``.

    The cyclic case uses Sherman-Morrison: ``A = B + u v^T`` with ``u = (gamma, 0.., 0, c_{N-1})``,
    ``v = (1, 0.., 0, a_0/gamma)`` and ``gamma = -diag[0]``; one ``gtsv`` with two right-hand sides.
    """
    if not periodic:
        _, _, _, x, info = lapack.dgtsv(lower[1:], diag, upper[:-1], rhs[:, None])
        if info != 0:
            raise np.linalg.LinAlgError(f"tridiagonal solve failed (gtsv info={info})")
        return x[:, 0]
    n = diag.shape[0]
    alpha = upper[-1]  # J[N-1, 0]
    beta = lower[0]  # J[0, N-1]
    gamma = -diag[0]
    d = diag.copy()
    d[0] -= gamma
    d[-1] -= alpha * beta / gamma
    rhs2 = np.zeros((n, 2))
    rhs2[:, 0] = rhs
    rhs2[0, 1] = gamma
    rhs2[-1, 1] = alpha
    _, _, _, yz, info = lapack.dgtsv(lower[1:], d, upper[:-1], rhs2)
    if info != 0:
        raise np.linalg.LinAlgError(f"cyclic tridiagonal solve failed (gtsv info={info})")
    y, z = yz[:, 0], yz[:, 1]
    factor = (y[0] + beta * y[-1] / gamma) / (1.0 + z[0] + beta * z[-1] / gamma)
    return y - factor * z


def hjb_step(unext, source, c: checks.FDMConstants):
    """One implicit HJB time step by Newton; returns ``(u, newton_iterations)``.

    ``newton_iterations`` is negative (minus the count) if the tolerance was not reached.
    """
    dt, dx, nu, lam, periodic = c.dt, c.dx, c.nu, c.lam, c.periodic
    u = unext.copy()
    for it in range(1, c.newton_maxiter + 1):
        a_plus, a_minus, ham, lap = upwind(u, dx, lam, periodic)
        res = u - unext + dt * (-nu * lap + ham - source)
        scale = max(1.0, float(np.max(np.abs(u))))
        if np.max(np.abs(res)) <= c.newton_tol * scale:
            return u, it - 1
        lower, diag, upper = jacobian_bands(a_plus, a_minus, dt=dt, dx=dx, nu=nu, periodic=periodic)
        delta = solve_tridiagonal(lower, diag, upper, -res, periodic)
        u = u + delta
        if np.max(np.abs(delta)) <= _ROUNDOFF * scale:
            return u, it  # converged to round-off: the residual cannot fall further
    a_plus, a_minus, ham, lap = upwind(u, dx, lam, periodic)
    res = u - unext + dt * (-nu * lap + ham - source)
    if np.max(np.abs(res)) <= c.newton_tol * max(1.0, float(np.max(np.abs(u)))):
        return u, c.newton_maxiter
    return u, -c.newton_maxiter


def _dim(scheme) -> int:
    """The grid dimension of ``scheme`` (1 for anything else: the 1D checks then refuse it)."""
    return getattr(getattr(scheme, "grid", None), "dim", 1)


def make_hjb_sweep(scheme, *, newton_tol=1e-12, newton_maxiter=50):
    """The backward HJB sweep on ``scheme``: ``sweep(source, terminal) -> (U, newton_its)``.

    ``source`` has shape ``(Nt+1, N)``: ``source[n] = V + F(m^n)``; step ``n`` (from ``t_{n+1}`` to
    ``t_n``) uses ``source[n+1]``. ``terminal`` is ``g`` on the nodes. ``U`` has shape
    ``(Nt+1, N)``; ``newton_its[n]`` counts the Newton iterations of step ``n`` (negative where the
    tolerance was not reached).
    """
    if _dim(scheme) == 2:
        from . import fdm2d

        return fdm2d.make_hjb_sweep(scheme, newton_tol=newton_tol, newton_maxiter=newton_maxiter)
    c = checks.fdm_constants(scheme, "numpy", "HJB sweep", newton_tol, newton_maxiter)

    def sweep(source, terminal):
        source = checks.field("source", source, c.shape)
        terminal = checks.field("terminal", terminal, c.shape[1:])
        nt1, n = c.shape
        U = np.empty((nt1, n))
        its = np.zeros(nt1 - 1, dtype=np.int64)
        U[-1] = terminal
        for k in range(nt1 - 2, -1, -1):
            U[k], its[k] = hjb_step(U[k + 1], source[k + 1], c)
        return U, its

    return sweep


def make_fp_sweep(scheme):
    """The forward FP sweep on ``scheme`` (adjoint scheme, mass variables ``mu = w m``):
    ``sweep(U, mu0) -> mu``.

    ``U`` has shape ``(Nt+1, N)``; step ``n`` (``t_n -> t_{n+1}``) uses the drift of ``U[n]``.
    ``mu`` has shape ``(Nt+1, N)``; ``sum(mu[n])`` equals ``sum(mu0)`` to round-off.
    """
    if _dim(scheme) == 2:
        from . import fdm2d

        return fdm2d.make_fp_sweep(scheme)
    c = checks.fdm_constants(scheme, "numpy", "FP sweep")

    def sweep(U, mu0):
        U = checks.field("U", U, c.shape)
        mu0 = checks.field("mu0", mu0, c.shape[1:])
        nt1, n = c.shape
        a_plus, a_minus, _, _ = upwind(U[:-1], c.dx, c.lam, c.periodic)
        lower, diag, upper = jacobian_bands(a_plus, a_minus, dt=c.dt, dx=c.dx, nu=c.nu, periodic=c.periodic)
        lower_t, diag_t, upper_t = transpose_bands(lower, diag, upper)
        mu = np.empty((nt1, n))
        mu[0] = mu0
        for k in range(nt1 - 1):
            mu[k + 1] = solve_tridiagonal(lower_t[k], diag_t[k], upper_t[k], mu[k], c.periodic)
        return mu

    return sweep
