r"""The fixed-point loop's field arithmetic on numba's (numpy) arrays, with the damped update fused
into one compiled pass.

Everything as the reference :class:`mfg_core.backends.numpy.fields.Fields` but ``relax``:
``X <- X + theta (X* - X)`` in place, with ``||X* - X||``, ``||X*||`` and ``||X_new||``. numpy needs
six passes over the two fields (difference, three norms, scale, add), each a trip through memory on a
fine grid; here one loop reads ``X`` and ``X*`` once and writes ``X`` once. The new iterate is rounded
exactly as the reference's (the same operations in the same order); the sums are reassociated (so
that they vectorise) and agree with the reference's to round-off.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..numpy.fields import Fields as _Fields


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


class Fields(_Fields):
    """The reference's field arithmetic with the fused compiled ``relax``."""

    def relax(self, X, X_star, theta):
        shape = (self.shape[0], self._w.size)
        a, b, c = _relax(X.reshape(shape), np.ascontiguousarray(X_star).reshape(shape), float(theta), self._w)
        return X, math.sqrt(self.dt * a), math.sqrt(self.dt * b), math.sqrt(self.dt * c)


def make_fields(scheme) -> Fields:
    return Fields(scheme)
