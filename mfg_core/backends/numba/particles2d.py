r"""numba 2D particle kernels: the numerics of :mod:`mfg_core.backends.numpy.particles2d`, compiled.

The reference states them: positions ``(N, 2)`` in ``(y, x)`` columns, the Euler-Maruyama step
``X <- fold(X - (dt/lam) I[grad u^n](X) + sigma sqrt(dt) Z_n)`` with ``I`` the bilinear interpolant of
the nodal gradient ``(u_y, u_x)`` and ``fold`` the 1D reflection (Neumann) or wrap (periodic) per
coordinate, bilinear binning, a bandwidth per axis (the factor, or the factor times the sample's
std / circular std along the axis) and the product Gaussian by one 2D FFT, mirrored on Neumann axes
and wrapped on periodic ones (:func:`mfg_core.backends.binned_kde.density_from_counts_2d`).

Decisions, as in 1D (:mod:`.particles`): the ``O(N)`` particle work is compiled -- one fused pass per
step for interpolation, step, fold and crossing count (per particle, per coordinate: the same cell,
fraction and fold as the reference, so positions agree to the last bit or to round-off), one for the
binning, one for both spreads; the ``O(P log P)`` convolution of the binned weights stays in numpy's
FFT (numba has none), with the periodised Gaussian of :func:`.particles._periodic_gaussian`. Obstacles
are refused by the shared checks, as in the reference.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .. import checks
from ..binned_kde import density_from_counts_2d
from ..kde_rules import circular_spread, period
from .particles import _cell, _floor_mod, _periodic_gaussian


@njit(cache=True)
def _fold(x, lo, L, periodic):
    """Reflect (Neumann, ``L = (K-1) h``) or wrap (periodic, ``L = K h``) one coordinate; returns
    ``(x, was_outside)``."""
    y = x - lo
    if periodic:
        outside = y < 0.0 or y >= L
        if outside:
            y = _floor_mod(y, L)
    else:
        outside = y < 0.0 or y > L
        if outside:
            y = _floor_mod(y, 2.0 * L)
            if y > L:
                y = 2.0 * L - y
    return min(max(lo + y, lo), lo + L), outside


@njit(cache=True)
def _step(X, Z, gy, gx, ay, ax, c_drift, c_noise):
    """One Euler-Maruyama step of the ``(N, 2)`` positions in place, each coordinate folded into its
    axis; returns the number of particles that were outside in either coordinate before folding.
    ``ay = (lo, h, K, periodic)`` (and ``ax``); ``gy``, ``gx`` the nodal ``u_y``, ``u_x`` ``(Ky, Kx)``."""
    ylo, yh, Ky, yper = ay
    xlo, xh, Kx, xper = ax
    Ly = Ky * yh if yper else (Ky - 1) * yh
    Lx = Kx * xh if xper else (Kx - 1) * xh
    crossed = 0
    for n in range(X.shape[0]):
        jy, jyp, fy = _cell(X[n, 0], ylo, yh, Ky, yper)
        jx, jxp, fx = _cell(X[n, 1], xlo, xh, Kx, xper)
        w00 = (1.0 - fy) * (1.0 - fx)
        w01 = (1.0 - fy) * fx
        w10 = fy * (1.0 - fx)
        w11 = fy * fx
        # the reference's sum(values[corner] * weight) over the corners, in its order
        dy = 0.0 + gy[jy, jx] * w00 + gy[jy, jxp] * w01 + gy[jyp, jx] * w10 + gy[jyp, jxp] * w11
        dx = 0.0 + gx[jy, jx] * w00 + gx[jy, jxp] * w01 + gx[jyp, jx] * w10 + gx[jyp, jxp] * w11
        y, out_y = _fold(X[n, 0] + c_drift * dy + c_noise * Z[n, 0], ylo, Ly, yper)
        x, out_x = _fold(X[n, 1] + c_drift * dx + c_noise * Z[n, 1], xlo, Lx, xper)
        X[n, 0] = y
        X[n, 1] = x
        if out_y or out_x:
            crossed += 1
    return crossed


@njit(cache=True)
def _bin(X, ay, ax):
    """Bilinear binning of ``(N, 2)`` positions onto the ``(Ky, Kx)`` nodes."""
    ylo, yh, Ky, yper = ay
    xlo, xh, Kx, xper = ax
    counts = np.zeros((Ky, Kx))
    for n in range(X.shape[0]):
        jy, jyp, fy = _cell(X[n, 0], ylo, yh, Ky, yper)
        jx, jxp, fx = _cell(X[n, 1], xlo, xh, Kx, xper)
        counts[jy, jx] += (1.0 - fy) * (1.0 - fx)
        counts[jy, jxp] += (1.0 - fy) * fx
        counts[jyp, jx] += fy * (1.0 - fx)
        counts[jyp, jxp] += fy * fx
    return counts


@njit(cache=True)
def _moments(X, k, Lp):
    """Column ``k`` of ``X``: ``(std with ddof=1, mean resultant length for period Lp)``."""
    n = X.shape[0]
    mean = 0.0
    for i in range(n):
        mean += X[i, k]
    mean /= n
    ss = 0.0
    c = 0.0
    s = 0.0
    w = 2.0 * math.pi / Lp
    for i in range(n):
        d = X[i, k] - mean
        ss += d * d
        c += math.cos(w * X[i, k])
        s += math.sin(w * X[i, k])
    std = math.sqrt(ss / (n - 1)) if n > 1 else math.nan
    return std, math.hypot(c / n, s / n)


def _bandwidths(X, axes, periods, bandwidth, scale_by_std):
    """``(h_y, h_x)``: the bandwidth, or its factor times each axis' spread (as the reference)."""
    if not scale_by_std:
        return float(bandwidth), float(bandwidth)
    out = []
    for k, (a, Lp) in enumerate(zip(axes, periods)):
        std, R = _moments(X, k, Lp)
        out.append(float(bandwidth) * (circular_spread(R, Lp) if a[3] else std))
    return tuple(out)


