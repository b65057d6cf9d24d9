r"""jax 2D finite-difference kernels: the scheme of :mod:`mfg_core.backends.numpy.fdm2d`, jit-compiled,
with a linear solve that runs on any device (no sparse LU).

The reference states the equations: HJB, per time step Newton on ``R(u) = u - u^{n+1} + dt free
(-nu Lap_h u + H_h(u) - S^{n+1})`` with the 5-point Jacobian ``J = I + dt A(u)`` (ghosts, wraps,
cut links), the same stopping rules; FP, ``(I + dt A(u^n))^T mu^{n+1} = mu^n`` in mass variables.

Fields stay ``(Ny', Nx')`` arrays: a neighbour is a shift along an axis (mirror node at a Neumann
wall, wrap on a periodic axis), replaced by the node itself across a cut link (masks built once
in the factory and checked against :func:`checks.stencil2d`). With ``w_E, w_W, w_N, w_S`` the
off-diagonal entries of ``J`` (0 across a cut link, where the reference's entry falls on the
diagonal and cancels) and ``D = 1 - (w_E + w_W + w_N + w_S)``, ``J x = D x + sum_d w_d S_d x``;
``J^T y = D y + sum_d S_d^T (w_d y)`` with ``S_d^T`` the adjoint of the shift (the Neumann fold
sends the wall's entry back onto the inner node).

Linear solve (the project's one method; the rule -- tolerances, shift -- is :mod:`..krylov2d`'s):
BiCGStab, right-preconditioned by ``P_alpha = (alpha I + dt A_y)(alpha I + dt A_x)``, ``A_x`` the
E/W couplings of every row with their share of the diagonal, ``A_y`` the N/S ones. ``P^{-1} v`` is
two batches of 1D tridiagonal solves: along ``y`` for every x-line, then along ``x`` for every
y-line (``P^{-T}`` the transposed lines, in the other order). A line is the 1D Jacobian of
:mod:`.fdm` with ``alpha`` for the identity (Neumann fold, cyclic by the Sherman-Morrison split on
a periodic axis, a blocked node a row ``alpha``, a cut link no entry); it is factorised once per
Newton step (Thomas multipliers by a ``lax.scan``, and for a cyclic line the Sherman-Morrison
vector); each application is a forward and a backward in-place ``fori_loop`` over the line,
vectorised over the lines (x-lines on the transposed field). Each sweep starts at ``alpha = 1`` and
after a solve of more than ``krylov2d.SWITCH`` iterations uses ``krylov2d.adi_shift`` for the rest of
the sweep (``alpha`` carried through the loops). HJB: ``J delta = -R`` from ``delta = 0`` to ``||r||
<= max(HJB_FORCING ||R||, HJB_FLOOR newton_tol max(1, max|u|))`` (inexact Newton); FP: from ``mu^n``
to ``||r|| <= FP_RTOL ||mu^n||``. The rule's numbers are read when a sweep is made, its caps too:
a cycle has at most ``CYCLE`` iterations; a breakdown (``rho`` or ``omega`` = 0, non-finite) or an
unconverged cycle restarts from the current iterate with a fresh shadow residual, ``CYCLE * CYCLES``
iterations in all. A solve still short of its tolerance is counted (``krylov_unconverged``) and Newton goes on
with it (its own residual test decides, a negative count if never met); nothing falls back.

FP mass. The column sums of ``J^T`` are 1, so ``sum(mu^{n+1}) = sum(mu^n) - sum(r)``: after each
solve the negatives of the solve's error (``>= -FP_CLIP max mu``, :mod:`..krylov2d`) are set to 0 and
``mu^{n+1}`` is scaled by ``sum(mu^0) / sum(mu^{n+1})`` (the defect spread in proportion to ``mu``):
every step has the mass of ``mu^0`` to one rounding, and a blocked node (an identity row and column of
``J``, ``mu^0 = 0`` there) stays exactly 0.

Diagnostics (``sweep.diagnostics`` after each call, totals over the sweep): HJB ``newton_steps``,
``krylov_iterations``, ``krylov_unconverged``; FP ``krylov_iterations``, ``krylov_unconverged``.
Only the boundary flags and "has an obstacle" are static in jit; ``dt``, spacings, ``nu``, ``lam``,
tolerances, the shift and masks are traced.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .. import checks, krylov2d
from . import native, resolve_device

jax.config.update("jax_enable_x64", True)

_ROUNDOFF = 16 * np.finfo(np.float64).eps


# ---------------------------------------------------------------------------------------------
# shifts along an axis (-1: x, -2: y) and their adjoints

def _take(u, axis, start, stop):
    return lax.slice_in_dim(u, start, stop, axis=axis)


def _shift(u, axis: int, d: int, periodic: bool):
    """``u`` at the neighbour ``+1`` (``d = 1``: E or N) or ``-1`` (W or S) along ``axis``; the
    mirror node at a Neumann wall, wrapped if periodic."""
    n = u.shape[axis]
    if periodic:
        return jnp.roll(u, -d, axis=axis)
    if d == 1:
        return jnp.concatenate([_take(u, axis, 1, n), _take(u, axis, n - 2, n - 1)], axis=axis)
    return jnp.concatenate([_take(u, axis, 1, 2), _take(u, axis, 0, n - 1)], axis=axis)


def _shift_adjoint(z, axis: int, d: int, periodic: bool):
    """The transpose of :func:`_shift`: ``sum_p [nb(p) = q] z_p`` at every ``q``."""
    n = z.shape[axis]
    if periodic:
        return jnp.roll(z, d, axis=axis)
    zero = jnp.zeros_like(_take(z, axis, 0, 1))
    if d == 1:  # q = p + 1, and the wall node n-1 sends its mirror entry back to n-2
        return jnp.concatenate([zero, _take(z, axis, 0, n - 3),
                                _take(z, axis, n - 3, n - 2) + _take(z, axis, n - 1, n),
                                _take(z, axis, n - 2, n - 1)], axis=axis)
    return jnp.concatenate([_take(z, axis, 1, 2), _take(z, axis, 2, 3) + _take(z, axis, 0, 1),
                            _take(z, axis, 3, n), zero], axis=axis)


# the four directions: (axis, d) for E, W, N, S
_DIRS = ((-1, 1), (-1, -1), (-2, 1), (-2, -1))


def _neighbours(u, cuts, periodic):
    """``(uE, uW, uN, uS)``: the stencil's values at every node (the node itself across a cut)."""
    out = []
    for (axis, d), cut in zip(_DIRS, cuts if cuts is not None else (None,) * 4):
        nb = _shift(u, axis, d, periodic[axis])
        out.append(nb if cut is None else jnp.where(cut, u, nb))
    return out


