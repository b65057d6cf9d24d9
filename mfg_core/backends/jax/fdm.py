r"""jax finite-difference kernels: the scheme of :mod:`mfg_core.backends.numpy.fdm`, jit-compiled.

Same equations, same discretisation, same stopping rules as the numpy reference (read its docstring
for the derivation):

    HJB step (implicit Euler, Engquist-Osher upwinding), solved by Newton from ``u = u^{n+1}``:
        R(u)_i = u_i - u^{n+1}_i + dt * ( -nu (u_{i+1} - 2u_i + u_{i-1})/dx^2
                  + ( min(D^+u_i, 0)^2 + max(D^-u_i, 0)^2 ) / (2 lam) - S^{n+1}_i ) = 0,
        J = I + dt A(u) tridiagonal (an M-matrix), stop when max|R| <= newton_tol * max(1, max|u|)
        or when the Newton update is at round-off (16 eps * that scale).
    FP step (discrete adjoint): (I + dt A(u^n))^T mu^{n+1} = mu^n, mu = trapezoidal weights * m.

How it runs: one ``jax.jit`` per sweep, ``lax.scan`` over time, Newton as a ``lax.while_loop``
whose state carries the residual and bands of the current iterate (one solve + one residual per
pass). Tridiagonal systems are solved by the Thomas algorithm written as two ``lax.scan`` over
``x``, which XLA compiles to a tight loop. ``jax.lax.linalg.tridiagonal_solve`` exists and handles
float64 on CPU (it lowers to LAPACK ``dgtsv``, the reference's routine), but ``gtsv``'s pivoting
tests and two divisions per row make it slower: measured inside a jitted loop at N = 1601,
28.5 us per solve against 20.6 us for the scan (16.5 us for numba's Thomas); over a Picard
iteration at N = 1600 the switch took the jax kernels from about 2.9x to 2.2x the Thomas floor.
Periodic systems use the reference's Sherman-Morrison split (one elimination, two right-hand
sides).

The Thomas scans with one right-hand side are unrolled 4 rows per pass (``_UNROLL``): measured in a
jitted loop, 5.7 -> 4.1 us per solve at N = 401 and 18.6 -> 15.2 us at N = 1601 (unroll 5-6 is
about the same, 8 and more is 10-30x slower, and any unroll of the two-column periodic scan was
4x slower, so that one stays at 1). The elimination is latency-bound (a division in the
recurrence of every row), so this only trims loop overhead: per sweep at N = 1600 (HJB + FP, one
call each) 186 -> 156 ms; at N = 400 12.5-13.0 -> 11.7-12.3 ms, within the noise of a shared
machine. At N = 400 a Newton step costs about 10 us, of which about 4 us is the solve and the rest
the ~25 small XLA thunks of the residual, bands, reductions and loop control. Tried and dropped
(measured, N = 400): residual, bands and Thomas' forward elimination fused into one ``lax.scan``
over rows (two scans per Newton step in all) -- 12.8 ms per HJB sweep against 9 ms, since XLA's
CPU scan bodies are scalar code with per-row slicing (and 230 ms with unroll 2); the three maxima of
the tests in one stacked reduction -- no change; FP bands for all steps precomputed outside the
time scan -- slower (4.1 against 3.6 ms at N = 400, 78 against 54 ms at N = 1600); Thomas' rhs-
independent half (``m_i``, ``c'_i``) for all FP steps at once (one scan over ``x`` of ``(Nt,)``
rows), leaving division-free recurrences per step -- slower (3.8 against 3.1 ms at N = 400, 99
against 51 ms at N = 1600); a two-ended ("twisted") Thomas, two independent recurrences per scan
step meeting in the middle -- 4.9-6.4 against 4.5-4.8 us per solve at N = 400/401 (13.9 against
16.5 us at N = 1601 with unroll 2, 45-180 us with unroll 4). In ``benchmarks backends`` (load
average ~1) this module went from 3.99x to 4.19x numpy at N = 400 (target 5x: not met; the
Newton-step overhead above, not the solve, is what separates it from numba's 7.5x) and from 2.39x
to 2.13x the Thomas floor at N = 1600.

Only ``periodic`` is a static argument; every float (and ``newton_maxiter``) is traced, so changing
``dt``, ``nu``... does not recompile, and jax's jit cache reuses the executable for every later
call of the same shapes (``HJBFDMSolver.warmup()`` pays the compilation once).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jax import lax

from .. import checks

# The package __init__ enables x64; repeat it here so that importing this module alone is float64 too.
jax.config.update("jax_enable_x64", True)

_ROUNDOFF = 16 * np.finfo(np.float64).eps
#: rows per pass of the Thomas scans with one right-hand side (see the module docstring)
_UNROLL = 4


def _neighbours(u, periodic: bool):
    if periodic:
        return jnp.roll(u, -1, axis=-1), jnp.roll(u, 1, axis=-1)
    right = jnp.concatenate([u[..., 1:], u[..., -2:-1]], axis=-1)
    left = jnp.concatenate([u[..., 1:2], u[..., :-1]], axis=-1)
    return right, left


def _upwind(u, dx, lam, periodic: bool):
    right, left = _neighbours(u, periodic)
    a_plus = jnp.minimum(right - u, 0.0) / (dx * lam)
    a_minus = jnp.maximum(u - left, 0.0) / (dx * lam)
    ham = 0.5 * lam * (a_plus * a_plus + a_minus * a_minus)
    lap = (right - 2.0 * u + left) / (dx * dx)
    return a_plus, a_minus, ham, lap


def _bands(a_plus, a_minus, dt, dx, nu, periodic: bool):
    lower = dt * (-nu / (dx * dx) - a_minus / dx)
    upper = dt * (-nu / (dx * dx) + a_plus / dx)
    if not periodic:
        # the ghost node folds the outer band into the inner one (as in the reference); written
        # elementwise so that XLA fuses it with the rest of the band computation
        i = lax.broadcasted_iota(jnp.int32, lower.shape, lower.ndim - 1)
        first, last = i == 0, i == lower.shape[-1] - 1
        lower, upper = (jnp.where(last, lower + upper, jnp.where(first, 0.0, lower)),
                        jnp.where(first, upper + lower, jnp.where(last, 0.0, upper)))
    diag = 1.0 - lower - upper
    return lower, diag, upper


def _thomas(lower, diag, upper, rhs):
    """Thomas algorithm as two ``lax.scan`` over ``x`` (``lower[0]`` and ``upper[-1]`` must be 0).

    Forward: ``m_i = 1 / (b_i - a_i c'_{i-1})``, ``c'_i = c_i m_i``, ``d'_i = (d_i - a_i d'_{i-1}) m_i``;
    backward: ``x_i = d'_i - c'_i x_{i+1}``. No pivoting is needed: ``J`` and ``J^T`` are strictly
    diagonally dominant. ``rhs`` is ``(n,)`` or ``(n, k)``.
    """
    def forward(carry, row):
        c_prev, d_prev = carry
        a, b, c, d = row
        m = 1.0 / (b - a * c_prev)
        c_new, d_new = c * m, (d - a * d_prev) * m
        return (c_new, d_new), (c_new, d_new)

    zero_d = jnp.zeros(rhs.shape[1:], rhs.dtype)
    unroll = _UNROLL if rhs.ndim == 1 else 1
    _, (c_p, d_p) = lax.scan(forward, (jnp.zeros((), rhs.dtype), zero_d), (lower, diag, upper, rhs),
                             unroll=unroll)

    def backward(x_next, row):
        c, d = row
        x = d - c * x_next
        return x, x

    return lax.scan(backward, zero_d, (c_p, d_p), reverse=True, unroll=unroll)[1]


def _solve(lower, diag, upper, rhs, periodic: bool):
    """Solve ``J x = rhs`` (cyclic if ``periodic``) with :func:`_thomas`."""
    if not periodic:  # the wall fold already zeroed lower[0] and upper[-1]
        return _thomas(lower, diag, upper, rhs)
    dl = lower.at[0].set(0.0)
    du = upper.at[-1].set(0.0)
    alpha = upper[-1]  # J[N-1, 0]
    beta = lower[0]  # J[0, N-1]
    gamma = -diag[0]
    d = diag.at[0].add(-gamma).at[-1].add(-alpha * beta / gamma)
    rhs2 = jnp.zeros((rhs.shape[0], 2), rhs.dtype).at[:, 0].set(rhs).at[0, 1].set(gamma).at[-1, 1].set(alpha)
    yz = _thomas(dl, d, du, rhs2)
    y, z = yz[:, 0], yz[:, 1]
    factor = (y[0] + beta * y[-1] / gamma) / (1.0 + z[0] + beta * z[-1] / gamma)
    return y - factor * z


@functools.partial(jax.jit, static_argnames=("periodic",))
def _hjb_sweep(source, terminal, dt, dx, nu, lam, newton_tol, newton_maxiter, *, periodic):
    def linearise(u, unext, src):
        """Residual, Jacobian bands, ``max(1, max|u|)`` and the residual test at ``u``."""
        a_plus, a_minus, ham, lap = _upwind(u, dx, lam, periodic)
        res = u - unext + dt * (-nu * lap + ham - src)
        bands = _bands(a_plus, a_minus, dt, dx, nu, periodic)
        scale = jnp.maximum(1.0, jnp.max(jnp.abs(u)))
        return res, bands, scale, jnp.max(jnp.abs(res)) <= newton_tol * scale

    def step(unext, src):
        # The loop state carries the linearisation at the current iterate, so that each pass is one
        # solve + one residual and no lax.cond is needed. ``it`` counts the Newton updates made;
        # status 1 = residual test passed at ``u``, 2 = update at round-off: as the reference, the
        # step then reports ``it`` iterations.
        def cond(state):
            it, _, _, _, _, status = state
            return jnp.logical_and(status == 0, it < newton_maxiter)

        def body(state):
            it, u, res, (lower, diag, upper), scale, _ = state
            delta = _solve(lower, diag, upper, -res, periodic)
            u = u + delta
            tiny = jnp.max(jnp.abs(delta)) <= _ROUNDOFF * scale
            res, bands, scale, conv = linearise(u, unext, src)
            status = jnp.where(tiny, 2, jnp.where(conv, 1, 0))
            return it + 1, u, res, bands, scale, status

        res, bands, scale, conv = linearise(unext, unext, src)
        init = (jnp.asarray(0, jnp.int64), unext, res, bands, scale, jnp.where(conv, 1, 0))
        it, u, _, _, _, status = lax.while_loop(cond, body, init)
        # status 0: newton_maxiter updates made and the last residual test failed
        count = jnp.where(status == 0, -newton_maxiter, it)
        return u, (u, count)

    _, (U_rev, its_rev) = lax.scan(step, terminal, source[1:][::-1])
    U = jnp.concatenate([U_rev[::-1], terminal[None, :]], axis=0)
    return U, its_rev[::-1]


@functools.partial(jax.jit, static_argnames=("periodic",))
def _fp_sweep(U, mu0, dt, dx, nu, lam, *, periodic):
    def step(mu, u):
        # bands built inside the step: one row at a time stays in cache, unlike whole (Nt, N) arrays
        a_plus, a_minus, _, _ = _upwind(u, dx, lam, periodic)
        lower, diag, upper = _bands(a_plus, a_minus, dt, dx, nu, periodic)
        # bands of J^T (the periodic corners move with the roll)
        mu_next = _solve(jnp.roll(upper, 1), diag, jnp.roll(lower, -1), mu, periodic)
        return mu_next, mu_next

    _, mus = lax.scan(step, mu0, U[:-1])
    return jnp.concatenate([mu0[None, :], mus], axis=0)



def hjb_sweep(source, terminal, *, dt, dx, nu, lam, periodic, newton_tol=1e-12, newton_maxiter=50):
    """Backward HJB sweep under ``jax.jit``; same contract as
    :func:`mfg_core.backends.numpy.fdm.hjb_sweep` (numpy float64 in and out)."""
    source, terminal, dt, dx, nu, lam, newton_tol, newton_maxiter = checks.hjb_args(
        source, terminal, dt, dx, nu, lam, newton_tol, newton_maxiter)
    f64 = np.float64
    U, its = _hjb_sweep(source, terminal, f64(dt), f64(dx), f64(nu), f64(lam), f64(newton_tol),
                        np.int64(newton_maxiter), periodic=bool(periodic))
    return np.asarray(U), np.asarray(its, dtype=np.int64)


def fp_sweep(U, mu0, *, dt, dx, nu, lam, periodic):
    """Forward FP sweep (adjoint scheme, mass variables) under ``jax.jit``; same contract as
    :func:`mfg_core.backends.numpy.fdm.fp_sweep`."""
    U, mu0, dt, dx, nu, lam = checks.fp_args(U, mu0, dt, dx, nu, lam)
    f64 = np.float64
    mu = _fp_sweep(U, mu0, f64(dt), f64(dx), f64(nu), f64(lam), periodic=bool(periodic))
    return np.asarray(mu)
