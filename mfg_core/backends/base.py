"""The kernel interface every backend implements, and the object solvers hold.

A backend is a sub-package ``mfg_core.backends.<name>`` (registered, with the library it needs and
the pip extra that installs it, in :data:`mfg_core.backends.REGISTRY`) with

* ``__init__.py`` -- ``version()``; a backend that can run on another device than the CPU (jax, torch)
  also has ``resolve_device(name)`` (raises ``ValueError`` naming the device and the devices found)
  and ``to_host(array)``, and its factories take ``device=``;
* ``fdm.py`` -- kernel factories ``make_hjb_sweep(scheme, *, newton_tol, newton_maxiter)`` and
  ``make_fp_sweep(scheme)`` (the finite-difference scheme; the numpy reference states it);
* ``particles.py`` -- ``make_particle_sweep(scheme, *, bandwidth, scale_by_std)`` and
  ``make_kde(grid)`` (particle Fokker-Planck kernels);
* optionally ``fields.py`` -- ``make_fields(scheme)``, the loop's arithmetic on the backend's arrays
  (without it: numpy's), and ``block_sweeps.py`` -- ``make_block_sweeps(scheme)``, the time sweeps
  of Newton's 1D linear solves (without it, ``newton`` does not run on the backend).

A kernel may also set ``kernel.diagnostics`` (a dict of counts) after each call: the 2D HJB sweeps
report ``newton_steps`` and ``krylov_iterations`` (linear iterations over the sweep), the 2D FP
sweeps ``krylov_iterations``; the iterative ones (numba, jax, torch) also ``krylov_unconverged``
(solves still short of their tolerance after :mod:`.krylov2d`'s caps). The solvers pass them on
(``solver.diagnostics``) and the fixed-point loop records them per iteration.

A factory validates the :class:`~mfg_core.grid.Scheme` (or grid) and the settings once
(:mod:`mfg_core.backends.checks`) and returns a kernel that closes over the constants; kernels take
float64 numpy arrays or the backend's own, and return the backend's arrays (on the CPU numpy arrays
or views of them; on a device, device arrays: ``to_host`` brings them back), so the solvers stay
backend-agnostic and the numerics are identical. Every backend's factories dispatch on
``scheme.grid.dim`` (2D: ``fdm2d.py``, ``particles2d.py``); a factory refuses a grid dimension it
has no kernel for, naming the backend: nothing falls back to another backend.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType


class BackendUnavailableError(ImportError):
    """Raised when a requested backend's library is not installed (never a silent fallback)."""


class Backend:
    """Handle on one backend: its name, its library version and its kernels.

    Kernel modules are imported on first use, so that ``get_backend("numba")`` is cheap and a backend
    whose particle kernels are not needed never imports them.
    """

    def __init__(self, name: str, package: str, library: str | None, extra: str | None, device: str = "cpu"):
        self.name = name
        self._package = package
        self.library = library
        self.extra = extra
        self.device = device
        self._modules: dict[str, ModuleType] = {}

    def __repr__(self) -> str:  # pragma: no cover - cosmetic
        return f"Backend({self.name!r}, version={self.version!r}, device={self.device!r})"

    def _device_kwargs(self) -> dict:
        # only the device backends' factories take a device (the CPU ones refuse any other at get_backend)
        package = importlib.import_module(self._package)
        return {"device": self.device} if hasattr(package, "resolve_device") else {}

    def to_host(self, x):
        """A kernel's output as a numpy array (a device array is copied to the host)."""
        convert = getattr(importlib.import_module(self._package), "to_host", None)
        return convert(x) if convert is not None else x

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

    # --- kernel factories ----------------------------------------------------------------------
    def make_hjb_sweep(self, scheme, *, newton_tol: float = 1e-12, newton_maxiter: int = 50):
        """``sweep(source, terminal) -> (U, newton_its)``; see :mod:`mfg_core.backends.numpy.fdm`."""
        return self._module("fdm").make_hjb_sweep(scheme, newton_tol=newton_tol, newton_maxiter=newton_maxiter,
                                                  **self._device_kwargs())

    def make_fp_sweep(self, scheme):
        """``sweep(U, mu0) -> mu`` (adjoint scheme); see :mod:`mfg_core.backends.numpy.fdm`."""
        return self._module("fdm").make_fp_sweep(scheme, **self._device_kwargs())

    def make_particle_sweep(self, scheme, *, bandwidth: float, scale_by_std: bool):
        """``sweep(X0, noise, grad_u) -> (X, M, crossed, h)``; see :mod:`mfg_core.backends.numpy.particles`."""
        return self._module("particles").make_particle_sweep(scheme, bandwidth=bandwidth, scale_by_std=scale_by_std,
                                                             **self._device_kwargs())

    def make_fields(self, scheme):
        """The fixed-point loop's field arithmetic on this backend's arrays; see
        :mod:`mfg_core.backends.numpy.fields`. A backend without a ``fields`` module (its kernels
        return host numpy arrays) runs the numpy reference: host arithmetic, not a kernel of its own."""
        if importlib.util.find_spec(f"{self._package}.fields") is None:
            return importlib.import_module("mfg_core.backends.numpy.fields").make_fields(scheme)
        return self._module("fields").make_fields(scheme, **self._device_kwargs())

    def make_block_sweeps(self, scheme):
        """``factor(lower, diag, upper) -> sweeps`` with ``back(r)``, ``forward(r)``: the 1D time sweeps
        of Newton's linear solves; see :mod:`mfg_core.backends.numpy.block_sweeps`. A backend without
        them refuses by name (the registry runs ``newton`` only where they exist)."""
        if importlib.util.find_spec(f"{self._package}.block_sweeps") is None:
            raise ValueError(f"backend {self.name!r} has no block time sweeps (Newton's linear solves); "
                             "coupling='newton' runs on numpy and numba")
        return self._module("block_sweeps").make_block_sweeps(scheme)

    def make_kde(self, grid):
        """``kde(samples, bandwidth, scale_by_std) -> density``; see :mod:`mfg_core.backends.numpy.particles`."""
        return self._module("particles").make_kde(grid, **self._device_kwargs())