# ---------------------------------------------------------------------------------------------
# residual and Jacobian (the reference's formulas, in the same order)

def _upwind(u, cuts, hx, hy, lam, periodic):
    uE, uW, uN, uS = _neighbours(u, cuts, periodic)
    axp = jnp.minimum(uE - u, 0.0) / (hx * lam)
    axm = jnp.maximum(u - uW, 0.0) / (hx * lam)
    ayp = jnp.minimum(uN - u, 0.0) / (hy * lam)
    aym = jnp.maximum(u - uS, 0.0) / (hy * lam)
    ham = 0.5 * lam * ((axp * axp + axm * axm) + (ayp * ayp + aym * aym))
    lap = (uE - 2.0 * u + uW) / (hx * hx) + (uN - 2.0 * u + uS) / (hy * hy)
    return (axp, axm, ayp, aym), ham, lap


def _offdiagonal(a, free, cuts, dt, hx, hy, nu):
    """``(w_E, w_W, w_N, w_S)``: the off-diagonal entries of ``J`` (0 on blocked rows and cut links)."""
    axp, axm, ayp, aym = a
    cx, cy = dt * nu / (hx * hx), dt * nu / (hy * hy)
    dx, dy = dt / hx, dt / hy
    w = (-cx + dx * axp, -cx - dx * axm, -cy + dy * ayp, -cy - dy * aym)
    if cuts is None:
        return w
    # a blocked row has all four links cut, so the cut masks zero it too
    return tuple(jnp.where(cut, 0.0, v) for v, cut in zip(w, cuts))


def _matvec(w, diag, periodic, transpose: bool):
    """``x -> J x = D x + sum_d w_d S_d x`` (or ``J^T x = D x + sum_d S_d^T (w_d x)``)."""
    def apply(x):
        y = diag * x
        for (axis, d), wd in zip(_DIRS, w):
            if transpose:
                y = y + _shift_adjoint(wd * x, axis, d, periodic[axis])
            else:
                y = y + wd * _shift(x, axis, d, periodic[axis])
        return y

    return apply


def _diagonal(w):
    return 1.0 - (w[0] + w[1] + w[2] + w[3])


# ---------------------------------------------------------------------------------------------
# line solves: batched Thomas (lines along the leading axis of (n, lines) arrays)

