"""The kernel interface every backend implements, and the object solvers hold.

A backend is a sub-package ``mfg_core.backends.<name>`` with

* ``__init__.py`` -- ``LIBRARY`` (the import name of the library it needs, or ``None``),
  ``EXTRA`` (the pip extra that installs it) and ``version()``;
* ``fdm.py`` -- ``hjb_sweep`` and ``fp_sweep`` (the finite-difference kernels, see below);
* ``particles.py`` -- ``particle_sweep`` and ``kde_on_grid`` (particle Fokker-Planck kernels).

Kernels take and return plain float64 numpy arrays; a backend converts to its own array type inside
the kernel, so that the solvers stay backend-agnostic and the numerics are identical.

The finite-difference scheme (shared by every backend, see ``mfg_core/backends/numpy/fdm.py`` for
the reference implementation and the equations).
"""

from __future__ import annotations

import importlib
from types import ModuleType


class BackendUnavailableError(ImportError):
    """Raised when a requested backend's library is not installed (never a silent fallback)."""


class Backend:
    """Handle on one backend: its name, its library version and its kernels.

    Kernel modules are imported on first use, so that ``get_backend("numba")`` is cheap and a backend
    whose particle kernels are not needed never imports them.
    """

    def __init__(self, name: str, package: str, library: str | None, extra: str | None):
        self.name = name
        self._package = package
        self.library = library
        self.extra = extra
        self._modules: dict[str, ModuleType] = {}

    def __repr__(self) -> str:  # pragma: no cover - cosmetic
        return f"Backend({self.name!r}, version={self.version!r})"

    @property
    def version(self) -> str:
        """Version string of the library that runs the kernels (numpy's for the numpy backend)."""
        return importlib.import_module(self._package).version()

    def _module(self, which: str) -> ModuleType:
        mod = self._modules.get(which)
        if mod is None:
            mod = importlib.import_module(f"{self._package}.{which}")
            self._modules[which] = mod
        return mod

    # --- finite differences -------------------------------------------------------------------
    def hjb_sweep(self, source, terminal, *, dt, dx, nu, lam, periodic, newton_tol, newton_maxiter):
        """Backward HJB sweep; see :func:`mfg_core.backends.numpy.fdm.hjb_sweep`."""
        return self._module("fdm").hjb_sweep(
            source, terminal, dt=dt, dx=dx, nu=nu, lam=lam, periodic=periodic,
            newton_tol=newton_tol, newton_maxiter=newton_maxiter,
        )

    def fp_sweep(self, U, mu0, *, dt, dx, nu, lam, periodic):
        """Forward FP sweep (adjoint scheme); see :func:`mfg_core.backends.numpy.fdm.fp_sweep`."""
        return self._module("fdm").fp_sweep(U, mu0, dt=dt, dx=dx, nu=nu, lam=lam, periodic=periodic)

    # --- particles ------------------------------------------------------------------------------
    def particles(self) -> ModuleType:
        """The backend's particle-kernel module (``particle_sweep``, ``kde_on_grid``)."""
        return self._module("particles")
