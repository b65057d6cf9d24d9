"""Thin solver classes: validate inputs, pick the kernel from the backend, convert at the boundary.

The numerics live in ``mfg_core/backends/<name>/fdm.py`` (see the numpy reference for the scheme);
these classes hold the problem, the backend and the last run's diagnostics.
"""

from __future__ import annotations

import time

import numpy as np

from .backends import Backend, get_backend
from .problem import MFGProblem


class ConvergenceError(RuntimeError):
    """An inner solve (Newton) failed to converge, or an iterate became non-finite."""


class NonFiniteError(ConvergenceError):
    """A solve produced NaN or inf, or the coupling is not finite for the density it was given.

    Inside a fixed-point iteration this is divergence: the iterator re-raises it as
    :class:`mfg_core.DivergenceError` naming the iteration.
    """


def _check_field(name: str, arr, shape: tuple[int, int]) -> np.ndarray:
    arr = np.asarray(arr, dtype=np.float64)
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape (len(t), len(x)) = {shape}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{name} contains NaN or inf (first at time index {bad[0]}, space index {bad[1]})")
    return arr


class _BackendMixin:
    backend: Backend

    def use_backend(self, backend: str | Backend | None) -> None:
        """Run this solver's kernels on ``backend`` from now on (raises if it is not installed)."""
        self.backend = get_backend(backend)


class HJBFDMSolver(_BackendMixin):
    """Implicit-Euler, Engquist-Osher upwind HJB solver with Newton at every time step.

    ``solve(M)`` returns ``U`` of shape ``(Nt+1, N)`` with ``U[Nt] = g``; step ``n`` uses the
    coupling ``F(M[n+1])``. ``newton_tol`` bounds the dt-scaled Newton residual relative to
    ``max(1, max|u|)``. After a solve, ``newton_iterations`` holds the Newton steps per time step.
    """

    def __init__(self, problem: MFGProblem, backend: str | Backend | None = "numpy", *,
                 newton_tol: float = 1e-12, newton_maxiter: int = 50):
        if not isinstance(problem, MFGProblem):
            raise ValueError(f"problem must be an MFGProblem, got {type(problem).__name__}")
        if not (newton_tol > 0):
            raise ValueError(f"newton_tol must be > 0, got {newton_tol!r}")
        if int(newton_maxiter) < 1:
            raise ValueError(f"newton_maxiter must be >= 1, got {newton_maxiter!r}")
        self.problem = problem
        self.backend = get_backend(backend)
        self.newton_tol = float(newton_tol)
        self.newton_maxiter = int(newton_maxiter)
        self.newton_iterations = np.zeros(problem.Nt, dtype=np.int64)
        self.last_seconds = 0.0

    def _run(self, source: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = self.problem
        U, its = self.backend.hjb_sweep(
            source, p.g, dt=p.dt, dx=p.dx, nu=p.nu, lam=p.lam, periodic=p.periodic,
            newton_tol=self.newton_tol, newton_maxiter=self.newton_maxiter,
        )
        return np.asarray(U, dtype=np.float64), np.asarray(its, dtype=np.int64)

    def solve(self, M: np.ndarray) -> np.ndarray:
        """Solve the HJB equation backward for a given density history ``M``."""
        p = self.problem
        M = _check_field("M", M, p.shape)
        source = p.V[None, :] + p.F(M)
        if not np.all(np.isfinite(source)):
            raise NonFiniteError("V + F(M) is not finite: the coupling is undefined for this density "
                             f"(min M = {M.min():.3g})")
        start = time.perf_counter()
        U, its = self._run(source)
        self.last_seconds = time.perf_counter() - start
        self.newton_iterations = its
        if np.any(its < 0):
            k = int(np.flatnonzero(its < 0)[-1])
            raise ConvergenceError(f"HJB Newton did not reach newton_tol={self.newton_tol:g} in "
                                   f"{self.newton_maxiter} steps at t={p.t[k]:.6g} (time index {k})")
        if not np.all(np.isfinite(U)):
            raise NonFiniteError("HJB solve produced NaN or inf")
        return U

    def warmup(self) -> float:
        """Run the kernel once on this problem's shape (jit compilation); returns the seconds taken."""
        start = time.perf_counter()
        self._run(np.zeros(self.problem.shape))
        return time.perf_counter() - start


class FPFDMSolver(_BackendMixin):
    """Implicit FP solver: the discrete adjoint of the linearised HJB operator.

    ``solve(U)`` returns ``M`` with ``M[0] = m0``; the discrete mass ``sum(weights * M[n])`` is 1 to
    round-off and ``M >= 0`` (see ``mfg_core/backends/numpy/fdm.py``).
    """

    def __init__(self, problem: MFGProblem, backend: str | Backend | None = "numpy"):
        if not isinstance(problem, MFGProblem):
            raise ValueError(f"problem must be an MFGProblem, got {type(problem).__name__}")
        self.problem = problem
        self.backend = get_backend(backend)
        self.last_seconds = 0.0

    def _run(self, U: np.ndarray) -> np.ndarray:
        p = self.problem
        mu = self.backend.fp_sweep(U, p.weights * p.m_init, dt=p.dt, dx=p.dx, nu=p.nu, lam=p.lam,
                                   periodic=p.periodic)
        return np.asarray(mu, dtype=np.float64) / p.weights

    def solve(self, U: np.ndarray) -> np.ndarray:
        """Solve the FP equation forward for the drift ``-U_x / lam``."""
        U = _check_field("U", U, self.problem.shape)
        start = time.perf_counter()
        M = self._run(U)
        self.last_seconds = time.perf_counter() - start
        if not np.all(np.isfinite(M)):
            raise NonFiniteError("FP solve produced NaN or inf")
        return M

    def warmup(self) -> float:
        """Run the kernel once on this problem's shape (jit compilation); returns the seconds taken."""
        start = time.perf_counter()
        self._run(np.zeros(self.problem.shape))
        return time.perf_counter() - start