def _line_bands(w_plus, w_minus, periodic: bool, alpha):
    """``(lower, diag, upper)`` of the 1D Jacobian along the leading axis with ``alpha`` in place of
    the identity (``w_plus`` the ``+1`` entries, ``w_minus`` the ``-1`` ones): the Neumann fold of
    :func:`.fdm._bands`, or the corners ``lower[0]``, ``upper[-1]`` if periodic."""
    diag = alpha - w_plus - w_minus
    lower, upper = w_minus, w_plus
    if not periodic:
        i = lax.broadcasted_iota(jnp.int32, lower.shape, 0)
        first, last = i == 0, i == lower.shape[0] - 1
        lower, upper = (jnp.where(last, lower + upper, jnp.where(first, 0.0, lower)),
                        jnp.where(first, upper + lower, jnp.where(last, 0.0, upper)))
    return lower, diag, upper


def _transpose_bands(lower, diag, upper):
    """Bands of the transposed lines (the periodic corners move with the roll)."""
    return jnp.roll(upper, 1, axis=0), diag, jnp.roll(lower, -1, axis=0)


def _thomas_factor(lower, diag, upper):
    """Thomas multipliers ``m_i = 1 / (b_i - a_i c'_{i-1})``, ``c'_i = c_i m_i`` (``lower[0] =
    upper[-1] = 0``); no pivoting: every line is strictly diagonally dominant."""
    def forward(c_prev, row):
        a, b, c = row
        m = 1.0 / (b - a * c_prev)
        cp = c * m
        return cp, (m, cp)

    _, (m, cp) = lax.scan(forward, jnp.zeros(diag.shape[1:], diag.dtype), (lower, diag, upper))
    return lower, m, cp


def _row(x, i):
    return lax.dynamic_index_in_dim(x, i, axis=0, keepdims=False)


def _thomas_solve(factor, rhs):
    """Forward ``d'_i = (d_i - a_i d'_{i-1}) m_i`` and backward ``x_i = d'_i - c'_i x_{i+1}``, as two
    ``fori_loop`` updating one buffer in place (row by row: rows are contiguous); measured faster
    than ``lax.scan``, whose stacked outputs are fresh zero-filled buffers (benchmarks/README.md)."""
    lower, m, cp = factor
    n = rhs.shape[0]
    zero = jnp.zeros(rhs.shape[1:], rhs.dtype)

    def forward(i, state):
        d_prev, buf = state
        d = (_row(buf, i) - _row(lower, i) * d_prev) * _row(m, i)
        return d, lax.dynamic_update_index_in_dim(buf, d, i, 0)

    def backward(j, state):
        x_next, buf = state
        i = n - 1 - j
        x = _row(buf, i) - _row(cp, i) * x_next
        return x, lax.dynamic_update_index_in_dim(buf, x, i, 0)

    _, buf = lax.fori_loop(0, n, forward, (zero, rhs))
    return lax.fori_loop(0, n, backward, (zero, buf))[1]


def _line_factor(lower, diag, upper, periodic: bool):
    """Factorisation of a batch of (cyclic, if ``periodic``) tridiagonal lines. Cyclic: the
    Sherman-Morrison split of :func:`.fdm._solve` (``gamma = -diag[0]``), with ``z = T^{-1}(gamma
    e_0 + alpha e_{n-1})`` and its denominator computed here once."""
    if not periodic:
        return _thomas_factor(lower, diag, upper), None
    alpha, beta, gamma = upper[-1], lower[0], -diag[0]
    dl = lower.at[0].set(0.0)
    du = upper.at[-1].set(0.0)
    d = diag.at[0].add(-gamma).at[-1].add(-alpha * beta / gamma)
    factor = _thomas_factor(dl, d, du)
    e = jnp.zeros_like(diag).at[0].set(gamma).at[-1].set(alpha)
    z = _thomas_solve(factor, e)
    ratio = beta / gamma
    inv_denom = 1.0 / (1.0 + z[0] + ratio * z[-1])
    return factor, (z, ratio, inv_denom)


def _line_solve(lf, rhs):
    factor, sm = lf
    y = _thomas_solve(factor, rhs)
    if sm is None:
        return y
    z, ratio, inv_denom = sm
    return y - ((y[0] + ratio * y[-1]) * inv_denom) * z


