r"""The time sweeps of Newton's linear solves in 1D: block-bidiagonal systems with tridiagonal blocks.

GMRES on the Schur complement (:mod:`mfg_core.newton`) solves, per Krylov iteration, the two
block-bidiagonal systems of the Jacobian's diagonal blocks,

    backward:  J^n x^n = r^n + x^{n+1},       n = Nt-1 .. 0,   x^{Nt} = 0,
    forward:   K^n y^n = r^n + y^{n-1},       n = 0 .. Nt-1,   y^{-1} = 0,

with ``J^n`` (HJB) or ``K^n = (J^n)^T`` (FP, in mass variables) tridiagonal, given by their bands
(row ``i``: ``lower[i] = A[i, i-1]``, ``upper[i] = A[i, i+1]``; periodic: ``upper[-1]`` and
``lower[0]`` are the corners). ``make_block_sweeps(scheme)`` returns ``factor(lower, diag, upper)``
(arrays ``(Nt, N)``) -> an object with ``back(r)`` and ``forward(r)``: the matrices are factorised
once per Newton step and reused by every Krylov iteration. This is the reference: LAPACK
``gttrf``/``gttrs`` per level (``gttrf`` pivots by rows; on these diagonally dominant M-matrices it
does not need to). Periodic: the kernels' Sherman-Morrison split (``solve_tridiagonal``), its second
solution and denominator computed once per level. Each level is one LAPACK call from Python, which
is what a compiled backend (numba's module of the same name) saves.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import lapack

from ...errors import ConvergenceError

_gttrs = lapack.dgttrs


class TridiagonalStack:
    """The factorisations of every time level's tridiagonal matrix, and the two sweeps."""

    def __init__(self, lower, diag, upper, periodic: bool):
        self.periodic = periodic
        self._fac = []
        for lo, d, up in zip(lower, diag, upper):
            if periodic:
                alpha, beta, gamma = up[-1], lo[0], -d[0]
                d = d.copy()
                d[0] -= gamma
                d[-1] -= alpha * beta / gamma
            f = lapack.dgttrf(lo[1:], d, up[:-1])
            if f[-1] != 0:
                raise ConvergenceError(f"tridiagonal factorisation failed (gttrf info={f[-1]})")
            f = f[:-1]
            if periodic:
                u = np.zeros(d.size)
                u[0], u[-1] = gamma, alpha
                z = _gttrs(*f, u)[0]
                self._fac.append((f, z, beta / gamma, 1.0 + z[0] + beta * z[-1] / gamma))
            else:
                self._fac.append(f)
        self.solve = self._solve_cyclic if periodic else self._solve

    def _solve(self, n: int, rhs: np.ndarray) -> np.ndarray:
        return _gttrs(*self._fac[n], rhs)[0]

    def _solve_cyclic(self, n: int, rhs: np.ndarray) -> np.ndarray:
        f, z, ratio, den = self._fac[n]
        y = _gttrs(*f, rhs)[0]
        return y - ((y[0] + ratio * y[-1]) / den) * z

    def back(self, rhs: np.ndarray) -> np.ndarray:
        x = np.empty_like(rhs)
        solve = self.solve
        nxt = 0.0
        for n in range(rhs.shape[0] - 1, -1, -1):
            nxt = x[n] = solve(n, rhs[n] + nxt)
        return x

    def forward(self, rhs: np.ndarray) -> np.ndarray:
        y = np.empty_like(rhs)
        solve = self.solve
        prev = 0.0
        for n in range(rhs.shape[0]):
            prev = y[n] = solve(n, rhs[n] + prev)
        return y


def make_block_sweeps(scheme):
    """``factor(lower, diag, upper) -> TridiagonalStack`` for the 1D grid of ``scheme``."""
    if scheme.grid.dim != 1:
        raise ValueError(f"the block time sweeps are 1D (tridiagonal blocks), got a {scheme.grid.dim}D grid")
    periodic = scheme.grid.axes[0].periodic

    def factor(lower, diag, upper) -> TridiagonalStack:
        return TridiagonalStack(lower, diag, upper, periodic)

    return factor
