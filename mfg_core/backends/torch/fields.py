r"""The fixed-point loop's field arithmetic on torch tensors on the backend's device.

On the CPU the torch kernels hand back numpy arrays sharing their tensors' memory (see
:mod:`mfg_core.backends.torch`), so there this is the numpy reference
:class:`mfg_core.backends.numpy.fields.Fields`, unchanged. On a CUDA device the fields are float64
tensors on it: the norms, the mass error and the damped update

    X <- X + theta (X* - X),    ||X* - X||,  ||X*||,  ||X_new||

run there (the update in place, the three sums stacked into one tensor so that one transfer brings
them back). ``keep_native=True`` takes the device path on the CPU as well (the tests check it
against the reference there).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..numpy.fields import Fields as _Fields
from . import resolve_device


class Fields(_Fields):
    """The reference's arithmetic, on tensors on ``device`` when it is not the CPU (or
    ``keep_native``)."""

    def __init__(self, scheme, device="cpu", keep_native: bool = False):
        super().__init__(scheme)
        self.device = resolve_device(device)
        self.native = keep_native or self.device.type != "cpu"
        if self.native:
            self._wd = torch.tensor(self._w, dtype=torch.float64, device=self.device)

    def asarray(self, x):
        if not self.native:
            return super().asarray(x)
        if isinstance(x, np.ndarray) and not x.flags.writeable:
            x = x.copy()  # a tensor may be written to; a read-only array (the problem's g) is not shared
        return torch.as_tensor(x, dtype=torch.float64, device=self.device)

    def to_host(self, x) -> np.ndarray:
        if isinstance(x, torch.Tensor):
            return x.detach().cpu().numpy()
        return np.asarray(x, dtype=np.float64)

    def tile(self, row):
        if not self.native:
            return super().tile(row)
        return self.asarray(row).expand(self.shape).clone()

    def zeros(self):
        if not self.native:
            return super().zeros()
        return torch.zeros(self.shape, dtype=torch.float64, device=self.device)

    def _sums(self, *arrays) -> list[float]:
        rows = self.shape[0]
        return torch.stack([((X * X).reshape(rows, -1) @ self._wd).sum() for X in arrays]).tolist()

    def finite(self, X) -> bool:
        if not isinstance(X, torch.Tensor):
            return super().finite(X)
        return bool(torch.isfinite(X).all())

    def norm(self, X) -> float:
        if not isinstance(X, torch.Tensor):
            return super().norm(X)
        return math.sqrt(self.dt * self._sums(X)[0])

    def mass_error(self, M) -> float:
        if not isinstance(M, torch.Tensor):
            return super().mass_error(M)
        return float((M.reshape(self.shape[0], -1) @ self._wd - 1.0).abs().max())

    def min(self, X) -> float:
        return float(X.min()) if isinstance(X, torch.Tensor) else super().min(X)

    def relax(self, X, X_star, theta):
        if not self.native:
            return super().relax(X, X_star, theta)
        X, X_star = self.asarray(X), self.asarray(X_star)
        d = X_star - X
        a, b = self._sums(d, X_star)
        X.add_(d, alpha=float(theta))
        (c,) = self._sums(X)
        return X, math.sqrt(self.dt * a), math.sqrt(self.dt * b), math.sqrt(self.dt * c)


def make_fields(scheme, device="cpu") -> Fields:
    return Fields(scheme, device)