def _preconditioner(w, periodic, transpose: bool, alpha):
    """``v -> P^{-1} v`` (``P^{-T}`` if ``transpose``), ``P = (alpha I + dt A_y)(alpha I + dt A_x)``
    (``alpha`` traced); factorised here."""
    wE, wW, wN, wS = w
    # x-lines: arrays (nx, ny) -- lines along x, one per y; y-lines: (ny, nx) as they are
    bx = _line_bands(wE.T, wW.T, periodic[-1], alpha)
    by = _line_bands(wN, wS, periodic[-2], alpha)
    if transpose:
        bx, by = _transpose_bands(*bx), _transpose_bands(*by)
    fx = _line_factor(*bx, periodic[-1])
    fy = _line_factor(*by, periodic[-2])
    if transpose:  # P^{-T} = (alpha I + dt A_x)^{-T} (alpha I + dt A_y)^{-T}: x-lines first
        return lambda v: _line_solve(fy, _line_solve(fx, v.T).T)
    return lambda v: _line_solve(fx, _line_solve(fy, v).T).T  # P^{-1}: y-lines first


# ---------------------------------------------------------------------------------------------
# BiCGStab (right-preconditioned)

def _dot(a, b):
    return jnp.sum(a * b)


def bicgstab(matvec, precond, b, x0, rtol, cycle, cycles=1, atol=0.0):
    """Solve ``A x = b`` by BiCGStab with right preconditioner ``M^{-1} = precond`` from ``x0`` to
    ``||r|| <= max(rtol ||b||, atol)`` (``r`` the recursive residual); returns ``(x, iterations,
    converged)``.

    The inner loop is plain BiCGStab with scalar guards only (no vector selects, no branch): a
    converged half step sets ``omega = 0`` (``x + alpha phat``, ``r = s``); a breakdown (``rho = 0``,
    ``alpha`` not finite, ``omega = 0``) zeroes the failing coefficient and ends the cycle. A cycle
    has at most ``cycle`` iterations; the outer loop restarts a cycle that broke down or did not
    converge from its current iterate (true residual, fresh shadow residual), ``cycles`` cycles in all.
    """
    bound2 = jnp.maximum((rtol * rtol) * _dot(b, b), atol * atol)
    one = jnp.ones((), b.dtype)
    zero = jnp.zeros_like(b)
    total = cycle * cycles

    def inner_cond(st):
        k, stop, done, broke = st[0], st[-3], st[-2], st[-1]
        return ~done & ~broke & (k < stop)

    def inner_body(st):
        # rho_new = <rhat, r> comes from the previous pass (computed with ||r||^2)
        k, x, r, rhat, p, v, rho, alpha, omega, rho_new, stop, _, _ = st
        beta = (rho_new / rho) * (alpha / omega)
        p = r + beta * (p - omega * v)
        phat = precond(p)
        v = matvec(phat)
        alpha = rho_new / _dot(rhat, v)
        ok = jnp.isfinite(alpha) & (rho_new != 0.0)
        alpha = jnp.where(ok, alpha, 0.0)
        s = r - alpha * v
        s_ok = _dot(s, s) <= bound2
        shat = precond(s)
        t = matvec(shat)
        tt, ts = _dot(t, t), _dot(t, s)
        omega = jnp.where((tt > 0.0) & ~s_ok, ts / jnp.where(tt > 0.0, tt, 1.0), 0.0)
        x = x + alpha * phat + omega * shat
        r = s - omega * t
        rr, rho_next = _dot(r, r), _dot(rhat, r)
        done = s_ok | (rr <= bound2)
        broke = ~done & (~ok | (omega == 0.0) | ~jnp.isfinite(rr))
        return k + 1, x, r, rhat, p, v, rho_new, alpha, omega, rho_next, stop, done, broke

    def outer_cond(st):
        k, _, done = st
        return ~done & (k < total)

    def outer_body(st):
        k, x, _ = st
        r = b - matvec(x)
        rr = _dot(r, r)
        stop = jnp.minimum(k + cycle, total)
        init = (k, x, r, r, zero, zero, one, one, one, rr, stop, rr <= bound2, jnp.asarray(False))
        out = lax.while_loop(inner_cond, inner_body, init)
        return out[0], out[1], out[-2]

    k, x, done = lax.while_loop(outer_cond, outer_body, (jnp.asarray(0, jnp.int64), x0, jnp.asarray(False)))
    return x, k, done


# ---------------------------------------------------------------------------------------------
# the sweeps

_STATIC = ("periodic", "obstacle")


def _masks(free, cuts, obstacle: bool):
    return (free, cuts) if obstacle else (None, None)


