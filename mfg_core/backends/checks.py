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
        have = " and ".join(f"{d}D" for d in dims)
        raise ValueError(f"backend {backend!r} has no {grid.dim}D {what} kernel (it has {have} only)")


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


# ---------------------------------------------------------------------------------------------
# 2D: the 5-point stencil on the flattened (y, x) grid, validated once per kernel

class Stencil2D(NamedTuple):
    """Neighbour indices of the 5-point stencil on a 2D grid, nodes flattened in (y, x) order
    (``p = j * nx + i``), each ``(n,)`` int64 and read-only.

    ``east[p]`` is the node whose value closes the stencil at ``p`` in the ``+x`` direction: the
    neighbour ``i + 1``; at a Neumann wall the mirror node ``i - 1`` (the ghost reflected about the wall,
    as in 1D); periodic: wrapped; and ``p`` itself where ``p`` or that neighbour is blocked (the link
    is cut: a zero gradient across it, no flux). ``west``, ``north`` (``+y``), ``south`` alike. ``free``
    is True at the nodes agents can be.
    """

    ny: int
    nx: int
    east: np.ndarray
    west: np.ndarray
    north: np.ndarray
    south: np.ndarray
    free: np.ndarray

    @property
    def size(self) -> int:
        return self.ny * self.nx


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


def stencil2d(grid: Grid) -> Stencil2D:
    """The :class:`Stencil2D` of a 2D grid (neighbours, ghosts, wrap and cut links; built once)."""
    ay, ax = grid.axes
    ny, nx = ay.size, ax.size
    j, i = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")

    def step(k, n, periodic, d):
        k2 = k + d
        if periodic:
            return k2 % n
        # the ghost beyond a Neumann wall is the mirror node on the inside
        return np.where(k2 < 0, 1, np.where(k2 >= n, n - 2, k2))

    flat = j * nx + i
    east = j * nx + step(i, nx, ax.periodic, 1)
    west = j * nx + step(i, nx, ax.periodic, -1)
    north = step(j, ny, ay.periodic, 1) * nx + i
    south = step(j, ny, ay.periodic, -1) * nx + i
    free = grid.free.ravel()
    out = []
    for nb in (east, west, north, south):
        nb = nb.ravel().astype(np.int64)
        p = flat.ravel()
        cut = ~(free & free[nb])
        out.append(_frozen(np.where(cut, p, nb)))
    return Stencil2D(ny, nx, *out, _frozen(free.copy()))


