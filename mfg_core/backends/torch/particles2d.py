r"""torch 2D particle kernels: the binned FFT KDE and the Euler-Maruyama sweep of
:mod:`mfg_core.backends.numpy.particles2d` (which states the numerics) on float64 tensors.

    step:     X <- fold(X - (dt/lam) I[grad u^n](X) + sigma sqrt(dt) Z_n),  fold per axis (reflect / wrap)
    density:  bilinear binning, mirrored (Neumann axes) or wrapped (periodic), the product Gaussian
              by one 2D FFT (``torch.fft``), clipped at 0, scaled to mass 1 (tensor-product weights).

The same formulas in the same order as the reference, so that the densities agree to round-off; the
random numbers come from the solver (numpy). Positions are ``(N, 2)`` in ``(y, x)`` columns; inside
the kernel they are kept as two contiguous rows ``(2, N)``. The four corners of each particle's cell
are computed once per step and serve both gradient components. Binning by ``index_add_``; the fold
uses ``torch.fmod`` plus a shift of negative remainders (bit for bit ``np.mod``). A grid with an
obstacle is refused (:func:`checks.kde2d_constants`), as by the reference. Results are native on the
kernel's device (numpy on the CPU); crossings and bandwidths are numpy. Threads are left alone.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import checks
from ..kde_rules import period
from ._common import F64, device_of, native, on_device
from .particles import _cells, _floor_mod, _periodic_gaussian, _spread


def _corners(X: torch.Tensor, axes):
    """Flat node indices and bilinear weights of the four corners of each particle's cell."""
    (ay, ax) = axes
    jy, jyp, fy = _cells(X[0], ay.lo, ay.h, ay.K, ay.periodic)
    jx, jxp, fx = _cells(X[1], ax.lo, ax.h, ax.K, ax.periodic)
    K = ax.K
    idx = (jy * K + jx, jy * K + jxp, jyp * K + jx, jyp * K + jxp)
    w = ((1.0 - fy) * (1.0 - fx), (1.0 - fy) * fx, fy * (1.0 - fx), fy * fx)
    return idx, w


def _bin(corners, n: int, device) -> torch.Tensor:
    idx, w = corners
    counts = torch.zeros(n, dtype=F64, device=device)
    for i, wi in zip(idx, w):
        counts.index_add_(0, i, wi)
    return counts


def _interpolate(corners, flat: torch.Tensor) -> torch.Tensor:
    """Bilinear interpolant of the rows of ``flat`` ``(c, Ky Kx)`` at the particles: ``(c, N)``."""
    idx, w = corners
    out = flat.index_select(1, idx[0]) * w[0]
    for i, wi in zip(idx[1:], w[1:]):
        out = out + flat.index_select(1, i) * wi
    return out


def _bandwidths(X: torch.Tensor, axes, bandwidth: float, scale_by_std: bool) -> tuple[float, float]:
    if not scale_by_std:
        return float(bandwidth), float(bandwidth)
    return tuple(float(bandwidth) * _spread(X[k], a.periodic, period(a.K, a.h, a.periodic))
                 for k, a in enumerate(axes))


def _mirror(counts: torch.Tensor, axis: int, periodic: bool) -> torch.Tensor:
    """The counts along ``axis`` extended to the convolution's period (see ``binned_kde.mirror_axis``)."""
    if periodic:
        return counts
    K = counts.shape[axis]
    take = lambda a, b: counts.narrow(axis, a, b - a)  # noqa: E731
    return torch.cat([2.0 * take(0, 1), take(1, K - 1), 2.0 * take(K - 1, K),
                      torch.flip(take(1, K - 1), dims=(axis,))], dim=axis)


def _density(counts: torch.Tensor, axes, h) -> torch.Tensor:
    """:func:`mfg_core.backends.binned_kde.density_from_counts_2d` on tensors."""
    (ay, ax) = axes
    Ky, Kx = ay.K, ax.K
    e = _mirror(_mirror(counts.view(Ky, Kx), 0, ay.periodic), 1, ax.periodic)
    Py, Px = e.shape
    gy = _periodic_gaussian(Py, ay.h, h[0], counts.device)
    gx = _periodic_gaussian(Px, ax.h, h[1], counts.device)
    ghat = torch.fft.fft(gy)[:, None] * torch.fft.rfft(gx)[None, :]
    dens = torch.fft.irfft2(torch.fft.rfft2(e) * ghat, s=(Py, Px))[:Ky, :Kx]
    dens = torch.clamp(dens, min=0.0)
    rows = dens.sum(dim=1) if ax.periodic else dens.sum(dim=1) - 0.5 * (dens[:, 0] + dens[:, -1])
    mass = rows.sum() if ay.periodic else rows.sum() - 0.5 * (rows[0] + rows[-1])
    return dens / (ay.h * ax.h * mass)