@functools.partial(jax.jit, static_argnames=_STATIC)
def _hjb_sweep(source, terminal, free, cuts, dt, hx, hy, nu, lam, newton_tol, newton_maxiter, forcing, floor, cycle,
               cycles, shift, switch, *, periodic, obstacle):
    free, cuts = _masks(free, cuts, obstacle)

    def linearise(u, unext, src):
        a, ham, lap = _upwind(u, cuts, hx, hy, lam, periodic)
        res = -nu * lap + ham - src
        res = u - unext + dt * (res if free is None else free * res)
        scale = jnp.maximum(1.0, jnp.max(jnp.abs(u)))
        return res, a, scale, jnp.max(jnp.abs(res)) <= newton_tol * scale

    def step(carry, src):
        # as the 1D sweep: the state carries the linearisation at the current iterate; status 1 =
        # residual test passed, 2 = update at round-off; alpha (the preconditioner's shift, 1 until
        # a solve takes more than ``switch`` iterations) is carried through the whole sweep
        unext, alpha = carry

        def cond(state):
            it, status = state[0], state[5]
            return jnp.logical_and(status == 0, it < newton_maxiter)

        def body(state):
            it, u, res, a, scale, _, kry, missed, alpha = state
            w = _offdiagonal(a, free, cuts, dt, hx, hy, nu)
            # inexact Newton (krylov2d): ||r|| <= max(forcing ||R||, floor newton_tol max(1, max|u|))
            delta, k, solved = bicgstab(_matvec(w, _diagonal(w), periodic, False),
                                        _preconditioner(w, periodic, False, alpha), -res, jnp.zeros_like(res),
                                        forcing, cycle, cycles, floor * newton_tol * scale)
            alpha = jnp.where(k > switch, shift, alpha)
            u = u + delta
            tiny = jnp.max(jnp.abs(delta)) <= _ROUNDOFF * scale
            res, a, scale, conv = linearise(u, unext, src)
            status = jnp.where(tiny, 2, jnp.where(conv, 1, 0))
            return it + 1, u, res, a, scale, status, kry + k, missed + (~solved).astype(jnp.int64), alpha

        res, a, scale, conv = linearise(unext, unext, src)
        zero = jnp.asarray(0, jnp.int64)
        init = (zero, unext, res, a, scale, jnp.where(conv, 1, 0), zero, zero, alpha)
        it, u, _, _, _, status, kry, missed, alpha = lax.while_loop(cond, body, init)
        count = jnp.where(status == 0, -newton_maxiter, it)
        return (u, alpha), (u, count, kry, missed)

    one = jnp.ones((), terminal.dtype)
    _, (U_rev, its_rev, kry_rev, missed) = lax.scan(step, (terminal, one), source[1:][::-1])
    U = jnp.concatenate([U_rev[::-1], terminal[None]], axis=0)
    return U, its_rev[::-1], jnp.sum(kry_rev), jnp.sum(missed)


@functools.partial(jax.jit, static_argnames=_STATIC)
def _fp_sweep(U, mu0, free, cuts, dt, hx, hy, nu, lam, rtol, cycle, cycles, clip, shift, switch, *, periodic,
              obstacle):
    free, cuts = _masks(free, cuts, obstacle)
    mass0 = jnp.sum(mu0)

    def step(carry, u):
        mu, alpha = carry  # alpha: the preconditioner's shift, as in the HJB sweep
        a, _, _ = _upwind(u, cuts, hx, hy, lam, periodic)
        w = _offdiagonal(a, free, cuts, dt, hx, hy, nu)
        nxt, k, conv = bicgstab(_matvec(w, _diagonal(w), periodic, True), _preconditioner(w, periodic, True, alpha),
                                mu, mu, rtol, cycle, cycles)
        alpha = jnp.where(k > switch, shift, alpha)
        # mass: round-off negatives to 0, then the defect spread in proportion to mu (docstring)
        nxt = jnp.where((nxt < 0.0) & (nxt >= -clip * jnp.max(nxt)), 0.0, nxt)
        nxt = nxt * (mass0 / jnp.sum(nxt))
        return (nxt, alpha), (nxt, k, ~conv)

    _, (mus, kry, missed) = lax.scan(step, (mu0, jnp.ones((), mu0.dtype)), U[:-1])
    return jnp.concatenate([mu0[None], mus], axis=0), jnp.sum(kry), jnp.sum(missed)


# ---------------------------------------------------------------------------------------------
# factories

