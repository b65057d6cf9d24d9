"""The FFT step of the binned Gaussian KDE, shared by the numpy and numba backends.

Both backends bin samples with their own kernels and then use numpy's FFT (numba has no FFT), so
this last step is written once. jax and torch keep their own (``jnp.fft``, ``torch.fft``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def density_from_counts(counts: np.ndarray, dx: float, h: float, periodic: bool,
                        kernel: Callable[[int, float, float], np.ndarray]) -> np.ndarray:
    r"""Convolve linear-binned ``counts`` on ``K`` nodes with a Gaussian of bandwidth ``h``.

    Periodic: circular convolution with the periodised Gaussian ``kernel(K, dx, h)``. Neumann:
    the counts are mirrored about both walls (period ``2 (K - 1) dx``; the wall nodes, which the
    mirror does not duplicate, count twice), which is the reflection of the kernel at the walls.
    The result is clipped at 0 (FFT round-off) and scaled to mass 1 in the grid's quadrature
    (trapezoidal for Neumann, uniform for periodic).
    """
    K = counts.shape[0]
    if periodic:
        e = counts
    else:
        e = np.concatenate([counts, counts[-2:0:-1]])
        e[0] *= 2.0
        e[K - 1] *= 2.0
    P = e.shape[0]
    g = kernel(P, dx, h)
    dens = np.fft.irfft(np.fft.rfft(e) * np.fft.rfft(g), n=P)[:K]
    dens = np.maximum(dens, 0.0)
    mass = dx * dens.sum()
    if not periodic:
        mass -= 0.5 * dx * (dens[0] + dens[-1])
    return dens / mass
