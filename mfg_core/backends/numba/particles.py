r"""numba particle kernels: ``@njit`` loops for the Euler-Maruyama step, the reflection and the binning.

Same numerics as the reference :mod:`mfg_core.backends.numpy.particles` (read its docstring). The
particle work -- interpolating the drift, stepping, folding into the domain, linear binning and the
bandwidth spread -- is one fused ``O(N)`` pass per step in compiled loops. The convolution uses
numpy's FFT (``pocketfft``) on the binned ``O(M)`` array, called between the compiled passes: numba
has no FFT of its own, and this part is ``O(M log M)``, small next to the ``O(N)`` particle work.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..binned_kde import density_from_counts

IMAGE_LIMIT = 1.0 / 19.0
FOURIER_MODES = 117


@njit(cache=True)
def _periodic_gaussian(P, dx, h):
    Lp = P * dx
    g = np.zeros(P)
    if h <= IMAGE_LIMIT * Lp:
        norm = 1.0 / (h * math.sqrt(2.0 * math.pi))
        for j in range(P):
            d = j * dx
            acc = 0.0
            for m in (-2, -1, 0, 1, 2):
                z = (d + m * Lp) / h
                acc += math.exp(-0.5 * z * z)
            g[j] = acc * norm
        return g
    a = 2.0 * math.pi**2 * (h / Lp) ** 2
    w = 2.0 * math.pi / P
    for j in range(P):
        acc = 0.0
        for k in range(1, FOURIER_MODES + 1):
            acc += math.exp(-a * float(k * k)) * math.cos(w * float((k * j) % P))
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
def _spread(X, periodic, Lp):
    n = X.shape[0]
    if not periodic:
        mean = 0.0
        for i in range(n):
            mean += X[i]
        mean /= n
        ss = 0.0
        for i in range(n):
            d = X[i] - mean
            ss += d * d
        return math.sqrt(ss / (n - 1))
    c = 0.0
    s = 0.0
    w = 2.0 * math.pi / Lp
    for i in range(n):
        c += math.cos(w * X[i])
        s += math.sin(w * X[i])
    R = math.hypot(c / n, s / n)
    if R <= 0.0:
        return Lp
    return min(Lp / (2.0 * math.pi) * math.sqrt(max(-2.0 * math.log(R), 0.0)), Lp)


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


def _density(counts, dx, h, periodic):
    return density_from_counts(counts, dx, h, periodic, _periodic_gaussian)


def _bandwidth(X, bandwidth, scale_by_std, periodic, K, dx):
    if not scale_by_std:
        return float(bandwidth)
    Lp = (K if periodic else 2 * (K - 1)) * dx
    return float(bandwidth) * _spread(X, periodic, Lp)


def kde_on_grid(samples, *, xmin, dx, num_nodes, bandwidth, scale_by_std, periodic):
    """Binned FFT KDE; see :func:`mfg_core.backends.numpy.particles.kde_on_grid`."""
    X = np.ascontiguousarray(samples, dtype=np.float64)
    h = _bandwidth(X, bandwidth, scale_by_std, bool(periodic), num_nodes, dx)
    return _density(_bin(X, float(xmin), float(dx), int(num_nodes), bool(periodic)), dx, h, periodic)


def particle_sweep(X0, noise, grad_u, *, xmin, dx, dt, lam, sigma, bandwidth, scale_by_std, periodic):
    """Euler-Maruyama sweep; see :func:`mfg_core.backends.numpy.particles.particle_sweep`."""
    X = np.array(X0, dtype=np.float64)
    noise = np.ascontiguousarray(noise, dtype=np.float64)
    grad_u = np.ascontiguousarray(grad_u, dtype=np.float64)
    S, K = grad_u.shape
    periodic = bool(periodic)
    c_drift = -dt / lam
    c_noise = sigma * math.sqrt(dt)
    M = np.empty((S, K))
    crossed = np.zeros(S, dtype=np.int64)
    hs = np.empty(S)
    for n in range(S):
        crossed[n] = _step(X, noise[n], grad_u[n], float(xmin), float(dx), K, c_drift, c_noise, periodic)
        hs[n] = _bandwidth(X, bandwidth, scale_by_std, periodic, K, dx)
        M[n] = _density(_bin(X, float(xmin), float(dx), K, periodic), dx, hs[n], periodic)
    return X, M, crossed, hs
