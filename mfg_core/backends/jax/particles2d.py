r"""jax 2D particle kernels: the numerics of :mod:`mfg_core.backends.numpy.particles2d`, jit-compiled.

The reference states them: bilinear binning (a scatter-add here) and the product Gaussian by one
2D FFT (``jnp.fft``; :func:`mfg_core.backends.binned_kde.density_from_counts_2d` traced with
``xp=jnp``), each axis mirrored (Neumann) or wrapped (periodic); bandwidths per axis (the 1D traced
rules of :mod:`.particles`); the Euler-Maruyama step with the bilinear interpolant of the nodal
``(u_y, u_x)`` and the 1D fold per coordinate. Positions are ``(N, 2)`` in ``(y, x)`` columns; the
random numbers come from the caller (numpy), so densities agree with the reference to round-off.
One jitted ``lax.scan`` per sweep; a grid with an obstacle is refused (:func:`checks.kde2d_constants`).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .. import checks
from ..binned_kde import density_from_counts_2d
from . import native, resolve_device
from .particles import _bandwidth, _cell, _periodic_gaussian

jax.config.update("jax_enable_x64", True)


def _corners(Xy, Xx, lo, h, K, periodic):
    """Flat node indices and bilinear weights of the four corners of each particle's cell."""
    jy, jyp, fy = _cell(Xy, lo[0], h[0], K[0], periodic[0])
    jx, jxp, fx = _cell(Xx, lo[1], h[1], K[1], periodic[1])
    Kx = K[1]
    idx = (jy * Kx + jx, jy * Kx + jxp, jyp * Kx + jx, jyp * Kx + jxp)
    w = ((1.0 - fy) * (1.0 - fx), (1.0 - fy) * fx, fy * (1.0 - fx), fy * fx)
    return idx, w


def _density(Xy, Xx, lo, h, K, periodic, hs):
    idx, w = _corners(Xy, Xx, lo, h, K, periodic)
    counts = jnp.zeros(K[0] * K[1])
    for i, wi in zip(idx, w):
        counts = counts.at[i].add(wi)
    return density_from_counts_2d(counts.reshape(K), h, hs, periodic, _periodic_gaussian, xp=jnp)


def _bandwidths(Xy, Xx, h, K, periodic, bandwidth, scale_by_std: bool):
    return tuple(_bandwidth(X, bandwidth, scale_by_std, periodic[k], K[k], h[k]) for k, X in enumerate((Xy, Xx)))


def _fold(x, lo, h, K: int, periodic: bool):
    """The reference's ``fold_axis``: ``(x folded into the axis, was outside)``."""
    y = x - lo
    if periodic:
        L = K * h
        outside = (y < 0.0) | (y >= L)
        return jnp.clip(lo + jnp.mod(y, L), lo, lo + L), outside
    L = (K - 1) * h
    outside = (y < 0.0) | (y > L)
    y = jnp.mod(y, 2.0 * L)
    y = jnp.where(y > L, 2.0 * L - y, y)
    return jnp.clip(lo + y, lo, lo + L), outside


_STATIC = ("K", "periodic", "scale_by_std")


@partial(jax.jit, static_argnames=_STATIC)
def _kde(X, lo, h, bandwidth, *, K, periodic, scale_by_std):
    Xy, Xx = X[:, 0], X[:, 1]
    hs = _bandwidths(Xy, Xx, h, K, periodic, bandwidth, scale_by_std)
    return _density(Xy, Xx, lo, h, K, periodic, hs)


@partial(jax.jit, static_argnames=_STATIC)
def _sweep(X0, noise, grad_u, lo, h, c_drift, c_noise, bandwidth, *, K, periodic, scale_by_std):
    def step(X, inputs):
        Xy, Xx = X
        Z, grad = inputs
        idx, w = _corners(Xy, Xx, lo, h, K, periodic)
        gy, gx = grad[0].ravel(), grad[1].ravel()
        drift_y = sum(gy[i] * wi for i, wi in zip(idx, w))
        drift_x = sum(gx[i] * wi for i, wi in zip(idx, w))
        Xy = Xy + c_drift * drift_y + c_noise * Z[:, 0]
        Xx = Xx + c_drift * drift_x + c_noise * Z[:, 1]
        Xy, out_y = _fold(Xy, lo[0], h[0], K[0], periodic[0])
        Xx, out_x = _fold(Xx, lo[1], h[1], K[1], periodic[1])
        crossed = jnp.count_nonzero(out_y | out_x)
        hs = _bandwidths(Xy, Xx, h, K, periodic, bandwidth, scale_by_std)
        return (Xy, Xx), (_density(Xy, Xx, lo, h, K, periodic, hs), crossed, jnp.stack(hs))

    (Xy, Xx), (M, crossed, hs) = lax.scan(step, (X0[:, 0], X0[:, 1]), (noise, grad_u))
    return jnp.stack([Xy, Xx], axis=1), M, crossed, hs


def _axes(axes, dev):
    lo = jax.device_put(tuple(np.float64(a.lo) for a in axes), dev)
    h = jax.device_put(tuple(np.float64(a.h) for a in axes), dev)
    static = dict(K=tuple(int(a.K) for a in axes), periodic=tuple(bool(a.periodic) for a in axes))
    return lo, h, static


def make_kde(grid, *, device="cpu"):
    """Binned FFT KDE on a 2D ``grid`` under ``jax.jit`` on ``device``: ``kde(samples, bandwidth,
    scale_by_std)`` -> density ``(Ky, Kx)`` of mass 1 (native to the device); contract of
    :func:`mfg_core.backends.numpy.particles2d.make_kde`."""
    c = checks.kde2d_constants(grid, "jax")
    dev = resolve_device(device)
    out = native(dev)
    lo, h, static = _axes(c.axes, dev)

    def kde(samples, bandwidth, scale_by_std):
        X, bw = jax.device_put((np.ascontiguousarray(samples, dtype=np.float64), np.float64(bandwidth)), dev)
        return out(_kde(X, lo, h, bw, scale_by_std=bool(scale_by_std), **static))

    return kde


def make_particle_sweep(scheme, *, bandwidth: float, scale_by_std: bool, device="cpu"):
    """Euler-Maruyama particle sweep on a 2D ``scheme``, one jitted ``lax.scan`` on ``device``:
    ``sweep(X0, noise, grad_u) -> (X, M, crossed, h)`` (native to the device); contract of
    :func:`mfg_core.backends.numpy.particles2d.make_particle_sweep`."""
    c = checks.particle2d_constants(scheme, "jax", bandwidth=bandwidth, scale_by_std=scale_by_std)
    dev = resolve_device(device)
    out = native(dev)
    lo, h, static = _axes(c.axes, dev)
    consts = jax.device_put((np.float64(c.drift), np.float64(c.noise), np.float64(c.bandwidth)), dev)
    static["scale_by_std"] = bool(c.scale_by_std)

    def sweep(X0, noise, grad_u):
        X0, noise, grad_u = checks.particle2d_arrays(c, X0, noise, grad_u)
        X, M, crossed, hs = _sweep(*jax.device_put((X0, noise, grad_u), dev), lo, h, *consts, **static)
        return out(X), out(M), out(crossed), out(hs)

    return sweep
