r"""Reference particle kernels (numpy): binned FFT kernel density estimate and the particle sweep.

Every backend's ``particles.py`` implements the same two kernel factories with the same formulas,
``make_kde(grid) -> kde(samples, bandwidth, scale_by_std)`` and ``make_particle_sweep(scheme, ...)
-> sweep(X0, noise, grad_u)``, so that the results agree to round-off; this module is the reference
and states the numerics. Constants and host-side rules they share: :mod:`mfg_core.backends.kde_rules`.
The factories dispatch on the grid's dimension: 2D kernels are :mod:`mfg_core.backends.numpy.particles2d`.

Grid
----
``num_nodes = K`` uniform nodes ``x_i = xmin + i dx``. ``periodic=False`` (Neumann): the nodes include
both walls, ``xmax = xmin + (K-1) dx``, quadrature weights trapezoidal. ``periodic=True``: period
``L = K dx``, node ``K`` is node ``0``, weights ``dx``.

Kernel density estimate (linear binning + FFT)
----------------------------------------------
1. Linear binning: a sample at ``s = (X - xmin)/dx = j + f`` (``0 <= f <= 1``) puts weight ``1 - f``
   on node ``j`` and ``f`` on node ``j + 1`` (modulo ``K`` if periodic). Binning keeps the mass and
   the mean of every sample, so the binned estimate at a node equals the exact KDE with the kernel
   replaced by its piecewise-linear interpolant on the grid: a relative error ``O(dx^2 / h^2)``
   (to leading order an extra smoothing of variance ``dx^2 / 6``).
2. Boundaries become a circular convolution on a periodic grid of ``P`` nodes and period ``Lp = P dx``:
   periodic: ``P = K``. Neumann: the reflected estimate
   ``f(x) = sum_i sum_{images} K_h(x - image(X_i))`` over the images of ``X_i`` under reflection in
   both walls is the restriction to ``[xmin, xmax]`` of a ``2 (xmax - xmin)``-periodic even
   function, so the binned weights are mirrored onto ``P = 2 (K - 1)`` nodes
   (``e_j = c_j``, ``e_{P-j} = c_j`` for ``0 < j < K-1``; ``e_0 = 2 c_0``, ``e_{K-1} = 2 c_{K-1}``
   because a wall node is its own mirror image).
3. Periodic Gaussian kernel on those nodes, ``g_j = sum_m phi_h(j dx + m Lp)``: for ``h <= Lp/19``
   the image sum over ``m = -2..2`` (the omitted images are ``>= 2 Lp >= 38 h`` away, below double
   precision); otherwise its Fourier series ``(1 + 2 sum_{k=1}^{117} exp(-2 pi^2 h^2 k^2 / Lp^2)
   cos(2 pi k j / P)) / Lp`` (the omitted modes are ``< exp(-745)``). Either way the cost is
   ``O(P)`` and the shapes are static, so jit backends can use the same formula.
4. ``density = irfft(rfft(e) rfft(g))`` on the first ``K`` nodes; FFT round-off (``~1e-17`` of the
   peak) can leave tiny negative values, which are set to 0; finally the density is divided by its
   discrete mass (trapezoidal / uniform weights), so the mass is 1 to round-off.

Bandwidth: ``h = bandwidth`` if not ``scale_by_std``, else ``h = bandwidth * spread(X)`` with
``spread`` the sample standard deviation (``ddof=1``, as ``scipy.stats.gaussian_kde``) for Neumann and
the circular standard deviation ``Lp/(2 pi) sqrt(-2 log R)``, ``R = |mean(exp(2 pi i X / Lp))|``,
capped at ``Lp``, for periodic (a cloud straddling the seam has a huge linear std).

Particle sweep (Euler-Maruyama)
-------------------------------
For the SDE ``dX = -u_x(t, X)/lam dt + sigma dW`` one step from ``t_n`` is

    X <- X - (dt/lam) I[u_x^n](X) + sigma sqrt(dt) Z_n,     Z_n ~ N(0, 1) given in ``noise[n]``,

with ``I[.]`` the piecewise-linear interpolant of the nodal gradient ``grad_u[n]``. Then the
boundary: Neumann folds ``y = (X - xmin) mod 2L``, ``y <- 2L - y`` if ``y > L`` (exact reflection
for any step size, however many walls a particle crosses); periodic wraps ``(X - xmin) mod L``.
Positions are clipped to ``[xmin, xmax]`` against rounding. A particle counts as crossed in a step
if it was outside ``[xmin, xmax]`` (periodic: ``[xmin, xmin + L)``) before folding.
"""

from __future__ import annotations

import math

import numpy as np

from .. import checks
from ..binned_kde import density_from_counts
from ..kde_rules import FOURIER_MODES, IMAGE_LIMIT, IMAGES, circular_spread, period


def periodic_gaussian(P: int, dx: float, h: float) -> np.ndarray:
    """The Gaussian ``phi_h`` periodised with period ``P dx`` and sampled at ``j dx``, ``j < P``."""
    Lp = P * dx
    j = np.arange(P)
    if h <= IMAGE_LIMIT * Lp:
        d = j * dx
        g = np.zeros(P)
        for m in IMAGES:
            z = (d + m * Lp) / h
            g += np.exp(-0.5 * z * z)
        return g / (h * math.sqrt(2.0 * math.pi))
    k = np.arange(1, FOURIER_MODES + 1)
    coef = np.exp(-2.0 * math.pi**2 * (h / Lp) ** 2 * (k * k).astype(np.float64))
    # the phase is reduced modulo P in integers, so that every backend evaluates the same angles
    angle = (2.0 * math.pi / P) * ((k[:, None] * j[None, :]) % P).astype(np.float64)
    return (1.0 + 2.0 * (coef @ np.cos(angle))) / Lp


