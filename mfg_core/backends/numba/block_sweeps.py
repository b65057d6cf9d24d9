r"""numba: the time sweeps of Newton's 1D linear solves (:mod:`mfg_core.backends.numpy.block_sweeps`
states the systems), compiled.

``factor`` computes every level's Thomas factors at once (reciprocal pivots and scaled super-
diagonals, ``(Nt, N)`` each; periodic: the reference's Sherman-Morrison split with its second
solution and denominator); ``back``/``forward`` run the whole time loop, each level's elimination
and substitution inside one compiled call. No pivoting: the blocks are diagonally dominant
M-matrices, where ``gttrf`` does not pivot either; a pivot that is zero or not finite is refused.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ...errors import ConvergenceError


@njit(cache=True)
def _factor(lower, diag, upper, periodic):
    Nt, N = diag.shape
    inv = np.empty((Nt, N))
    cp = np.empty((Nt, N))
    z = np.zeros((Nt, N))
    ratio = np.zeros(Nt)
    den = np.ones(Nt)
    ok = True
    for n in range(Nt):
        d_first = diag[n, 0]
        d_last = diag[n, N - 1]
        alpha = upper[n, N - 1]
        beta = lower[n, 0]
        gamma = -diag[n, 0]
        if periodic:
            d_first = diag[n, 0] - gamma
            d_last = diag[n, N - 1] - alpha * beta / gamma
        for i in range(N):
            d = diag[n, i]
            if i == 0:
                d = d_first
            if i == N - 1:
                d = d_last
            b = d if i == 0 else d - lower[n, i] * cp[n, i - 1]
            if not (b != 0.0 and np.isfinite(b)):
                ok = False
                b = 1.0
            inv[n, i] = 1.0 / b
            cp[n, i] = upper[n, i] * inv[n, i] if i < N - 1 else 0.0
        if periodic:
            z[n, 0] = gamma
            z[n, N - 1] = alpha
            _thomas(lower[n], inv[n], cp[n], z[n])
            ratio[n] = beta / gamma
            den[n] = 1.0 + z[n, 0] + beta * z[n, N - 1] / gamma
    return inv, cp, z, ratio, den, ok


@njit(cache=True)
def _thomas(lower, inv, cp, y):
    """Solve in place with the factors of one level."""
    N = y.shape[0]
    y[0] = y[0] * inv[0]
    for i in range(1, N):
        y[i] = (y[i] - lower[i] * y[i - 1]) * inv[i]
    for i in range(N - 2, -1, -1):
        y[i] -= cp[i] * y[i + 1]


@njit(cache=True)
def _level(lower, inv, cp, z, ratio, den, periodic, n, y):
    _thomas(lower[n], inv[n], cp[n], y)
    if periodic:
        c = (y[0] + ratio[n] * y[y.shape[0] - 1]) / den[n]
        for i in range(y.shape[0]):
            y[i] -= c * z[n, i]


@njit(cache=True)
def _back(lower, inv, cp, z, ratio, den, periodic, rhs):
    Nt, N = rhs.shape
    x = np.empty((Nt, N))
    for n in range(Nt - 1, -1, -1):
        for i in range(N):
            x[n, i] = rhs[n, i] + (x[n + 1, i] if n + 1 < Nt else 0.0)
        _level(lower, inv, cp, z, ratio, den, periodic, n, x[n])
    return x


@njit(cache=True)
def _forward(lower, inv, cp, z, ratio, den, periodic, rhs):
    Nt, N = rhs.shape
    y = np.empty((Nt, N))
    for n in range(Nt):
        for i in range(N):
            y[n, i] = rhs[n, i] + (y[n - 1, i] if n > 0 else 0.0)
        _level(lower, inv, cp, z, ratio, den, periodic, n, y[n])
    return y


class CompiledStack:
    """Every level's Thomas factors, and the two sweeps as compiled loops."""

    def __init__(self, lower, diag, upper, periodic: bool):
        self.lower = np.ascontiguousarray(lower, dtype=np.float64)
        self.periodic = bool(periodic)
        *self._fac, ok = _factor(self.lower, np.ascontiguousarray(diag, dtype=np.float64),
                                 np.ascontiguousarray(upper, dtype=np.float64), self.periodic)
        if not ok:
            raise ConvergenceError("tridiagonal factorisation failed (a zero or non-finite pivot)")

    def back(self, rhs: np.ndarray) -> np.ndarray:
        return _back(self.lower, *self._fac, self.periodic, np.ascontiguousarray(rhs, dtype=np.float64))

    def forward(self, rhs: np.ndarray) -> np.ndarray:
        return _forward(self.lower, *self._fac, self.periodic, np.ascontiguousarray(rhs, dtype=np.float64))


def make_block_sweeps(scheme):
    """``factor(lower, diag, upper) -> CompiledStack`` for the 1D grid of ``scheme``."""
    if scheme.grid.dim != 1:
        raise ValueError(f"numba's block time sweeps are 1D (tridiagonal blocks), got a {scheme.grid.dim}D grid")
    periodic = scheme.grid.axes[0].periodic

    def factor(lower, diag, upper) -> CompiledStack:
        return CompiledStack(lower, diag, upper, periodic)

    return factor
