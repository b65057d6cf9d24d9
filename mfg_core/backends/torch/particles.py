r"""torch particle kernels: float64 CPU tensors, ``index_add_`` binning, ``torch.fft`` convolution.

Performance note: these are many small element-wise ops per step; with torch's intra-op threads on an
oversubscribed machine (more busy processes than cores) each op can cost ~100x more than
single-threaded. The kernels do not change torch's global thread settings (a library should not); run
with ``torch.set_num_threads(1)`` (or ``OMP_NUM_THREADS=1``) when the cores are shared.

Same numerics as the reference :mod:`mfg_core.backends.numpy.particles` (read its docstring). The
fold uses ``torch.fmod`` plus a shift of negative remainders rather than ``torch.remainder``
(which computes ``a - floor(a / b) b`` and is not exact), so that positions follow numpy's
``np.mod`` bit for bit.
"""

from __future__ import annotations

import math

import numpy as np
import torch

IMAGE_LIMIT = 1.0 / 19.0
FOURIER_MODES = 117
_F64 = torch.float64


def _periodic_gaussian(P: int, dx: float, h: float) -> torch.Tensor:
    Lp = P * dx
    j = torch.arange(P, dtype=torch.int64)
    if h <= IMAGE_LIMIT * Lp:
        d = j.to(_F64) * dx
        g = torch.zeros(P, dtype=_F64)
        for m in (-2, -1, 0, 1, 2):
            z = (d + m * Lp) / h
            g = g + torch.exp(-0.5 * z * z)
        return g / (h * math.sqrt(2.0 * math.pi))
    k = torch.arange(1, FOURIER_MODES + 1, dtype=torch.int64)
    coef = torch.exp(-2.0 * math.pi**2 * (h / Lp) ** 2 * (k * k).to(_F64))
    angle = (2.0 * math.pi / P) * ((k[:, None] * j[None, :]) % P).to(_F64)
    return (1.0 + 2.0 * (coef @ torch.cos(angle))) / Lp


def _cell(X: torch.Tensor, xmin: float, dx: float, K: int, periodic: bool):
    s = (X - xmin) / dx
    j = torch.floor(s)
    if periodic:
        f = s - j
        j = torch.remainder(j.to(torch.int64), K)  # integer remainder is exact
        return j, torch.remainder(j + 1, K), f
    j = torch.clamp(j, 0, K - 2)
    f = s - j
    j = j.to(torch.int64)
    return j, j + 1, f


def _floor_mod(y: torch.Tensor, period: float) -> torch.Tensor:
    r = torch.fmod(y, period)
    return torch.where(r < 0.0, r + period, r)


def _spread(X: torch.Tensor, periodic: bool, Lp: float) -> float:
    if not periodic:
        return float(torch.std(X, correction=1))
    theta = (2.0 * math.pi / Lp) * X
    R = math.hypot(float(torch.cos(theta).mean()), float(torch.sin(theta).mean()))
    if R <= 0.0:
        return Lp
    return min(Lp / (2.0 * math.pi) * math.sqrt(max(-2.0 * math.log(R), 0.0)), Lp)


def _density(X: torch.Tensor, xmin: float, dx: float, h: float, K: int, periodic: bool) -> torch.Tensor:
    j, jp, f = _cell(X, xmin, dx, K, periodic)
    counts = torch.zeros(K, dtype=_F64)
    counts.index_add_(0, j, 1.0 - f)
    counts.index_add_(0, jp, f)
    if periodic:
        e = counts
    else:
        e = torch.cat([counts, torch.flip(counts[1:-1], dims=(0,))])
        e[0] *= 2.0
        e[K - 1] *= 2.0
    P = e.shape[0]
    g = _periodic_gaussian(P, dx, h)
    dens = torch.fft.irfft(torch.fft.rfft(e) * torch.fft.rfft(g), n=P)[:K]
    dens = torch.clamp(dens, min=0.0)
    mass = dx * dens.sum()
    if not periodic:
        mass = mass - 0.5 * dx * (dens[0] + dens[-1])
    return dens / mass


def _bandwidth(X, bandwidth, scale_by_std, periodic, K, dx) -> float:
    if not scale_by_std:
        return float(bandwidth)
    Lp = (K if periodic else 2 * (K - 1)) * dx
    return float(bandwidth) * _spread(X, periodic, Lp)


def _fold(X: torch.Tensor, xmin: float, dx: float, K: int, periodic: bool):
    if periodic:
        L = K * dx
        y = X - xmin
        crossed = int(torch.count_nonzero((y < 0.0) | (y >= L)))
        y = _floor_mod(y, L)
        return torch.clamp(xmin + y, xmin, xmin + L), crossed
    L = (K - 1) * dx
    y = X - xmin
    crossed = int(torch.count_nonzero((y < 0.0) | (y > L)))
    y = _floor_mod(y, 2.0 * L)
    y = torch.where(y > L, 2.0 * L - y, y)
    return torch.clamp(xmin + y, xmin, xmin + L), crossed


def kde_on_grid(samples, *, xmin, dx, num_nodes, bandwidth, scale_by_std, periodic):
    """Binned FFT KDE; see :func:`mfg_core.backends.numpy.particles.kde_on_grid`."""
    X = torch.as_tensor(np.asarray(samples, dtype=np.float64))
    h = _bandwidth(X, bandwidth, scale_by_std, bool(periodic), int(num_nodes), float(dx))
    return _density(X, float(xmin), float(dx), h, int(num_nodes), bool(periodic)).numpy()


def particle_sweep(X0, noise, grad_u, *, xmin, dx, dt, lam, sigma, bandwidth, scale_by_std, periodic):
    """Euler-Maruyama sweep; see :func:`mfg_core.backends.numpy.particles.particle_sweep`."""
    xmin, dx, periodic = float(xmin), float(dx), bool(periodic)
    X = torch.tensor(np.asarray(X0, dtype=np.float64))
    noise = torch.as_tensor(np.asarray(noise, dtype=np.float64))
    grad_u = torch.as_tensor(np.asarray(grad_u, dtype=np.float64))
    S, K = grad_u.shape
    c_drift = -dt / lam
    c_noise = sigma * math.sqrt(dt)
    M = torch.empty((S, K), dtype=_F64)
    crossed = np.zeros(S, dtype=np.int64)
    hs = np.empty(S)
    with torch.no_grad():
        for n in range(S):
            j, jp, f = _cell(X, xmin, dx, K, periodic)
            g = grad_u[n]
            # index_select is several times faster than advanced indexing for a 1-D gather
            X = X + c_drift * (g.index_select(0, j) * (1.0 - f) + g.index_select(0, jp) * f) + c_noise * noise[n]
            X, crossed[n] = _fold(X, xmin, dx, K, periodic)
            hs[n] = _bandwidth(X, bandwidth, scale_by_std, periodic, K, dx)
            M[n] = _density(X, xmin, dx, hs[n], K, periodic)
    return X.numpy(), M.numpy(), crossed, hs
