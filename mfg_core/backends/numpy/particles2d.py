r"""Reference 2D particle kernels (numpy): binned FFT KDE on a rectangle and the Euler-Maruyama sweep.

The 1D numerics (:mod:`mfg_core.backends.numpy.particles`) applied per axis. Positions are arrays of
shape ``(N, 2)`` whose columns follow the grid's array order, ``(y, x)``; a nodal gradient is
``(2, Ny', Nx')`` with components ``(u_y, u_x)``.

KDE. Bilinear binning (a sample at fractions ``(f_y, f_x)`` of its cell gives ``(1-f_y)(1-f_x)``,
``(1-f_y) f_x``, ``f_y (1-f_x)``, ``f_y f_x`` to the four corners: it keeps mass and mean, and the
binned estimate is the exact KDE with the kernel replaced by its bilinear interpolant, relative
error ``O((hx/h_x)^2 + (hy/h_y)^2)``), then the product Gaussian kernel
``phi_{h_y}(y) phi_{h_x}(x)`` by one 2D FFT. Each axis closes as in 1D: a Neumann axis mirrors the
binned weights about both walls (the reflected kernel), a periodic one wraps. The density is clipped
at 0 and scaled to mass 1 in the tensor-product quadrature. Bandwidths per axis: ``h_a = bandwidth``
or, with ``scale_by_std``, ``bandwidth * spread_a`` (the sample std along the axis, or its circular
std on a periodic axis): a diagonal bandwidth matrix (scipy's ``gaussian_kde`` uses the full
covariance; the product kernel keeps the FFT separable).

Sweep. ``X <- fold(X - (dt/lam) I[grad u^n](X) + sigma sqrt(dt) Z_n)`` with ``I`` the bilinear
interpolant of the nodal gradient and ``fold`` the 1D reflection (Neumann, exact for any step) or
wrap (periodic) applied to each coordinate: the rectangle's reflection is the product of the two
1D ones. A particle counts as crossed in a step if either coordinate was outside before folding.

Obstacles are not supported: a grid with an obstacle is refused (:func:`checks.kde2d_constants`),
since neither the fold nor the mirrored FFT knows the obstacle's walls; the FDM solver handles it.
"""

from __future__ import annotations

import numpy as np

from .. import checks
from ..binned_kde import density_from_counts_2d
from ..kde_rules import period
from .particles import _cells, periodic_gaussian, spread


def _corners(X: np.ndarray, axes):
    (ay, ax) = axes
    jy, jyp, fy = _cells(X[:, 0], ay.lo, ay.h, ay.K, ay.periodic)
    jx, jxp, fx = _cells(X[:, 1], ax.lo, ax.h, ax.K, ax.periodic)
    K = ax.K
    idx = (jy * K + jx, jy * K + jxp, jyp * K + jx, jyp * K + jxp)
    w = ((1.0 - fy) * (1.0 - fx), (1.0 - fy) * fx, fy * (1.0 - fx), fy * fx)
    return idx, w


def bin2d(X: np.ndarray, axes) -> np.ndarray:
    """Bilinear binning of ``(N, 2)`` positions onto the ``(Ky, Kx)`` nodes."""
    (ay, ax) = axes
    idx, w = _corners(X, axes)
    n = ay.K * ax.K
    counts = np.zeros(n)
    for i, wi in zip(idx, w):
        counts += np.bincount(i, weights=wi, minlength=n)
    return counts.reshape(ay.K, ax.K)


def interpolate2d(X: np.ndarray, values: np.ndarray, axes) -> np.ndarray:
    """Bilinear interpolant of nodal ``values`` ``(Ky, Kx)`` at ``(N, 2)`` positions inside the domain."""
    idx, w = _corners(X, axes)
    flat = values.ravel()
    return sum(flat[i] * wi for i, wi in zip(idx, w))


