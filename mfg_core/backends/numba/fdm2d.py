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

Linear solve. BiCGStab, right preconditioned by the ADI product ``P = (alpha I + dt A_y)(alpha I + dt
A_x)``: ``P^{-1} v`` is one batch of tridiagonal solves along y (every column) and one along x (every
row), Thomas elimination as in :mod:`.fdm` (each pivot inverted once) with the 1D Sherman-Morrison split
on a periodic axis; the line factorisations are done once per Newton step (FP: per time step) and
applied twice per iteration. Why: a product of two M-matrices' line solves costs ``O(n)`` per
application on every backend, and at ``alpha = 1`` it is exact for either direction alone (the 1D
problems); multigrid would need coarse operators for the upwind, obstacle-cut matrices. The FP solve
uses ``P^T`` on ``J^T``. The tolerances and the shift ``alpha`` (1, then Peaceman-Rachford's once a
solve is slow) are the common rule of :mod:`mfg_core.backends.krylov2d`: HJB from 0 with inexact
Newton's forcing term and floor, FP from ``mu^n`` (floor 1e-300); so are the caps (cycles of at most
``CYCLE`` iterations, a breakdown or a cycle's end restarting from the current iterate, ``CYCLE *
CYCLES`` in all). A solve still short after them is used as it is and counted (HJB: Newton goes on
and reports a failed step if its tolerance is missed).

