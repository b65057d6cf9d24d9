r"""torch particle kernels: the binned FFT KDE and the Euler-Maruyama sweep of
:mod:`mfg_core.backends.numpy.particles` (which states the numerics) on float64 CPU tensors.

    step:     X <- fold( X - (dt/lam) I[u_x^n](X) + sigma sqrt(dt) Z_n )   (reflect / wrap)
    density:  linear binning, mirrored (Neumann) onto P nodes, circular convolution with the
              periodised Gaussian by ``torch.fft``, clipped at 0, scaled to mass 1.

Decisions: the shared constants and host-side rules (image-sum / Fourier switch, period, circular
spread) come from :mod:`mfg_core.backends.kde_rules`, so that the densities agree with numpy's to
round-off. Binning by ``index_add_``, gathers by ``index_select`` (several times faster than
advanced indexing for a 1-D gather). The fold uses ``torch.fmod`` plus a shift of negative remainders
rather than ``torch.remainder`` (which computes ``a - floor(a / b) b`` and is not exact), so that
positions follow numpy's ``np.mod`` bit for bit. The kernels leave torch's thread settings alone
(many small ops per step: see ``benchmarks/README.md`` on threads when the cores are shared).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .. import checks
from ._common import device_of, native, on_device
from ..kde_rules import FOURIER_MODES, IMAGE_LIMIT, IMAGES, circular_spread, period

_F64 = torch.float64


def _periodic_gaussian(P: int, dx: float, h: float, device=None) -> torch.Tensor:
    """The Gaussian ``phi_h`` periodised with period ``P dx`` and sampled at ``j dx``, ``j < P``."""
    Lp = P * dx
    j = torch.arange(P, dtype=torch.int64, device=device)
    if h <= IMAGE_LIMIT * Lp:
        d = j.to(_F64) * dx
        g = torch.zeros(P, dtype=_F64, device=device)
        for m in IMAGES:
            z = (d + m * Lp) / h
            g = g + torch.exp(-0.5 * z * z)
        return g / (h * math.sqrt(2.0 * math.pi))
    k = torch.arange(1, FOURIER_MODES + 1, dtype=torch.int64, device=device)
    coef = torch.exp(-2.0 * math.pi**2 * (h / Lp) ** 2 * (k * k).to(_F64))
    # the phase is reduced modulo P in integers, as in the reference
    angle = (2.0 * math.pi / P) * ((k[:, None] * j[None, :]) % P).to(_F64)
    return (1.0 + 2.0 * (coef @ torch.cos(angle))) / Lp


def _cells(X: torch.Tensor, xmin: float, dx: float, K: int, periodic: bool):
    """Left node, right node and fraction of the cell holding each position (see the reference)."""
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


def _floor_mod(y: torch.Tensor, p: float) -> torch.Tensor:
    r = torch.fmod(y, p)
    return torch.where(r < 0.0, r + p, r)


def _spread(X: torch.Tensor, periodic: bool, Lp: float) -> float:
    """Sample std (Neumann) or circular std (periodic) for the bandwidth rules."""
    if not periodic:
        return float(torch.std(X, correction=1))
    theta = (2.0 * math.pi / Lp) * X
    return circular_spread(math.hypot(float(torch.cos(theta).mean()), float(torch.sin(theta).mean())), Lp)


def _bandwidth(X: torch.Tensor, bandwidth, scale_by_std, periodic: bool, K: int, dx: float) -> float:
    if not scale_by_std:
        return float(bandwidth)
    return float(bandwidth) * _spread(X, periodic, period(K, dx, periodic))


def _density(X: torch.Tensor, xmin: float, dx: float, h: float, K: int, periodic: bool) -> torch.Tensor:
    """Binned FFT KDE of the positions ``X`` on the ``K`` nodes (mass 1)."""
    j, jp, f = _cells(X, xmin, dx, K, periodic)
    counts = torch.zeros(K, dtype=_F64, device=X.device)
    counts.index_add_(0, j, 1.0 - f)
    counts.index_add_(0, jp, f)
    if periodic:
        e = counts
    else:
        e = torch.cat([counts, torch.flip(counts[1:-1], dims=(0,))])
        e[0] *= 2.0
        e[K - 1] *= 2.0
    P = e.shape[0]
    g = _periodic_gaussian(P, dx, h, X.device)
    dens = torch.fft.irfft(torch.fft.rfft(e) * torch.fft.rfft(g), n=P)[:K]
    dens = torch.clamp(dens, min=0.0)
    mass = dx * dens.sum()
    if not periodic:
        mass = mass - 0.5 * dx * (dens[0] + dens[-1])
    return dens / mass


def _fold(X: torch.Tensor, xmin: float, dx: float, K: int, periodic: bool):
    """Reflect (Neumann) or wrap (periodic) positions into the domain; returns ``(X, crossed)``."""
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


def make_kde(grid, *, device="cpu"):
    """Binned FFT KDE on ``grid``: ``kde(samples, bandwidth, scale_by_std)`` -> density on the nodes
    (mass 1, native on ``device``); see :func:`mfg_core.backends.numpy.particles.make_kde`. A 2D grid
    gets :func:`mfg_core.backends.torch.particles2d.make_kde`."""
    if getattr(grid, "dim", 1) == 2:
        from . import particles2d

        return particles2d.make_kde(grid, device=device)
    c = checks.kde_constants(grid, "torch")
    dev = device_of(device)

    def kde(samples, bandwidth, scale_by_std):
        with torch.inference_mode():
            X = samples.to(dev, _F64) if isinstance(samples, torch.Tensor) else \
                on_device(np.ascontiguousarray(samples, dtype=np.float64), dev)
            h = _bandwidth(X, bandwidth, scale_by_std, c.periodic, c.K, c.dx)
            return native(_density(X, c.xmin, c.dx, h, c.K, c.periodic))

    return kde


def make_particle_sweep(scheme, *, bandwidth: float, scale_by_std: bool, device="cpu"):
    """Euler-Maruyama particle sweep on ``scheme``: ``sweep(X0, noise, grad_u) -> (X, M, crossed, h)``;
    see :func:`mfg_core.backends.numpy.particles.make_particle_sweep`. ``X`` and ``M`` native on
    ``device``, ``crossed`` and ``h`` numpy. A 2D scheme gets
    :func:`mfg_core.backends.torch.particles2d.make_particle_sweep`."""
    if getattr(getattr(scheme, "grid", None), "dim", 1) == 2:
        from . import particles2d

        return particles2d.make_particle_sweep(scheme, bandwidth=bandwidth, scale_by_std=scale_by_std,
                                               device=device)
    c = checks.particle_constants(scheme, "torch", bandwidth=bandwidth, scale_by_std=scale_by_std)
    dev = device_of(device)
    c_drift, c_noise = c.drift, c.noise

    def sweep(X0, noise, grad_u):
        X_in = X0
        if isinstance(X0, torch.Tensor):  # the positions a previous chunk returned on the device
            if X0.ndim != 1 or X0.shape[0] < 1:
                raise ValueError(f"X0 must be a non-empty 1-D array of positions, got shape {tuple(X0.shape)}")
            X0 = np.empty(X0.shape)  # a stand-in for the shape checks below
        X0, noise, grad_u = checks.particle_arrays(c, X0, noise, grad_u)
        S = noise.shape[0]
        _, crossed, hs = checks.particle_outputs(c, S)
        with torch.inference_mode():
            # a copy: the caller keeps X0
            X = X_in.to(dev, _F64).clone() if isinstance(X_in, torch.Tensor) else torch.tensor(X0, device=dev)
            noise_t, grad_t = on_device(noise, dev), on_device(grad_u, dev)
            M_t = torch.empty((S, c.K), dtype=_F64, device=dev)
            for n in range(S):
                j, jp, f = _cells(X, c.xmin, c.dx, c.K, c.periodic)
                g = grad_t[n]
                X = X + c_drift * (g.index_select(0, j) * (1.0 - f) + g.index_select(0, jp) * f) \
                    + c_noise * noise_t[n]
                X, crossed[n] = _fold(X, c.xmin, c.dx, c.K, c.periodic)
                hs[n] = _bandwidth(X, c.bandwidth, c.scale_by_std, c.periodic, c.K, c.dx)
                M_t[n] = _density(X, c.xmin, c.dx, hs[n], c.K, c.periodic)
            return native(X), native(M_t), crossed, hs

    return sweep
