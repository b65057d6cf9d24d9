r"""The Mean Field Game problem (1D or 2D): domain, grid, data, and their validation.

    HJB:  -u_t - nu u_xx + |u_x|^2 / (2 lam) = V(x) + F(m),   u(T, x) = g(x)
    FP:    m_t - nu m_xx - (m u_x / lam)_x = 0,               m(0, x) = m0(x)

with ``nu = sigma**2 / 2`` on ``[xmin, xmax] x [0, T]``, reflecting (``"neumann"``) or ``"periodic"``
boundaries.

Grid. ``Nx`` is the number of space intervals and ``Nt`` the number of time steps. Neumann: the
``Nx + 1`` nodes ``xmin + i dx`` include both walls (vertex-centred; the wall sits on the end node)
and the quadrature is the trapezoidal rule. Periodic: the ``Nx`` nodes ``xmin + i dx``, ``i < Nx``
(``xmax`` is identified with ``xmin``), uniform weights. ``t`` has ``Nt + 1`` nodes. The discrete
mass of a density ``m`` on the nodes is ``sum(weights * m)``: the quantity the FP scheme conserves.

Two dimensions (``Ny`` given). On ``[xmin, xmax] x [ymin, ymax]``

    HJB:  -u_t - nu Lap(u) + |grad u|^2 / (2 lam) = V(x, y) + F(m),   u(T) = g(x, y)
    FP:    m_t - nu Lap(m) - div(m grad u / lam) = 0,                  m(0) = m0(x, y)

each axis discretised as above with its own boundary (``boundary`` one name or ``(x_bc, y_bc)``);
arrays are ordered ``(t, y, x)`` and the weights are the tensor product. The callables take
``(x, y)`` arrays of equal shape. ``obstacle`` (a callable ``obstacle(x, y) -> bool array`` or a
boolean mask of the grid's shape ``(len(y), len(x))``) marks the nodes where agents cannot be: the
blocked nodes' control volumes form the obstacle, its walls reflect (no flux), ``m = 0`` there and
``u`` there keeps its terminal value (see :mod:`mfg_core.grid` and
:mod:`mfg_core.backends.numpy.fdm2d`). ``m0`` may not put mass on blocked nodes (a relative mass
below ``OBSTACLE_MASS_TOL`` there, e.g. a Gaussian's tail, is dropped), and every free node must be
connected (through free links) to where ``m0`` has mass.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from . import validation as v
from .grid import BOUNDARIES, Scheme, line, rectangle

ArrayFn = Callable[[np.ndarray], np.ndarray]


def _describe(fn: Any) -> str:
    """A short JSON-friendly description of a callable, for provenance."""
    if fn is None:
        return "zero"
    name = getattr(fn, "__qualname__", None) or type(fn).__name__
    module = getattr(fn, "__module__", None)
    return f"{module}.{name}" if module else name


def _real_array(label: str, out: Any) -> np.ndarray:
    """A callable's output as float64, refusing what would be silently cut (complex, objects)."""
    arr = np.asarray(out)
    if np.iscomplexobj(arr):
        raise ValueError(f"{label} returned complex values (dtype {arr.dtype}); it must return real numbers")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{label} must return numbers, got an array of dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


#: float64 space-time fields a solve holds at once (U, M, their images and next iterates, the source,
#: kernel work arrays): the factor of ``memory_estimate``
FIELDS_PER_SOLVE = 12


def memory_estimate(nodes: int, Nt: int, num_particles: int = 0) -> int:
    """Bytes a fixed-point solve needs on a grid of ``nodes`` space nodes and ``Nt`` time steps:
    ``FIELDS_PER_SOLVE`` float64 fields of shape ``(Nt + 1, nodes)``, plus for particles their
    positions and one chunk of increments (``CHUNK_NUMBERS`` numbers)."""
    fields = FIELDS_PER_SOLVE * (Nt + 1) * nodes * 8
    particles = 0
    if num_particles:
        particles = 4 * num_particles * 8 + min(num_particles * Nt, max(2**23, num_particles)) * 8
    return int(fields + particles)


