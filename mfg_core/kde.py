r"""Gaussian kernel density estimates on a uniform grid in ``O(N + M log M)``: linear binning + FFT.

    f_h(x) = (1/N) sum_i phi_h(x - X_i),    phi_h(z) = exp(-z^2 / (2 h^2)) / (h sqrt(2 pi)),

evaluated at the ``M`` grid nodes. Instead of the direct ``O(N M)`` sum
(``scipy.stats.gaussian_kde``) the samples are linearly binned onto the nodes (each sample splits its unit weight between the two
nodes around it, which keeps its mass and mean) and the binned weights are convolved with the
sampled kernel by FFT. The binned estimate equals the exact one with the kernel replaced by its
piecewise-linear interpolant on the grid: the relative error is ``O(dx^2 / h^2)`` (to leading
order an extra smoothing of variance ``dx^2 / 6``).

Boundaries: ``"neumann"`` reflects the kernel in both walls (the density of reflected Brownian
particles; no mass leaks through a wall), implemented as a circular convolution on the mirrored grid
of period ``2 (xmax - xmin)``; ``"periodic"`` wraps the kernel around the period ``len(grid) * dx``.
The result is normalised to discrete mass 1 in the grid's quadrature: trapezoidal for
``"neumann"`` (the nodes include both walls), uniform ``dx`` for ``"periodic"`` (the nodes are
``xmin + i dx``, ``i < len(grid)``). Details of the numerics: :mod:`mfg_core.backends.numpy.particles`.

Bandwidth: a positive number, or ``"scott"`` (``h = s N^(-1/5)``) or ``"silverman"``
(``h = s (3 N / 4)^(-1/5)``), the factors of ``scipy.stats.gaussian_kde``, with ``s`` the sample
standard deviation (``ddof=1``; for ``"periodic"`` the circular standard deviation).
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from . import validation
from .backends import Backend, get_backend
from .grid import BOUNDARIES, grid_from_nodes

__all__ = ["kde_on_grid", "kde_on_grid_2d", "bandwidth_factor", "BANDWIDTH_RULES", "check_grid"]

BANDWIDTH_RULES = ("scott", "silverman")


def bandwidth_factor(rule: str, n: int, d: int = 1) -> float:
    """The factor ``h / std`` of a bandwidth rule for ``n`` samples in ``d`` dimensions (scipy's
    definitions: Scott ``n^(-1/(d+4))``, Silverman ``(n (d+2)/4)^(-1/(d+4))``)."""
    if d == 1:  # the 1D expressions as they always were (same floating-point numbers)
        if rule == "scott":
            return float(n) ** (-0.2)
        if rule == "silverman":
            return (0.75 * n) ** (-0.2)
    elif rule == "scott":
        return float(n) ** (-1.0 / (d + 4))
    elif rule == "silverman":
        return (n * (d + 2) / 4.0) ** (-1.0 / (d + 4))
    raise ValueError(f"bandwidth must be a positive number or one of {BANDWIDTH_RULES}, got {rule!r}")


def check_bandwidth(bandwidth: Any) -> str | float:
    """Validate a bandwidth (rule name or positive finite number); returns the rule or the float."""
    if isinstance(bandwidth, str):
        if bandwidth not in BANDWIDTH_RULES:
            raise ValueError(f"bandwidth must be a positive number or one of {BANDWIDTH_RULES}, "
                             f"got {bandwidth!r}")
        return bandwidth
    if isinstance(bandwidth, (bool, np.bool_)) or not isinstance(bandwidth, numbers.Real):
        raise ValueError(f"bandwidth must be a positive number or one of {BANDWIDTH_RULES}, got {bandwidth!r}")
    return validation.positive("bandwidth", bandwidth)


def _vector(name: str, value: Any) -> np.ndarray:
    """``value`` as a 1-D float64 array of finite numbers (``ValueError`` naming ``name``)."""
    try:
        a = np.asarray(value)
        if np.iscomplexobj(a):
            raise TypeError
        a = a.astype(np.float64, copy=False)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a 1-D array of real numbers") from None
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        first = int(np.flatnonzero(~np.isfinite(a))[0])
        raise ValueError(f"{name} contains NaN or inf (first at index {first})")
    return a


def check_grid(grid: Any) -> tuple[float, float, int]:
    """Validate a uniform increasing 1-D grid of >= 3 nodes; returns ``(xmin, dx, num_nodes)``.

    Uniform means equal spacing to the rounding of the grid's own float type (a float32 grid is
    uniform to about 1e-7 of its extent, a float64 one to 1e-9).
    """
    eps = np.finfo(np.asarray(grid).dtype).eps if np.asarray(grid).dtype.kind == "f" else 0.0
    g = _vector("grid", grid)
    if g.size < 3:
        raise ValueError(f"grid must have at least 3 nodes, got {g.size}")
    dx = (g[-1] - g[0]) / (g.size - 1)
    if not dx > 0:
        raise ValueError("grid must be increasing")
    # relative to the grid's extent, so that a grid built as xmin + i*dx passes at any offset
    tol = max(1e-9, 16 * eps) * max(abs(g[0]), abs(g[-1]), g[-1] - g[0])
    dev = np.max(np.abs(g - (g[0] + dx * np.arange(g.size))))
    if dev > tol:
        raise ValueError(f"grid must be uniform (equally spaced); a node is {dev:.3g} off the uniform grid "
                         f"with spacing {dx:.6g}")
    return float(g[0]), float(dx), int(g.size)


def _check_samples(samples: Any) -> np.ndarray:
    X = _vector("samples", samples)
    if X.size == 0:
        raise ValueError("samples is empty")
    return X


def kde_on_grid(samples, grid, bandwidth: str | float = "scott", backend: str | Backend | None = "numpy",
                boundary: str = "neumann") -> np.ndarray:
    """Gaussian KDE of 1-D ``samples`` at the nodes of the uniform ``grid`` (see the module docstring).

    Neumann samples must lie in ``[grid[0], grid[-1]]``; periodic samples are wrapped into the period.
    Returns a float64 numpy array of ``len(grid)`` non-negative values with discrete mass 1.
    """
    if boundary not in BOUNDARIES:
        raise ValueError(f"boundary must be one of {BOUNDARIES}, got {boundary!r}")
    periodic = boundary == "periodic"
    xmin, dx, K = check_grid(grid)
    X = _check_samples(samples)
    bw = check_bandwidth(bandwidth)
    be = get_backend(backend)
    if periodic:
        L = K * dx
        X = xmin + np.mod(X - xmin, L)
    else:
        xmax = xmin + (K - 1) * dx
        slack = 1e-12 * max(1.0, abs(xmin), abs(xmax))
        outside = (X < xmin - slack) | (X > xmax + slack)
        if np.any(outside):
            i = int(np.flatnonzero(outside)[0])
            raise ValueError(f"samples must lie in [grid[0], grid[-1]] = [{xmin:.6g}, {xmax:.6g}] for "
                             f"boundary='neumann', got samples[{i}] = {X[i]!r}")
        X = np.clip(X, xmin, xmax)
    if isinstance(bw, str):
        if X.size < 2 or np.ptp(X) == 0:
            raise ValueError(f"bandwidth={bw!r} needs samples with a positive spread (>= 2 distinct "
                             "values); give a numeric bandwidth")
        h, scale = bandwidth_factor(bw, X.size), True
    else:
        h, scale = bw, False
    dens = be.make_kde(grid_from_nodes(grid, boundary))(X, h, scale)
    dens = np.asarray(be.to_host(dens), dtype=np.float64)
    if not np.all(np.isfinite(dens)):
        raise FloatingPointError(f"kde_on_grid on backend {be.name!r} produced NaN or inf")
    return dens


def kde_on_grid_2d(samples, x, y, bandwidth: str | float = "scott", backend: str | Backend | None = "numpy",
                   boundary: str | tuple[str, str] = "neumann") -> np.ndarray:
    """Gaussian product-kernel KDE of 2D ``samples`` ``(N, 2)``, columns ``(x, y)``, at the nodes of the
    uniform grids ``x`` and ``y``: returns ``(len(y), len(x))`` values of discrete mass 1.

    ``boundary`` is one name or ``(x_bc, y_bc)``: a Neumann axis reflects the kernel at its walls
    (samples must lie in ``[x[0], x[-1]]``), a periodic one wraps it (samples are wrapped into the
    period ``len(x) dx``). Bandwidth per axis: a number (both axes), or ``"scott"`` / ``"silverman"``
    (d = 2 factors) times each axis' spread. Numerics: :mod:`mfg_core.backends.numpy.particles2d`.
    """
    from .grid import Axis, Grid
    from .problem import _boundary_pair

    bx, by = _boundary_pair(boundary)
    a = np.asarray(samples)
    if np.iscomplexobj(a) or a.ndim != 2 or a.shape[1] != 2 or a.shape[0] == 0:
        raise ValueError(f"samples must be a non-empty real array of shape (N, 2) (columns x, y), got shape {a.shape}")
    cols = [_vector("samples", a[:, k]) for k in (1, 0)]  # array order (y, x)
    axes = []
    for name, nodes, bc, k in (("y", y, by, 0), ("x", x, bx, 1)):
        lo, h, K = check_grid(nodes)
        if bc == "periodic":
            axes.append(Axis(name, lo, lo + K * h, K, "periodic"))
            cols[k] = lo + np.mod(cols[k] - lo, K * h)
        else:
            hi = lo + (K - 1) * h
            slack = 1e-12 * max(1.0, abs(lo), abs(hi))
            outside = (cols[k] < lo - slack) | (cols[k] > hi + slack)
            if np.any(outside):
                i = int(np.flatnonzero(outside)[0])
                raise ValueError(f"samples must lie in [{name}[0], {name}[-1]] = [{lo:.6g}, {hi:.6g}] on a "
                                 f"Neumann axis, got {name} = {cols[k][i]!r} (sample {i})")
            cols[k] = np.clip(cols[k], lo, hi)
            axes.append(Axis(name, lo, hi, K - 1, "neumann"))
    X = np.column_stack(cols)
    bw = check_bandwidth(bandwidth)
    if isinstance(bw, str):
        if X.shape[0] < 2 or np.any(np.ptp(X, axis=0) == 0):
            raise ValueError(f"bandwidth={bw!r} needs samples with a positive spread along both axes; "
                             "give a numeric bandwidth")
        h, scale = bandwidth_factor(bw, X.shape[0], 2), True
    else:
        h, scale = bw, False
    be = get_backend(backend)
    dens = np.asarray(be.to_host(be.make_kde(Grid(tuple(axes)))(X, h, scale)), dtype=np.float64)
    if not np.all(np.isfinite(dens)):
        raise FloatingPointError(f"kde_on_grid_2d on backend {be.name!r} produced NaN or inf")
    return dens
