r"""The 1D Mean Field Game problem: domain, grid, data, and their validation.

    HJB:  -u_t - nu u_xx + |u_x|^2 / (2 lam) = V(x) + F(m),   u(T, x) = g(x)
    FP:    m_t - nu m_xx - (m u_x / lam)_x = 0,               m(0, x) = m0(x)

with ``nu = sigma**2 / 2`` on ``[xmin, xmax] x [0, T]``, reflecting (``"neumann"``) or ``"periodic"``
boundaries.

Grid. ``Nx`` is the number of space intervals and ``Nt`` the number of time steps. Neumann: the
``Nx + 1`` nodes ``xmin + i dx`` include both walls (vertex-centred; the wall sits on the end node)
and the quadrature is the trapezoidal rule. Periodic: the ``Nx`` nodes ``xmin + i dx``, ``i < Nx``
(``xmax`` is identified with ``xmin``), uniform weights. ``t`` has ``Nt + 1`` nodes. The discrete
mass of a density ``m`` on the nodes is ``sum(weights * m)``: the quantity the FP scheme conserves.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from . import validation as v
from .grid import BOUNDARIES, Scheme, line

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


def _check_size(Nx: int, Nt: int, nodes: int) -> None:
    need = memory_estimate(nodes, Nt)
    have = physical_memory()
    if have is not None and need > have:
        raise ValueError(f"Nx={Nx}, Nt={Nt} is too large for this machine: a solve on {nodes} nodes x "
                         f"{Nt + 1} times needs about {need / 2**30:.1f} GiB (it has {have / 2**30:.1f} GiB); "
                         "reduce Nx or Nt")


class MFGProblem:
    """A 1D MFG problem on a uniform grid (see the module docstring for the equations and grid).

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
        if boundary not in BOUNDARIES:
            raise ValueError(f"boundary must be one of {BOUNDARIES}, got {boundary!r}")
        _check_size(self.Nx, self.Nt, self.Nx + 1)
        self.boundary = boundary
        self.name = str(name)
        self.params = dict(params or {})

        #: the space grid and the discretisation every kernel is built from
        self.grid = line(self.xmin, self.xmax, self.Nx, boundary)
        self.scheme = Scheme(self.grid, self.T, self.Nt, self.sigma, self.lam)
        self.nu = self.scheme.nu
        self.dx = self.grid.spacing[0]
        self.dt = self.scheme.dt
        self.x = self.grid.axes[0].nodes
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
            i = int(np.argmin(raw_m0))
            raise ValueError(f"m0 must be >= 0 everywhere, got m0(x={self.x[i]:.6g}) = {raw_m0[i]:.6g}")
        mass = float(np.sum(self.weights * raw_m0))
        if not mass > 0:
            raise ValueError("m0 has zero mass on the grid: it must be positive somewhere")
        #: initial density on the nodes, normalised to discrete mass 1
        self.m_init = raw_m0 / mass
        self._check_coupling()

    # ------------------------------------------------------------------------------------------
    @property
    def periodic(self) -> bool:
        return self.boundary == "periodic"

    @property
    def dim(self) -> int:
        return self.grid.dim

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape ``(len(t), len(x))`` of U and M."""
        return self.scheme.shape

    def coords(self) -> dict[str, np.ndarray]:
        """Node coordinates by name: ``t`` and the space axes."""
        return {"t": self.t, **self.grid.coords}

    def _eval_on_grid(self, label: str, fn: ArrayFn | None) -> np.ndarray:
        if fn is None:
            return np.zeros_like(self.x)
        try:
            out = fn(self.x.copy())
        except Exception as exc:  # noqa: BLE001 - re-raised with the parameter named
            raise ValueError(f"{label} failed when evaluated on the grid: {exc!r}") from exc
        out = _real_array(label, out)
        if out.ndim == 0:
            out = np.full_like(self.x, float(out))
        if out.shape != self.x.shape:
            raise ValueError(f"{label} must return an array of shape {self.x.shape} for x of that "
                             f"shape, got {out.shape}")
        if not np.all(np.isfinite(out)):
            raise ValueError(f"{label} returned NaN or inf on the grid")
        return out

    def _check_coupling(self) -> None:
        """Evaluate F (and F') on a probe density to catch wrong shapes/NaN before any solve."""
        probe = np.stack([self.m_init, np.full_like(self.x, 1.0 / (self.xmax - self.xmin))])
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
        """Every parameter as plain JSON-friendly values (callables by their qualified name)."""
        return {
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

    def __repr__(self) -> str:
        extra = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return (f"MFGProblem({self.name!r}, [{self.xmin}, {self.xmax}] x [0, {self.T}], Nx={self.Nx}, "
                f"Nt={self.Nt}, sigma={self.sigma}, boundary={self.boundary!r}, lam={self.lam}"
                + (f", {extra}" if extra else "") + ")")
