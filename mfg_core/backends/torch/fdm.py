r"""torch finite-difference kernels: the scheme of :mod:`mfg_core.backends.numpy.fdm` on float64 tensors.

Same equations, same discretisation, same stopping rules as the numpy reference (read its docstring
for the derivation):

    HJB step (implicit Euler, Engquist-Osher upwinding), solved by Newton from ``u = u^{n+1}``:
        R(u)_i = u_i - u^{n+1}_i + dt * ( -nu (u_{i+1} - 2u_i + u_{i-1})/dx^2
                  + ( min(D^+u_i, 0)^2 + max(D^-u_i, 0)^2 ) / (2 lam) - S^{n+1}_i ) = 0,
        J = I + dt A(u) tridiagonal (an M-matrix), stop when max|R| <= newton_tol * max(1, max|u|)
        or when the Newton update is at round-off (16 eps * that scale).
    FP step (discrete adjoint): (I + dt A(u^n))^T mu^{n+1} = mu^n, mu = trapezoidal weights * m.

How it runs: residual, Jacobian bands and the FP bands of every time step are whole-tensor torch
ops; the loops over time and over Newton steps are Python (each Newton test is one host sync).

Tridiagonal solve: parallel cyclic reduction (PCR), no loop over ``x``. Level ``s = 1, 2, 4, ...``
replaces every equation ``i`` by itself plus ``alpha_i`` times equation ``i - s`` plus ``gamma_i``
times equation ``i + s``, with ``alpha_i = -a_i / b_{i-s}`` and ``gamma_i = -c_i / b_{i+s}`` chosen
to eliminate the unknowns ``x_{i-s}`` and ``x_{i+s}``; the new equation couples ``x_{i-2s}``,
``x_i``, ``x_{i+2s}``. After ``ceil(log2 N)`` levels every equation holds one unknown:
``x_i = d_i / b_i``. The rows are padded with identity equations so that ``i +- s`` never leaves
the array (an identity row stays one under the update). On strictly diagonally dominant matrices
(ours are M-matrices) ``|alpha|, |gamma| < 1`` and the off-diagonals shrink at every level, so PCR
is stable; it rounds differently from LAPACK ``gtsv`` (the reference), by a few ulps times the
condition number of ``J`` (close to 1 here). ``ceil(log2 N)`` levels of 9 tensor ops each
replace ``N`` sequential steps; the cost is mostly torch's per-op dispatch (measured: 15 us per
level at N = 101, 22 us at N = 1601). Periodic systems use the reference's Sherman-Morrison split (two
right-hand sides through one PCR).

``torch.compile`` is not used: it does not pay off here. Measured (torch 2.13 CPU, 2 cores, one
PCR solve of N = 1601, a functional variant since inductor rejects ``out=`` views): 17-25 s to
compile per shape and boundary type on a cold cache (about 2.4 s from inductor's on-disk cache),
then 0.14-0.15 ms per solve against 0.25 ms eager on an idle machine -- and 8.5 ms when the other
core was busy (OpenMP threads of the compiled kernel waiting on each other). A 1.7x gain on the
solve, at best about 2x on a sweep, does not repay tens of seconds of compilation per grid in the
study's grid sweeps, nor the fragility under load.
"""

from __future__ import annotations

import math

import numpy as np

import torch

from .. import checks

_ROUNDOFF = 16 * float(np.finfo(np.float64).eps)
_F64 = torch.float64


