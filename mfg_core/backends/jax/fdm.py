r"""jax finite-difference kernels: the scheme of :mod:`mfg_core.backends.numpy.fdm`, jit-compiled.

The reference states and derives the equations; these kernels solve the same ones with the same
stopping rules: HJB, backward implicit Euler with Engquist-Osher upwinding, each step's
``R(u) = u - u^{n+1} + dt (-nu Lap_h u + H_h(u) - S^{n+1}) = 0`` solved by Newton with
``J = I + dt A(u)``; FP, the discrete adjoint ``(I + dt A(u^n))^T mu^{n+1} = mu^n``, ``mu = w m``.

Decisions: one ``jax.jit`` per sweep, ``lax.scan`` over time, Newton a ``lax.while_loop`` whose
state carries the residual and bands of the iterate (one solve + one residual per pass). Solves:
Thomas as two ``lax.scan`` over ``x`` (one right-hand side unrolled ``_UNROLL`` rows; faster on CPU
than ``lax.linalg.tridiagonal_solve``), periodic by the reference's Sherman-Morrison split. Only
``periodic`` is static: other ``dt``, ``nu``, Newton settings reuse the executable. Numbers and what
was tried and dropped: ``benchmarks/README.md``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jax import lax

from .. import checks
from . import native, resolve_device

# The package __init__ enables x64; repeat it here so that importing this module alone is float64 too.
jax.config.update("jax_enable_x64", True)

_ROUNDOFF = 16 * np.finfo(np.float64).eps
#: rows per pass of the Thomas scans with one right-hand side (benchmarks/README.md)
_UNROLL = 4


def _neighbours(u, periodic: bool):
    if periodic:
        return jnp.roll(u, -1, axis=-1), jnp.roll(u, 1, axis=-1)
    right = jnp.concatenate([u[..., 1:], u[..., -2:-1]], axis=-1)
    left = jnp.concatenate([u[..., 1:2], u[..., :-1]], axis=-1)
    return right, left


# jnp transcription of numpy.fdm.upwind (traced arrays: no in-place ghost fill, no np.roll)
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


def _dim(scheme) -> int:
    """The grid dimension of ``scheme`` (1 for anything else: the 1D checks then refuse it)."""
    return getattr(getattr(scheme, "grid", None), "dim", 1)


def make_hjb_sweep(scheme, *, newton_tol=1e-12, newton_maxiter=50, device="cpu"):
    """The backward HJB sweep on ``scheme`` under ``jax.jit`` on ``device``: ``sweep(source, terminal)
    -> (U, newton_its)`` (outputs native to the device, see the package docstring); contract of
    :func:`mfg_core.backends.numpy.fdm.make_hjb_sweep`. A 2D scheme gets :mod:`.fdm2d`'s sweep."""
    if _dim(scheme) == 2:
        from . import fdm2d

        return fdm2d.make_hjb_sweep(scheme, newton_tol=newton_tol, newton_maxiter=newton_maxiter, device=device)
    c = checks.fdm_constants(scheme, "jax", "HJB sweep", newton_tol, newton_maxiter)
    dev = resolve_device(device)
    out = native(dev)
    f64 = np.float64
    consts = jax.device_put((f64(c.dt), f64(c.dx), f64(c.nu), f64(c.lam), f64(c.newton_tol),
                             np.int64(c.newton_maxiter)), dev)
    periodic = bool(c.periodic)

    def sweep(source, terminal):
        source = checks.field("source", source, c.shape)
        terminal = checks.field("terminal", terminal, c.shape[1:])
        U, its = _hjb_sweep(*jax.device_put((source, terminal), dev), *consts, periodic=periodic)
        return out(U), out(its)

    return sweep


def make_fp_sweep(scheme, *, device="cpu"):
    """The forward FP sweep on ``scheme`` under ``jax.jit`` on ``device``: ``sweep(U, mu0) -> mu``;
    contract of :func:`mfg_core.backends.numpy.fdm.make_fp_sweep`. A 2D scheme gets :mod:`.fdm2d`'s."""
    if _dim(scheme) == 2:
        from . import fdm2d

        return fdm2d.make_fp_sweep(scheme, device=device)
    c = checks.fdm_constants(scheme, "jax", "FP sweep")
    dev = resolve_device(device)
    out = native(dev)
    f64 = np.float64
    consts = jax.device_put((f64(c.dt), f64(c.dx), f64(c.nu), f64(c.lam)), dev)
    periodic = bool(c.periodic)

    def sweep(U, mu0):
        U = checks.field("U", U, c.shape)
        mu0 = checks.field("mu0", mu0, c.shape[1:])
        return out(_fp_sweep(*jax.device_put((U, mu0), dev), *consts, periodic=periodic))

    return sweep