def spread(X: np.ndarray, periodic: bool, Lp: float) -> float:
    """Scale of the sample for the bandwidth rules (std, or circular std if periodic)."""
    if not periodic:
        return float(np.std(X, ddof=1))
    theta = (2.0 * math.pi / Lp) * X
    return circular_spread(math.hypot(float(np.mean(np.cos(theta))), float(np.mean(np.sin(theta)))), Lp)


def _cells(X: np.ndarray, xmin: float, dx: float, K: int, periodic: bool):
    """Left node ``j``, right node ``jp`` and fraction ``f`` of the cell holding each position (the
    last Neumann cell is closed, so a particle on the right wall belongs to cell ``K-2``)."""
    s = (X - xmin) / dx
    j = np.floor(s)
    if periodic:
        f = s - j
        j = j.astype(np.int64) % K
        return j, (j + 1) % K, f
    j = np.clip(j, 0, K - 2)
    f = s - j
    j = j.astype(np.int64)
    return j, j + 1, f


def _bin(X: np.ndarray, xmin: float, dx: float, K: int, periodic: bool) -> np.ndarray:
    j, jp, f = _cells(X, xmin, dx, K, periodic)
    return np.bincount(j, weights=1.0 - f, minlength=K) + np.bincount(jp, weights=f, minlength=K)


def _bandwidth(X, bandwidth, scale_by_std, periodic, K, dx) -> float:
    if not scale_by_std:
        return float(bandwidth)
    return float(bandwidth) * spread(X, periodic, period(K, dx, periodic))


def _kde(X, c, bandwidth, scale_by_std):
    h = _bandwidth(X, bandwidth, scale_by_std, c.periodic, c.K, c.dx)
    return density_from_counts(_bin(X, c.xmin, c.dx, c.K, c.periodic), c.dx, h, c.periodic, periodic_gaussian)


def make_kde(grid):
    """Binned FFT KDE on ``grid``: ``kde(samples, bandwidth, scale_by_std)`` -> density on the nodes
    (mass 1). Samples must lie in the domain; ``h = bandwidth``, or ``bandwidth * spread`` if
    ``scale_by_std``."""
    if getattr(grid, "dim", 1) == 2:
        from . import particles2d

        return particles2d.make_kde(grid)
    c = checks.kde_constants(grid, "numpy")

    def kde(samples, bandwidth, scale_by_std):
        return _kde(np.asarray(samples, dtype=np.float64), c, bandwidth, scale_by_std)

    return kde


def fold(X: np.ndarray, xmin: float, dx: float, K: int, periodic: bool) -> tuple[np.ndarray, int]:
    """Reflect (Neumann) or wrap (periodic) positions into the domain; returns ``(X, crossed)``."""
    if periodic:
        L = K * dx
        y = X - xmin
        crossed = int(np.count_nonzero((y < 0.0) | (y >= L)))
        y = np.mod(y, L)
        return np.clip(xmin + y, xmin, xmin + L), crossed
    L = (K - 1) * dx
    y = X - xmin
    crossed = int(np.count_nonzero((y < 0.0) | (y > L)))
    y = np.mod(y, 2.0 * L)
    y = np.where(y > L, 2.0 * L - y, y)
    return np.clip(xmin + y, xmin, xmin + L), crossed


def interpolate(X: np.ndarray, values: np.ndarray, xmin: float, dx: float, periodic: bool) -> np.ndarray:
    """Piecewise-linear interpolant of nodal ``values`` at positions ``X`` inside the domain."""
    j, jp, f = _cells(X, xmin, dx, values.shape[0], periodic)
    return values[j] * (1.0 - f) + values[jp] * f


def make_particle_sweep(scheme, *, bandwidth: float, scale_by_std: bool):
    """Euler-Maruyama particle sweep on ``scheme``: ``sweep(X0, noise, grad_u) -> (X, M, crossed, h)``.

    ``X0`` (N,) positions inside the domain, ``noise`` (S, N) standard normals, ``grad_u`` (S, K) the
    nodal ``u_x`` at the start of each step. Returns the final positions, the densities ``M`` (S, K)
    after each step (mass 1), the number of particles reflected/wrapped in each step (S,) and the
    bandwidth of each density (S,).
    """
    if getattr(getattr(scheme, "grid", None), "dim", 1) == 2:
        from . import particles2d

        return particles2d.make_particle_sweep(scheme, bandwidth=bandwidth, scale_by_std=scale_by_std)
    c = checks.particle_constants(scheme, "numpy", bandwidth=bandwidth, scale_by_std=scale_by_std)
    c_drift, c_noise = c.drift, c.noise

    def sweep(X0, noise, grad_u):
        X, noise, grad_u = checks.particle_arrays(c, X0, noise, grad_u)
        S = noise.shape[0]
        M, crossed, hs = checks.particle_outputs(c, S)
        for n in range(S):
            X = X + c_drift * interpolate(X, grad_u[n], c.xmin, c.dx, c.periodic) + c_noise * noise[n]
            X, crossed[n] = fold(X, c.xmin, c.dx, c.K, c.periodic)
            hs[n] = _bandwidth(X, c.bandwidth, c.scale_by_std, c.periodic, c.K, c.dx)
            M[n] = density_from_counts(_bin(X, c.xmin, c.dx, c.K, c.periodic), c.dx, hs[n], c.periodic,
                                       periodic_gaussian)
        return X, M, crossed, hs

    return sweep
