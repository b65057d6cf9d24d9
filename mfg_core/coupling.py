r"""Fixed-point (Picard) coupling of the HJB and FP solvers, with damping.

One Picard evaluation maps the current iterate ``(U_k, M_k)`` to

    U* = HJB(M_k),    M* = FP(U*)        (the FP solve sees the fresh U*, as in the seed library)

and damping with weight ``thetaUM`` (the weight of the new iterate) gives

    U_{k+1} = (1 - thetaUM) U_k + thetaUM U*,    M_{k+1} = (1 - thetaUM) M_k + thetaUM M*.

A convex combination of densities of mass 1 is a density of mass 1, so damping preserves both the
mass and the positivity produced by the FP solver. The iteration stops when the relative change
between iterates, in the space-time L2 norm ``sqrt(dt * sum_n sum_i w_i X_ni^2)``, is below
``tolerance`` for both U and M.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from typing import Any

import numpy as np

from .backends import Backend, get_backend
from .problem import MFGProblem
from .result import FixedPointResult
from .solvers import ConvergenceError

log = logging.getLogger("mfg_core")


class DivergenceError(ConvergenceError):
    """The fixed-point iterate became NaN or inf."""


def _norm(problem: MFGProblem, X: np.ndarray) -> float:
    return math.sqrt(problem.dt * float(np.sum((X * X) @ problem.weights)))


def relative_change(problem: MFGProblem, new: np.ndarray, old: np.ndarray) -> float:
    """``||new - old|| / ||new||`` in the space-time L2 norm (denominator floored at 1e-300)."""
    return _norm(problem, new - old) / max(_norm(problem, new), 1e-300)


class FixedPointIterator:
    """Picard iteration for the coupled HJB-FP system (see the module docstring).

    Parameters
    ----------
    problem : the :class:`MFGProblem`.
    hjb_solver, fp_solver : objects with ``solve(M) -> U`` and ``solve(U) -> M``.
    thetaUM : damping weight of the new iterate, in (0, 1]; 1 is plain Picard.
    use_anderson, anderson_depth : Anderson acceleration (see :mod:`mfg_core.anderson`).
    backend : if given, both solvers are switched to this backend (as in the seed library).
    """

    def __init__(self, problem: MFGProblem, hjb_solver, fp_solver, thetaUM: float = 0.5,
                 use_anderson: bool = False, anderson_depth: int = 5,
                 backend: str | Backend | None = None, **anderson_options: Any):
        if not isinstance(problem, MFGProblem):
            raise ValueError(f"problem must be an MFGProblem, got {type(problem).__name__}")
        try:
            theta = float(thetaUM)
        except (TypeError, ValueError):
            raise ValueError(f"thetaUM must be a number in (0, 1], got {thetaUM!r}") from None
        if not (0.0 < theta <= 1.0):
            raise ValueError(f"thetaUM must be in (0, 1], got {thetaUM!r}")
        for label, s in (("hjb_solver", hjb_solver), ("fp_solver", fp_solver)):
            if not hasattr(s, "solve"):
                raise ValueError(f"{label} must have a solve() method, got {type(s).__name__}")
            if getattr(s, "problem", problem) is not problem:
                raise ValueError(f"{label} was built for a different problem")
        self.problem = problem
        self.hjb_solver = hjb_solver
        self.fp_solver = fp_solver
        self.thetaUM = theta
        self.use_anderson = bool(use_anderson)
        self.anderson_depth = anderson_depth
        self.anderson_options = anderson_options
        if backend is not None:
            be = get_backend(backend)
            for s in (hjb_solver, fp_solver):
                s.use_backend(be)
        self.backend = getattr(hjb_solver, "backend", None)
        if self.use_anderson:
            raise NotImplementedError("use_anderson=True: Anderson acceleration is not implemented yet")

    # ------------------------------------------------------------------------------------------
    def picard_map(self, M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One Picard evaluation: ``U* = HJB(M)``, ``M* = FP(U*)``."""
        U_new = self.hjb_solver.solve(M)
        M_new = self.fp_solver.solve(U_new)
        return U_new, M_new

    def initial_guess(self) -> tuple[np.ndarray, np.ndarray]:
        """``U_0 = g`` and ``M_0 = m0`` at every time."""
        p = self.problem
        return np.tile(p.g, (p.Nt + 1, 1)), np.tile(p.m_init, (p.Nt + 1, 1))

    def warmup(self) -> float:
        """Compile the solvers' kernels for this shape (no-op cost on numpy); returns seconds."""
        total = 0.0
        for s in (self.hjb_solver, self.fp_solver):
            if hasattr(s, "warmup"):
                total += s.warmup()
        return total

    def _solver_info(self, max_iterations: int, tolerance: float) -> dict[str, Any]:
        def be(s):
            b = getattr(s, "backend", None)
            return (b.name, b.version) if b is not None else ("", "")

        return {
            "hjb": type(self.hjb_solver).__name__, "fp": type(self.fp_solver).__name__,
            "hjb_backend": be(self.hjb_solver)[0], "fp_backend": be(self.fp_solver)[0],
            "backend_version": be(self.hjb_solver)[1],
            "thetaUM": self.thetaUM, "use_anderson": self.use_anderson,
            "anderson_depth": self.anderson_depth, "max_iterations": max_iterations,
            "tolerance": tolerance,
        }

    def solve(self, max_iterations: int = 100, tolerance: float = 1e-6, *,
              initial: tuple[np.ndarray, np.ndarray] | None = None, warmup: bool = True,
              blowup_factor: float = 1e4, verbose: bool = False) -> FixedPointResult:
        """Iterate until the relative changes of U and M are both below ``tolerance``.

        Reaching ``max_iterations`` returns ``converged=False`` with the reason; a residual that
        grows by ``blowup_factor`` over its minimum stops early (``converged=False``, reason
        "diverged"); a non-finite iterate raises :class:`DivergenceError` naming the iteration.
        """
        if int(max_iterations) < 1:
            raise ValueError(f"max_iterations must be >= 1, got {max_iterations!r}")
        if not (tolerance > 0):
            raise ValueError(f"tolerance must be > 0, got {tolerance!r}")
        p = self.problem
        compile_time = self.warmup() if warmup else 0.0
        U, M = initial if initial is not None else self.initial_guess()
        U = np.array(U, dtype=np.float64)
        M = np.array(M, dtype=np.float64)
        theta = self.thetaUM
        hist: dict[str, list] = {k: [] for k in ("res_U", "res_M", "mass_error", "min_M", "seconds")}
        converged, reason = False, ""
        start = time.perf_counter()
        best = math.inf
        k = 0
        for k in range(1, int(max_iterations) + 1):
            t0 = time.perf_counter()
            try:
                U_star, M_star = self.picard_map(M)
            except (ValueError, ConvergenceError) as exc:
                if not (np.all(np.isfinite(U)) and np.all(np.isfinite(M))):
                    raise DivergenceError(f"non-finite iterate at iteration {k}: {exc}") from exc
                raise
            U_next = (1.0 - theta) * U + theta * U_star
            M_next = (1.0 - theta) * M + theta * M_star
            if not (np.all(np.isfinite(U_next)) and np.all(np.isfinite(M_next))):
                raise DivergenceError(f"the fixed-point iterate became NaN or inf at iteration {k}")
            res_U = relative_change(p, U_next, U)
            res_M = relative_change(p, M_next, M)
            U, M = U_next, M_next
            hist["res_U"].append(res_U)
            hist["res_M"].append(res_M)
            hist["mass_error"].append(float(np.max(np.abs(p.mass(M) - 1.0))))
            hist["min_M"].append(float(M.min()))
            hist["seconds"].append(time.perf_counter() - t0)
            msg = f"iteration {k:4d}: res_U={res_U:.3e} res_M={res_M:.3e} mass_err={hist['mass_error'][-1]:.2e}"
            log.info(msg)
            if verbose:
                print(msg, file=sys.stderr, flush=True)
            res = max(res_U, res_M)
            if res < tolerance:
                converged, reason = True, f"converged: max(res_U, res_M) = {res:.3e} < tolerance {tolerance:g}"
                break
            best = min(best, res)
            if k > 3 and res > blowup_factor * best:
                reason = (f"diverged: residual {res:.3e} at iteration {k} is over {blowup_factor:g}x its "
                          f"minimum {best:.3e}; try a smaller thetaUM or use_anderson=True")
                break
        else:
            res = max(hist["res_U"][-1], hist["res_M"][-1])
            tail = np.maximum(hist["res_U"], hist["res_M"])[-10:]
            trend = ("stagnating/oscillating" if tail.min() > 0.5 * tail[0] else "still decreasing")
            reason = (f"max_iterations={max_iterations} reached with residual {res:.3e} > tolerance "
                      f"{tolerance:g} ({trend}; min residual {min(best, res):.3e})")
        wall = time.perf_counter() - start
        log.info(reason)
        problem_info = p.parameters()
        problem_info["weights"] = p.weights
        return FixedPointResult(
            U=U, M=M, converged=converged, iterations=k, reason=reason,
            history={key: np.asarray(v) for key, v in hist.items()}, x=p.x.copy(), t=p.t.copy(),
            problem=problem_info, solver=self._solver_info(int(max_iterations), float(tolerance)),
            wall_time=wall, compile_time=compile_time,
        )
