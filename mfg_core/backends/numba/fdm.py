r"""numba finite-difference kernels: the scheme of :mod:`mfg_core.backends.numpy.fdm`, compiled.

The reference states and derives the equations; this module solves the same ones with the same
stopping rules. HJB: backward implicit Euler,
``R(u) = u - u^{n+1} + dt (-nu Lap_h u + H_h(u) - S^{n+1}) = 0`` by Newton from ``u^{n+1}`` with the
tridiagonal M-matrix ``J = I + dt A(u)``. FP: the discrete adjoint
``(I + dt A(u^n))^T mu^{n+1} = mu^n`` in mass variables ``mu = w m``.

Decisions: one ``@njit(cache=True)`` function per sweep (time loop, Newton loop, residual, bands,
solve), so no Python runs per step. A Newton step is one fused pass over ``x`` (residual, maxima,
bands; reciprocals of ``dx``, ``dx^2``, ``dx lam`` precomputed: within an ulp of the reference) and
one Thomas solve in ``gtsv``'s elimination order, each pivot inverted once (one division per row on
the critical path); periodic: the reference's Sherman-Morrison split. Measurements:
``benchmarks/README.md``.
"""

from __future__ import annotations

import numpy as np

from numba import njit

from .. import checks

_ROUNDOFF = 16 * np.finfo(np.float64).eps


@njit(cache=True)
def _point(ui, right, left, c):
    """Upwind quantities at one node: ``(ham, lap, lower, upper)`` (bands before the wall fold).

    ``c = (1/(dx lam), 1/dx, 1/dx^2, lam, nu, dt)``: multiplying by reciprocals instead of dividing
    (about 1 ulp from the reference's rounding) keeps this loop off the divider, its bottleneck.
    """
    inv_dxl, inv_dx, inv_dx2, lam, nu, dt = c
    ap = min(right - ui, 0.0) * inv_dxl
    am = max(ui - left, 0.0) * inv_dxl
    ham = 0.5 * lam * (ap * ap + am * am)
    lap = (right - 2.0 * ui + left) * inv_dx2
    lower = dt * (-nu * inv_dx2 - am * inv_dx)
    upper = dt * (-nu * inv_dx2 + ap * inv_dx)
    return ham, lap, lower, upper


@njit(cache=True)
def _bands(u, dx, lam, nu, dt, periodic, unext, source, res, lower, diag, upper):
    """Fill ``res`` (skipped if ``source`` is empty) and the bands of ``J(u)``; returns
    ``(max|R|, max|u|)``. Expressions are ordered as in the numpy reference; the two end nodes
    are done outside the loop so that the interior loop has no branch."""
    n = u.shape[0]
    with_res = source.shape[0] > 0
    c = (1.0 / (dx * lam), 1.0 / dx, 1.0 / (dx * dx), lam, nu, dt)
    rmax = 0.0
    umax = 0.0
    for i in (0, n - 1):
        if i == 0:
            right, left = u[1], (u[n - 1] if periodic else u[1])
        else:
            right, left = (u[0] if periodic else u[n - 2]), u[n - 2]
        ham, lap, lower[i], upper[i] = _point(u[i], right, left, c)
        if with_res:
            res[i] = u[i] - unext[i] + dt * (-nu * lap + ham - source[i])
            rmax = max(rmax, abs(res[i]))
        umax = max(umax, abs(u[i]))
    if with_res:
        for i in range(1, n - 1):
            ui = u[i]
            ham, lap, lower[i], upper[i] = _point(ui, u[i + 1], u[i - 1], c)
            r = ui - unext[i] + dt * (-nu * lap + ham - source[i])
            res[i] = r
            rmax = max(rmax, abs(r))
            umax = max(umax, abs(ui))
    else:
        for i in range(1, n - 1):
            _, _, lower[i], upper[i] = _point(u[i], u[i + 1], u[i - 1], c)
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
def _thomas(lower, diag, upper, rhs, inv, out, e0, elast, z, two):
    """Solve the plain tridiagonal system (``lower[0]``, ``upper[-1]`` ignored) into ``out``; if
    ``two``, also for the right-hand side ``e0 e_0 + elast e_{n-1}`` into ``z`` in the same pass.

    Gaussian elimination without pivoting in ``gtsv``'s form (multiplier ``l_{i+1} / d_i``,
    un-normalised upper band); ``gtsv`` never pivots on these diagonally dominant matrices. The
    pivot is inverted once and multiplied twice, so the critical path holds one division per node.
    """
    n = diag.shape[0]
    d = diag[0]
    out[0] = rhs[0]
    z[0] = e0
    for i in range(n - 1):
        r = 1.0 / d
        inv[i] = r
        fact = lower[i + 1] * r
        d = diag[i + 1] - fact * upper[i]
        out[i + 1] = rhs[i + 1] - fact * out[i]
        if two:
            z[i + 1] = (elast if i + 1 == n - 1 else 0.0) - fact * z[i]
    inv[n - 1] = 1.0 / d
    out[n - 1] = out[n - 1] * inv[n - 1]
    z[n - 1] = z[n - 1] * inv[n - 1]
    for i in range(n - 2, -1, -1):
        out[i] = (out[i] - upper[i] * out[i + 1]) * inv[i]
        if two:
            z[i] = (z[i] - upper[i] * z[i + 1]) * inv[i]


