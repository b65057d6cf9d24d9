"""Thin solver classes: validate inputs, build the kernel from the backend once, convert at the boundary.

The numerics live in ``mfg_core/backends/<name>/fdm.py`` (the numpy reference states the scheme);
these classes hold the problem, the backend, the kernel built for the problem's scheme and the last
run's diagnostics.
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
        self._kernel = self._build(self.backend)

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
        return backend.make_hjb_sweep(self.problem.scheme, newton_tol=self.newton_tol,
                                      newton_maxiter=self.newton_maxiter)

    def solve(self, M: np.ndarray) -> np.ndarray:
        """Solve the HJB equation backward for a given density history ``M``."""
        p = self.problem
        M = check_field("M", M, p.shape)
        source = p.F(M)
        if np.may_share_memory(source, M) or not source.flags.writeable:
            source = source + p.V  # a coupling may hand back (a view of) its argument
        else:
            source += p.V
        start = time.perf_counter()
        U, its = self._kernel(source, p.g)
        self.last_seconds = time.perf_counter() - start
        self.diagnostics = dict(getattr(self._kernel, "diagnostics", None) or {})
        U = np.asarray(self.backend.to_host(U), dtype=np.float64)
        self.newton_iterations = its = np.asarray(its, dtype=np.int64)
        if np.any(its < 0):
            if not np.all(np.isfinite(source)):
                raise NonFiniteError("V + F(M) is not finite: the coupling is undefined for this density "
                                     f"(min M = {M.min():.3g})")
            k = int(np.flatnonzero(its < 0)[-1])
            raise ConvergenceError(f"HJB Newton did not reach newton_tol={self.newton_tol:g} in "
                                   f"{self.newton_maxiter} steps at t={p.t[k]:.6g} (time index {k})")
        return U

    def warmup(self) -> float:
        """Run the kernel once on this problem's shape (jit compilation); returns the seconds taken."""
        start = time.perf_counter()
        self._kernel(np.zeros(self.problem.shape), self.problem.g)
        return time.perf_counter() - start


class FPFDMSolver(KernelSolver):
    """Implicit FP solver: the discrete adjoint of the linearised HJB operator.

    ``solve(U)`` returns ``M`` with ``M[0] = m0``; the discrete mass ``sum(weights * M[n])`` is 1 to
    round-off and ``M >= 0`` (see ``mfg_core/backends/numpy/fdm.py``).
    """

    def __init__(self, problem: MFGProblem, backend: str | Backend | None = "numpy"):
        super().__init__(problem, backend)
        self._mu0 = self.problem.weights * self.problem.m_init
        self.diagnostics: dict = {}

    def _build(self, backend):
        return backend.make_fp_sweep(self.problem.scheme)

    def solve(self, U: np.ndarray) -> np.ndarray:
        """Solve the FP equation forward for the drift ``-U_x / lam``."""
        U = check_field("U", U, self.problem.shape)
        start = time.perf_counter()
        mu = self._kernel(U, self._mu0)
        self.last_seconds = time.perf_counter() - start
        self.diagnostics = dict(getattr(self._kernel, "diagnostics", None) or {})
        M = np.array(self.backend.to_host(mu), dtype=np.float64, copy=None)
        if not M.flags.writeable:
            M = M.copy()
        M /= self.problem.weights
        return M

    def warmup(self) -> float:
        """Run the kernel once on this problem's shape (jit compilation); returns the seconds taken."""
        start = time.perf_counter()
        self._kernel(np.zeros(self.problem.shape), self._mu0)
        return time.perf_counter() - start