def _axes(c) -> tuple:
    return tuple((float(a.lo), float(a.h), int(a.K), bool(a.periodic)) for a in c.axes)


def _density(X, axes, h):
    (ay, ax) = axes
    return density_from_counts_2d(_bin(X, ay, ax), (ay[1], ax[1]), h, (ay[3], ax[3]), _periodic_gaussian)


def make_kde(grid):
    """Binned FFT KDE on a 2D ``grid``, compiled binning; contract of
    :func:`mfg_core.backends.numpy.particles2d.make_kde`."""
    c = checks.kde2d_constants(grid, "numba")
    axes = _axes(c)
    periods = tuple(period(a[2], a[1], a[3]) for a in axes)

    def kde(samples, bandwidth, scale_by_std):
        X = np.ascontiguousarray(samples, dtype=np.float64)
        return _density(X, axes, _bandwidths(X, axes, periods, bandwidth, scale_by_std))

    return kde


def make_particle_sweep(scheme, *, bandwidth: float, scale_by_std: bool):
    """Euler-Maruyama particle sweep on a 2D ``scheme`` in compiled loops: ``sweep(X0, noise, grad_u)
    -> (X, M, crossed, h)``; contract of :func:`mfg_core.backends.numpy.particles2d.make_particle_sweep`."""
    c = checks.particle2d_constants(scheme, "numba", bandwidth=bandwidth, scale_by_std=scale_by_std)
    axes = _axes(c)
    (ay, ax) = axes
    periods = tuple(period(a[2], a[1], a[3]) for a in axes)
    c_drift, c_noise = float(c.drift), float(c.noise)
    factor, scale = c.bandwidth, c.scale_by_std

    def sweep(X0, noise, grad_u):
        X, noise, grad_u = checks.particle2d_arrays(c, X0, noise, grad_u)
        X = X.copy()  # _step moves the particles in place
        S = noise.shape[0]
        M = np.empty((S, ay[2], ax[2]))
        crossed = np.zeros(S, dtype=np.int64)
        hs = np.empty((S, 2))
        for n in range(S):
            crossed[n] = _step(X, noise[n], grad_u[n, 0], grad_u[n, 1], ay, ax, c_drift, c_noise)
            hs[n] = _bandwidths(X, axes, periods, factor, scale)
            M[n] = _density(X, axes, tuple(hs[n]))
        return X, M, crossed, hs

    return sweep