@njit(cache=True)
def _solve(lower, diag, upper, rhs, periodic, d_mod, inv, y, z, out):
    """Solve ``J x = rhs`` (cyclic if ``periodic``) into ``out``; the other arrays are scratch."""
    n = diag.shape[0]
    if not periodic:
        _thomas(lower, diag, upper, rhs, inv, out, 0.0, 0.0, z, False)
        return
    # Sherman-Morrison as the reference: A = B + u v^T, u = (gamma, 0.., alpha),
    # v = (1, 0.., beta/gamma), gamma = -diag[0].
    alpha = upper[n - 1]
    beta = lower[0]
    gamma = -diag[0]
    d_mod[:] = diag
    d_mod[0] -= gamma
    d_mod[n - 1] -= alpha * beta / gamma
    _thomas(lower, d_mod, upper, rhs, inv, y, gamma, alpha, z, True)
    factor = (y[0] + beta * y[n - 1] / gamma) / (1.0 + z[0] + beta * z[n - 1] / gamma)
    for i in range(n):
        out[i] = y[i] - factor * z[i]


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
    inv = np.empty(n)
    y = np.empty(n)
    z = np.empty(n)
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
            _solve(lower, diag, upper, res, periodic, d_mod, inv, y, z, delta)
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
    inv = np.empty(n)
    y = np.empty(n)
    z = np.empty(n)
    for k in range(nt1 - 1):
        _bands(U[k], dx, lam, nu, dt, periodic, empty, empty, empty, lower, diag, upper)
        # bands of J^T: row i of J^T holds J[i-1, i] (below) and J[i+1, i] (above), cyclically
        for i in range(n):
            lower_t[i] = upper[i - 1] if i > 0 else upper[n - 1]
            upper_t[i] = lower[i + 1] if i < n - 1 else lower[0]
        _solve(lower_t, diag, upper_t, mu[k], periodic, d_mod, inv, y, z, mu[k + 1])
    return mu


def _dim(scheme) -> int:
    """The grid dimension of ``scheme`` (1 for anything else: the 1D checks then refuse it)."""
    return getattr(getattr(scheme, "grid", None), "dim", 1)


def make_hjb_sweep(scheme, *, newton_tol=1e-12, newton_maxiter=50):
    """The backward HJB sweep on ``scheme``, compiled: ``sweep(source, terminal) -> (U, newton_its)``;
    contract of :func:`mfg_core.backends.numpy.fdm.make_hjb_sweep`. A 2D scheme gets the kernel of
    :mod:`.fdm2d`."""
    if _dim(scheme) == 2:
        from . import fdm2d

        return fdm2d.make_hjb_sweep(scheme, newton_tol=newton_tol, newton_maxiter=newton_maxiter)
    c = checks.fdm_constants(scheme, "numba", "HJB sweep", newton_tol, newton_maxiter)
    consts = (float(c.dt), float(c.dx), float(c.nu), float(c.lam), bool(c.periodic), float(c.newton_tol),
              int(c.newton_maxiter), float(_ROUNDOFF))

    def sweep(source, terminal):
        source = checks.field("source", source, c.shape)
        terminal = checks.field("terminal", terminal, c.shape[1:])
        return _hjb_sweep(source, terminal, *consts)

    return sweep


def make_fp_sweep(scheme):
    """The forward FP sweep on ``scheme``, compiled: ``sweep(U, mu0) -> mu``; contract of
    :func:`mfg_core.backends.numpy.fdm.make_fp_sweep`. A 2D scheme gets the kernel of :mod:`.fdm2d`."""
    if _dim(scheme) == 2:
        from . import fdm2d

        return fdm2d.make_fp_sweep(scheme)
    c = checks.fdm_constants(scheme, "numba", "FP sweep")
    consts = (float(c.dt), float(c.dx), float(c.nu), float(c.lam), bool(c.periodic))

    def sweep(U, mu0):
        U = checks.field("U", U, c.shape)
        mu0 = checks.field("mu0", mu0, c.shape[1:])
        return _fp_sweep(U, mu0, *consts)

    return sweep
