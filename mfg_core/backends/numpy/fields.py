r"""The fixed-point loop's arithmetic on whole space-time fields (numpy reference).

The damped update of a field ``X`` towards its Picard image ``X*`` and the three norms the loop
needs from it, in the space-time L2 norm ``||X||^2 = dt sum_n sum_i w_i X_ni^2``:

    X <- X + theta (X* - X),    ||X* - X||,  ||X*||,  ||X_new||.

Built once from the scheme (``make_relax(scheme)``), like the kernels. The weights are the grid's
trapezoidal ones, ``w = c - deficit`` with the deficit non-zero only on boundary nodes, so a weighted
sum of squares is one BLAS dot over the whole array plus a correction on those few nodes: no
full-size temporary. Backends whose kernels return host arrays and have no ``fields`` module of
their own run this one (it is host arithmetic on numpy arrays, not a kernel).
"""

from __future__ import annotations

import math

import numpy as np


class WeightedSquares:
    """``sum_n sum_i w_i X_ni^2`` for fields of the scheme's shape."""

    def __init__(self, scheme):
        w = np.ascontiguousarray(scheme.grid.weights.ravel())
        self.shape = (scheme.Nt + 1, w.size)
        self.c = float(w.max())
        self.edge = np.flatnonzero(w != self.c)
        self.deficit = self.c - w[self.edge]

    def __call__(self, X: np.ndarray) -> float:
        X = np.ascontiguousarray(X).reshape(self.shape)
        flat = X.reshape(-1)
        total = self.c * float(np.dot(flat, flat))
        if self.edge.size:
            E = X[:, self.edge]
            total -= float(np.einsum("ij,ij->j", E, E) @ self.deficit)
        return total


def make_relax(scheme):
    """``relax(X, X_star, theta) -> (X, n_diff, n_star, n_new)``: the damped update in place (the
    loop owns ``X``) and the three norms; the difference goes into one scratch buffer kept between
    calls (a fresh full-size array per call costs its page faults on a fine grid)."""
    sq = WeightedSquares(scheme)
    dt = scheme.dt
    scratch = {}

    def relax(X, X_star, theta):
        d = scratch.get(X.shape)
        if d is None:
            d = scratch[X.shape] = np.empty_like(X)
        np.subtract(X_star, X, out=d)
        n_diff = math.sqrt(dt * sq(d))
        d *= theta
        X += d
        return X, n_diff, math.sqrt(dt * sq(X_star)), math.sqrt(dt * sq(X))

    relax.squares = sq
    return relax
