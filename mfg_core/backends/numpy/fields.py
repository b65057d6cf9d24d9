r"""The fixed-point loop's arithmetic on whole space-time fields, for one backend's arrays (numpy).

A :class:`Fields` object, built once from the scheme by the backend (``backend.make_fields(scheme)``),
is everything the loop, its update rules and the solvers do to the fields ``U``, ``M`` between the
kernels: conversions (``asarray``: to the backend's own array type on its device; ``to_host``),
construction (``tile`` a row over time), checks (``finite``), measurements returned as Python
floats -- the space-time L2 norm ``||X||^2 = dt sum_n sum_i w_i X_ni^2``, relative changes, the mass
error ``max_n |sum_i w_i M_ni - 1|``, the minimum -- and the damped update with its norms,

    X <- X + theta (X* - X),    ||X* - X||,  ||X*||,  ||X_new||.

So the arrays of a backend that runs on a device stay there through the whole loop; only scalars
come back. This module is the reference on numpy arrays; a backend without a ``fields`` module of its
own (its kernels return numpy arrays) runs it. The weights are the grid's trapezoidal ones,
``w = c - deficit`` with the deficit non-zero only on boundary nodes, so a weighted sum of squares is
one BLAS dot over the whole array plus a correction on those few nodes: no full-size temporary.
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


class Fields:
    """The loop's field arithmetic on numpy arrays (see the module docstring)."""

    def __init__(self, scheme):
        self.scheme = scheme
        self.shape = scheme.shape
        self.dt = scheme.dt
        self._sq = WeightedSquares(scheme)
        self._w = np.ascontiguousarray(scheme.grid.weights.ravel())
        self._scratch: np.ndarray | None = None

    # --- arrays -----------------------------------------------------------------------------------
    def asarray(self, x) -> np.ndarray:
        """``x`` as this backend's float64 array."""
        return np.asarray(x, dtype=np.float64)

    def to_host(self, x) -> np.ndarray:
        return np.asarray(x, dtype=np.float64)

    def tile(self, row) -> np.ndarray:
        """A space-time field equal to ``row`` at every time (a new array)."""
        return np.broadcast_to(self.asarray(row), self.shape).copy()

    def zeros(self) -> np.ndarray:
        return np.zeros(self.shape)

    # --- measurements (Python floats) -------------------------------------------------------------
    def finite(self, X) -> bool:
        """Whether every entry is finite (a sum is finite exactly when every term is, or it
        overflowed, which the full test then clears: one pass, no boolean temporary)."""
        with np.errstate(over="ignore", invalid="ignore"):
            total = np.add.reduce(X, axis=None)
        return bool(np.isfinite(total) or np.all(np.isfinite(X)))

    def norm(self, X) -> float:
        """``||X||``; NaN or inf if ``X`` has any."""
        return math.sqrt(self.dt * self._sq(X))

    def relative_change(self, new, old) -> float:
        """``||new - old|| / ||new||`` (denominator floored at 1e-300)."""
        return self.norm(new - old) / max(self.norm(new), 1e-300)

    def mass_error(self, M) -> float:
        """``max_n |sum_i w_i M_ni - 1|``."""
        mass = np.asarray(M).reshape(self.shape[0], -1) @ self._w
        return float(np.max(np.abs(mass - 1.0)))

    def min(self, X) -> float:
        return float(np.min(X))

    # --- the damped update ------------------------------------------------------------------------
    def relax(self, X, X_star, theta):
        """``X <- X + theta (X* - X)``; returns it with ``||X* - X||``, ``||X*||``, ``||X_new||``.

        In place (the loop owns ``X``); the difference goes into one scratch buffer kept between
        calls (a fresh full-size array per call costs its page faults on a fine grid).
        """
        if self._scratch is None or self._scratch.shape != X.shape:
            self._scratch = np.empty_like(X)
        d = np.subtract(X_star, X, out=self._scratch)
        n_diff = math.sqrt(self.dt * self._sq(d))
        d *= theta
        X += d
        return X, n_diff, math.sqrt(self.dt * self._sq(X_star)), math.sqrt(self.dt * self._sq(X))


def make_fields(scheme) -> Fields:
    return Fields(scheme)
