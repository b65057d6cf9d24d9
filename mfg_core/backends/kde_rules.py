r"""Constants and host-side rules of the binned FFT KDE that every backend's particle kernels share.

The numerics are stated in :mod:`mfg_core.backends.numpy.particles`; here are only the pieces each
backend must use identically so that their densities agree to round-off:

* the circular convolution that realises the boundary has ``P = K`` nodes (periodic) or
  ``P = 2 (K - 1)`` (Neumann: the grid mirrored about both walls), period ``Lp = P dx``;
* the periodised Gaussian is an image sum over ``m = -2..2`` when ``h <= IMAGE_LIMIT * Lp`` and a
  Fourier series of ``FOURIER_MODES`` modes otherwise (both exact to double precision);
* the bandwidth is ``factor * spread`` with ``spread`` the sample standard deviation (Neumann) or
  the circular one, :func:`circular_spread` (periodic).
"""

from __future__ import annotations

import math

#: image-sum / Fourier-series switch and number of Fourier modes of the periodised Gaussian
IMAGE_LIMIT = 1.0 / 19.0
FOURIER_MODES = 117
#: the images m = -2..2 of the periodised Gaussian
IMAGES = (-2, -1, 0, 1, 2)


def period_nodes(K: int, periodic: bool) -> int:
    """Nodes ``P`` of the circular convolution on a grid of ``K`` nodes."""
    return K if periodic else 2 * (K - 1)


def period(K: int, dx: float, periodic: bool) -> float:
    """Period ``Lp = P dx`` of the circular convolution."""
    return period_nodes(K, periodic) * dx


def circular_spread(R: float, Lp: float) -> float:
    """Circular standard deviation ``Lp/(2 pi) sqrt(-2 log R)`` of a sample whose mean resultant
    length is ``R`` (capped at ``Lp``; ``Lp`` if ``R = 0``)."""
    if R <= 0.0:
        return Lp
    return min(Lp / (2.0 * math.pi) * math.sqrt(max(-2.0 * math.log(R), 0.0)), Lp)
