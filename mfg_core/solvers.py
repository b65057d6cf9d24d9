"""Thin solver classes: validate inputs, build the kernel from the backend once, convert at the boundary.

The numerics live in ``mfg_core/backends/<name>/fdm.py`` (the numpy reference states the scheme);
these classes hold the problem, the backend, the kernel built for the problem's scheme and the last
run's diagnostics. ``solve`` takes and returns numpy arrays; ``solve_native`` is the same solve on the
backend's own arrays (on its device), which the fixed-point loop uses so that the fields never leave
the device between iterations.
"""

from __future__ import annotations

import time

import numpy as np

from . import validation
from .backends import Backend, get_backend
from .errors import ConvergenceError, NonFiniteError
from .problem import MFGProblem

__all__ = ["HJBFDMSolver", "FPFDMSolver", "ConvergenceError", "NonFiniteError", "check_field"]


def check_field(name: str, arr, shape: tuple[int, ...]) -> np.ndarray:
    """``arr`` as float64 of ``shape``, finite (``ValueError`` naming ``name`` and where it is not)."""
    arr = np.asarray(arr, dtype=np.float64)
    if arr.shape != shape:
        dims = "(len(t), len(x))" if len(shape) == 2 else "(len(t), len(y), len(x))"
        raise ValueError(f"{name} must have shape {dims} = {shape}, got {arr.shape}")
    # a sum is finite exactly when every term is (or it overflowed, which the full test then clears):
    # one pass and no temporary instead of a full-size boolean array
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.add.reduce(arr, axis=None)
    if not np.isfinite(total) and not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{name} contains NaN or inf (first at time index {bad[0]}, space index "
                         f"{', '.join(str(int(i)) for i in bad[1:])})")
    return arr


def check_problem(problem) -> MFGProblem:
    if not isinstance(problem, MFGProblem):
        raise ValueError(f"problem must be an MFGProblem, got {type(problem).__name__}")
    return problem


class KernelSolver:
    """A solver whose kernel is built from its backend and the problem's scheme (rebuilt on
    :meth:`use_backend`)."""

    backend: Backend
    problem: MFGProblem

    def __init__(self, problem: MFGProblem, backend: str | Backend | None):
        self.problem = check_problem(problem)
        self.last_seconds = 0.0
        self.use_backend(backend)

    def use_backend(self, backend: str | Backend | None) -> None:
        """Run this solver's kernels on ``backend`` from now on (raises if it is not installed)."""
        self.backend = get_backend(backend)
        self.fields = self.backend.make_fields(self.problem.scheme)
        self._kernel = self._build(self.backend)

    def _check_native(self, name: str, X):
        """``X`` (a numpy array or the backend's) as the backend's array, checked like ``check_field``."""
        if isinstance(X, np.ndarray) or not hasattr(X, "shape"):
            return self.fields.asarray(check_field(name, X, self.problem.shape))
        if tuple(X.shape) != self.problem.shape:
            raise ValueError(f"{name} must have shape {self.problem.shape}, got {tuple(X.shape)}")
        if not self.fields.finite(X):
            raise ValueError(f"{name} contains NaN or inf")
        return X

    def solve(self, X: np.ndarray) -> np.ndarray:
        """The solve on numpy arrays (see :meth:`solve_native`)."""
        return self.fields.to_host(self.solve_native(X))

    def solve_native(self, X):  # pragma: no cover - abstract
        raise NotImplementedError

    def _build(self, backend: Backend):  # pragma: no cover - abstract
        raise NotImplementedError


