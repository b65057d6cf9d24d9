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
