r"""numba 2D finite-difference kernels: the scheme of :mod:`mfg_core.backends.numpy.fdm2d`, compiled,
with the project's one iterative linear solve.

The reference states the discrete system (5-point Engquist-Osher HJB, Newton with ``J = I + dt A(u)``,
FP ``(I + dt A(u^n))^T mu^{n+1} = mu^n`` in mass variables; ghosts, wraps, cut links); this module
solves the same one with the same Newton stopping rules.

Storage. ``J`` is held per node by the coefficients on its four *physical* neighbours
``C = (xl, xr, yl, yr)`` (``x - hx``, ``x + hx``, ``y - hy``, ``y + hy``; wrapped on a periodic axis),
arrays ``(ny, nx)``: the stencil's ghost at a Neumann wall folds onto the mirror neighbour, a cut link
drops out of both the off-diagonal and the diagonal (it cancels there, ``A 1 = 0``), a blocked node has
no coefficients (identity row). Where each of the stencil's ``E, W, N, S`` entries lands is found once
per factory (``slots``). ``J = (I + dt A_x) + (I + dt A_y) - I`` with ``I + dt A_x`` the tridiagonal
``(xl, 1 - xl - xr, xr)`` along each x-line (cyclic if x is periodic) and ``I + dt A_y`` alike.

Linear solve. BiCGStab, right preconditioned by the ADI product ``P = (I + dt A_y)(I + dt A_x)``:
``P^{-1} v`` is one batch of tridiagonal solves along y (every column) and one along x (every row),
Thomas elimination as in :mod:`.fdm` (each pivot inverted once) with the 1D Sherman-Morrison split on a
periodic axis; the line factorisations are done once per Newton step (FP: per time step) and applied
twice per iteration. Why: ``P = J + dt^2 A_y A_x`` is exact for either direction alone (a field that
varies along one axis only, the 1D problems) and, being a product of two M-matrices' line solves, costs
``O(n)`` per application on every backend; multigrid would need coarse operators for the upwind,
obstacle-cut matrices. The FP solve uses ``P^T = (I + dt A_x)^T (I + dt A_y)^T`` on ``J^T``.
HJB: from 0 to ``||r|| <= 1e-13 ||b||``; FP: from ``mu^n`` to ``||r|| <= 1e-15 ||b||`` (floor 1e-300).
A breakdown restarts from the current iterate; a solve that does not converge in ``KRYLOV_MAXITER``
iterations is left as is (HJB: Newton goes on and reports a failed step if its tolerance is missed).

Mass. The column sums of ``J^T`` are 1, so ``sum(mu^{n+1}) = sum(mu^n) - sum(r)``: after the solve the
values ``<= 1e-15 max(mu)`` in magnitude that are negative (round-off) are set to 0 and ``mu^{n+1}`` is
rescaled by ``sum(mu^n) / sum(mu^{n+1})`` -- the defect added to the free nodes in proportion to
``mu^{n+1}`` (blocked nodes are exactly 0 and stay so). So the mass is exact to round-off at every step.

Decisions: one ``@njit(cache=True)`` function per sweep (no Python per step); dot products and norms
are fused into the matrix-vector and update loops; ``fastmath={"reassoc", "contract"}`` only in the
Krylov vector kernels (reordered sums, FMAs: round-off changes, no change of the iteration's maths).
Measurements: ``benchmarks/README.md``, "numba 2D kernels: measurements".
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .. import checks

_ROUNDOFF = 16 * np.finfo(np.float64).eps
#: BiCGStab tolerances (relative to ||b||) of the HJB Newton solves and of the FP solves, and the FP floor
HJB_RTOL = 1e-13
FP_RTOL = 1e-15
FP_ATOL = 1e-300
#: the most BiCGStab iterations of one solve (restarts included)
KRYLOV_MAXITER = 400
#: mass fix: negatives of at most this fraction of max(mu) are round-off and set to 0
CLIP = 1e-15

_FM = {"reassoc", "contract"}


# ---------------------------------------------------------------------------------------------
# the system: residual, upwind coefficients, J's neighbour coefficients

def neighbour_slots(stencil: checks.Stencil2D) -> np.ndarray:
    """``(4, n)`` int64: where the stencil's ``E, W, N, S`` entry of each row lands among the physical
    neighbour coefficients ``(xl, xr, yl, yr)`` = 0..3, or -1 for a cut link (the entry is on the
    diagonal and cancels). Built once per factory."""
    ny, nx = stencil.ny, stencil.nx
    n = ny * nx
    p = np.arange(n)
    j, i = p // nx, p % nx
    left = j * nx + (i - 1) % nx
    right = j * nx + (i + 1) % nx
    down = ((j - 1) % ny) * nx + i
    up = ((j + 1) % ny) * nx + i
    # (on a Neumann axis the wrapped ``left`` of i = 0 is never a stencil entry: its ghost is i = 1)
    out = np.full((4, n), -1, dtype=np.int64)
    for k, nb in enumerate((stencil.east, stencil.west, stencil.north, stencil.south)):
        nb = np.asarray(nb)
        for slot, target in ((0, left), (1, right), (2, down), (3, up)):
            hit = (nb == target) & (nb != p) & (out[k] < 0)
            out[k][hit] = slot
        bad = (out[k] < 0) & (nb != p)
        if bad.any():  # pragma: no cover - the stencil only links physical neighbours
            raise AssertionError("stencil links a node that is not a neighbour")
    return out


@njit(cache=True)
def _system(u, unext, src, with_res, east, west, north, south, free, slots, c, res, C, d, dX, dY):
    """Fill ``res`` (if ``with_res``) and ``J(u)``: neighbour coefficients ``C`` ``(4, n)``, diagonal
    ``d``, and the diagonals ``dX``, ``dY`` of ``I + dt A_x``, ``I + dt A_y``. Returns
    ``(max|R|, max|u|)``. ``c = (dt, nu, lam, hx, hy)``; expressions as in the numpy reference."""
    dt, nu, lam, hx, hy = c
    n = u.shape[0]
    cx = dt * nu / (hx * hx)
    cy = dt * nu / (hy * hy)
    ddx = dt / hx
    ddy = dt / hy
    hxl = hx * lam
    hyl = hy * lam
    hx2 = hx * hx
    hy2 = hy * hy
    rmax = 0.0
    umax = 0.0
    for p in range(n):
        C[0, p] = 0.0
        C[1, p] = 0.0
        C[2, p] = 0.0
        C[3, p] = 0.0
    for p in range(n):
        up = u[p]
        uE = u[east[p]]
        uW = u[west[p]]
        uN = u[north[p]]
        uS = u[south[p]]
        fr = free[p]
        if with_res:
            axp = min(uE - up, 0.0) / hxl
            axm = max(up - uW, 0.0) / hxl
            ayp = min(uN - up, 0.0) / hyl
            aym = max(up - uS, 0.0) / hyl
            ham = 0.5 * lam * ((axp * axp + axm * axm) + (ayp * ayp + aym * aym))
            lap = (uE - 2.0 * up + uW) / hx2 + (uN - 2.0 * up + uS) / hy2
            r = up - unext[p] + dt * fr * (-nu * lap + ham - src[p])
            res[p] = r
            rmax = max(rmax, abs(r))
            umax = max(umax, abs(up))
        if fr != 0.0:
            axp = min(uE - up, 0.0) / hxl
            axm = max(up - uW, 0.0) / hxl
            ayp = min(uN - up, 0.0) / hyl
            aym = max(up - uS, 0.0) / hyl
            s = slots[0, p]
            if s >= 0:
                C[s, p] += -cx + ddx * axp
            s = slots[1, p]
            if s >= 0:
                C[s, p] += -cx - ddx * axm
            s = slots[2, p]
            if s >= 0:
                C[s, p] += -cy + ddy * ayp
            s = slots[3, p]
            if s >= 0:
                C[s, p] += -cy - ddy * aym
    for p in range(n):
        sx = C[0, p] + C[1, p]
        sy = C[2, p] + C[3, p]
        d[p] = 1.0 - (sx + sy)
        dX[p] = 1.0 - sx
        dY[p] = 1.0 - sy
    return rmax, umax


@njit(cache=True)
def _transpose(C, ny, nx, px, py, T):
    """Neighbour coefficients of ``J^T``: ``T[xl, p] = J[left(p), p] = C[xr, left(p)]`` and so on;
    0 where the neighbour is beyond a Neumann wall. The diagonals are those of ``J``."""
    for j in range(ny):
        for i in range(nx):
            p = j * nx + i
            if i > 0:
                T[0, p] = C[1, p - 1]
            else:
                T[0, p] = C[1, p + nx - 1] if px else 0.0
            if i < nx - 1:
                T[1, p] = C[0, p + 1]
            else:
                T[1, p] = C[0, p - nx + 1] if px else 0.0
            if j > 0:
                T[2, p] = C[3, p - nx]
            else:
                T[2, p] = C[3, p + (ny - 1) * nx] if py else 0.0
            if j < ny - 1:
                T[3, p] = C[2, p + nx]
            else:
                T[3, p] = C[2, p - (ny - 1) * nx] if py else 0.0


# ---------------------------------------------------------------------------------------------
# the ADI preconditioner: batched (cyclic) Thomas along x (rows) and along y (columns)

@njit(cache=True)
def _factor_x(L, D, U, ny, nx, px, m, inv, z, sfac, den):
    """Factor the tridiagonal of every x-line ``(L, D, U)`` (``L[j, 0]``, ``U[j, nx-1]`` the corner
    couplings if periodic). ``m``: multipliers, ``inv``: inverted pivots; periodic: the 1D
    Sherman-Morrison split, ``z`` the solution for its column ``(gamma, 0.., alpha)`` and per line
    ``sfac = beta / gamma``, ``den = 1 / (1 + z_0 + sfac z_{n-1})``."""
    for j in range(ny):
        o = j * nx
        d0 = D[o]
        dl = D[o + nx - 1]
        if px:
            alpha = U[o + nx - 1]
            beta = L[o]
            gamma = -d0
            d0 = d0 - gamma
            dl = dl - alpha * beta / gamma
        piv = d0
        for i in range(nx - 1):
            r = 1.0 / piv
            inv[o + i] = r
            f = L[o + i + 1] * r
            m[o + i + 1] = f
            di = dl if i + 1 == nx - 1 else D[o + i + 1]
            piv = di - f * U[o + i]
        inv[o + nx - 1] = 1.0 / piv
        if px:
            z[o] = gamma
            for i in range(1, nx):
                e = alpha if i == nx - 1 else 0.0
                z[o + i] = e - m[o + i] * z[o + i - 1]
            z[o + nx - 1] *= inv[o + nx - 1]
            for i in range(nx - 2, -1, -1):
                z[o + i] = (z[o + i] - U[o + i] * z[o + i + 1]) * inv[o + i]
            sfac[j] = beta / gamma
            den[j] = 1.0 / (1.0 + z[o] + sfac[j] * z[o + nx - 1])


@njit(cache=True)
def _factor_y(L, D, U, ny, nx, py, m, inv, z, sfac, den):
    """:func:`_factor_x` along y: every column ``i`` is a line, its nodes ``j nx + i``; loops run over
    the columns innermost (contiguous)."""
    for i in range(nx):
        if py:
            alpha = U[(ny - 1) * nx + i]
            beta = L[i]
            gamma = -D[i]
            sfac[i] = beta / gamma
            den[i] = gamma  # gamma kept here until the end of the factorisation
    last = (ny - 1) * nx
    for i in range(nx):
        piv = D[i] - (den[i] if py else 0.0)
        inv[i] = piv  # pivots first, inverted below
    for j in range(ny - 1):
        o = j * nx
        for i in range(nx):
            r = 1.0 / inv[o + i]
            inv[o + i] = r
            f = L[o + nx + i] * r
            m[o + nx + i] = f
            di = D[o + nx + i]
            if py and j + 1 == ny - 1:
                di = di - U[last + i] * L[i] / den[i]
            inv[o + nx + i] = di - f * U[o + i]
    for i in range(nx):
        inv[last + i] = 1.0 / inv[last + i]
    if py:
        for i in range(nx):
            z[i] = den[i]
        for j in range(1, ny):
            o = j * nx
            for i in range(nx):
                e = U[last + i] if j == ny - 1 else 0.0
                z[o + i] = e - m[o + i] * z[o - nx + i]
        for i in range(nx):
            z[last + i] *= inv[last + i]
        for j in range(ny - 2, -1, -1):
            o = j * nx
            for i in range(nx):
                z[o + i] = (z[o + i] - U[o + i] * z[o + nx + i]) * inv[o + i]
        for i in range(nx):
            den[i] = 1.0 / (1.0 + z[i] + sfac[i] * z[last + i])


@njit(cache=True, fastmath=_FM)
def _solve_x(U, m, inv, z, sfac, den, ny, nx, px, rhs, out):
    """``out = (line tridiagonals along x)^{-1} rhs`` from the factors of :func:`_factor_x`."""
    for j in range(ny):
        o = j * nx
        y = rhs[o]
        out[o] = y
        for i in range(1, nx):
            y = rhs[o + i] - m[o + i] * y
            out[o + i] = y
        x = y * inv[o + nx - 1]
        out[o + nx - 1] = x
        for i in range(nx - 2, -1, -1):
            x = (out[o + i] - U[o + i] * x) * inv[o + i]
            out[o + i] = x
        if px:
            f = (out[o] + sfac[j] * out[o + nx - 1]) * den[j]
            for i in range(nx):
                out[o + i] -= f * z[o + i]


@njit(cache=True, fastmath=_FM)
def _solve_y(U, m, inv, z, sfac, den, ny, nx, py, rhs, out):
    """``out = (line tridiagonals along y)^{-1} rhs`` from the factors of :func:`_factor_y`."""
    for i in range(nx):
        out[i] = rhs[i]
    for j in range(1, ny):
        o = j * nx
        for i in range(nx):
            out[o + i] = rhs[o + i] - m[o + i] * out[o - nx + i]
    last = (ny - 1) * nx
    for i in range(nx):
        out[last + i] *= inv[last + i]
    for j in range(ny - 2, -1, -1):
        o = j * nx
        for i in range(nx):
            out[o + i] = (out[o + i] - U[o + i] * out[o + nx + i]) * inv[o + i]


@njit(cache=True, fastmath=_FM)
def _correct_y(z, sfac, den, ny, nx, out, f):
    """The Sherman-Morrison correction of a periodic y-solve, in place: ``out -= f z`` per column."""
    last = (ny - 1) * nx
    for i in range(nx):
        f[i] = (out[i] + sfac[i] * out[last + i]) * den[i]
    for j in range(ny):
        o = j * nx
        for i in range(nx):
            out[o + i] -= f[i] * z[o + i]


@njit(cache=True)
def _precondition(F, Fs, ny, nx, px, py, x_first, v, out, tmp, f):
    """``out = P^{-1} v``: ``x_first`` False: y-lines then x-lines (``P = (I+dtA_y)(I+dtA_x)``, HJB);
    True: x-lines then y-lines (``P^T``, FP). ``F`` ``(8, n)``: x factors (U, m, inv, z) then y factors;
    ``Fs`` ``(4, max(nx, ny))``: per-line (sfac, den) for x then y."""
    if x_first:
        _solve_x(F[0], F[1], F[2], F[3], Fs[0], Fs[1], ny, nx, px, v, tmp)
        _solve_y(F[4], F[5], F[6], F[7], Fs[2], Fs[3], ny, nx, py, tmp, out)
        if py:
            _correct_y(F[7], Fs[2], Fs[3], ny, nx, out, f)
    else:
        _solve_y(F[4], F[5], F[6], F[7], Fs[2], Fs[3], ny, nx, py, v, tmp)
        if py:
            _correct_y(F[7], Fs[2], Fs[3], ny, nx, tmp, f)
        _solve_x(F[0], F[1], F[2], F[3], Fs[0], Fs[1], ny, nx, px, tmp, out)


@njit(cache=True)
def _factor(C, dX, dY, ny, nx, px, py, F, Fs):
    """Line factorisations of ``I + dt A_x`` (lower ``C[0]``, upper ``C[1]``) and ``I + dt A_y``
    (``C[2]``, ``C[3]``) into ``F``, ``Fs`` (layout of :func:`_precondition`)."""
    F[0, :] = C[1]
    F[4, :] = C[3]
    _factor_x(C[0], dX, C[1], ny, nx, px, F[1], F[2], F[3], Fs[0], Fs[1])
    _factor_y(C[2], dY, C[3], ny, nx, py, F[5], F[6], F[7], Fs[2], Fs[3])


# ---------------------------------------------------------------------------------------------
# BiCGStab on J (given by C, d) with the ADI preconditioner

@njit(cache=True, fastmath=_FM)
def _matvec(C, d, ny, nx, px, py, x, y, w):
    """``y = J x``; returns ``(w, y)`` (0 if ``w`` is empty)."""
    acc = 0.0
    with_dot = w.shape[0] > 0
    for j in range(ny):
        o = j * nx
        od = o - nx if j > 0 else ((ny - 1) * nx if py else o)
        ou = o + nx if j < ny - 1 else (0 if py else o)
        for i in range(nx):
            il = i - 1 if i > 0 else (nx - 1 if px else i)
            ir = i + 1 if i < nx - 1 else (0 if px else i)
            p = o + i
            v = (d[p] * x[p] + C[0, p] * x[o + il] + C[1, p] * x[o + ir]
                 + C[2, p] * x[od + i] + C[3, p] * x[ou + i])
            y[p] = v
            if with_dot:
                acc += w[p] * v
    return acc


@njit(cache=True, fastmath=_FM)
def _dot(a, b):
    s = 0.0
    for i in range(a.shape[0]):
        s += a[i] * b[i]
    return s


@njit(cache=True, fastmath=_FM)
def _matvec2(C, d, ny, nx, px, py, x, y, s):
    """``y = J x``; returns ``((y, s), (y, y))``."""
    ts = 0.0
    tt = 0.0
    for j in range(ny):
        o = j * nx
        od = o - nx if j > 0 else ((ny - 1) * nx if py else o)
        ou = o + nx if j < ny - 1 else (0 if py else o)
        for i in range(nx):
            il = i - 1 if i > 0 else (nx - 1 if px else i)
            ir = i + 1 if i < nx - 1 else (0 if px else i)
            p = o + i
            v = (d[p] * x[p] + C[0, p] * x[o + il] + C[1, p] * x[o + ir]
                 + C[2, p] * x[od + i] + C[3, p] * x[ou + i])
            y[p] = v
            ts += v * s[p]
            tt += v * v
    return ts, tt


@njit(cache=True, fastmath=_FM)
def _bicgstab(C, d, F, Fs, ny, nx, px, py, x_first, b, x, zero_start, rtol, atol, maxiter, W, f):
    """Solve ``J x = b`` (``J`` by ``C``, ``d``) by right-preconditioned BiCGStab, in place in ``x``
    (from 0 if ``zero_start``, else from ``x``). ``W`` ``(9, n)`` work. Returns
    ``(iterations, converged)``."""
    n = b.shape[0]
    r, rh, p, v, s, t, ph, sh, tmp = W[0], W[1], W[2], W[3], W[4], W[5], W[6], W[7], W[8]
    empty = W[0, :0]
    bb = _dot(b, b)
    thresh = max(rtol * math.sqrt(bb), atol)
    its = 0
    restarts = 0
    if zero_start:
        for k in range(n):
            x[k] = 0.0
            r[k] = b[k]
        rr = bb
    else:
        _matvec(C, d, ny, nx, px, py, x, tmp, empty)
        rr = 0.0
        for k in range(n):
            rk = b[k] - tmp[k]
            r[k] = rk
            rr += rk * rk
    while True:  # (re)start
        if math.sqrt(rr) <= thresh:
            return its, True
        for k in range(n):
            rh[k] = r[k]
            p[k] = 0.0
            v[k] = 0.0
        rho = 1.0
        alpha = 1.0
        omega = 1.0
        rho_new = rr
        broke = False
        while its < maxiter:
            its += 1
            beta = (rho_new / rho) * (alpha / omega)
            rho = rho_new
            for k in range(n):
                p[k] = r[k] + beta * (p[k] - omega * v[k])
            _precondition(F, Fs, ny, nx, px, py, x_first, p, ph, tmp, f)
            rv = _matvec(C, d, ny, nx, px, py, ph, v, rh)
            if rv == 0.0 or not math.isfinite(rv):
                broke = True
                break
            alpha = rho / rv
            ss = 0.0
            for k in range(n):
                sk = r[k] - alpha * v[k]
                s[k] = sk
                ss += sk * sk
            if math.sqrt(ss) <= thresh:
                for k in range(n):
                    x[k] += alpha * ph[k]
                return its, True
            _precondition(F, Fs, ny, nx, px, py, x_first, s, sh, tmp, f)
            ts, tt = _matvec2(C, d, ny, nx, px, py, sh, t, s)
            if tt == 0.0 or not math.isfinite(tt):
                broke = True
                break
            omega = ts / tt
            rr = 0.0
            rho_new = 0.0
            for k in range(n):
                x[k] += alpha * ph[k] + omega * sh[k]
                rk = s[k] - omega * t[k]
                r[k] = rk
                rr += rk * rk
                rho_new += rh[k] * rk
            if math.sqrt(rr) <= thresh:
                return its, True
            if omega == 0.0 or rho_new == 0.0:
                broke = True
                break
        if not broke or restarts >= 5:
            return its, False
        # breakdown: restart from the current iterate with the true residual
        restarts += 1
        _matvec(C, d, ny, nx, px, py, x, tmp, empty)
        rr = 0.0
        for k in range(n):
            rk = b[k] - tmp[k]
            r[k] = rk
            rr += rk * rk


# ---------------------------------------------------------------------------------------------
# the sweeps

@njit(cache=True)
def _hjb_sweep(source, terminal, east, west, north, south, free, slots, ny, nx, px, py, c,
               newton_tol, newton_maxiter, roundoff, rtol, kmax):
    nt1, n = source.shape
    U = np.empty((nt1, n))
    its = np.zeros(nt1 - 1, dtype=np.int64)
    res = np.empty(n)
    C = np.empty((4, n))
    d = np.empty(n)
    dX = np.empty(n)
    dY = np.empty(n)
    F = np.empty((8, n))
    Fs = np.zeros((4, max(nx, ny)))
    W = np.empty((9, n))
    f = np.empty(nx)
    b = np.empty(n)
    delta = np.empty(n)
    u = np.empty(n)
    krylov = 0
    failed = 0
    U[nt1 - 1] = terminal
    for k in range(nt1 - 2, -1, -1):
        unext = U[k + 1]
        src = source[k + 1]
        u[:] = unext
        count = 0
        done = False
        for it in range(1, newton_maxiter + 1):
            rmax, umax = _system(u, unext, src, True, east, west, north, south, free, slots, c, res, C, d, dX, dY)
            scale = max(1.0, umax)
            if rmax <= newton_tol * scale:
                count = it - 1
                done = True
                break
            for q in range(n):
                b[q] = -res[q]
            _factor(C, dX, dY, ny, nx, px, py, F, Fs)
            kit, ok = _bicgstab(C, d, F, Fs, ny, nx, px, py, False, b, delta, True, rtol, 0.0, kmax, W, f)
            krylov += kit
            if not ok:
                failed += 1
            dmax = 0.0
            for q in range(n):
                u[q] += delta[q]
                if abs(delta[q]) > dmax:
                    dmax = abs(delta[q])
            if dmax <= roundoff * scale:
                count = it
                done = True
                break
        if not done:
            rmax, umax = _system(u, unext, src, True, east, west, north, south, free, slots, c, res, C, d, dX, dY)
            count = newton_maxiter if rmax <= newton_tol * max(1.0, umax) else -newton_maxiter
        U[k] = u
        its[k] = count
    return U, its, krylov, failed


@njit(cache=True)
def _fp_sweep(U, mu0, east, west, north, south, free, slots, ny, nx, px, py, c, rtol, atol, kmax, clip):
    nt1, n = U.shape
    mu = np.empty((nt1, n))
    mu[0] = mu0
    empty = np.empty(0)
    C = np.empty((4, n))
    T = np.empty((4, n))
    d = np.empty(n)
    dX = np.empty(n)
    dY = np.empty(n)
    F = np.empty((8, n))
    Fs = np.zeros((4, max(nx, ny)))
    W = np.empty((9, n))
    f = np.empty(nx)
    krylov = 0
    failed = 0
    for k in range(nt1 - 1):
        _system(U[k], empty, empty, False, east, west, north, south, free, slots, c, empty, C, d, dX, dY)
        _transpose(C, ny, nx, px, py, T)
        # P^T = (I + dt A_x)^T (I + dt A_y)^T: the line factors of the transposed tridiagonals
        F[0, :] = T[1]
        F[4, :] = T[3]
        _factor_x(T[0], dX, T[1], ny, nx, px, F[1], F[2], F[3], Fs[0], Fs[1])
        _factor_y(T[2], dY, T[3], ny, nx, py, F[5], F[6], F[7], Fs[2], Fs[3])
        b = mu[k]
        x = mu[k + 1]
        x[:] = b
        kit, ok = _bicgstab(T, d, F, Fs, ny, nx, px, py, True, b, x, False, rtol, atol, kmax, W, f)
        krylov += kit
        if not ok:
            failed += 1
        # the mass: clip round-off negatives, then rescale to the previous step's mass
        top = 0.0
        for q in range(n):
            top = max(top, x[q])
        for q in range(n):
            if x[q] < 0.0 and -x[q] <= clip * top:
                x[q] = 0.0
        target = 0.0
        now = 0.0
        for q in range(n):
            target += b[q]
            now += x[q]
        if now != 0.0:
            g = target / now
            for q in range(n):
                x[q] *= g
    return mu, krylov, failed


def make_hjb_sweep(scheme, *, newton_tol=1e-12, newton_maxiter=50):
    """The backward 2D HJB sweep, compiled: ``sweep(source, terminal) -> (U, newton_its)``; contract
    of :func:`mfg_core.backends.numpy.fdm2d.make_hjb_sweep`. ``sweep.diagnostics``: ``newton_steps``,
    ``krylov_iterations`` (BiCGStab iterations of the sweep), ``krylov_failures``."""
    c = checks.fdm2d_constants(scheme, "numba", "HJB sweep", newton_tol, newton_maxiter)
    consts = _grid_constants(scheme, c)
    tol = (float(c.newton_tol), int(c.newton_maxiter), float(_ROUNDOFF), HJB_RTOL, KRYLOV_MAXITER)

    def sweep(source, terminal):
        source = checks.field("source", source, c.shape)
        terminal = checks.field("terminal", terminal, c.shape[1:])
        nt1 = c.shape[0]
        U, its, krylov, failed = _hjb_sweep(source.reshape(nt1, -1), terminal.ravel(), *consts, *tol)
        sweep.diagnostics = {"newton_steps": int(np.abs(its).sum()), "krylov_iterations": int(krylov),
                             "krylov_failures": int(failed)}
        return U.reshape(c.shape), its

    sweep.diagnostics = {}
    return sweep


def make_fp_sweep(scheme):
    """The forward 2D FP sweep, compiled: ``sweep(U, mu0) -> mu`` (mass variables); contract of
    :func:`mfg_core.backends.numpy.fdm2d.make_fp_sweep`. ``sweep.diagnostics``: ``krylov_iterations``,
    ``krylov_failures``."""
    c = checks.fdm2d_constants(scheme, "numba", "FP sweep")
    consts = _grid_constants(scheme, c)
    tol = (FP_RTOL, FP_ATOL, KRYLOV_MAXITER, CLIP)

    def sweep(U, mu0):
        U = checks.field("U", U, c.shape)
        mu0 = checks.field("mu0", mu0, c.shape[1:])
        nt1 = c.shape[0]
        mu, krylov, failed = _fp_sweep(U.reshape(nt1, -1), mu0.ravel(), *consts, *tol)
        sweep.diagnostics = {"krylov_iterations": int(krylov), "krylov_failures": int(failed)}
        return mu.reshape(c.shape)

    sweep.diagnostics = {}
    return sweep


def _grid_constants(scheme, c: checks.FDM2DConstants):
    """The arrays and numbers the compiled sweeps take after their fields (built once per factory)."""
    st = c.stencil
    ay, ax = scheme.grid.axes
    return (np.ascontiguousarray(st.east), np.ascontiguousarray(st.west), np.ascontiguousarray(st.north),
            np.ascontiguousarray(st.south), np.ascontiguousarray(st.free, dtype=np.float64), neighbour_slots(st),
            int(st.ny), int(st.nx), bool(ax.periodic), bool(ay.periodic),
            (float(c.dt), float(c.nu), float(c.lam), float(c.hx), float(c.hy)))