class HJBFDMSolver(KernelSolver):
    """Implicit-Euler, Engquist-Osher upwind HJB solver with Newton at every time step.

    ``solve(M)`` returns ``U`` of shape ``problem.shape`` (``(Nt+1, N)``, in 2D ``(Nt+1, Ny', Nx')``) with ``U[Nt] = g``; step ``n`` uses the
    coupling ``F(M[n+1])``. ``newton_tol`` bounds the dt-scaled Newton residual relative to
    ``max(1, max|u|)``. After a solve, ``newton_iterations`` holds the Newton steps per time step.
    """

    def __init__(self, problem: MFGProblem, backend: str | Backend | None = "numpy", *,
                 newton_tol: float = 1e-12, newton_maxiter: int = 50):
        self.newton_tol = validation.positive("newton_tol", newton_tol)
        self.newton_maxiter = validation.integer("newton_maxiter", newton_maxiter, 1)
        super().__init__(problem, backend)
        self.newton_iterations = np.zeros(self.problem.Nt, dtype=np.int64)
        self.diagnostics: dict = {}

    def _build(self, backend):
        self._V, self._g = self.problem.V, self.fields.asarray(self.problem.g)
        return backend.make_hjb_sweep(self.problem.scheme, newton_tol=self.newton_tol,
                                      newton_maxiter=self.newton_maxiter)

    def solve_native(self, M):
        """Solve the HJB equation backward for a given density history ``M`` (the backend's arrays).

        The coupling ``F`` is a numpy callable, so ``V + F(M)`` is formed on the host and sent to
        the device once per solve (on the CPU both conversions are no-ops).
        """
        p = self.problem
        M = self._check_native("M", M)
        M_host = self.fields.to_host(M)
        source = p.F(M_host)
        if not np.may_share_memory(source, M_host) and source.flags.writeable:
            source += self._V
        else:
            source = source + self._V  # a coupling may hand back (a view of) its argument
        start = time.perf_counter()
        U, its = self._kernel(self.fields.asarray(source), self._g)
        self.last_seconds = time.perf_counter() - start
        self.diagnostics = dict(getattr(self._kernel, "diagnostics", None) or {})
        self.newton_iterations = its = np.asarray(self.backend.to_host(its), dtype=np.int64)
        if np.any(its < 0):
            if not np.all(np.isfinite(source)):
                raise NonFiniteError("V + F(M) is not finite: the coupling is undefined for this density "
                                     f"(min M = {self.fields.min(M):.3g})")
            k = int(np.flatnonzero(its < 0)[-1])
            raise ConvergenceError(f"HJB Newton did not reach newton_tol={self.newton_tol:g} in "
                                   f"{self.newton_maxiter} steps at t={p.t[k]:.6g} (time index {k})")
        return U

    def warmup(self) -> float:
        """Run the kernel once on this problem's shape (jit compilation); returns the seconds taken."""
        start = time.perf_counter()
        self._kernel(self.fields.zeros(), self._g)
        return time.perf_counter() - start


class FPFDMSolver(KernelSolver):
    """Implicit FP solver: the discrete adjoint of the linearised HJB operator.

    ``solve(U)`` returns ``M`` with ``M[0] = m0``; the discrete mass ``sum(weights * M[n])`` is 1 to
    round-off and ``M >= 0`` (see ``mfg_core/backends/numpy/fdm.py``).
    """

    def __init__(self, problem: MFGProblem, backend: str | Backend | None = "numpy"):
        super().__init__(problem, backend)
        self.diagnostics: dict = {}

    def _build(self, backend):
        self._mu0 = self.fields.asarray(self.problem.weights * self.problem.m_init)
        self._w = self.fields.asarray(self.problem.weights)
        return backend.make_fp_sweep(self.problem.scheme)

    def solve_native(self, U):
        """Solve the FP equation forward for the drift ``-U_x / lam`` (the backend's arrays)."""
        U = self._check_native("U", U)
        start = time.perf_counter()
        mu = self._kernel(U, self._mu0)
        self.last_seconds = time.perf_counter() - start
        self.diagnostics = dict(getattr(self._kernel, "diagnostics", None) or {})
        if isinstance(mu, np.ndarray):
            M = np.array(mu, dtype=np.float64, copy=None)
            if not M.flags.writeable:
                M = M.copy()
            M /= self._w
            return M
        return mu / self._w

    def warmup(self) -> float:
        """Run the kernel once on this problem's shape (jit compilation); returns the seconds taken."""
        start = time.perf_counter()
        self._kernel(self.fields.zeros(), self._mu0)
        return time.perf_counter() - start
