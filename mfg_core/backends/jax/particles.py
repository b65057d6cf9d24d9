r"""jax particle kernels: one ``jax.jit`` per sweep, ``lax.scan`` over the time steps, ``jnp.fft``.

Same numerics as the reference :mod:`mfg_core.backends.numpy.particles`, which states them: the step
``X <- X - (dt/lam) I[u_x](X) + sigma sqrt(dt) Z``, the reflection (Neumann) or wrap (periodic) into
the domain, linear binning (here a scatter-add) and the FFT convolution with the periodised Gaussian
of :mod:`mfg_core.backends.kde_rules`. Decisions: the whole sweep is one jitted ``lax.scan``, so the
bandwidth rule runs traced (``jnp`` forms of the host rules); both representations of the periodised
Gaussian have static shapes and ``lax.cond`` picks one, so a bandwidth that changes from step to step
does not recompile. Compiled once per (particles, steps, nodes, boundary, bandwidth mode).
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .. import checks
from ..binned_kde import density_from_counts
from ..kde_rules import FOURIER_MODES, IMAGE_LIMIT, IMAGES, period
from . import native, resolve_device

jax.config.update("jax_enable_x64", True)  # also set by the package __init__; kernels are float64


def _periodic_gaussian(P: int, dx, h):
    Lp = P * dx
    j = jnp.arange(P)

    def images(h):
        d = j * dx
        g = jnp.zeros(P)
        for m in IMAGES:
            z = (d + m * Lp) / h
            g = g + jnp.exp(-0.5 * z * z)
        return g / (h * math.sqrt(2.0 * math.pi))

    def fourier(h):
        k = jnp.arange(1, FOURIER_MODES + 1)
        coef = jnp.exp(-2.0 * math.pi**2 * (h / Lp) ** 2 * (k * k).astype(jnp.float64))
        angle = (2.0 * math.pi / P) * ((k[:, None] * j[None, :]) % P).astype(jnp.float64)
        return (1.0 + 2.0 * (coef @ jnp.cos(angle))) / Lp

    return lax.cond(h <= IMAGE_LIMIT * Lp, images, fourier, h)


# jnp transcription of numpy.particles._cells (traced arrays cannot go through numpy)
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
    """``spread`` of the reference; the periodic branch is ``kde_rules.circular_spread`` without
    Python branches (``R`` is traced)."""
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
    return density_from_counts(counts, dx, h, periodic, _periodic_gaussian, xp=jnp)


def _bandwidth(X, bandwidth, scale_by_std: bool, periodic: bool, K: int, dx):
    if not scale_by_std:
        return bandwidth
    return bandwidth * _spread(X, periodic, period(K, dx, periodic))


# jnp transcription of numpy.particles.fold (jnp.mod is numpy's floor-mod: the same positions)
def _fold(X, xmin, dx, K: int, periodic: bool):
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


def make_kde(grid, *, device="cpu"):
    """Binned FFT KDE on ``grid`` under ``jax.jit`` on ``device`` (output native to the device, see
    the package docstring); contract of :func:`mfg_core.backends.numpy.particles.make_kde`. A 2D grid
    gets :mod:`.particles2d`'s."""
    if getattr(grid, "dim", 1) == 2:
        from . import particles2d

        return particles2d.make_kde(grid, device=device)
    c = checks.kde_constants(grid, "jax")
    dev = resolve_device(device)
    out = native(dev)
    xmin, dx = jax.device_put((np.float64(c.xmin), np.float64(c.dx)), dev)
    K, periodic = int(c.K), bool(c.periodic)

    def kde(samples, bandwidth, scale_by_std):
        X, h = jax.device_put((np.asarray(samples, dtype=np.float64), np.float64(bandwidth)), dev)
        return out(_kde(X, xmin, dx, h, num_nodes=K, scale_by_std=bool(scale_by_std), periodic=periodic))

    return kde


def make_particle_sweep(scheme, *, bandwidth: float, scale_by_std: bool, device="cpu"):
    """Euler-Maruyama particle sweep on ``scheme``, one jitted ``lax.scan`` on ``device``: ``sweep(X0,
    noise, grad_u) -> (X, M, crossed, h)`` (native to the device); contract of
    :func:`mfg_core.backends.numpy.particles.make_particle_sweep`. A 2D scheme gets :mod:`.particles2d`'s."""
    if getattr(getattr(scheme, "grid", None), "dim", 1) == 2:
        from . import particles2d

        return particles2d.make_particle_sweep(scheme, bandwidth=bandwidth, scale_by_std=scale_by_std,
                                               device=device)
    c = checks.particle_constants(scheme, "jax", bandwidth=bandwidth, scale_by_std=scale_by_std)
    dev = resolve_device(device)
    out = native(dev)
    f64 = np.float64
    consts = jax.device_put((f64(c.xmin), f64(c.dx), f64(-c.dt / c.lam), f64(c.sigma * math.sqrt(c.dt)),
                             f64(c.bandwidth)), dev)
    static = dict(scale_by_std=bool(c.scale_by_std), periodic=bool(c.periodic))

    def sweep(X0, noise, grad_u):
        X0, noise, grad_u = checks.particle_arrays(c, X0, noise, grad_u)
        X, M, crossed, hs = _sweep(*jax.device_put((X0, noise, grad_u), dev), *consts, **static)
        return out(X), out(M), out(crossed), out(hs)

    return sweep
