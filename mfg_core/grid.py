r"""The discretisation a problem is solved on: space grid (per axis) and time stepping, frozen.

Kernels are built once from these objects (``backend.make_hjb_sweep(scheme, ...)``) and close over
their constants, so no kernel parameter is spelled out or coerced again per call.

Axis. ``intervals`` cells on ``[lo, hi]``. Neumann: vertex-centred, the ``intervals + 1`` nodes
``lo + i h`` include both walls and the quadrature is the trapezoidal rule (``h/2`` on the walls).
Periodic: the ``intervals`` nodes ``lo + i h``, ``i < intervals`` (``hi`` is identified with ``lo``),
uniform weights ``h``.

Grid. The axes in array order: ``(x,)`` in 1D, ``(y, x)`` in 2D, so a field on the grid has shape
``grid.shape`` and a space-time field ``(len(t), *grid.shape)``. The quadrature weights are the
tensor product of the axes' weights; the discrete mass of ``m`` is ``sum(weights * m)``.

Obstacle (2D only). ``Grid.obstacle`` is ``None`` or a frozen boolean array of ``grid.shape``, True
at the *blocked* nodes (where agents cannot be). It is part of the grid, so every kernel built from
the grid (or a scheme on it) is built for that obstacle. Geometrically the obstacle is the union of
the control volumes ``[x_i - hx/2, x_i + hx/2] x [y_j - hy/2, y_j + hy/2]`` of the blocked nodes: a
wall sits at the midpoint of every link between a free and a blocked node, and no flux crosses it.
The quadrature weights stay those of the rectangle; a density is 0 on blocked nodes, so they add
nothing to its mass. An all-False mask is stored as ``None`` (no obstacle).

Scheme. The grid plus what time stepping and the equations need: ``T``, ``Nt`` (``dt = T / Nt``,
``Nt + 1`` time nodes), ``sigma`` (``nu = sigma**2 / 2``) and the control cost ``lam``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

BOUNDARIES = ("neumann", "periodic")


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


@dataclass(frozen=True)
class Axis:
    """One space axis: ``intervals`` cells on ``[lo, hi]`` with a boundary condition."""

    name: str
    lo: float
    hi: float
    intervals: int
    boundary: str = "neumann"

    def __post_init__(self):
        if self.boundary not in BOUNDARIES:
            raise ValueError(f"boundary of axis {self.name} must be one of {BOUNDARIES}, got {self.boundary!r}")
        if not (math.isfinite(self.lo) and math.isfinite(self.hi) and self.hi > self.lo):
            raise ValueError(f"axis {self.name}: need finite {self.name}min < {self.name}max, got "
                             f"[{self.lo!r}, {self.hi!r}]")
        if self.intervals < 1:
            raise ValueError(f"axis {self.name}: intervals must be >= 1, got {self.intervals}")

    @property
    def periodic(self) -> bool:
        return self.boundary == "periodic"

    @property
    def spacing(self) -> float:
        return (self.hi - self.lo) / self.intervals

    @property
    def size(self) -> int:
        """Number of nodes."""
        return self.intervals if self.periodic else self.intervals + 1

    @property
    def period(self) -> float:
        """Length of the circle (periodic) or of the mirrored domain ``2 (hi - lo)`` (Neumann): the
        period of the circular convolutions that realise the boundary in the KDE."""
        return (self.hi - self.lo) * (1 if self.periodic else 2)

    @cached_property
    def nodes(self) -> np.ndarray:
        if self.periodic:
            return _frozen(self.lo + self.spacing * np.arange(self.intervals))
        return _frozen(np.linspace(self.lo, self.hi, self.intervals + 1))

    @cached_property
    def weights(self) -> np.ndarray:
        w = np.full(self.size, self.spacing)
        if not self.periodic:
            w[[0, -1]] = 0.5 * self.spacing
        return _frozen(w)


@dataclass(frozen=True, eq=False)
class Grid:
    """The space grid: its axes in array order (``(x,)`` in 1D, ``(y, x)`` in 2D), and in 2D an
    optional obstacle mask (True where blocked; see the module docstring)."""

    axes: tuple[Axis, ...]
    obstacle: np.ndarray | None = None

    def __post_init__(self):
        if not 1 <= len(self.axes) <= 2:
            raise ValueError(f"a grid has 1 or 2 axes, got {len(self.axes)}")
        if self.obstacle is not None:
            if len(self.axes) != 2:
                raise ValueError("obstacle: only a 2D grid can have an obstacle")
            mask = np.asarray(self.obstacle)
            if mask.dtype != np.bool_:
                raise ValueError(f"obstacle must be a boolean mask (True where blocked), got dtype {mask.dtype}")
            if mask.shape != self.shape:
                raise ValueError(f"obstacle mask must have the grid's shape (Ny', Nx') = {self.shape}, "
                                 f"got {mask.shape}")
            if mask.all():
                raise ValueError("obstacle blocks every node of the grid: agents have nowhere to be")
            # a private frozen copy: the caller's array can change, the grid cannot
            object.__setattr__(self, "obstacle", _frozen(mask.copy()) if mask.any() else None)

    def __eq__(self, other):
        if not isinstance(other, Grid):
            return NotImplemented
        if self.axes != other.axes or (self.obstacle is None) != (other.obstacle is None):
            return False
        return self.obstacle is None or bool(np.array_equal(self.obstacle, other.obstacle))

    def __hash__(self):
        return hash((self.axes, None if self.obstacle is None else self.obstacle.tobytes()))

    @property
    def dim(self) -> int:
        return len(self.axes)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(a.size for a in self.axes)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def spacing(self) -> tuple[float, ...]:
        return tuple(a.spacing for a in self.axes)

    @property
    def periodic(self) -> tuple[bool, ...]:
        return tuple(a.periodic for a in self.axes)

    @property
    def boundaries(self) -> tuple[str, ...]:
        return tuple(a.boundary for a in self.axes)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.axes)

    def axis(self, name: str) -> Axis:
        for a in self.axes:
            if a.name == name:
                return a
        raise KeyError(f"grid has no axis {name!r} (axes: {self.names})")

    @cached_property
    def weights(self) -> np.ndarray:
        """Quadrature weights on the nodes (tensor product of the axes' weights)."""
        w = self.axes[0].weights
        for a in self.axes[1:]:
            w = np.multiply.outer(w, a.weights)
        return _frozen(np.array(w))

    @cached_property
    def free(self) -> np.ndarray:
        """Boolean array of ``shape``: True where agents can be (everywhere without an obstacle)."""
        if self.obstacle is None:
            return _frozen(np.ones(self.shape, dtype=bool))
        return _frozen(~self.obstacle)

    @cached_property
    def coords(self) -> dict[str, np.ndarray]:
        return {a.name: a.nodes for a in self.axes}

    def mesh(self) -> tuple[np.ndarray, ...]:
        """Node coordinates as arrays of ``shape`` in the order of :attr:`names` (``indexing="ij"``)."""
        return tuple(np.meshgrid(*(a.nodes for a in self.axes), indexing="ij"))

    def mass(self, m: np.ndarray) -> np.ndarray:
        """Discrete mass ``sum(weights * m)`` over the trailing space axes."""
        m = np.asarray(m)
        flat = m.reshape(m.shape[: m.ndim - self.dim] + (self.size,))
        return flat @ self.weights.ravel()


@dataclass(frozen=True)
class Scheme:
    """What a kernel needs to know: the grid, the time stepping and the equations' constants."""

    grid: Grid
    T: float
    Nt: int
    sigma: float
    lam: float = 1.0

    def __post_init__(self):
        if self.Nt < 1:
            raise ValueError(f"Nt must be >= 1, got {self.Nt}")
        for name in ("T", "sigma", "lam"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be finite and > 0, got {v!r}")

    @property
    def dt(self) -> float:
        return self.T / self.Nt

    @property
    def nu(self) -> float:
        return 0.5 * self.sigma**2

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of a space-time field: ``(Nt + 1, *grid.shape)``."""
        return (self.Nt + 1, *self.grid.shape)

    @cached_property
    def t(self) -> np.ndarray:
        return _frozen(np.linspace(0.0, self.T, self.Nt + 1))


def line(lo: float, hi: float, intervals: int, boundary: str = "neumann", name: str = "x") -> Grid:
    """A 1D grid."""
    return Grid((Axis(name, float(lo), float(hi), int(intervals), boundary),))


def rectangle(xmin: float, xmax: float, Nx: int, ymin: float, ymax: float, Ny: int,
              boundary: tuple[str, str] = ("neumann", "neumann"), obstacle: np.ndarray | None = None) -> Grid:
    """A 2D grid on ``[xmin, xmax] x [ymin, ymax]``; ``boundary = (x_bc, y_bc)``; axes in array order (y, x)."""
    bx, by = boundary
    return Grid((Axis("y", float(ymin), float(ymax), int(Ny), by), Axis("x", float(xmin), float(xmax), int(Nx), bx)),
                obstacle)


def grid_from_nodes(nodes, boundary: str = "neumann") -> Grid:
    """The 1D grid whose nodes are ``nodes`` (uniform, increasing; checked by the caller)."""
    nodes = np.asarray(nodes, dtype=np.float64)
    K = nodes.size
    dx = (nodes[-1] - nodes[0]) / (K - 1)
    if boundary == "periodic":
        return line(nodes[0], nodes[0] + K * dx, K, "periodic")
    return line(nodes[0], nodes[-1], K - 1, "neumann")
