"""Argument checks shared by every backend's kernel factories (one place, identical messages).

A kernel is built once from a :class:`~mfg_core.grid.Scheme` (or :class:`~mfg_core.grid.Grid`):
the factory validates the scheme and the solver settings here and closes over the resulting
constants, so that a call only checks the shapes of its arrays (a no-copy view for the float64,
C-contiguous arrays the solvers pass).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..grid import Grid, Scheme
from ..validation import flag, integer, positive


def field(name: str, arr, shape: tuple[int, ...]) -> np.ndarray:
    """``arr`` as a C-contiguous float64 array of ``shape`` (no copy if it already is one)."""
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if arr.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {arr.shape}")
    return arr


def require(what: str, grid: Grid, backend: str, dims: tuple[int, ...] = (1,)) -> None:
    """Refuse a grid of a dimension this backend has no ``what`` kernel for (no silent fallback)."""
    if not isinstance(grid, Grid):
        raise ValueError(f"{what}: expected a mfg_core.grid.Grid, got {type(grid).__name__}")
    if grid.dim not in dims:
        raise ValueError(f"backend {backend!r} has no {grid.dim}D {what} kernel (it has {dims}D)")


class FDMConstants(NamedTuple):
    """What the 1D finite-difference kernels close over."""

    shape: tuple[int, ...]  # (Nt + 1, N)
    dt: float
    dx: float
    nu: float
    lam: float
    periodic: bool
    newton_tol: float
    newton_maxiter: int


def fdm_constants(scheme: Scheme, backend: str, what: str, newton_tol: float = 1e-12,
                  newton_maxiter: int = 50) -> FDMConstants:
    """Validated constants of a 1D FDM kernel (``newton_*`` only matter for the HJB sweep)."""
    if not isinstance(scheme, Scheme):
        raise ValueError(f"{what}: expected a mfg_core.grid.Scheme, got {type(scheme).__name__}")
    require(what, scheme.grid, backend)
    (axis,) = scheme.grid.axes
    if axis.size < 3:
        raise ValueError(f"{what}: the grid needs at least 3 nodes, got {axis.size}")
    return FDMConstants(
        shape=scheme.shape, dt=scheme.dt, dx=axis.spacing, nu=scheme.nu, lam=scheme.lam,
        periodic=axis.periodic, newton_tol=positive("newton_tol", newton_tol),
        newton_maxiter=integer("newton_maxiter", newton_maxiter, 1),
    )


class ParticleConstants(NamedTuple):
    """What the 1D particle kernels close over (see ``mfg_core/backends/numpy/particles.py``)."""

    xmin: float
    dx: float
    K: int  # grid nodes
    periodic: bool
    dt: float
    lam: float
    sigma: float
    bandwidth: float  # the bandwidth, or its factor of the sample spread if scale_by_std
    scale_by_std: bool

    @property
    def drift(self) -> float:
        """Coefficient of the interpolated ``u_x`` in an Euler-Maruyama step: ``-dt / lam``."""
        return -self.dt / self.lam

    @property
    def noise(self) -> float:
        """Coefficient of the standard normals: ``sigma sqrt(dt)``."""
        return self.sigma * math.sqrt(self.dt)


def particle_constants(scheme: Scheme, backend: str, *, bandwidth: float,
                       scale_by_std: bool) -> ParticleConstants:
    """Validated constants of a 1D particle sweep."""
    require("particle sweep", scheme.grid, backend)
    (axis,) = scheme.grid.axes
    return ParticleConstants(axis.lo, axis.spacing, axis.size, axis.periodic, scheme.dt, scheme.lam,
                             scheme.sigma, positive("bandwidth", bandwidth), flag("scale_by_std", scale_by_std))


class KDEConstants(NamedTuple):
    xmin: float
    dx: float
    K: int
    periodic: bool


def kde_constants(grid: Grid, backend: str) -> KDEConstants:
    require("KDE", grid, backend)
    (axis,) = grid.axes
    if axis.size < 3:
        raise ValueError(f"KDE: the grid needs at least 3 nodes, got {axis.size}")
    return KDEConstants(axis.lo, axis.spacing, axis.size, axis.periodic)


def particle_outputs(c: ParticleConstants, steps: int):
    """The host arrays a particle sweep fills: densities ``(steps, K)``, crossings and bandwidths."""
    return np.empty((steps, c.K)), np.zeros(steps, dtype=np.int64), np.empty(steps)


def particle_arrays(c: ParticleConstants, X0, noise, grad_u):
    """Checked ``(X0, noise, grad_u)`` of a particle sweep: ``(N,)``, ``(S, N)``, ``(S, K)``."""
    X0 = np.ascontiguousarray(X0, dtype=np.float64)
    if X0.ndim != 1 or X0.size < 1:
        raise ValueError(f"X0 must be a non-empty 1-D array of positions, got shape {X0.shape}")
    noise = np.ascontiguousarray(noise, dtype=np.float64)
    if noise.ndim != 2 or noise.shape[1] != X0.size:
        raise ValueError(f"noise must have shape (steps, {X0.size}), got {noise.shape}")
    grad_u = field("grad_u", grad_u, (noise.shape[0], c.K))
    return X0, noise, grad_u
