r"""The fixed-point loop's field arithmetic on jax arrays on the backend's device.

On the CPU the jax kernels hand back numpy views of their buffers (see :mod:`mfg_core.backends.jax`),
so there this is the numpy reference :class:`mfg_core.backends.numpy.fields.Fields`, unchanged. On
an accelerator the fields are jax arrays on it: the norms, the mass error and the damped update

    X <- X + theta (X* - X),    ||X* - X||,  ||X*||,  ||X_new||

run there as jitted functions (one fused program per call; the update is functional, a new array),
and only their scalars come back. ``keep_native=True`` takes the device path on the CPU as well
(the tests check it against the reference there).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ..numpy.fields import Fields as _Fields
from . import resolve_device


@jax.jit
def _squares(X, w):
    return jnp.sum(X.reshape(X.shape[0], -1) ** 2 @ w)


@jax.jit
def _relax(X, X_star, theta, w):
    shape = (X.shape[0], -1)
    d = X_star - X
    new = X + theta * d
    return (new, jnp.sum((d * d).reshape(shape) @ w), jnp.sum((X_star * X_star).reshape(shape) @ w),
            jnp.sum((new * new).reshape(shape) @ w))


@jax.jit
def _mass_error(M, w):
    return jnp.max(jnp.abs(M.reshape(M.shape[0], -1) @ w - 1.0))


class Fields(_Fields):
    """The reference's arithmetic, on jax arrays on ``device`` when it is not the CPU (or
    ``keep_native``)."""

    def __init__(self, scheme, device="cpu", keep_native: bool = False):
        super().__init__(scheme)
        self.device = resolve_device(device)
        self.native = keep_native or self.device.platform != "cpu"
        if self.native:
            self._wd = jax.device_put(self._w, self.device)

    def asarray(self, x):
        if not self.native:
            return super().asarray(x)
        if isinstance(x, jax.Array):
            return jax.device_put(x.astype(jnp.float64), self.device)
        return jax.device_put(np.asarray(x, dtype=np.float64), self.device)

    def to_host(self, x) -> np.ndarray:
        return np.asarray(jax.device_get(x), dtype=np.float64)

    def tile(self, row):
        if not self.native:
            return super().tile(row)
        return jnp.broadcast_to(self.asarray(row), self.shape)

    def zeros(self):
        if not self.native:
            return super().zeros()
        return jax.device_put(jnp.zeros(self.shape), self.device)

    def finite(self, X) -> bool:
        if not isinstance(X, jax.Array):
            return super().finite(X)
        return bool(jnp.all(jnp.isfinite(X)))

    def norm(self, X) -> float:
        if not isinstance(X, jax.Array):
            return super().norm(X)
        return math.sqrt(self.dt * float(_squares(X, self._wd)))

    def mass_error(self, M) -> float:
        if not isinstance(M, jax.Array):
            return super().mass_error(M)
        return float(_mass_error(M, self._wd))

    def min(self, X) -> float:
        return float(jnp.min(X)) if isinstance(X, jax.Array) else super().min(X)

    def relax(self, X, X_star, theta):
        if not self.native:
            return super().relax(X, X_star, theta)
        new, a, b, c = _relax(self.asarray(X), self.asarray(X_star), float(theta), self._wd)
        a, b, c = jax.device_get((a, b, c))
        return new, math.sqrt(self.dt * float(a)), math.sqrt(self.dt * float(b)), math.sqrt(self.dt * float(c))


def make_fields(scheme, device="cpu") -> Fields:
    return Fields(scheme, device)
