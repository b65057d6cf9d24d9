r"""numba particle kernels: ``@njit`` loops for the Euler-Maruyama step, the fold and the binning.

Same numerics as the reference :mod:`mfg_core.backends.numpy.particles`, which states them: the step
``X <- X - (dt/lam) I[u_x](X) + sigma sqrt(dt) Z``, the reflection (Neumann) or wrap (periodic) into
the domain, linear binning and the FFT convolution with the periodised Gaussian of
:mod:`mfg_core.backends.kde_rules`. Decisions: the ``O(N)`` particle work (interpolate, step, fold,
bin, spread sums) is fused into compiled loops, one pass each per step; the ``O(M log M)`` convolution
and the host-side rules (bandwidth, circular spread) stay in numpy between them, since numba has no
FFT and that part is small next to the particles.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .. import checks
from ..binned_kde import density_from_counts
from ..kde_rules import FOURIER_MODES, IMAGE_LIMIT, IMAGES, circular_spread, period


@njit(cache=True)
def _periodic_gaussian(P, dx, h):
    Lp = P * dx
    g = np.zeros(P)
    if h <= IMAGE_LIMIT * Lp:
        norm = 1.0 / (h * math.sqrt(2.0 * math.pi))
        for j in range(P):
            d = j * dx
            acc = 0.0
            for m in IMAGES:
                z = (d + m * Lp) / h
                acc += math.exp(-0.5 * z * z)
            g[j] = acc * norm
        return g
    a = 2.0 * math.pi**2 * (h / Lp) ** 2
    coef = np.empty(FOURIER_MODES + 1)
    for k in range(1, FOURIER_MODES + 1):
        coef[k] = math.exp(-a * float(k * k))
    w = 2.0 * math.pi / P
    for j in range(P):
        acc = 0.0
        for k in range(1, FOURIER_MODES + 1):
            acc += coef[k] * math.cos(w * float((k * j) % P))
        g[j] = (1.0 + 2.0 * acc) / Lp
    return g


@njit(cache=True)
def _cell(x, xmin, dx, K, periodic):
    """Left node index, right node index and fraction of position ``x`` (see the reference binning)."""
    s = (x - xmin) / dx
    jf = math.floor(s)
    if periodic:
        f = s - jf
        j = int(jf) % K
        return j, (j + 1) % K, f
    if jf < 0.0:
        jf = 0.0
    elif jf > K - 2:
        jf = float(K - 2)
    f = s - jf
    j = int(jf)
    return j, j + 1, f


@njit(cache=True)
def _std(X):
    """Sample standard deviation (``ddof=1``), two passes as ``np.std``."""
    n = X.shape[0]
    mean = 0.0
    for i in range(n):
        mean += X[i]
    mean /= n
    ss = 0.0
    for i in range(n):
        d = X[i] - mean
        ss += d * d
    return math.sqrt(ss / (n - 1))


@njit(cache=True)
def _resultant(X, Lp):
    """Mean resultant length ``|mean(exp(2 pi i X / Lp))|`` (the host finishes the circular spread)."""
    n = X.shape[0]
    c = 0.0
    s = 0.0
    w = 2.0 * math.pi / Lp
    for i in range(n):
        c += math.cos(w * X[i])
        s += math.sin(w * X[i])
    return math.hypot(c / n, s / n)


@njit(cache=True)
def _bin(X, xmin, dx, K, periodic):
    counts = np.zeros(K)
    for i in range(X.shape[0]):
        j, jp, f = _cell(X[i], xmin, dx, K, periodic)
        counts[j] += 1.0 - f
        counts[jp] += f
    return counts


@njit(cache=True)
def _floor_mod(y, period):
    # numba's float % follows CPython: exact fmod, negatives shifted by one period -- np.mod's
    # algorithm, so the folded positions match the reference bit for bit rather than to round-off
    return y % period


@njit(cache=True)
def _step(X, Z, grad, xmin, dx, K, c_drift, c_noise, periodic):
    """One Euler-Maruyama step in place, folded into the domain; returns the number of crossings."""
    crossed = 0
    if periodic:
        L = K * dx
    else:
        L = (K - 1) * dx
    for i in range(X.shape[0]):
        j, jp, f = _cell(X[i], xmin, dx, K, periodic)
        ux = grad[j] * (1.0 - f) + grad[jp] * f
        x = X[i] + c_drift * ux + c_noise * Z[i]
        y = x - xmin
        if periodic:
            if y < 0.0 or y >= L:
                crossed += 1
                y = _floor_mod(y, L)
        else:
            if y < 0.0 or y > L:
                crossed += 1
                y = _floor_mod(y, 2.0 * L)
                if y > L:
                    y = 2.0 * L - y
        x = xmin + y
        X[i] = min(max(x, xmin), xmin + L)
    return crossed


def _bandwidth(X, bandwidth, scale_by_std, periodic, Lp):
    if not scale_by_std:
        return float(bandwidth)
    spread = circular_spread(_resultant(X, Lp), Lp) if periodic else _std(X)
    return float(bandwidth) * spread


def make_kde(grid):
    """Binned FFT KDE on ``grid``, compiled binning; contract of
    :func:`mfg_core.backends.numpy.particles.make_kde`. A 2D grid gets the kernel of :mod:`.particles2d`."""
    if getattr(grid, "dim", 1) == 2:
        from . import particles2d

        return particles2d.make_kde(grid)
    c = checks.kde_constants(grid, "numba")
    xmin, dx, K, periodic = float(c.xmin), float(c.dx), int(c.K), bool(c.periodic)
    Lp = period(K, dx, periodic)

    def kde(samples, bandwidth, scale_by_std):
        X = np.ascontiguousarray(samples, dtype=np.float64)
        h = _bandwidth(X, bandwidth, scale_by_std, periodic, Lp)
        return density_from_counts(_bin(X, xmin, dx, K, periodic), dx, h, periodic, _periodic_gaussian)

    return kde


def make_particle_sweep(scheme, *, bandwidth: float, scale_by_std: bool):
    """Euler-Maruyama particle sweep on ``scheme`` in compiled loops: ``sweep(X0, noise, grad_u) ->
    (X, M, crossed, h)``; contract of :func:`mfg_core.backends.numpy.particles.make_particle_sweep`.
    A 2D scheme gets the kernel of :mod:`.particles2d`."""
    if getattr(getattr(scheme, "grid", None), "dim", 1) == 2:
        from . import particles2d

        return particles2d.make_particle_sweep(scheme, bandwidth=bandwidth, scale_by_std=scale_by_std)
    c = checks.particle_constants(scheme, "numba", bandwidth=bandwidth, scale_by_std=scale_by_std)
    xmin, dx, K, periodic = float(c.xmin), float(c.dx), int(c.K), bool(c.periodic)
    Lp = period(K, dx, periodic)
    c_drift, c_noise = c.drift, c.noise
    factor, scale_by_std = c.bandwidth, c.scale_by_std

    def sweep(X0, noise, grad_u):
        X0, noise, grad_u = checks.particle_arrays(c, X0, noise, grad_u)
        X = X0.copy()  # _step moves the particles in place
        S = noise.shape[0]
        M, crossed, hs = checks.particle_outputs(c, S)
        for n in range(S):
            crossed[n] = _step(X, noise[n], grad_u[n], xmin, dx, K, c_drift, c_noise, periodic)
            hs[n] = _bandwidth(X, factor, scale_by_std, periodic, Lp)
            counts = _bin(X, xmin, dx, K, periodic)
            M[n] = density_from_counts(counts, dx, hs[n], periodic, _periodic_gaussian)
        return X, M, crossed, hs

    return sweep