Mass. The column sums of ``J^T`` are 1, so ``sum(mu^{n+1}) = sum(mu^n) - sum(r)``: after the solve the
negative values of magnitude ``<= FP_CLIP max|mu|`` (the solve's error, :mod:`..krylov2d`) are set to
0 and ``mu^{n+1}`` is rescaled by ``sum(mu^n) / sum(mu^{n+1})`` -- the defect added to the free nodes in proportion to
``mu^{n+1}`` (blocked nodes are exactly 0 and stay so). So the mass is exact to round-off at every step.

Decisions: one ``@njit(cache=True)`` function per sweep (no Python per step), every buffer allocated
once per call and the index/cut tables once per factory. Assembly runs row by row, branch-free on the
inner nodes (cut links as bit masks), through the stencil's indices only on the first and last
column. The x-lines are factorised and solved in transposed ``(x, y)`` storage, so both batches of line
solves have the lines innermost (contiguous, vectorised: no line waits on its own recurrence, 2x
faster than line by line). BiCGStab keeps six vectors, fuses its direction update into the first
y-solve and its dot products into the matrix-vector and update loops; ``fastmath={"reassoc",
"contract"}`` only in those vector kernels (reordered sums, FMAs: round-off, not the iteration's
maths); maxima by eight running maxima (a scalar max chain is latency-bound). Tried and dropped:
float32 line factors (no measurable gain, and ``P`` is no longer exact on separable fields: lq2d needs
35-60% more HJB iterations). Not used: ``prange`` (jobs run on one thread, and the parallel dimension
of a line batch is its vectorised inner loop: a parallel region per row). Measurements:
``benchmarks/README.md``, "numba 2D kernels: measurements".
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .. import checks, krylov2d

_ROUNDOFF = 16 * np.finfo(np.float64).eps
#: the FP solves' absolute floor (only against a zero right-hand side)
FP_ATOL = 1e-300

_FM = {"reassoc", "contract"}


# ---------------------------------------------------------------------------------------------
# the system: residual, upwind coefficients, J's neighbour coefficients

def neighbour_slots(stencil: checks.Stencil2D) -> np.ndarray:
    """``(4, n)`` int64: where the stencil's ``E, W, N, S`` entry of each row lands among the physical
    neighbour coefficients ``(xl, xr, yl, yr)`` = 0..3, or -1 for a cut link (the entry is on the
    diagonal and cancels). Built once per factory."""
    ny, nx = stencil.ny, stencil.nx
    p = np.arange(ny * nx)
    j, i = p // nx, p % nx
    # wrapped neighbours; on a Neumann axis the wrapped ones are never stencil entries (the ghost
    # beyond a wall is the mirror node inside)
    targets = (j * nx + (i - 1) % nx, j * nx + (i + 1) % nx, ((j - 1) % ny) * nx + i, ((j + 1) % ny) * nx + i)
    out = np.full((4, ny * nx), -1, dtype=np.int64)
    for k, nb in enumerate((stencil.east, stencil.west, stencil.north, stencil.south)):
        nb = np.asarray(nb)
        for slot, target in enumerate(targets):
            out[k][(nb == target) & (nb != p) & (out[k] < 0)] = slot
        if np.any((out[k] < 0) & (nb != p)):  # pragma: no cover - the stencil links neighbours only
            raise AssertionError("stencil links a node that is not a neighbour")
    return out


def cut_codes(stencil: checks.Stencil2D) -> np.ndarray:
    """``(ny, nx)`` uint8: bit 0..3 set where the ``E, W, N, S`` link is cut (the stencil points at
    the node itself). Built once per factory."""
    p = np.arange(stencil.size)
    code = np.zeros(stencil.size, dtype=np.uint8)
    for bit, nb in enumerate((stencil.east, stencil.west, stencil.north, stencil.south)):
        code |= (np.asarray(nb) == p).astype(np.uint8) << bit
    return code.reshape(stencil.ny, stencil.nx)


@njit(cache=True)
def _edge(p, uf, nf, sf, east, west, north, south, free, slots, k, with_res, rf, Cf, df):
    """:func:`_system` at one node, through the stencil's indices (the first and last column)."""
    cx, cy, ddx, ddy, ihxl, ihyl, ihx2, ihy2, dt, nu, lam = k
    up = uf[p]
    uE = uf[east[p]]
    uW = uf[west[p]]
    uN = uf[north[p]]
    uS = uf[south[p]]
    fr = free[p]
    axp = min(uE - up, 0.0) * ihxl
    axm = max(up - uW, 0.0) * ihxl
    ayp = min(uN - up, 0.0) * ihyl
    aym = max(up - uS, 0.0) * ihyl
    if with_res:
        ham = 0.5 * lam * ((axp * axp + axm * axm) + (ayp * ayp + aym * aym))
        lap = (uE - 2.0 * up + uW) * ihx2 + (uN - 2.0 * up + uS) * ihy2
        rf[p] = up - nf[p] + dt * fr * (-nu * lap + ham - sf[p])
    c0 = 0.0
    c1 = 0.0
    c2 = 0.0
    c3 = 0.0
    if fr != 0.0:
        for q in range(4):
            if q == 0:
                v = -cx + ddx * axp
            elif q == 1:
                v = -cx - ddx * axm
            elif q == 2:
                v = -cy + ddy * ayp
            else:
                v = -cy - ddy * aym
            s = slots[q, p]
            if s == 0:
                c0 += v
            elif s == 1:
                c1 += v
            elif s == 2:
                c2 += v
            elif s == 3:
                c3 += v
    Cf[0, p] = c0
    Cf[1, p] = c1
    Cf[2, p] = c2
    Cf[3, p] = c3
    df[p] = 1.0 - ((c0 + c1) + (c2 + c3))


@njit(cache=True, fastmath={"contract"})
def _row(ur, un, us, nr, sr, cr, fr_, with_res, rr, c0r, c1r, c2r, c3r, dr, k, fold_s, fold_n):
    """:func:`_system` on the inner nodes ``1..nx-2`` of one row (``un``, ``us``: the rows the N and
    S entries read; ``fold_s``/``fold_n``: the row is on a Neumann wall, both y entries fold onto the
    inside neighbour). Branch-free, vectorised."""
    cx, cy, ddx, ddy, ihxl, ihyl, ihx2, ihy2, dt, nu, lam = k
    nx = ur.shape[0]
    for i in range(1, nx - 1):
        up = ur[i]
        cb = cr[i]
        cE = (cb & 1) != 0
        cW = (cb & 2) != 0
        cN = (cb & 4) != 0
        cS = (cb & 8) != 0
        uE = up if cE else ur[i + 1]
        uW = up if cW else ur[i - 1]
        uN = up if cN else un[i]
        uS = up if cS else us[i]
        fr = fr_[i]
        e = uE - up
        axp = (e if e < 0.0 else 0.0) * ihxl
        e = up - uW
        axm = (e if e > 0.0 else 0.0) * ihxl
        e = uN - up
        ayp = (e if e < 0.0 else 0.0) * ihyl
        e = up - uS
        aym = (e if e > 0.0 else 0.0) * ihyl
        if with_res:
            ham = 0.5 * lam * ((axp * axp + axm * axm) + (ayp * ayp + aym * aym))
            lap = (uE - 2.0 * up + uW) * ihx2 + (uN - 2.0 * up + uS) * ihy2
            rr[i] = up - nr[i] + dt * fr * (-nu * lap + ham - sr[i])
        vE = 0.0 if cE else fr * (-cx + ddx * axp)
        vW = 0.0 if cW else fr * (-cx - ddx * axm)
        vN = 0.0 if cN else fr * (-cy + ddy * ayp)
        vS = 0.0 if cS else fr * (-cy - ddy * aym)
        if fold_s:
            c2 = 0.0
            c3 = vN + vS
        elif fold_n:
            c2 = vN + vS
            c3 = 0.0
        else:
            c2 = vS
            c3 = vN
        c0r[i] = vW
        c1r[i] = vE
        c2r[i] = c2
        c3r[i] = c3
        dr[i] = 1.0 - ((vW + vE) + (c2 + c3))


@njit(cache=True)
def _absmax(a):
    """``max|a|`` of a 1-D array (eight running maxima: the reduction does not wait on itself)."""
    n = a.shape[0]
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = 0.0
    k = 0
    while k + 8 <= n:
        v = abs(a[k])
        m0 = v if v > m0 else m0
        v = abs(a[k + 1])
        m1 = v if v > m1 else m1
        v = abs(a[k + 2])
        m2 = v if v > m2 else m2
        v = abs(a[k + 3])
        m3 = v if v > m3 else m3
        v = abs(a[k + 4])
        m4 = v if v > m4 else m4
        v = abs(a[k + 5])
        m5 = v if v > m5 else m5
        v = abs(a[k + 6])
        m6 = v if v > m6 else m6
        v = abs(a[k + 7])
        m7 = v if v > m7 else m7
        k += 8
    while k < n:
        v = abs(a[k])
        m0 = v if v > m0 else m0
        k += 1
    return max(max(max(m0, m1), max(m2, m3)), max(max(m4, m5), max(m6, m7)))


@njit(cache=True, fastmath=_FM)
def _finite(a):
    """Whether every entry of ``a`` is finite (a NaN or inf makes ``a * 0`` a NaN)."""
    s = 0.0
    for k in range(a.shape[0]):
        s += a[k] * 0.0
    return s == 0.0


@njit(cache=True)
def _system(u, unext, src, with_res, east, west, north, south, free, free2, slots, codes, c, py, res, C, d):
    """Fill ``res`` (if ``with_res``) and ``J(u)``: neighbour coefficients ``C`` ``(4, ny, nx)`` and
    diagonal ``d``; returns ``(max|R|, max|u|)`` (``max|R| = inf`` if ``R`` is not finite). ``c = (dt, nu,
    lam, hx, hy)``; the reference's expressions with reciprocals of ``hx lam``, ``hx^2``, ... (within an
    ulp of it). Inner nodes row by row with the neighbours read directly (cut links from ``codes``),
    the first and last column through the stencil."""
    dt, nu, lam, hx, hy = c
    ny, nx = u.shape
    n = ny * nx
    k = (dt * nu / (hx * hx), dt * nu / (hy * hy), dt / hx, dt / hy, 1.0 / (hx * lam), 1.0 / (hy * lam),
         1.0 / (hx * hx), 1.0 / (hy * hy), dt, nu, lam)
    uf = u.reshape(n)
    nf = unext.reshape(unext.size)
    sf = src.reshape(src.size)
    rf = res.reshape(res.size)
    Cf = C.reshape((4, n))
    df = d.reshape(n)
    for j in range(ny):
        # the rows the N and S entries of an inner node read (ghost rows mirrored at a Neumann wall)
        jn = j + 1 if j < ny - 1 else (0 if py else ny - 2)
        js = j - 1 if j > 0 else (ny - 1 if py else 1)
        fold_s = (not py) and j == 0
        fold_n = (not py) and j == ny - 1
        if with_res:
            _row(u[j], u[jn], u[js], unext[j], src[j], codes[j], free2[j], True, res[j], C[0, j], C[1, j],
                 C[2, j], C[3, j], d[j], k, fold_s, fold_n)
        else:
            _row(u[j], u[jn], u[js], u[j], u[j], codes[j], free2[j], False, u[j], C[0, j], C[1, j],
                 C[2, j], C[3, j], d[j], k, fold_s, fold_n)
        _edge(j * nx, uf, nf, sf, east, west, north, south, free, slots, k, with_res, rf, Cf, df)
        _edge(j * nx + nx - 1, uf, nf, sf, east, west, north, south, free, slots, k, with_res, rf, Cf, df)
    if not with_res:
        return 0.0, 0.0
    rmax = _absmax(rf) if _finite(rf) else math.inf
    return rmax, _absmax(uf)


@njit(cache=True)
def _transpose(C, px, py, T):
    """Neighbour coefficients of ``J^T``: ``T[xl][j, i] = J[(j, i-1), (j, i)] = C[xr][j, i-1]`` and so
    on (wrapped if periodic; 0 beyond a Neumann wall). The diagonal is that of ``J``."""
    ny, nx = C.shape[1], C.shape[2]
    for j in range(ny):
        T[0, j, 0] = C[1, j, nx - 1] if px else 0.0
        for i in range(1, nx):
            T[0, j, i] = C[1, j, i - 1]
        for i in range(nx - 1):
            T[1, j, i] = C[0, j, i + 1]
        T[1, j, nx - 1] = C[0, j, 0] if px else 0.0
        jd = j - 1 if j > 0 else ny - 1
        ju = j + 1 if j < ny - 1 else 0
        keep_d = 1.0 if (j > 0 or py) else 0.0
        keep_u = 1.0 if (j < ny - 1 or py) else 0.0
        for i in range(nx):
            T[2, j, i] = keep_d * C[3, jd, i]
            T[3, j, i] = keep_u * C[2, ju, i]


# ---------------------------------------------------------------------------------------------
# the ADI preconditioner: batched (cyclic) Thomas along x (every row) and along y (every column).
# x-lines are factorised in transposed (x, y) storage, so that both batches run with the lines
# innermost (contiguous, vectorised) and no line waits on its own recurrence.

@njit(cache=True)
def _factor_x(L, U, A, B, px, shift, FX, ZX, FXs, piv):
    """Factor the tridiagonals of every x-line -- lower ``L``, upper ``U`` (``L[j, 0]``, ``U[j, nx-1]``
    the wrap couplings if periodic), diagonal ``shift - (A + B)`` (the lines of ``alpha I + dt A_x``) --
    into ``FX = (U^T, m^T, inv^T)`` ``(3, nx, ny)``: Thomas elimination as in :mod:`.fdm` (multipliers ``m``, inverted pivots ``inv``).
    Periodic: the 1D Sherman-Morrison split (``gamma = -D[j, 0]``), ``ZX`` ``(ny, nx)`` the solution for
    ``(gamma, 0.., alpha)`` and ``FXs = (beta / gamma, 1 / (1 + z_0 + beta z_{n-1} / gamma))`` per line.
    """
    ny, nx = L.shape
    UT, mT, iT = FX[0], FX[1], FX[2]
    for i in range(nx):
        for j in range(ny):
            UT[i, j] = U[j, i]
    for j in range(ny):
        d0 = shift - (A[j, 0] + B[j, 0])
        piv[j] = d0 + d0 if px else d0
    for i in range(nx - 1):
        for j in range(ny):
            r = 1.0 / piv[j]
            iT[i, j] = r
            f = L[j, i + 1] * r
            mT[i + 1, j] = f
            di = shift - (A[j, i + 1] + B[j, i + 1])
            if px and i + 1 == nx - 1:
                di = di + U[j, nx - 1] * L[j, 0] / (shift - (A[j, 0] + B[j, 0]))  # - alpha beta / gamma
            piv[j] = di - f * U[j, i]
    for j in range(ny):
        iT[nx - 1, j] = 1.0 / piv[j]
    if px:
        for j in range(ny):
            z = -(shift - (A[j, 0] + B[j, 0]))
            ZX[j, 0] = z
            for i in range(1, nx):
                e = U[j, nx - 1] if i == nx - 1 else 0.0
                z = e - mT[i, j] * z
                ZX[j, i] = z
            z = z * iT[nx - 1, j]
            ZX[j, nx - 1] = z
            for i in range(nx - 2, -1, -1):
                z = (ZX[j, i] - UT[i, j] * z) * iT[i, j]
                ZX[j, i] = z
            sf = L[j, 0] / (-(shift - (A[j, 0] + B[j, 0])))
            FXs[0, j] = sf
            FXs[1, j] = 1.0 / (1.0 + ZX[j, 0] + sf * ZX[j, nx - 1])


@njit(cache=True)
def _factor_y(L, U, A, B, py, shift, FY, ZY, FYs, piv):
    """:func:`_factor_x` along y for every column, in ``(ny, nx)`` storage: ``FY = (U, m, inv)``,
    ``ZY`` ``(ny, nx)``, ``FYs`` ``(2, nx)``."""
    ny, nx = L.shape
    Uc, m, iv = FY[0], FY[1], FY[2]
    for j in range(ny):
        for i in range(nx):
            Uc[j, i] = U[j, i]
    for i in range(nx):
        d0 = shift - (A[0, i] + B[0, i])
        piv[i] = d0 + d0 if py else d0
    for j in range(ny - 1):
        for i in range(nx):
            r = 1.0 / piv[i]
            iv[j, i] = r
            f = L[j + 1, i] * r
            m[j + 1, i] = f
            di = shift - (A[j + 1, i] + B[j + 1, i])
            if py and j + 1 == ny - 1:
                di = di + U[ny - 1, i] * L[0, i] / (shift - (A[0, i] + B[0, i]))
            piv[i] = di - f * U[j, i]
    for i in range(nx):
        iv[ny - 1, i] = 1.0 / piv[i]
    if py:
        for i in range(nx):
            ZY[0, i] = -(shift - (A[0, i] + B[0, i]))
        for j in range(1, ny):
            for i in range(nx):
                e = U[ny - 1, i] if j == ny - 1 else 0.0
                ZY[j, i] = e - m[j, i] * ZY[j - 1, i]
        for i in range(nx):
            ZY[ny - 1, i] *= iv[ny - 1, i]
        for j in range(ny - 2, -1, -1):
            for i in range(nx):
                ZY[j, i] = (ZY[j, i] - Uc[j, i] * ZY[j + 1, i]) * iv[j, i]
        for i in range(nx):
            sf = L[0, i] / (-(shift - (A[0, i] + B[0, i])))
            FYs[0, i] = sf
            FYs[1, i] = 1.0 / (1.0 + ZY[0, i] + sf * ZY[ny - 1, i])


@njit(cache=True, fastmath=_FM)
def _solve_x(FX, ZX, FXs, px, rhs, out, t, prev):
    """``out = (x-line tridiagonals)^{-1} rhs`` from :func:`_factor_x` (``out`` may be ``rhs``):
    forward into the transposed scratch ``t`` ``(nx, ny)``, backward into ``out`` with the last column
    in ``prev`` ``(ny,)``."""
    ny, nx = rhs.shape
    UT, mT, iT = FX[0], FX[1], FX[2]
    for j in range(ny):
        t[0, j] = rhs[j, 0]
    for i in range(1, nx):
        for j in range(ny):
            t[i, j] = rhs[j, i] - mT[i, j] * t[i - 1, j]
    for j in range(ny):
        v = t[nx - 1, j] * iT[nx - 1, j]
        prev[j] = v
        out[j, nx - 1] = v
    for i in range(nx - 2, -1, -1):
        for j in range(ny):
            v = (t[i, j] - UT[i, j] * prev[j]) * iT[i, j]
            prev[j] = v
            out[j, i] = v
    if px:
        for j in range(ny):
            f = (out[j, 0] + FXs[0, j] * out[j, nx - 1]) * FXs[1, j]
            for i in range(nx):
                out[j, i] -= f * ZX[j, i]


@njit(cache=True, fastmath=_FM)
def _solve_y(FY, ZY, FYs, py, rhs, out, f):
    """``out = (y-line tridiagonals)^{-1} rhs`` from :func:`_factor_y` (``out`` may be ``rhs``);
    ``f`` ``(nx,)`` scratch."""
    ny, nx = rhs.shape
    Uc, m, iv = FY[0], FY[1], FY[2]
    for i in range(nx):
        out[0, i] = rhs[0, i]
    for j in range(1, ny):
        for i in range(nx):
            out[j, i] = rhs[j, i] - m[j, i] * out[j - 1, i]
    _back_y(Uc, iv, ZY, FYs, py, out, f)


@njit(cache=True, fastmath=_FM)
def _solve_y_p(FY, ZY, FYs, py, r, p, v, beta, omega, out, f):
    """BiCGStab's direction update ``p = r + beta (p - omega v)`` fused with :func:`_solve_y` of it."""
    ny, nx = r.shape
    Uc, m, iv = FY[0], FY[1], FY[2]
    for i in range(nx):
        q = r[0, i] + beta * (p[0, i] - omega * v[0, i])
        p[0, i] = q
        out[0, i] = q
    for j in range(1, ny):
        for i in range(nx):
            q = r[j, i] + beta * (p[j, i] - omega * v[j, i])
            p[j, i] = q
            out[j, i] = q - m[j, i] * out[j - 1, i]
    _back_y(Uc, iv, ZY, FYs, py, out, f)


@njit(cache=True, fastmath=_FM)
def _back_y(Uc, iv, ZY, FYs, py, out, f):
    ny, nx = out.shape
    for i in range(nx):
        out[ny - 1, i] *= iv[ny - 1, i]
    for j in range(ny - 2, -1, -1):
        for i in range(nx):
            out[j, i] = (out[j, i] - Uc[j, i] * out[j + 1, i]) * iv[j, i]
    if py:
        for i in range(nx):
            f[i] = (out[0, i] + FYs[0, i] * out[ny - 1, i]) * FYs[1, i]
        for j in range(ny):
            for i in range(nx):
                out[j, i] -= f[i] * ZY[j, i]


# ---------------------------------------------------------------------------------------------
# BiCGStab on J (given by C, d) with the ADI preconditioner

@njit(cache=True, fastmath=_FM)
def _matvec(C, d, px, py, x, y, w, s):
    """``y = J x`` for ``J`` by neighbour coefficients ``C`` and diagonal ``d``; returns
    ``((w, y), (s, y), (y, y))``."""
    ny, nx = x.shape
    wy = 0.0
    sy = 0.0
    yy = 0.0
    for j in range(ny):
        jd = j - 1 if j > 0 else (ny - 1 if py else 0)
        ju = j + 1 if j < ny - 1 else (0 if py else j)
        c0 = C[0, j]
        c1 = C[1, j]
        c2 = C[2, j]
        c3 = C[3, j]
        dd = d[j]
        xr = x[j]
        xd = x[jd]
        xu = x[ju]
        yr = y[j]
        wr = w[j]
        sr = s[j]
        il = nx - 1 if px else 0
        v = dd[0] * xr[0] + c0[0] * xr[il] + c1[0] * xr[1] + c2[0] * xd[0] + c3[0] * xu[0]
        yr[0] = v
        wy += wr[0] * v
        sy += sr[0] * v
        yy += v * v
        for i in range(1, nx - 1):
            v = dd[i] * xr[i] + c0[i] * xr[i - 1] + c1[i] * xr[i + 1] + c2[i] * xd[i] + c3[i] * xu[i]
            yr[i] = v
            wy += wr[i] * v
            sy += sr[i] * v
            yy += v * v
        i = nx - 1
        ir = 0 if px else nx - 1
        v = dd[i] * xr[i] + c0[i] * xr[i - 1] + c1[i] * xr[ir] + c2[i] * xd[i] + c3[i] * xu[i]
        yr[i] = v
        wy += wr[i] * v
        sy += sr[i] * v
        yy += v * v
    return wy, sy, yy


@njit(cache=True, fastmath=_FM)
def _residual(C, d, px, py, b, x, r):
    """``r = b - J x``; returns ``(r, r)``."""
    _matvec(C, d, px, py, x, r, r, r)
    n = b.size
    bf = b.reshape(n)
    rf = r.reshape(n)
    rr = 0.0
    for k in range(n):
        rk = bf[k] - rf[k]
        rf[k] = rk
        rr += rk * rk
    return rr


@njit(cache=True, fastmath=_FM)
def _bicgstab(C, d, FX, ZX, FXs, FY, ZY, FYs, px, py, x_first, b, x, zero_start, rtol, atol, cycle, total,
              W, t, prev, f):
    """Solve ``J x = b`` by right-preconditioned BiCGStab (van der Vorst), in place in ``x`` (from 0 if
    ``zero_start``, else from ``x``), to ``||r|| <= max(rtol ||b||, atol)`` with the recursive residual.
    ``x_first`` picks the preconditioner (see :func:`_factor_x`; False: ``P^{-1}`` y-lines then
    x-lines, True: ``P^{-T}`` x-lines then y-lines). The caps of :mod:`..krylov2d`: cycles of at most
    ``cycle`` iterations, ``total`` in all; a cycle that breaks down (``(r0, v) = 0``, ``(t, t) = 0``,
    ``omega = 0``, ``rho = 0`` or non-finite) or reaches its cap restarts from the current iterate
    with its true residual.
    ``W`` ``(6, ny, nx)``: ``r`` (also ``s``), ``r0``, ``p``, ``v``, ``t`` and the preconditioned
    ``p``, then ``s``. Returns ``(iterations, converged)``."""
    ny, nx = b.shape
    n = ny * nx
    r, rh, p, v, tv, q = W[0], W[1], W[2], W[3], W[4], W[5]
    bf = b.reshape(n)
    xf = x.reshape(n)
    rf, rhf, pf, vf, tf, qf = r.reshape(n), rh.reshape(n), p.reshape(n), v.reshape(n), tv.reshape(n), q.reshape(n)
    bb = 0.0
    for k in range(n):
        bb += bf[k] * bf[k]
    thresh = max(rtol * math.sqrt(bb), atol)
    its = 0
    if zero_start:
        for k in range(n):
            xf[k] = 0.0
            rf[k] = bf[k]
        rr = bb
    else:
        rr = _residual(C, d, px, py, b, x, r)
    while True:  # a cycle, from the current iterate
        if math.sqrt(rr) <= thresh:
            return its, True
        if its >= total:
            return its, False
        stop = min(its + cycle, total)
        for k in range(n):
            rhf[k] = rf[k]
            pf[k] = 0.0
            vf[k] = 0.0
        rho = 1.0
        alpha = 1.0
        omega = 1.0
        rho_new = rr
        while its < stop:
            its += 1
            beta = (rho_new / rho) * (alpha / omega)
            rho = rho_new
            # q = P^{-1} p, with p = r + beta (p - omega v)
            if x_first:
                for k in range(n):
                    pf[k] = rf[k] + beta * (pf[k] - omega * vf[k])
                _solve_x(FX, ZX, FXs, px, p, q, t, prev)
                _solve_y(FY, ZY, FYs, py, q, q, f)
            else:
                _solve_y_p(FY, ZY, FYs, py, r, p, v, beta, omega, q, f)
                _solve_x(FX, ZX, FXs, px, q, q, t, prev)
            rv, _, _ = _matvec(C, d, px, py, q, v, rh, rh)
            if rv == 0.0 or not math.isfinite(rv):
                break
            alpha = rho / rv
            ss = 0.0
            for k in range(n):
                xf[k] += alpha * qf[k]
                sk = rf[k] - alpha * vf[k]
                rf[k] = sk  # r holds s from here on
                ss += sk * sk
            if math.sqrt(ss) <= thresh:
                return its, True
            # q = P^{-1} s, t = J q
            if x_first:
                _solve_x(FX, ZX, FXs, px, r, q, t, prev)
                _solve_y(FY, ZY, FYs, py, q, q, f)
            else:
                _solve_y(FY, ZY, FYs, py, r, q, f)
                _solve_x(FX, ZX, FXs, px, q, q, t, prev)
            _, ts, tt = _matvec(C, d, px, py, q, tv, r, r)
            if tt == 0.0 or not math.isfinite(tt):
                break
            omega = ts / tt
            rr = 0.0
            rho_new = 0.0
            for k in range(n):
                xf[k] += omega * qf[k]
                rk = rf[k] - omega * tf[k]
                rf[k] = rk
                rr += rk * rk
                rho_new += rhf[k] * rk
            if math.sqrt(rr) <= thresh:
                return its, True
            if omega == 0.0 or rho_new == 0.0:
                break
        rr = _residual(C, d, px, py, b, x, r)


# ---------------------------------------------------------------------------------------------
# the sweeps

@njit(cache=True)
def _krylov_workspace(ny, nx):
    """What :func:`_bicgstab` and the line factorisations need beside the factors: the periodic
    Sherman-Morrison vectors and scalars ``ZX, ZY, FXs, FYs``, BiCGStab's six vectors ``W``, and the
    line solves' scratch ``t`` ``(nx, ny)``, ``prev`` ``(ny,)``, ``f`` ``(nx,)``."""
    return (np.zeros((ny, nx)), np.zeros((ny, nx)), np.zeros((2, ny)), np.zeros((2, nx)), np.empty((6, ny, nx)),
            np.empty((nx, ny)), np.empty(ny), np.empty(nx))


@njit(cache=True)
def _hjb_sweep(source, terminal, east, west, north, south, free, free2, slots, codes, px, py, c,
               newton_tol, newton_maxiter, roundoff, forcing, floor, cycle, total, shift, switch, FX, FY):
    nt1, ny, nx = source.shape
    n = ny * nx
    U = np.empty((nt1, ny, nx))
    its = np.zeros(nt1 - 1, dtype=np.int64)
    res = np.empty((ny, nx))
    C = np.empty((4, ny, nx))
    d = np.empty((ny, nx))
    ZX, ZY, FXs, FYs, W, t, prev, f = _krylov_workspace(ny, nx)
    b = np.empty((ny, nx))
    delta = np.empty((ny, nx))
    u = np.empty((ny, nx))
    uf = u.reshape(n)
    bf = b.reshape(n)
    resf = res.reshape(n)
    df = delta.reshape(n)
    krylov = 0
    unconverged = 0
    alpha = 1.0
    U[nt1 - 1] = terminal
    for k in range(nt1 - 2, -1, -1):
        unext = U[k + 1]
        src = source[k + 1]
        u[:, :] = unext
        count = 0
        done = False
        for it in range(1, newton_maxiter + 1):
            rmax, umax = _system(u, unext, src, True, east, west, north, south, free, free2, slots, codes, c, py,
                                 res, C, d)
            scale = max(1.0, umax)
            if rmax <= newton_tol * scale:
                count = it - 1
                done = True
                break
            if rmax == math.inf:  # a non-finite residual (e.g. source): a failed step, as in the reference
                break
            for q in range(n):
                bf[q] = -resf[q]
            _factor_x(C[0], C[1], C[0], C[1], px, alpha, FX, ZX, FXs, prev)
            _factor_y(C[2], C[3], C[2], C[3], py, alpha, FY, ZY, FYs, f)
            kit, ok = _bicgstab(C, d, FX, ZX, FXs, FY, ZY, FYs, px, py, False, b, delta, True, forcing,
                                floor * newton_tol * scale, cycle, total, W, t, prev, f)
            krylov += kit
            if kit > switch:
                alpha = shift
            if not ok:
                unconverged += 1
            if not _finite(df):  # a non-finite update: a failed step
                break
            for q in range(n):
                uf[q] += df[q]
            if _absmax(df) <= roundoff * scale:
                count = it
                done = True
                break
        if not done:
            rmax, umax = _system(u, unext, src, True, east, west, north, south, free, free2, slots, codes, c, py,
                                 res, C, d)
            count = newton_maxiter if rmax <= newton_tol * max(1.0, umax) else -newton_maxiter
        U[k] = u
        its[k] = count
    return U, its, krylov, unconverged


@njit(cache=True)
def _fp_sweep(U, mu0, east, west, north, south, free, free2, slots, codes, px, py, c, rtol, atol, cycle, total, clip,
              shift, switch, FX, FY):
    nt1, ny, nx = U.shape
    n = ny * nx
    mu = np.empty((nt1, ny, nx))
    mu[0] = mu0
    empty = np.empty((0, 0))
    C = np.empty((4, ny, nx))
    T = np.empty((4, ny, nx))
    d = np.empty((ny, nx))
    ZX, ZY, FXs, FYs, W, t, prev, f = _krylov_workspace(ny, nx)
    krylov = 0
    unconverged = 0
    alpha = 1.0
    for k in range(nt1 - 1):
        _system(U[k], empty, empty, False, east, west, north, south, free, free2, slots, codes, c, py, empty, C, d)
        _transpose(C, px, py, T)
        # the lines of J^T are the transposed lines of J: lower T[0], upper T[1], J's diagonal part
        _factor_x(T[0], T[1], C[0], C[1], px, alpha, FX, ZX, FXs, prev)
        _factor_y(T[2], T[3], C[2], C[3], py, alpha, FY, ZY, FYs, f)
        b = mu[k]
        x = mu[k + 1]
        x[:, :] = b
        kit, ok = _bicgstab(T, d, FX, ZX, FXs, FY, ZY, FYs, px, py, True, b, x, False, rtol, atol, cycle, total, W, t,
                            prev, f)
        krylov += kit
        if kit > switch:
            alpha = shift
        if not ok:
            unconverged += 1
        # the mass: round-off negatives to 0, then the defect added in proportion to mu^{k+1}
        xf = x.reshape(n)
        bf = b.reshape(n)
        top = _absmax(xf)
        target = 0.0
        now = 0.0
        for q in range(n):
            if xf[q] < 0.0 and -xf[q] <= clip * top:
                xf[q] = 0.0
            target += bf[q]
            now += xf[q]
        if now != 0.0:
            g = target / now
            for q in range(n):
                xf[q] *= g
    return mu, krylov, unconverged


def _grid_constants(scheme, c: checks.FDM2DConstants):
    """The arrays and numbers the compiled sweeps take after their fields (built once per factory)."""
    st = c.stencil
    ay, ax = scheme.grid.axes
    free = np.ascontiguousarray(st.free, dtype=np.float64)
    return (np.ascontiguousarray(st.east), np.ascontiguousarray(st.west), np.ascontiguousarray(st.north),
            np.ascontiguousarray(st.south), free, free.reshape(st.ny, st.nx), neighbour_slots(st), cut_codes(st),
            bool(ax.periodic), bool(ay.periodic),
            (float(c.dt), float(c.nu), float(c.lam), float(c.hx), float(c.hy)))


def _factors(c):
    """Storage for the x- and y-line factors, ``(3, nx, ny)`` and ``(3, ny, nx)``."""
    ny, nx = c.shape[1:]
    return np.zeros((3, nx, ny)), np.zeros((3, ny, nx))


def make_hjb_sweep(scheme, *, newton_tol=1e-12, newton_maxiter=50):
    """The backward 2D HJB sweep, compiled: ``sweep(source, terminal) -> (U, newton_its)``; contract
    of :func:`mfg_core.backends.numpy.fdm2d.make_hjb_sweep`. After a call ``sweep.diagnostics`` holds
    ``newton_steps``, ``krylov_iterations`` (BiCGStab iterations of the sweep) and ``krylov_unconverged``
    (solves still short of their tolerance after the caps of :mod:`..krylov2d`)."""
    c = checks.fdm2d_constants(scheme, "numba", "HJB sweep", newton_tol, newton_maxiter)
    consts = _grid_constants(scheme, c)
    tol = (float(c.newton_tol), int(c.newton_maxiter), float(_ROUNDOFF), krylov2d.HJB_FORCING, krylov2d.HJB_FLOOR,
           *krylov2d.caps(), krylov2d.adi_shift(c), krylov2d.SWITCH)

    def sweep(source, terminal):
        source = checks.field("source", source, c.shape)
        terminal = checks.field("terminal", terminal, c.shape[1:])
        U, its, krylov, unconverged = _hjb_sweep(source, terminal, *consts, *tol, *_factors(c))
        sweep.diagnostics = {"newton_steps": int(np.abs(its).sum()), "krylov_iterations": int(krylov),
                             "krylov_unconverged": int(unconverged)}
        return U, its

    sweep.diagnostics = {}
    return sweep


def make_fp_sweep(scheme):
    """The forward 2D FP sweep, compiled: ``sweep(U, mu0) -> mu`` (mass variables); contract of
    :func:`mfg_core.backends.numpy.fdm2d.make_fp_sweep`. After a call ``sweep.diagnostics`` holds
    ``krylov_iterations`` and ``krylov_unconverged``."""
    c = checks.fdm2d_constants(scheme, "numba", "FP sweep")
    consts = _grid_constants(scheme, c)
    tol = (krylov2d.FP_RTOL, FP_ATOL, *krylov2d.caps(), krylov2d.FP_CLIP, krylov2d.adi_shift(c), krylov2d.SWITCH)

    def sweep(U, mu0):
        U = checks.field("U", U, c.shape)
        mu0 = checks.field("mu0", mu0, c.shape[1:])
        mu, krylov, unconverged = _fp_sweep(U, mu0, *consts, *tol, *_factors(c))
        sweep.diagnostics = {"krylov_iterations": int(krylov), "krylov_unconverged": int(unconverged)}
        return mu

    sweep.diagnostics = {}
    return sweep