def bandwidths(X: np.ndarray, axes, bandwidth: float, scale_by_std: bool) -> tuple[float, float]:
    """``(h_y, h_x)``: the bandwidth, or its factor times each axis' spread."""
    if not scale_by_std:
        return float(bandwidth), float(bandwidth)
    return tuple(float(bandwidth) * spread(X[:, k], a.periodic, period(a.K, a.h, a.periodic))
                 for k, a in enumerate(axes))


def density(X: np.ndarray, axes, h) -> np.ndarray:
    return density_from_counts_2d(bin2d(X, axes), (axes[0].h, axes[1].h), h,
                                  (axes[0].periodic, axes[1].periodic), periodic_gaussian)


def make_kde(grid):
    """Binned FFT KDE on a 2D ``grid``: ``kde(samples, bandwidth, scale_by_std)`` -> density
    ``(Ky, Kx)`` of mass 1; ``samples`` ``(N, 2)`` in ``(y, x)`` columns, inside the domain."""
    c = checks.kde2d_constants(grid, "numpy")

    def kde(samples, bandwidth, scale_by_std):
        X = np.ascontiguousarray(samples, dtype=np.float64)
        return density(X, c.axes, bandwidths(X, c.axes, bandwidth, scale_by_std))

    return kde


def fold_axis(x: np.ndarray, a) -> tuple[np.ndarray, np.ndarray]:
    """Reflect (Neumann) or wrap (periodic) one coordinate into its axis; returns ``(x, was_outside)``."""
    if a.periodic:
        L = a.K * a.h
        y = x - a.lo
        outside = (y < 0.0) | (y >= L)
        return np.clip(a.lo + np.mod(y, L), a.lo, a.lo + L), outside
    L = (a.K - 1) * a.h
    y = x - a.lo
    outside = (y < 0.0) | (y > L)
    y = np.mod(y, 2.0 * L)
    y = np.where(y > L, 2.0 * L - y, y)
    return np.clip(a.lo + y, a.lo, a.lo + L), outside


def make_particle_sweep(scheme, *, bandwidth: float, scale_by_std: bool):
    """Euler-Maruyama particle sweep on a 2D ``scheme``: ``sweep(X0, noise, grad_u) -> (X, M, crossed, h)``.

    ``X0`` ``(N, 2)`` positions ``(y, x)``, ``noise`` ``(S, N, 2)`` standard normals, ``grad_u``
    ``(S, 2, Ky, Kx)`` the nodal ``(u_y, u_x)`` at the start of each step. Returns the final
    positions, the densities ``(S, Ky, Kx)`` (mass 1), the particles reflected/wrapped per step
    ``(S,)`` and the bandwidths ``(S, 2)`` ``(h_y, h_x)``.
    """
    c = checks.particle2d_constants(scheme, "numpy", bandwidth=bandwidth, scale_by_std=scale_by_std)
    c_drift, c_noise = c.drift, c.noise
    (ay, ax) = c.axes

    def sweep(X0, noise, grad_u):
        X, noise, grad_u = checks.particle2d_arrays(c, X0, noise, grad_u)
        S = noise.shape[0]
        M = np.empty((S, ay.K, ax.K))
        crossed = np.zeros(S, dtype=np.int64)
        hs = np.empty((S, 2))
        X = X.copy()
        for n in range(S):
            drift = np.column_stack([interpolate2d(X, grad_u[n, 0], c.axes),
                                     interpolate2d(X, grad_u[n, 1], c.axes)])
            X = X + c_drift * drift + c_noise * noise[n]
            X[:, 0], out_y = fold_axis(X[:, 0], ay)
            X[:, 1], out_x = fold_axis(X[:, 1], ax)
            crossed[n] = int(np.count_nonzero(out_y | out_x))
            hs[n] = bandwidths(X, c.axes, c.bandwidth, c.scale_by_std)
            M[n] = density(X, c.axes, hs[n])
        return X, M, crossed, hs

    return sweep
