"""The FFT step of the binned Gaussian KDE, shared by the numpy, numba and jax backends.

Each backend bins samples with its own kernels and then runs this last step: numpy and numba with
numpy's FFT (numba has no FFT), jax with ``jnp`` inside its jitted sweep (``xp=jax.numpy``; the code
uses no in-place update, so it traces). torch keeps its own (``torch.fft``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def density_from_counts(counts, dx, h, periodic: bool, kernel: Callable, xp=np):
    r"""Convolve linear-binned ``counts`` on ``K`` nodes with a Gaussian of bandwidth ``h``.

    Periodic: circular convolution with the periodised Gaussian ``kernel(K, dx, h)``. Neumann:
    the counts are mirrored about both walls (period ``2 (K - 1) dx``; the wall nodes, which the
    mirror does not duplicate, count twice), which is the reflection of the kernel at the walls.
    The result is clipped at 0 (FFT round-off) and scaled to mass 1 in the grid's quadrature
    (trapezoidal for Neumann, uniform for periodic). ``xp`` is the array module (numpy or
    ``jax.numpy``); ``periodic`` must be a Python bool.
    """
    K = counts.shape[0]
    if periodic:
        e = counts
    else:
        e = xp.concatenate([2.0 * counts[:1], counts[1:K - 1], 2.0 * counts[K - 1:], counts[-2:0:-1]])
    P = e.shape[0]
    g = kernel(P, dx, h)
    dens = xp.fft.irfft(xp.fft.rfft(e) * xp.fft.rfft(g), n=P)[:K]
    dens = xp.maximum(dens, 0.0)
    mass = dx * dens.sum()
    if not periodic:
        mass = mass - 0.5 * dx * (dens[0] + dens[-1])
    return dens / mass


def mirror_axis(counts, axis: int, periodic: bool, xp=np):
    """The counts along ``axis`` extended to the circular convolution's period: as they are if
    periodic; mirrored about both walls if Neumann (the wall nodes, their own images, count twice)."""
    if periodic:
        return counts
    K = counts.shape[axis]
    take = lambda sl: counts[(slice(None),) * (axis % counts.ndim) + (sl,)]  # noqa: E731
    return xp.concatenate([2.0 * take(slice(0, 1)), take(slice(1, K - 1)), 2.0 * take(slice(K - 1, K)),
                           take(slice(K - 2, 0, -1))], axis=axis)


def density_from_counts_2d(counts, spacing, h, periodic, kernel: Callable, xp=np):
    r"""The 2D binned KDE: bilinear-binned ``counts`` of shape ``(Ky, Kx)`` convolved with the product
    Gaussian of bandwidths ``h = (h_y, h_x)``, each axis realised as in 1D (periodic: wrap; Neumann:
    the counts mirrored about both walls), by one 2D FFT with the separable kernel
    ``kernel(Py, hy_grid, h_y) (x) kernel(Px, hx_grid, h_x)``. Clipped at 0 and scaled to mass 1 in the
    tensor-product quadrature (trapezoidal on Neumann axes, uniform on periodic ones).
    ``spacing``, ``h``, ``periodic`` are ``(y, x)`` pairs.
    """
    Ky, Kx = counts.shape
    e = mirror_axis(mirror_axis(counts, 0, periodic[0], xp), 1, periodic[1], xp)
    Py, Px = e.shape
    gy = kernel(Py, spacing[0], h[0])
    gx = kernel(Px, spacing[1], h[1])
    ghat = xp.fft.fft(gy)[:, None] * xp.fft.rfft(gx)[None, :]
    dens = xp.fft.irfft2(xp.fft.rfft2(e) * ghat, s=(Py, Px))[:Ky, :Kx]
    dens = xp.maximum(dens, 0.0)
    # the per-axis mass of each row/column: trapezoidal (Neumann) or uniform (periodic), no in-place update
    rows = dens.sum(axis=1) if periodic[1] else dens.sum(axis=1) - 0.5 * (dens[:, 0] + dens[:, -1])
    mass = rows.sum() if periodic[0] else rows.sum() - 0.5 * (rows[0] + rows[-1])
    return dens / (spacing[0] * spacing[1] * mass)