class _PCR:
    """Parallel cyclic reduction for tridiagonal systems of size ``n`` with ``k`` right-hand sides.

    Equations are kept normalised, ``a_i x_{i-s} + x_i + c_i x_{i+s} = d_i``; eliminating
    ``x_{i-s}`` and ``x_{i+s}`` with equations ``i -+ s`` and dividing by the new pivot
    ``beta_i = 1 - a_i c_{i-s} - c_i a_{i+s}`` gives

        a'_i = -a_i a_{i-s} / beta_i,   c'_i = -c_i c_{i+s} / beta_i,
        d'_i = (d_i - a_i d_{i-s} - c_i d_{i+s}) / beta_i,

    for all rows ``(a, c, d_1..d_k)`` of a stacked buffer at once (row masks pick which rows each
    term feeds), so that a level is 9 tensor ops whatever ``k``. Pads are ``x = 0`` equations (all
    zeros) and are never written. The two ping-pong buffers and every slice of them that a level
    reads are made once here: at ``N`` in the thousands torch's per-op dispatch, not arithmetic,
    is the cost, and slicing is an op too.
    """

    def __init__(self, n: int, k: int):
        self.n, self.k = n, k
        self.levels = max(1, math.ceil(math.log2(n)))
        pad = 1 << (self.levels - 1)  # the largest stride
        mid = slice(pad, pad + n)
        bufs = [torch.zeros((2 + k, n + 2 * pad), dtype=_F64) for _ in range(2)]
        self.a0, self.c0, self.d0 = bufs[0][0, mid], bufs[0][1, mid], bufs[0][2:, mid]
        self.a0_first, self.c0_last = bufs[0][0, pad:pad + 1], bufs[0][1, pad + n - 1:pad + n]
        ones = [1.0] * k
        self.keep, self.from_left, self.from_right = (
            torch.tensor(v, dtype=_F64)[:, None]
            for v in ([0.0, 0.0] + ones, [1.0, 0.0] + ones, [0.0, 1.0] + ones))
        self.steps = []
        s = 1
        for level in range(self.levels):
            src, dst = bufs[level % 2], bufs[(level + 1) % 2]
            centre = src[:, mid]
            left = src[:, pad - s:pad - s + n]
            right = src[:, pad + s:pad + s + n]
            self.steps.append((centre, left, right, centre[0], centre[1], left[1], right[0], dst[:, mid]))
            s *= 2
        self.result = bufs[self.levels % 2][2:, mid]

    def solve(self, lower, diag, upper, rhs):
        """Solve for ``rhs`` of shape ``(k, n)`` (``lower[0]``, ``upper[-1]`` ignored); ``(k, n)``."""
        torch.div(lower, diag, out=self.a0)
        torch.div(upper, diag, out=self.c0)
        torch.div(rhs, diag, out=self.d0)
        self.a0_first.zero_()
        self.c0_last.zero_()
        keep, from_left, from_right = self.keep, self.from_left, self.from_right
        for centre, left, right, a, c, left_c, right_a, out in self.steps:
            beta = torch.rsub(torch.addcmul(a * left_c, c, right_a), 1.0)
            num = centre * keep
            num.addcmul_(a, left * from_left, value=-1.0)
            num.addcmul_(c, right * from_right, value=-1.0)
            torch.div(num, beta, out=out)
        return self.result.clone()


def _solve(pcr: dict, lower, diag, upper, rhs, periodic: bool) -> torch.Tensor:
    """Solve ``J x = rhs`` (cyclic if ``periodic``), ``rhs`` of shape ``(n,)``; ``pcr`` caches the
    :class:`_PCR` solvers of this size by number of right-hand sides."""
    n = diag.shape[0]
    if not periodic:
        if 1 not in pcr:
            pcr[1] = _PCR(n, 1)
        return pcr[1].solve(lower, diag, upper, rhs[None, :])[0]
    if 2 not in pcr:
        pcr[2] = _PCR(n, 2)
    # Sherman-Morrison exactly as the reference: A = B + u v^T, u = (gamma, 0.., alpha),
    # v = (1, 0.., beta/gamma), gamma = -diag[0].
    alpha = upper[-1]
    beta = lower[0]
    gamma = -diag[0]
    d = diag.clone()
    d[0] -= gamma
    d[-1] -= alpha * beta / gamma
    rhs2 = torch.zeros((2, n), dtype=_F64)
    rhs2[0] = rhs
    rhs2[1, 0] = gamma
    rhs2[1, -1] = alpha
    y, z = pcr[2].solve(lower, d, upper, rhs2)
    factor = (y[0] + beta * y[-1] / gamma) / (1.0 + z[0] + beta * z[-1] / gamma)
    return y - factor * z


class _Grid:
    """Neighbour indices, constants and PCR buffers of one grid, so that a Newton step does no
    set-up work. Products by precomputed reciprocals replace the reference's divisions (within an
    ulp of it): every saved tensor op counts, the kernels being dispatch-bound."""

    def __init__(self, n: int, dt: float, dx: float, nu: float, lam: float, periodic: bool):
        idx = torch.arange(n)
        if periodic:
            self.right = torch.roll(idx, -1)
            self.left = torch.roll(idx, 1)
        else:  # ghost node reflected about the wall
            self.right = torch.cat([idx[1:], idx[-2:-1]])
            self.left = torch.cat([idx[1:2], idx[:-1]])
            # the ghost node folds the outer band into the inner one (as in the reference)
            self.first = torch.zeros(n, dtype=_F64)
            self.first[0] = 1.0
            self.last = torch.flip(self.first, (0,))
            self.not_first = 1.0 - self.first
            self.not_last = 1.0 - self.last
        self.dt, self.nu, self.lam, self.periodic = dt, nu, lam, periodic
        self.inv_dxl = 1.0 / (dx * lam)
        self.inv_dx2 = 1.0 / (dx * dx)
        self.band_slope = dt / dx  # J[i, i+-1] = -dt nu / dx^2 -+ (dt / dx) a_-+
        self.band_base = -dt * nu / (dx * dx)
        self.pcr: dict[int, _PCR] = {}

    def upwind(self, u: torch.Tensor):
        """``(a_plus, a_minus, H_h(u), Laplacian(u))`` along the last axis."""
        d_right = u.index_select(-1, self.right) - u
        d_left = u - u.index_select(-1, self.left)
        a_plus = torch.clamp(d_right, max=0.0).mul_(self.inv_dxl)
        a_minus = torch.clamp(d_left, min=0.0).mul_(self.inv_dxl)
        ham = torch.addcmul(a_plus * a_plus, a_minus, a_minus).mul_(0.5 * self.lam)
        lap = d_right.sub_(d_left).mul_(self.inv_dx2)
        return a_plus, a_minus, ham, lap

    def bands(self, a_plus, a_minus):
        """Bands ``(lower, diag, upper)`` of ``J = I + dt A(u)`` (see the numpy reference)."""
        lower = torch.mul(a_minus, -self.band_slope).add_(self.band_base)
        upper = torch.mul(a_plus, self.band_slope).add_(self.band_base)
        if not self.periodic:
            lower, upper = (torch.addcmul(lower, upper, self.last).mul_(self.not_first),
                            torch.addcmul(upper, lower, self.first).mul_(self.not_last))
        diag = torch.add(lower, upper).neg_().add_(1.0)
        return lower, diag, upper

    def residual(self, u, unext, src):
        """``R(u) = u - u^{n+1} + dt (-nu Lap u + H_h(u) - S)`` and the upwind slopes."""
        a_plus, a_minus, ham, lap = self.upwind(u)
        inner = ham.sub_(src).add_(lap, alpha=-self.nu)
        return torch.sub(u, unext).add_(inner, alpha=self.dt), a_plus, a_minus


