r"""numba finite-difference kernels: the scheme of :mod:`mfg_core.backends.numpy.fdm`, compiled.

Same equations, same discretisation, same stopping rules as the numpy reference (read its docstring
for the derivation):

    HJB step (implicit Euler, Engquist-Osher upwinding), solved by Newton from ``u = u^{n+1}``:
        R(u)_i = u_i - u^{n+1}_i + dt * ( -nu (u_{i+1} - 2u_i + u_{i-1})/dx^2
                  + ( min(D^+u_i, 0)^2 + max(D^-u_i, 0)^2 ) / (2 lam) - S^{n+1}_i ) = 0,
        J = I + dt A(u) tridiagonal (an M-matrix), stop when max|R| <= newton_tol * max(1, max|u|)
        or when the Newton update is at round-off (16 eps * that scale).
    FP step (discrete adjoint): (I + dt A(u^n))^T mu^{n+1} = mu^n, mu = trapezoidal weights * m.

What differs is only how it runs: the whole backward sweep (time loop, Newton loop, residual,
Jacobian bands and the tridiagonal solve) is one ``@njit(cache=True)`` function. Each Newton step
makes one fused pass over ``x`` computing the residual, ``max|R|``, ``max|u|`` and the three bands,
then one Thomas solve. The Thomas elimination is written in LAPACK ``gtsv``'s form (multiplier
``l_i / d_{i-1}``, un-normalised upper band) so that it rounds like the reference: on these strictly
diagonally dominant matrices ``gtsv`` never pivots, so the two agree to the last few ulps. Periodic
systems use the reference's Sherman-Morrison split (one elimination, two right-hand sides).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_ROUNDOFF = 16 * np.finfo(np.float64).eps


@njit(cache=True, fastmath=False)
def _bands(u, dx, lam, nu, dt, periodic, unext, source, res, lower, diag, upper):
    """Fill ``res`` (if ``unext`` is given, i.e. ``source.size > 0``) and the bands of ``J(u)``.

    Returns ``(max|R|, max|u|)``. The expressions are ordered as in the numpy reference so that the
    rounding matches it.
    """
    n = u.shape[0]
    with_res = source.shape[0] > 0
    rmax = 0.0
    umax = 0.0
    dxl = dx * lam
    for i in range(n):
        ui = u[i]
        if i == n - 1:
            right = u[0] if periodic else u[n - 2]
        else:
            right = u[i + 1]
        if i == 0:
            left = u[n - 1] if periodic else u[1]
        else:
            left = u[i - 1]
        ap = min(right - ui, 0.0) / dxl
        am = max(ui - left, 0.0) / dxl
        if with_res:
            ham = 0.5 * lam * (ap * ap + am * am)
            lap = (right - 2.0 * ui + left) / (dx * dx)
            r = ui - unext[i] + dt * (-nu * lap + ham - source[i])
            res[i] = r
            if abs(r) > rmax:
                rmax = abs(r)
        if abs(ui) > umax:
            umax = abs(ui)
        lower[i] = dt * (-nu / (dx * dx) - am / dx)
        upper[i] = dt * (-nu / (dx * dx) + ap / dx)
    if not periodic:
        # the ghost node folds the outer band into the inner one (as in the reference)
        upper[0] += lower[0]
        lower[0] = 0.0
        lower[n - 1] += upper[n - 1]
        upper[n - 1] = 0.0
    for i in range(n):
        diag[i] = 1.0 - lower[i] - upper[i]
    return rmax, umax


@njit(cache=True)
def _gtsv(lower, diag, upper, rhs, work_d, out):
    """Solve the plain tridiagonal system (``lower[0]``, ``upper[-1]`` ignored) for the columns of
    ``rhs`` (shape ``(n, k)``) into ``out``, by Gaussian elimination without pivoting (``gtsv``'s
    arithmetic on a diagonally dominant matrix)."""
    n = diag.shape[0]
    k = rhs.shape[1]
    for i in range(n):
        work_d[i] = diag[i]
        for j in range(k):
            out[i, j] = rhs[i, j]
    for i in range(n - 1):
        fact = lower[i + 1] / work_d[i]
        work_d[i + 1] = work_d[i + 1] - fact * upper[i]
        for j in range(k):
            out[i + 1, j] = out[i + 1, j] - fact * out[i, j]
    for j in range(k):
        out[n - 1, j] = out[n - 1, j] / work_d[n - 1]
    for i in range(n - 2, -1, -1):
        for j in range(k):
            out[i, j] = (out[i, j] - upper[i] * out[i + 1, j]) / work_d[i]


@njit(cache=True)
def _solve(lower, diag, upper, rhs, periodic, d_mod, rhs2, work_d, sol2, out):
    """Solve ``J x = rhs`` (cyclic if ``periodic``) into ``out``; the other arrays are scratch."""
    n = diag.shape[0]
    if not periodic:
        for i in range(n):
            rhs2[i, 0] = rhs[i]
        _gtsv(lower, diag, upper, rhs2[:, :1], work_d, sol2[:, :1])
        for i in range(n):
            out[i] = sol2[i, 0]
        return
    # Sherman-Morrison exactly as the reference: A = B + u v^T, u = (gamma, 0.., alpha),
    # v = (1, 0.., beta/gamma), gamma = -diag[0].
    alpha = upper[n - 1]
    beta = lower[0]
    gamma = -diag[0]
    for i in range(n):
        d_mod[i] = diag[i]
        rhs2[i, 0] = rhs[i]
        rhs2[i, 1] = 0.0
    d_mod[0] -= gamma
    d_mod[n - 1] -= alpha * beta / gamma
    rhs2[0, 1] = gamma
    rhs2[n - 1, 1] = alpha
    _gtsv(lower, d_mod, upper, rhs2, work_d, sol2)
    factor = (sol2[0, 0] + beta * sol2[n - 1, 0] / gamma) / (1.0 + sol2[0, 1] + beta * sol2[n - 1, 1] / gamma)
    for i in range(n):
        out[i] = sol2[i, 0] - factor * sol2[i, 1]


@njit(cache=True)
def _hjb_sweep(source, terminal, dt, dx, nu, lam, periodic, newton_tol, newton_maxiter, roundoff):
    nt1, n = source.shape
    U = np.empty((nt1, n))
    its = np.zeros(nt1 - 1, dtype=np.int64)
    res = np.empty(n)
    lower = np.empty(n)
    diag = np.empty(n)
    upper = np.empty(n)
    delta = np.empty(n)
    d_mod = np.empty(n)
    work_d = np.empty(n)
    rhs2 = np.empty((n, 2))
    sol2 = np.empty((n, 2))
    u = np.empty(n)
    U[nt1 - 1] = terminal
    for k in range(nt1 - 2, -1, -1):
        unext = U[k + 1]
        src = source[k + 1]
        u[:] = unext
        count = 0
        done = False
        for it in range(1, newton_maxiter + 1):
            rmax, umax = _bands(u, dx, lam, nu, dt, periodic, unext, src, res, lower, diag, upper)
            scale = max(1.0, umax)
            if rmax <= newton_tol * scale:
                count = it - 1
                done = True
                break
            for i in range(n):
                res[i] = -res[i]
            _solve(lower, diag, upper, res, periodic, d_mod, rhs2, work_d, sol2, delta)
            dmax = 0.0
            for i in range(n):
                u[i] += delta[i]
                if abs(delta[i]) > dmax:
                    dmax = abs(delta[i])
            if dmax <= roundoff * scale:
                count = it  # converged to round-off: the residual cannot fall further
                done = True
                break
        if not done:
            rmax, umax = _bands(u, dx, lam, nu, dt, periodic, unext, src, res, lower, diag, upper)
            count = newton_maxiter if rmax <= newton_tol * max(1.0, umax) else -newton_maxiter
        U[k] = u
        its[k] = count
    return U, its


@njit(cache=True)
def _fp_sweep(U, mu0, dt, dx, nu, lam, periodic):
    nt1, n = U.shape
    mu = np.empty((nt1, n))
    mu[0] = mu0
    empty = np.empty(0)
    lower = np.empty(n)
    diag = np.empty(n)
    upper = np.empty(n)
    lower_t = np.empty(n)
    upper_t = np.empty(n)
    d_mod = np.empty(n)
    work_d = np.empty(n)
    rhs2 = np.empty((n, 2))
    sol2 = np.empty((n, 2))
    for k in range(nt1 - 1):
        _bands(U[k], dx, lam, nu, dt, periodic, empty, empty, empty, lower, diag, upper)
        # bands of J^T: row i of J^T holds J[i-1, i] (below) and J[i+1, i] (above), cyclically
        for i in range(n):
            lower_t[i] = upper[i - 1] if i > 0 else upper[n - 1]
            upper_t[i] = lower[i + 1] if i < n - 1 else lower[0]
        _solve(lower_t, diag, upper_t, mu[k], periodic, d_mod, rhs2, work_d, sol2, mu[k + 1])
    return mu


def _check_scalars(dt, dx, nu, lam):
    for name, value in (("dt", dt), ("dx", dx), ("nu", nu), ("lam", lam)):
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be finite and > 0, got {value!r}")


def hjb_sweep(source, terminal, *, dt, dx, nu, lam, periodic, newton_tol=1e-12, newton_maxiter=50):
    """Backward HJB sweep, compiled; same contract as :func:`mfg_core.backends.numpy.fdm.hjb_sweep`.

    ``source`` has shape ``(Nt+1, N)``; returns ``(U, newton_its)`` (``newton_its[n] < 0`` where the
    Newton tolerance was not reached).
    """
    source = np.ascontiguousarray(source, dtype=np.float64)
    terminal = np.ascontiguousarray(terminal, dtype=np.float64)
    if source.ndim != 2 or source.shape[0] < 2 or source.shape[1] < 3:
        raise ValueError(f"source must have shape (Nt+1, N) with Nt >= 1, N >= 3, got {source.shape}")
    if terminal.shape != source.shape[1:]:
        raise ValueError(f"terminal must have shape {source.shape[1:]}, got {terminal.shape}")
    _check_scalars(dt, dx, nu, lam)
    if int(newton_maxiter) < 1:
        raise ValueError(f"newton_maxiter must be >= 1, got {newton_maxiter!r}")
    return _hjb_sweep(source, terminal, float(dt), float(dx), float(nu), float(lam), bool(periodic),
                      float(newton_tol), int(newton_maxiter), _ROUNDOFF)


def fp_sweep(U, mu0, *, dt, dx, nu, lam, periodic):
    """Forward FP sweep (adjoint scheme, mass variables), compiled; same contract as
    :func:`mfg_core.backends.numpy.fdm.fp_sweep`."""
    U = np.ascontiguousarray(U, dtype=np.float64)
    mu0 = np.ascontiguousarray(mu0, dtype=np.float64)
    if U.ndim != 2 or U.shape[0] < 2 or U.shape[1] < 3:
        raise ValueError(f"U must have shape (Nt+1, N) with Nt >= 1, N >= 3, got {U.shape}")
    if mu0.shape != U.shape[1:]:
        raise ValueError(f"mu0 must have shape {U.shape[1:]}, got {mu0.shape}")
    _check_scalars(dt, dx, nu, lam)
    return _fp_sweep(U, mu0, float(dt), float(dx), float(nu), float(lam), bool(periodic))
