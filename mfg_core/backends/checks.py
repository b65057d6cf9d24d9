"""Argument checks shared by every backend's kernels (one place, identical messages).

Kernels are public functions on plain arrays, so they validate what they are given before any work;
these helpers return the arguments coerced to contiguous float64 arrays and Python scalars.
"""

from __future__ import annotations

import math

import numpy as np


def _scalars(**values: float) -> tuple[float, ...]:
    out = []
    for name, value in values.items():
        v = float(value)
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be finite and > 0, got {value!r}")
        out.append(v)
    return tuple(out)


def _field(name: str, arr) -> np.ndarray:
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < 2 or arr.shape[1] < 3:
        raise ValueError(f"{name} must have shape (Nt+1, N) with Nt >= 1, N >= 3, got {arr.shape}")
    return arr


def _row(name: str, arr, n: int) -> np.ndarray:
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
    return arr


def hjb_args(source, terminal, dt, dx, nu, lam, newton_tol, newton_maxiter):
    """Checked ``(source, terminal, dt, dx, nu, lam, newton_tol, newton_maxiter)`` of ``hjb_sweep``."""
    source = _field("source", source)
    terminal = _row("terminal", terminal, source.shape[1])
    dt, dx, nu, lam = _scalars(dt=dt, dx=dx, nu=nu, lam=lam)
    (newton_tol,) = _scalars(newton_tol=newton_tol)
    if isinstance(newton_maxiter, bool) or int(newton_maxiter) != newton_maxiter or newton_maxiter < 1:
        raise ValueError(f"newton_maxiter must be an integer >= 1, got {newton_maxiter!r}")
    return source, terminal, dt, dx, nu, lam, newton_tol, int(newton_maxiter)


def fp_args(U, mu0, dt, dx, nu, lam):
    """Checked ``(U, mu0, dt, dx, nu, lam)`` of ``fp_sweep``."""
    U = _field("U", U)
    mu0 = _row("mu0", mu0, U.shape[1])
    dt, dx, nu, lam = _scalars(dt=dt, dx=dx, nu=nu, lam=lam)
    return U, mu0, dt, dx, nu, lam