def _inf_norms(*xs) -> list[float]:
    """``max|x|`` of each tensor, with a single host sync."""
    return torch.stack([torch.linalg.vector_norm(x, math.inf) for x in xs]).tolist()


def _hjb_step(grid: _Grid, unext, src, newton_tol: float, newton_maxiter: int):
    u = unext.clone()
    for it in range(1, newton_maxiter + 1):
        res, a_plus, a_minus = grid.residual(u, unext, src)
        rmax, umax = _inf_norms(res, u)
        scale = max(1.0, umax)
        if rmax <= newton_tol * scale:
            return u, it - 1
        lower, diag, upper = grid.bands(a_plus, a_minus)
        delta = _solve(grid.pcr, lower, diag, upper, res.neg_(), grid.periodic)
        u = u + delta
        if _inf_norms(delta)[0] <= _ROUNDOFF * scale:
            return u, it  # converged to round-off: the residual cannot fall further
    res, _, _ = grid.residual(u, unext, src)
    rmax, umax = _inf_norms(res, u)
    return u, (newton_maxiter if rmax <= newton_tol * max(1.0, umax) else -newton_maxiter)



def hjb_sweep(source, terminal, *, dt, dx, nu, lam, periodic, newton_tol=1e-12, newton_maxiter=50):
    """Backward HJB sweep on torch tensors; same contract as
    :func:`mfg_core.backends.numpy.fdm.hjb_sweep` (numpy float64 in and out)."""
    source, terminal, dt, dx, nu, lam, newton_tol, newton_maxiter = checks.hjb_args(
        source, terminal, dt, dx, nu, lam, newton_tol, newton_maxiter)
    nt1, n = source.shape
    grid = _Grid(n, float(dt), float(dx), float(nu), float(lam), bool(periodic))
    with torch.inference_mode():
        src = torch.from_numpy(source)
        U = torch.empty((nt1, n), dtype=_F64)
        U[-1] = torch.from_numpy(terminal)
        its = np.zeros(nt1 - 1, dtype=np.int64)
        for k in range(nt1 - 2, -1, -1):
            U[k], its[k] = _hjb_step(grid, U[k + 1], src[k + 1], float(newton_tol), newton_maxiter)
        return U.numpy().copy(), its


def fp_sweep(U, mu0, *, dt, dx, nu, lam, periodic):
    """Forward FP sweep (adjoint scheme, mass variables) on torch tensors; same contract as
    :func:`mfg_core.backends.numpy.fdm.fp_sweep`."""
    U, mu0, dt, dx, nu, lam = checks.fp_args(U, mu0, dt, dx, nu, lam)
    nt1, n = U.shape
    grid = _Grid(n, float(dt), float(dx), float(nu), float(lam), bool(periodic))
    with torch.inference_mode():
        a_plus, a_minus, _, _ = grid.upwind(torch.from_numpy(U[:-1]))
        lower, diag, upper = grid.bands(a_plus, a_minus)
        # bands of J^T (the periodic corners move with the roll)
        lower_t, upper_t = torch.roll(upper, 1, dims=-1), torch.roll(lower, -1, dims=-1)
        mu = torch.empty((nt1, n), dtype=_F64)
        mu[0] = torch.from_numpy(mu0)
        for k in range(nt1 - 1):
            mu[k + 1] = _solve(grid.pcr, lower_t[k], diag[k], upper_t[k], mu[k], grid.periodic)
        return mu.numpy().copy()