class _Setup:
    """What both 2D factories close over: constants and masks on the device, static flags."""

    def __init__(self, scheme, c: checks.FDM2DConstants, device):
        st = c.stencil
        ny, nx = st.ny, st.nx
        self.dev = resolve_device(device)
        self.out = native(self.dev)
        self.periodic = tuple(bool(p) for p in scheme.grid.periodic)  # (y, x): periodic[-1] is x
        flat = np.arange(ny * nx).reshape(ny, nx)
        nbs = (st.east, st.west, st.north, st.south)
        cuts = tuple(nb.reshape(ny, nx) == flat for nb in nbs)
        # the shifts with these cuts are the reference's stencil (checked once, here)
        for (axis, d), cut, nb in zip(_DIRS, cuts, nbs):
            mine = np.where(cut, flat, np.asarray(_shift(jnp.asarray(flat), axis, d, self.periodic[axis])))
            if not np.array_equal(mine.ravel(), nb):  # pragma: no cover - a bug, not an input error
                raise AssertionError("jax 2D stencil disagrees with checks.stencil2d")
        self.obstacle = bool(not st.free.all())
        free = st.free.reshape(ny, nx).astype(np.float64)
        self.masks = jax.device_put((free, cuts), self.dev)
        f64 = np.float64
        self.grid = jax.device_put((f64(c.dt), f64(c.hx), f64(c.hy), f64(c.nu), f64(c.lam)), self.dev)
        self.static = dict(periodic=self.periodic, obstacle=self.obstacle)

    def put(self, *arrays):
        return jax.device_put(arrays, self.dev)


def make_hjb_sweep(scheme, *, newton_tol=1e-12, newton_maxiter=50, device="cpu"):
    """The backward 2D HJB sweep under ``jax.jit`` on ``device``: ``sweep(source, terminal) -> (U,
    newton_its)``, shapes of :func:`mfg_core.backends.numpy.fdm2d.make_hjb_sweep`, outputs native
    to the device; ``sweep.diagnostics`` after a call (module docstring)."""
    c = checks.fdm2d_constants(scheme, "jax", "HJB sweep", newton_tol, newton_maxiter)
    s = _Setup(scheme, c, device)
    # the krylov2d rule, read here (not at import) so that a changed module attribute takes effect
    solver = s.put(np.float64(c.newton_tol), np.int64(c.newton_maxiter), np.float64(krylov2d.HJB_FORCING),
                   np.float64(krylov2d.HJB_FLOOR), np.int64(krylov2d.CYCLE), np.int64(krylov2d.CYCLES),
                   np.float64(krylov2d.adi_shift(c)), np.int64(krylov2d.SWITCH))

    def sweep(source, terminal):
        source = checks.field("source", source, c.shape)
        terminal = checks.field("terminal", terminal, c.shape[1:])
        U, its, kry, missed = _hjb_sweep(*s.put(source, terminal), *s.masks, *s.grid, *solver, **s.static)
        sweep.diagnostics = {"newton_steps": int(jnp.sum(jnp.abs(its))), "krylov_iterations": int(kry),
                             "krylov_unconverged": int(missed)}
        return s.out(U), s.out(its)

    sweep.diagnostics = {}
    return sweep


def make_fp_sweep(scheme, *, device="cpu"):
    """The forward 2D FP sweep (adjoint scheme, mass variables) under ``jax.jit`` on ``device``:
    ``sweep(U, mu0) -> mu``, shapes ``(Nt+1, Ny', Nx')``; ``sum(mu[n]) = sum(mu0)`` to round-off;
    ``sweep.diagnostics`` after a call (module docstring)."""
    c = checks.fdm2d_constants(scheme, "jax", "FP sweep")
    s = _Setup(scheme, c, device)
    solver = s.put(np.float64(krylov2d.FP_RTOL), np.int64(krylov2d.CYCLE), np.int64(krylov2d.CYCLES),
                   np.float64(krylov2d.FP_CLIP), np.float64(krylov2d.adi_shift(c)), np.int64(krylov2d.SWITCH))

    def sweep(U, mu0):
        U = checks.field("U", U, c.shape)
        mu0 = checks.field("mu0", mu0, c.shape[1:])
        mu, kry, missed = _fp_sweep(*s.put(U, mu0), *s.masks, *s.grid, *solver, **s.static)
        sweep.diagnostics = {"krylov_iterations": int(kry), "krylov_unconverged": int(missed)}
        return s.out(mu)

    sweep.diagnostics = {}
    return sweep
