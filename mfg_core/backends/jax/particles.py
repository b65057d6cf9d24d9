r"""jax particle kernels: one ``jax.jit`` per sweep, ``lax.scan`` over the time steps, ``jnp.fft``.

Same numerics as the reference :mod:`mfg_core.backends.numpy.particles` (read its docstring): the
Euler-Maruyama step, the fold into the domain, linear binning (a scatter-add), the periodic Gaussian
kernel (both of its representations have static shapes; ``lax.cond`` picks one at run time, so the
bandwidth may change from step to step without recompiling) and the FFT convolution. Compiled once
per (number of particles, steps, nodes, boundary, bandwidth mode); the scalars are traced.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

jax.config.update("jax_enable_x64", True)  # also set by the package __init__; kernels are float64

IMAGE_LIMIT = 1.0 / 19.0
FOURIER_MODES = 117


def _periodic_gaussian(P: int, dx, h):
    Lp = P * dx
    j = jnp.arange(P)

    def images(h):
        d = j * dx
        g = jnp.zeros(P)
        for m in (-2, -1, 0, 1, 2):
            z = (d + m * Lp) / h
            g = g + jnp.exp(-0.5 * z * z)
        return g / (h * math.sqrt(2.0 * math.pi))

    def fourier(h):
        k = jnp.arange(1, FOURIER_MODES + 1)
        coef = jnp.exp(-2.0 * math.pi**2 * (h / Lp) ** 2 * (k * k).astype(jnp.float64))
        angle = (2.0 * math.pi / P) * ((k[:, None] * j[None, :]) % P).astype(jnp.float64)
        return (1.0 + 2.0 * (coef @ jnp.cos(angle))) / Lp

    return lax.cond(h <= IMAGE_LIMIT * Lp, images, fourier, h)


def _cell(X, xmin, dx, K: int, periodic: bool):
    s = (X - xmin) / dx
    j = jnp.floor(s)
    if periodic:
        f = s - j
        j = j.astype(jnp.int64) % K
        return j, (j + 1) % K, f
    j = jnp.clip(j, 0, K - 2)
    f = s - j
    j = j.astype(jnp.int64)
    return j, j + 1, f


def _spread(X, periodic: bool, Lp):
    if not periodic:
        return jnp.std(X, ddof=1)
    theta = (2.0 * math.pi / Lp) * X
    R = jnp.hypot(jnp.mean(jnp.cos(theta)), jnp.mean(jnp.sin(theta)))
    safe = jnp.where(R > 0.0, R, 1.0)
    circ = Lp / (2.0 * math.pi) * jnp.sqrt(jnp.maximum(-2.0 * jnp.log(safe), 0.0))
    return jnp.where(R > 0.0, jnp.minimum(circ, Lp), Lp)


def _density(X, xmin, dx, h, K: int, periodic: bool):
    j, jp, f = _cell(X, xmin, dx, K, periodic)
    counts = jnp.zeros(K).at[j].add(1.0 - f).at[jp].add(f)
    if periodic:
        e = counts
    else:
        e = jnp.concatenate([counts, counts[-2:0:-1]])
        e = e.at[0].multiply(2.0).at[K - 1].multiply(2.0)
    P = e.shape[0]
    g = _periodic_gaussian(P, dx, h)
    dens = jnp.fft.irfft(jnp.fft.rfft(e) * jnp.fft.rfft(g), n=P)[:K]
    dens = jnp.maximum(dens, 0.0)
    mass = dx * dens.sum()
    if not periodic:
        mass = mass - 0.5 * dx * (dens[0] + dens[-1])
    return dens / mass


def _bandwidth(X, bandwidth, scale_by_std: bool, periodic: bool, K: int, dx):
    if not scale_by_std:
        return bandwidth
    Lp = (K if periodic else 2 * (K - 1)) * dx
    return bandwidth * _spread(X, periodic, Lp)


def _fold(X, xmin, dx, K: int, periodic: bool):
    # jnp.mod is numpy's floor-mod (exact remainder, negatives shifted by one period)
    if periodic:
        L = K * dx
        y = X - xmin
        crossed = jnp.count_nonzero((y < 0.0) | (y >= L))
        y = jnp.mod(y, L)
        return jnp.clip(xmin + y, xmin, xmin + L), crossed
    L = (K - 1) * dx
    y = X - xmin
    crossed = jnp.count_nonzero((y < 0.0) | (y > L))
    y = jnp.mod(y, 2.0 * L)
    y = jnp.where(y > L, 2.0 * L - y, y)
    return jnp.clip(xmin + y, xmin, xmin + L), crossed


@partial(jax.jit, static_argnames=("num_nodes", "scale_by_std", "periodic"))
def _kde(X, xmin, dx, bandwidth, *, num_nodes, scale_by_std, periodic):
    h = _bandwidth(X, bandwidth, scale_by_std, periodic, num_nodes, dx)
    return _density(X, xmin, dx, h, num_nodes, periodic)


@partial(jax.jit, static_argnames=("scale_by_std", "periodic"))
def _sweep(X0, noise, grad_u, xmin, dx, c_drift, c_noise, bandwidth, *, scale_by_std, periodic):
    K = grad_u.shape[1]

    def step(X, inputs):
        Z, grad = inputs
        j, jp, f = _cell(X, xmin, dx, K, periodic)
        X = X + c_drift * (grad[j] * (1.0 - f) + grad[jp] * f) + c_noise * Z
        X, crossed = _fold(X, xmin, dx, K, periodic)
        h = _bandwidth(X, bandwidth, scale_by_std, periodic, K, dx)
        return X, (_density(X, xmin, dx, h, K, periodic), crossed, h)

    X, (M, crossed, hs) = lax.scan(step, X0, (noise, grad_u))
    return X, M, crossed, hs


def kde_on_grid(samples, *, xmin, dx, num_nodes, bandwidth, scale_by_std, periodic):
    """Binned FFT KDE; see :func:`mfg_core.backends.numpy.particles.kde_on_grid`."""
    out = _kde(jnp.asarray(samples, dtype=jnp.float64), float(xmin), float(dx), float(bandwidth),
               num_nodes=int(num_nodes), scale_by_std=bool(scale_by_std), periodic=bool(periodic))
    return np.asarray(out)


def particle_sweep(X0, noise, grad_u, *, xmin, dx, dt, lam, sigma, bandwidth, scale_by_std, periodic):
    """Euler-Maruyama sweep; see :func:`mfg_core.backends.numpy.particles.particle_sweep`."""
    X, M, crossed, hs = _sweep(
        jnp.asarray(X0, dtype=jnp.float64), jnp.asarray(noise, dtype=jnp.float64),
        jnp.asarray(grad_u, dtype=jnp.float64), float(xmin), float(dx), -dt / lam,
        sigma * math.sqrt(dt), float(bandwidth), scale_by_std=bool(scale_by_std), periodic=bool(periodic))
    return np.asarray(X), np.asarray(M), np.asarray(crossed, dtype=np.int64), np.asarray(hs)