def free_components(stencil: Stencil2D) -> tuple[int, np.ndarray]:
    """Connected components of the free nodes in the stencil's link graph: ``(count, labels)``,
    ``labels`` of shape ``(n,)`` with ``-1`` on blocked nodes."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = stencil.size
    p = np.arange(n)
    rows = np.concatenate([p] * 4)
    cols = np.concatenate([stencil.east, stencil.west, stencil.north, stencil.south])
    keep = stencil.free[rows]
    graph = coo_matrix((np.ones(int(keep.sum())), (rows[keep], cols[keep])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    labels = np.where(stencil.free, labels, -1)
    ids = np.unique(labels[labels >= 0])
    relabel = np.full(labels.max() + 2, -1)
    relabel[ids] = np.arange(ids.size)
    return int(ids.size), relabel[labels]


class FDM2DConstants(NamedTuple):
    """What the 2D finite-difference kernels close over."""

    shape: tuple[int, ...]  # (Nt + 1, Ny', Nx')
    dt: float
    hx: float
    hy: float
    nu: float
    lam: float
    stencil: Stencil2D
    newton_tol: float
    newton_maxiter: int


def fdm2d_constants(scheme: Scheme, backend: str, what: str, newton_tol: float = 1e-12,
                    newton_maxiter: int = 50) -> FDM2DConstants:
    """Validated constants of a 2D FDM kernel (``newton_*`` only matter for the HJB sweep)."""
    if not isinstance(scheme, Scheme):
        raise ValueError(f"{what}: expected a mfg_core.grid.Scheme, got {type(scheme).__name__}")
    require(what, scheme.grid, backend, dims=(2,))
    ay, ax = scheme.grid.axes
    for a in (ay, ax):
        if a.size < 3:
            raise ValueError(f"{what}: axis {a.name} needs at least 3 nodes, got {a.size}")
    return FDM2DConstants(
        shape=scheme.shape, dt=scheme.dt, hx=ax.spacing, hy=ay.spacing, nu=scheme.nu, lam=scheme.lam,
        stencil=stencil2d(scheme.grid), newton_tol=positive("newton_tol", newton_tol),
        newton_maxiter=integer("newton_maxiter", newton_maxiter, 1),
    )


class Axis2D(NamedTuple):
    """One axis of a 2D particle/KDE kernel: first node, spacing, node count, periodic."""

    lo: float
    h: float
    K: int
    periodic: bool


def _refuse_obstacle(grid: Grid, backend: str, what: str) -> None:
    if grid.obstacle is not None:
        raise ValueError(f"backend {backend!r} {what}: the grid has an obstacle, and particles and the KDE "
                         "reflect only at the outer walls; solve a problem with an obstacle with fp='fdm'")


class KDE2DConstants(NamedTuple):
    axes: tuple[Axis2D, Axis2D]  # (y, x)


def kde2d_constants(grid: Grid, backend: str) -> KDE2DConstants:
    require("KDE", grid, backend, dims=(2,))
    _refuse_obstacle(grid, backend, "KDE")
    axes = []
    for a in grid.axes:
        if a.size < 3:
            raise ValueError(f"KDE: axis {a.name} needs at least 3 nodes, got {a.size}")
        axes.append(Axis2D(a.lo, a.spacing, a.size, a.periodic))
    return KDE2DConstants(tuple(axes))


class Particle2DConstants(NamedTuple):
    """What the 2D particle kernels close over (see ``mfg_core/backends/numpy/particles2d.py``)."""

    axes: tuple[Axis2D, Axis2D]  # (y, x)
    dt: float
    lam: float
    sigma: float
    bandwidth: float
    scale_by_std: bool

    @property
    def drift(self) -> float:
        return -self.dt / self.lam

    @property
    def noise(self) -> float:
        return self.sigma * math.sqrt(self.dt)


def particle2d_constants(scheme: Scheme, backend: str, *, bandwidth: float,
                         scale_by_std: bool) -> Particle2DConstants:
    """Validated constants of a 2D particle sweep (a grid with an obstacle is refused)."""
    require("particle sweep", scheme.grid, backend, dims=(2,))
    _refuse_obstacle(scheme.grid, backend, "particle sweep")
    kde = kde2d_constants(scheme.grid, backend)
    return Particle2DConstants(kde.axes, scheme.dt, scheme.lam, scheme.sigma, positive("bandwidth", bandwidth),
                               flag("scale_by_std", scale_by_std))


def particle2d_arrays(c: Particle2DConstants, X0, noise, grad_u):
    """Checked ``(X0, noise, grad_u)`` of a 2D particle sweep: ``(N, 2)`` positions ``(y, x)``,
    ``(S, N, 2)`` normals, ``(S, 2, Ny', Nx')`` nodal gradients ``(u_y, u_x)``."""
    X0 = np.ascontiguousarray(X0, dtype=np.float64)
    if X0.ndim != 2 or X0.shape[1] != 2 or X0.shape[0] < 1:
        raise ValueError(f"X0 must be a non-empty array of (y, x) positions of shape (N, 2), got {X0.shape}")
    noise = np.ascontiguousarray(noise, dtype=np.float64)
    if noise.ndim != 3 or noise.shape[1:] != X0.shape:
        raise ValueError(f"noise must have shape (steps, {X0.shape[0]}, 2), got {noise.shape}")
    (ay, ax) = c.axes
    grad_u = field("grad_u", grad_u, (noise.shape[0], 2, ay.K, ax.K))
    return X0, noise, grad_u