def _fold(x: torch.Tensor, a) -> tuple[torch.Tensor, torch.Tensor]:
    """Reflect (Neumann) or wrap (periodic) one coordinate into its axis; ``(x, was_outside)``."""
    if a.periodic:
        L = a.K * a.h
        y = x - a.lo
        outside = (y < 0.0) | (y >= L)
        return torch.clamp(a.lo + _floor_mod(y, L), a.lo, a.lo + L), outside
    L = (a.K - 1) * a.h
    y = x - a.lo
    outside = (y < 0.0) | (y > L)
    y = _floor_mod(y, 2.0 * L)
    y = torch.where(y > L, 2.0 * L - y, y)
    return torch.clamp(a.lo + y, a.lo, a.lo + L), outside


def _positions(samples, dev) -> torch.Tensor:
    """``(N, 2)`` positions as contiguous ``(2, N)`` rows on ``dev``."""
    X = samples.to(dev, F64) if isinstance(samples, torch.Tensor) else \
        on_device(np.ascontiguousarray(samples, dtype=np.float64), dev)
    return X.T.contiguous()


def make_kde(grid, *, device="cpu"):
    """Binned FFT KDE on a 2D ``grid``: ``kde(samples, bandwidth, scale_by_std)`` -> density
    ``(Ky, Kx)`` of mass 1 (native on ``device``); ``samples`` ``(N, 2)`` in ``(y, x)`` columns."""
    c = checks.kde2d_constants(grid, "torch")
    dev = device_of(device)
    n = c.axes[0].K * c.axes[1].K

    def kde(samples, bandwidth, scale_by_std):
        with torch.inference_mode():
            X = _positions(samples, dev)
            h = _bandwidths(X, c.axes, bandwidth, scale_by_std)
            return native(_density(_bin(_corners(X, c.axes), n, dev), c.axes, h))

    return kde


def make_particle_sweep(scheme, *, bandwidth: float, scale_by_std: bool, device="cpu"):
    """Euler-Maruyama particle sweep on a 2D ``scheme``: ``sweep(X0, noise, grad_u) -> (X, M, crossed, h)``
    with the shapes of :func:`mfg_core.backends.numpy.particles2d.make_particle_sweep`; ``X``
    ``(N, 2)`` and ``M`` ``(S, Ky, Kx)`` native on ``device``, ``crossed`` ``(S,)`` and ``h``
    ``(S, 2)`` numpy."""
    c = checks.particle2d_constants(scheme, "torch", bandwidth=bandwidth, scale_by_std=scale_by_std)
    dev = device_of(device)
    c_drift, c_noise = c.drift, c.noise
    (ay, ax) = c.axes
    n = ay.K * ax.K

    def sweep(X0, noise, grad_u):
        X_in = X0
        if isinstance(X0, torch.Tensor):  # the positions a previous chunk returned on the device
            if X0.ndim != 2 or X0.shape[1] != 2 or X0.shape[0] < 1:
                raise ValueError(f"X0 must be a non-empty array of (y, x) positions of shape (N, 2), "
                                 f"got {tuple(X0.shape)}")
            X0 = np.empty(tuple(X0.shape))  # a stand-in for the shape checks below
        X0, noise, grad_u = checks.particle2d_arrays(c, X0, noise, grad_u)
        S = noise.shape[0]
        crossed = np.zeros(S, dtype=np.int64)
        hs = np.empty((S, 2))
        with torch.inference_mode():
            X = _positions(X_in if isinstance(X_in, torch.Tensor) else X0, dev)  # a copy: the caller keeps X0
            noise_t = on_device(noise, dev)
            grad_t = on_device(grad_u, dev).reshape(S, 2, n)
            M = torch.empty((S, ay.K, ax.K), dtype=F64, device=dev)
            for k in range(S):
                drift = _interpolate(_corners(X, c.axes), grad_t[k])
                X = X + c_drift * drift + c_noise * noise_t[k].T
                y, out_y = _fold(X[0], ay)
                x, out_x = _fold(X[1], ax)
                X = torch.stack((y, x))
                crossed[k] = int(torch.count_nonzero(out_y | out_x))
                hs[k] = _bandwidths(X, c.axes, c.bandwidth, c.scale_by_std)
                M[k] = _density(_bin(_corners(X, c.axes), n, dev), c.axes, hs[k])
            return native(X.T.contiguous()), native(M), crossed, hs

    return sweep