def physical_memory() -> int | None:
    """Bytes of physical memory of this machine (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _check_size(Nx: int, Nt: int, nodes: int, Ny: int | None = None) -> None:
    need = memory_estimate(nodes, Nt)
    have = physical_memory()
    if have is not None and need > have:
        size = f"Nx={Nx}, Nt={Nt}" if Ny is None else f"Nx={Nx}, Ny={Ny}, Nt={Nt}"
        raise ValueError(f"{size} is too large for this machine: a solve on {nodes} nodes x "
                         f"{Nt + 1} times needs about {need / 2**30:.1f} GiB (it has {have / 2**30:.1f} GiB); "
                         f"reduce {'Nx' if Ny is None else 'Nx, Ny'} or Nt")


#: m0's mass on blocked nodes, relative to its total, below which it is dropped (set to 0, not
#: refused): far below any discretisation error, and what a Gaussian's tail leaves near an obstacle
OBSTACLE_MASS_TOL = 1e-6


def _boundary_pair(boundary: Any) -> tuple[str, str]:
    """``(x_bc, y_bc)`` from one name or a pair of names (``ValueError`` naming ``boundary``)."""
    if isinstance(boundary, str):
        pair = (boundary, boundary)
    elif isinstance(boundary, (tuple, list)) and len(boundary) == 2:
        pair = tuple(boundary)
    else:
        raise ValueError(f"boundary must be one of {BOUNDARIES} or a pair (x_bc, y_bc) of them, got {boundary!r}")
    for b in pair:
        if not isinstance(b, str) or b not in BOUNDARIES:
            raise ValueError(f"boundary must be one of {BOUNDARIES} or a pair (x_bc, y_bc) of them, "
                             f"got {boundary!r}")
    return pair


class MFGProblem:
    """A 1D or 2D MFG problem on a uniform grid (see the module docstring for the equations and grid).

    Parameters
    ----------
    xmin, xmax, Nx : domain and number of space intervals (``Nx >= 3``).
    T, Nt : horizon and number of time steps (``Nt >= 1``).
    sigma : volatility (> 0); ``nu = sigma**2 / 2``.
    potential, coupling, coupling_dm, terminal_cost : vectorised callables ``V(x)``, ``F(m)``,
        ``F'(m)``, ``g(x)``; ``None`` means zero. ``coupling_dm`` is checked against differences of
        ``coupling`` and exposed as ``problem.dF``; the current solvers (Picard iteration, Newton on
        the HJB for a given m) do not need it.
    m0 : initial density (vectorised callable, required); normalised to discrete mass 1.
    boundary : ``"neumann"`` or ``"periodic"``.
    lam : control cost (> 0).
    ymin, ymax, Ny : the y range and number of y intervals (``Ny >= 3``): giving ``Ny`` makes the
        problem 2D (``ymin``, ``ymax`` default to 0, 1). In 2D the callables take ``(x, y)`` arrays,
        ``boundary`` is one name or ``(x_bc, y_bc)``, and fields have shape ``(len(t), len(y), len(x))``.
    obstacle : 2D only: ``obstacle(x, y)`` returning True where agents cannot be, or a boolean mask
        of shape ``(len(y), len(x))``; ``None`` for none.
    name, params : optional label and named parameters (set by :mod:`mfg_core.problems`).
    """

    def __init__(
        self,
        xmin: float = 0.0,
        xmax: float = 1.0,
        Nx: int = 100,
        T: float = 1.0,
        Nt: int = 100,
        sigma: float = 0.2,
        potential: ArrayFn | None = None,
        coupling: ArrayFn | None = None,
        coupling_dm: ArrayFn | None = None,
        terminal_cost: ArrayFn | None = None,
        m0: ArrayFn | None = None,
        boundary: str = "neumann",
        lam: float = 1.0,
        *,
        ymin: float | None = None,
        ymax: float | None = None,
        Ny: int | None = None,
        obstacle: Callable[[np.ndarray, np.ndarray], np.ndarray] | np.ndarray | None = None,
        name: str = "custom",
        params: dict[str, Any] | None = None,
    ):
        self.xmin = v.number("xmin", xmin)
        self.xmax = v.number("xmax", xmax)
        if self.xmax <= self.xmin:
            raise ValueError(f"xmax must be > xmin, got xmin={xmin!r}, xmax={xmax!r}")
        self.Nx = v.integer("Nx", Nx, 3, integral_floats=True)
        self.T = v.positive("T", T)
        self.Nt = v.integer("Nt", Nt, 1, integral_floats=True)
        self.sigma = v.positive("sigma", sigma)
        self.lam = v.positive("lam", lam)
        self.ymin = self.ymax = self.Ny = self.y = self.dy = None
        self.obstacle = None
        if Ny is None:
            for label, value in (("ymin", ymin), ("ymax", ymax), ("obstacle", obstacle)):
                if value is not None:
                    raise ValueError(f"{label} given without Ny: a 2D problem needs Ny (and ymin, ymax)")
            if boundary not in BOUNDARIES:
                raise ValueError(f"boundary must be one of {BOUNDARIES}, got {boundary!r}")
            _check_size(self.Nx, self.Nt, self.Nx + 1)
            self.boundary = boundary
        else:
            self.ymin = v.number("ymin", 0.0 if ymin is None else ymin)
            self.ymax = v.number("ymax", 1.0 if ymax is None else ymax)
            if self.ymax <= self.ymin:
                raise ValueError(f"ymax must be > ymin, got ymin={ymin!r}, ymax={ymax!r}")
            self.Ny = v.integer("Ny", Ny, 3, integral_floats=True)
            pair = _boundary_pair(boundary)
            _check_size(self.Nx, self.Nt, (self.Nx + 1) * (self.Ny + 1), Ny=self.Ny)
            # one name stays a name (problem.boundary == "neumann"), a pair stays a pair
            self.boundary = boundary if isinstance(boundary, str) else pair
        self.name = str(name)
        self.params = dict(params or {})

        #: the space grid and the discretisation every kernel is built from
        if self.Ny is None:
            self.grid = line(self.xmin, self.xmax, self.Nx, boundary)
        else:
            self.grid = rectangle(self.xmin, self.xmax, self.Nx, self.ymin, self.ymax, self.Ny, pair)
            self.y = self.grid.axis("y").nodes
            self.dy = self.grid.spacing[0]
            self.obstacle = obstacle
            if obstacle is not None:
                self.grid = rectangle(self.xmin, self.xmax, self.Nx, self.ymin, self.ymax, self.Ny, pair,
                                      obstacle=self._obstacle_mask(obstacle))
        self.scheme = Scheme(self.grid, self.T, self.Nt, self.sigma, self.lam)
        self.nu = self.scheme.nu
        self.dx = self.grid.spacing[-1]
        self.dt = self.scheme.dt
        self.x = self.grid.axis("x").nodes
        self.weights = self.grid.weights
        self.t = self.scheme.t

        for label, fn in (("potential", potential), ("coupling", coupling),
                          ("coupling_dm", coupling_dm), ("terminal_cost", terminal_cost), ("m0", m0)):
            if fn is not None and not callable(fn):
                raise ValueError(f"{label} must be a vectorised callable or None, got {type(fn).__name__}")
        if m0 is None:
            raise ValueError("m0 is required: give the initial density as a vectorised callable")
        if coupling is None and coupling_dm is not None:
            raise ValueError("coupling_dm given without coupling")
        self.potential = potential
        self.coupling = coupling
        self.coupling_dm = coupling_dm
        self.terminal_cost = terminal_cost
        self.m0 = m0

        #: V and g on the nodes
        self.V = self._eval_on_grid("potential", potential)
        self.g = self._eval_on_grid("terminal_cost", terminal_cost)
        raw_m0 = self._eval_on_grid("m0", m0)
        if np.any(raw_m0 < 0):
            i = np.unravel_index(int(np.argmin(raw_m0)), raw_m0.shape)
            raise ValueError(f"m0 must be >= 0 everywhere, got m0({self._where(i)}) = {raw_m0[i]:.6g}")
        mass = float(np.sum(self.weights * raw_m0))
        if not mass > 0:
            raise ValueError("m0 has zero mass on the grid: it must be positive somewhere")
        if self.grid.obstacle is not None:
            raw_m0 = self._m0_off_obstacle(raw_m0, mass)
            mass = float(np.sum(self.weights * raw_m0))
        #: initial density on the nodes, normalised to discrete mass 1
        self.m_init = raw_m0 / mass
        if self.grid.obstacle is not None:
            self._check_connected()
        self._check_coupling()

    # ------------------------------------------------------------------------------------------
    def _where(self, index) -> str:
        """``x=.., y=..`` of a node index (``x=..`` in 1D), for messages."""
        if self.dim == 1:
            return f"x={self.x[index[0] if isinstance(index, tuple) else index]:.6g}"
        j, i = index
        return f"x={self.x[i]:.6g}, y={self.y[j]:.6g}"

    def _mesh(self) -> tuple[np.ndarray, np.ndarray]:
        """``(X, Y)`` node coordinates of shape ``(len(y), len(x))``."""
        Y, X = self.grid.mesh()
        return X, Y

    def _obstacle_mask(self, obstacle: Any) -> np.ndarray:
        """The obstacle as a boolean mask of the grid's shape (``ValueError`` naming ``obstacle``)."""
        shape = self.grid.shape
        if callable(obstacle):
            X, Y = self._mesh()
            try:
                out = obstacle(X.copy(), Y.copy())
            except Exception as exc:  # noqa: BLE001 - re-raised with the parameter named
                raise ValueError(f"obstacle failed when evaluated on the grid: {exc!r}") from exc
            what = "obstacle must return"
        else:
            out = obstacle
            what = "obstacle must be a callable or"
        mask = np.asarray(out)
        if mask.dtype != np.bool_:
            raise ValueError(f"{what} a boolean array (True where agents cannot be), got dtype {mask.dtype}")
        if mask.ndim == 0:
            mask = np.full(shape, bool(mask))
        if mask.shape != shape:
            raise ValueError(f"{what} a boolean array of the grid's shape (len(y), len(x)) = {shape}, "
                             f"got {mask.shape}")
        if mask.all():
            raise ValueError("obstacle blocks every node of the grid: agents have nowhere to be")
        return mask

    def _m0_off_obstacle(self, raw_m0: np.ndarray, mass: float) -> np.ndarray:
        blocked = self.grid.obstacle
        inside = float(np.sum((self.weights * raw_m0)[blocked]))
        if inside > OBSTACLE_MASS_TOL * mass:
            i = np.unravel_index(int(np.argmax(np.where(blocked, raw_m0, -np.inf))), raw_m0.shape)
            raise ValueError(f"m0 has mass inside the obstacle ({inside / mass:.3g} of its total; e.g. "
                             f"m0({self._where(i)}) = {raw_m0[i]:.6g}): m0 must vanish where obstacle is True")
        out = np.where(blocked, 0.0, raw_m0)
        if not np.sum(self.weights * out) > 0:
            raise ValueError("m0 has zero mass outside the obstacle: it must be positive somewhere")
        return out

    def _check_connected(self) -> None:
        """Every free node must be reachable (through free links) from where m0 has mass."""
        from .backends.checks import free_components, stencil2d

        count, labels = free_components(stencil2d(self.grid))
        reached = np.unique(labels[self.m_init.ravel() > 0])
        cut = (labels >= 0) & ~np.isin(labels, reached)
        if np.any(cut):
            i = np.unravel_index(int(np.argmax(cut)), self.grid.shape)
            raise ValueError(f"obstacle leaves {int(cut.sum())} free nodes (e.g. at {self._where(i)}) cut off "
                             "from every node where m0 has mass: agents can never reach them; block them too "
                             "or open a passage")

    # ------------------------------------------------------------------------------------------
    @property
    def periodic(self) -> bool:
        """Every axis periodic (1D: the boundary is ``"periodic"``)."""
        return all(self.grid.periodic)

    @property
    def dim(self) -> int:
        return self.grid.dim

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape ``(len(t), len(x))`` of U and M (``(len(t), len(y), len(x))`` in 2D)."""
        return self.scheme.shape

    def coords(self) -> dict[str, np.ndarray]:
        """Node coordinates by name: ``t`` and the space axes."""
        return {"t": self.t, **self.grid.coords}

    def _eval_on_grid(self, label: str, fn: ArrayFn | None) -> np.ndarray:
        shape = self.grid.shape
        if fn is None:
            return np.zeros(shape)
        try:
            out = fn(self.x.copy()) if self.dim == 1 else fn(*(a.copy() for a in self._mesh()))
        except Exception as exc:  # noqa: BLE001 - re-raised with the parameter named
            raise ValueError(f"{label} failed when evaluated on the grid: {exc!r}") from exc
        out = _real_array(label, out)
        if out.ndim == 0:
            out = np.full(shape, float(out))
        if out.shape != shape:
            args = "x" if self.dim == 1 else "x, y"
            raise ValueError(f"{label} must return an array of shape {shape} for {args} of that "
                             f"shape, got {out.shape}")
        if not np.all(np.isfinite(out)):
            raise ValueError(f"{label} returned NaN or inf on the grid")
        return out

    def _check_coupling(self) -> None:
        """Evaluate F (and F') on a probe density to catch wrong shapes/NaN before any solve."""
        area = (self.xmax - self.xmin) * (1.0 if self.dim == 1 else self.ymax - self.ymin)
        probe = np.stack([self.m_init, np.full(self.grid.shape, 1.0 / area)])
        for label, fn in (("coupling", self.coupling), ("coupling_dm", self.coupling_dm)):
            if fn is None:
                continue
            try:
                out = fn(probe.copy())
            except Exception as exc:  # noqa: BLE001
                raise ValueError(f"{label} failed when evaluated on a density: {exc!r}") from exc
            out = _real_array(label, out)
            if out.shape != probe.shape:
                raise ValueError(f"{label} must map an array of shape {probe.shape} to the same shape, "
                                 f"got {out.shape}")
            if not np.all(np.isfinite(out)):
                raise ValueError(f"{label} returned NaN or inf for a valid density")
        if self.coupling is not None and self.coupling_dm is not None:
            self._check_derivative(probe)

    def _check_derivative(self, probe: np.ndarray) -> None:
        """``coupling_dm`` must be the derivative of ``coupling`` wherever ``coupling`` is smooth.

        Compared with a central difference (relative step 1e-5) at the probe densities that are not
        tiny and where the two one-sided differences agree (so a kink, e.g. ``max(m - 1, 0)`` at
        ``m = 1``, where any one-sided derivative is acceptable, is not judged).
        """
        m = probe[probe > 1e-3 * probe.max()]
        h = 1e-5 * m
        F0, Fp, Fm = (np.asarray(self.coupling(v), dtype=np.float64) for v in (m, m + h, m - h))
        right, left = (Fp - F0) / h, (F0 - Fm) / h
        central = 0.5 * (right + left)
        smooth = np.abs(right - left) <= 1e-2 * (np.abs(right) + np.abs(left)) + 1e-6
        d = np.asarray(self.coupling_dm(m.copy()), dtype=np.float64)
        bad = smooth & (np.abs(d - central) > 1e-4 * (np.abs(d) + np.abs(central)) + 1e-6)
        if np.any(bad):
            i = int(np.argmax(bad))
            raise ValueError(f"coupling_dm is not the derivative of coupling: at m = {m[i]:.6g} it gives "
                             f"{d[i]:.6g}, a central difference of coupling gives {central[i]:.6g}")

    def F(self, M: np.ndarray) -> np.ndarray:
        """The coupling ``F(m)`` evaluated pointwise on a density array (zero if no coupling)."""
        if self.coupling is None:
            return np.zeros_like(M)
        out = np.asarray(self.coupling(M), dtype=np.float64)
        if out.shape != np.shape(M):
            raise ValueError(f"coupling returned shape {out.shape} for input shape {np.shape(M)}")
        return out

    def dF(self, M: np.ndarray) -> np.ndarray:
        """``F'(m)`` pointwise: ``coupling_dm`` if given, else a central difference of ``F``."""
        if self.coupling is None:
            return np.zeros_like(M)
        if self.coupling_dm is None:
            h = 1e-6 * np.maximum(1.0, np.abs(M))
            return (self.F(M + h) - self.F(np.maximum(M - h, 0.0))) / (M + h - np.maximum(M - h, 0.0))
        return np.asarray(self.coupling_dm(M), dtype=np.float64)

    def mass(self, M: np.ndarray) -> np.ndarray:
        """Discrete mass ``sum(weights * m)`` over the space axes (the quantity FP-FDM conserves)."""
        return self.grid.mass(M)

    def parameters(self) -> dict[str, Any]:
        """Every parameter as plain JSON-friendly values (callables by their qualified name; in 2D
        also the y axis, ``dim`` and the obstacle: ``"none"``, a callable's name or ``"mask"``, with
        the number of blocked nodes)."""
        out = {
            "name": self.name,
            "xmin": self.xmin, "xmax": self.xmax, "Nx": self.Nx,
            "T": self.T, "Nt": self.Nt, "sigma": self.sigma, "nu": self.nu, "lam": self.lam,
            "boundary": self.boundary, "dx": self.dx, "dt": self.dt,
            "potential": _describe(self.potential), "coupling": _describe(self.coupling),
            "coupling_dm": _describe(self.coupling_dm), "terminal_cost": _describe(self.terminal_cost),
            "m0": _describe(self.m0),
            "params": {k: (v if isinstance(v, (int, float, str, bool)) else repr(v))
                       for k, v in self.params.items()},
        }
        if self.dim == 2:
            blocked = self.grid.obstacle
            out.update({
                "dim": 2, "ymin": self.ymin, "ymax": self.ymax, "Ny": self.Ny, "dy": self.dy,
                "boundary": self.boundary if isinstance(self.boundary, str) else list(self.boundary),
                "obstacle": ("none" if self.obstacle is None else
                             _describe(self.obstacle) if callable(self.obstacle) else "mask"),
                "blocked_nodes": 0 if blocked is None else int(blocked.sum()),
            })
        return out

    def __repr__(self) -> str:
        extra = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        if self.dim == 2:
            blocked = self.grid.obstacle
            return (f"MFGProblem({self.name!r}, [{self.xmin}, {self.xmax}] x [{self.ymin}, {self.ymax}] x "
                    f"[0, {self.T}], Nx={self.Nx}, Ny={self.Ny}, Nt={self.Nt}, sigma={self.sigma}, "
                    f"boundary={self.boundary!r}, lam={self.lam}, blocked nodes="
                    f"{0 if blocked is None else int(blocked.sum())}" + (f", {extra}" if extra else "") + ")")
        return (f"MFGProblem({self.name!r}, [{self.xmin}, {self.xmax}] x [0, {self.T}], Nx={self.Nx}, "
                f"Nt={self.Nt}, sigma={self.sigma}, boundary={self.boundary!r}, lam={self.lam}"
                + (f", {extra}" if extra else "") + ")")
