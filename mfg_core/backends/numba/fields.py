r"""The fixed-point loop's damped update, fused into one compiled pass (numba).

Same update and norms as the reference :mod:`mfg_core.backends.numpy.fields`: ``X <- X + theta
(X* - X)`` in place, with ``||X* - X||``, ``||X*||`` and ``||X_new||``. numpy needs six passes over
the two fields (difference, three norms, scale, add), each a trip through memory on a fine grid;
here one loop reads ``X`` and ``X*`` once and writes ``X`` once. The new iterate is rounded exactly
as the reference's (the same operations in the same order); the sums are reassociated (so that they
vectorise) and agree with the reference's to round-off.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


# reassociation only (no contraction into FMAs, no other fast-math): the sums vectorise, the
# new iterate keeps the reference's rounding
@njit(cache=True, fastmath={"reassoc"})
def _relax(X, X_star, theta, w):
    rows, cols = X.shape
    s_diff = 0.0
    s_star = 0.0
    s_new = 0.0
    for i in range(rows):
        a = 0.0
        b = 0.0
        c = 0.0
        for j in range(cols):
            xs = X_star[i, j]
            d = xs - X[i, j]
            x = X[i, j] + theta * d
            X[i, j] = x
            wj = w[j]
            a += wj * d * d
            b += wj * xs * xs
            c += wj * x * x
        s_diff += a
        s_star += b
        s_new += c
    return s_diff, s_star, s_new


def make_relax(scheme):
    """``relax(X, X_star, theta) -> (X, n_diff, n_star, n_new)`` in one compiled pass."""
    w = np.ascontiguousarray(scheme.grid.weights.ravel())
    shape = (scheme.Nt + 1, w.size)
    dt = scheme.dt

    def relax(X, X_star, theta):
        a, b, c = _relax(X.reshape(shape), np.ascontiguousarray(X_star).reshape(shape), float(theta), w)
        return X, math.sqrt(dt * a), math.sqrt(dt * b), math.sqrt(dt * c)

    return relax
