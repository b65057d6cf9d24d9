r"""One fixed-point loop for the coupled HJB-FP system; how the next iterate is formed is an update rule.

The loop owns what every coupling method shares: the initial guess, the norms, the history, the
stopping tests, blow-up detection, logging and the result. An update rule
(:mod:`mfg_core.rules`: damping, damping_gs, Anderson, ...) owns only how ``(U_{k+1}, M_{k+1})`` is
formed from ``(U_k, M_k)`` and the solves it asks for; every HJB + FP pair of solves is one
iteration, so iteration counts compare across rules.

Norm: the space-time L2 norm ``||X|| = sqrt(dt * sum_n sum_i w_i X_ni^2)`` (``w`` the quadrature
weights). Per iteration ``k`` the history records

* ``change_U``, ``change_M``: the relative change between iterates ``||X_{k+1} - X_k|| / ||X_{k+1}||``;
* ``residual_U``, ``residual_M``: the relative fixed-point residual of the point the rule evaluated,
  ``||Phi(x)_U - U|| / ||Phi(x)_U||`` (NaN where the map could not be evaluated there), the quantity
  that compares across rules (under damping the change is ``thetaUM`` times it);
* ``mass_error`` (``max_n |sum(w M_{k+1}[n]) - 1|``), ``min_M``, ``seconds``, and what the rule adds;
* where the solvers' kernels count them (2D FDM), ``hjb_newton_steps`` and per solver ``hjb_`` /
  ``fp_`` ``krylov_iterations`` and ``krylov_unconverged`` (linear solves short of their tolerance).

Stop: ``converged`` when an accepted step has ``max(change_U, change_M) < tolerance`` (and, for a rule
with ``stop_on_residual``, also the residual); ``diverged`` when the residual of an accepted step
exceeds ``blowup_factor`` times its minimum so far (after iteration 3); ``not_converged`` at
``max_iterations``. A non-finite iterate raises :class:`~mfg_core.errors.DivergenceError` naming the
iteration.

A rule with ``stop_on_system`` (Newton, :mod:`mfg_core.newton`) judges its own iterates on the
residual of the whole discrete system instead: after each accepted step the loop asks
``rule.verdict(step, tolerance)`` for ``(status, reason)`` or ``None`` (go on), skips the
change/residual and blow-up tests, and at ``max_iterations`` takes the reason from
``rule.max_iterations_reason``. ``rule.summary(history)`` goes into the result's ``extra``.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from typing import Any

import numpy as np

from . import validation
from .backends.numpy.fields import make_fields
from .errors import ConvergenceError, DivergenceError, NonFiniteError
from .problem import MFGProblem
from .result import FixedPointResult

log = logging.getLogger("mfg_core")

INITIAL_GUESSES = ("terminal", "heat")
#: step diagnostics of the FP solver that go into the result (stored on t)
STEP_DIAGNOSTICS = ("reflected_fraction", "wrapped_fraction", "bandwidth")
#: the solvers' linear-solve counts recorded per iteration (``hjb_`` / ``fp_`` + the name)
LINEAR_DIAGNOSTICS = ("newton_steps", "krylov_iterations", "krylov_unconverged")


class Step:
    """What an update rule returns: the next iterate, the residual of the point it evaluated,
    whether that point was accepted, and its own history entries.

    ``change`` may be given when the rule has it for free (damping: ``thetaUM`` times the residual
    norm); otherwise the loop measures ``X_{k+1} - X_k``.
    """

    __slots__ = ("U", "M", "residual", "change", "accepted", "record")

    def __init__(self, U, M, residual, *, change=None, accepted=True, record=None):
        self.U, self.M, self.residual, self.change = U, M, residual, change
        self.accepted = accepted
        self.record = record or {}


def check_solve_args(max_iterations: Any, tolerance: Any, blowup_factor: Any) -> tuple[int, float, float]:
    """Validated ``(max_iterations, tolerance, blowup_factor)``: ``ValueError`` naming the parameter."""
    return (validation.integer("max_iterations", max_iterations, 1),
            # a relative change: 1 or more would stop at once
            validation.in_range("tolerance", tolerance, 0.0, 1.0, closed_high=False),
            validation.in_range("blowup_factor", blowup_factor, 1.0, math.inf, closed_high=False))


class FixedPointLoop:
    """Iterate an update rule on the Picard map of ``hjb`` and ``fp`` (see the module docstring).

    ``hjb`` and ``fp`` are solvers with ``solve(M) -> U`` and ``solve(U) -> M``; ``rule`` an
    :class:`mfg_core.rules.UpdateRule`.
    """

    def __init__(self, problem: MFGProblem, hjb, fp, rule, *, method: str | None = None,
                 options: dict[str, Any] | None = None):
        if not isinstance(problem, MFGProblem):
            raise ValueError(f"problem must be an MFGProblem, got {type(problem).__name__}")
        for label, s in (("hjb_solver", hjb), ("fp_solver", fp)):
            if not hasattr(s, "solve"):
                raise ValueError(f"{label} must have a solve() method, got {type(s).__name__}")
            if getattr(s, "problem", problem) is not problem:
                raise ValueError(f"{label} was built for a different problem")
        self.problem = problem
        self.hjb_solver = hjb
        self.fp_solver = fp
        self.rule = rule
        self.method = method or rule.name
        self.options = dict(options or {})
        # a rule that works on the backend's own arrays (damping) keeps the fields on its device
        # between iterations; the others (Anderson's least squares, Newton's sparse Jacobian) work on
        # host arrays and get the host solves
        native = getattr(rule, "native_fields", False)
        self.fields = (getattr(hjb, "fields", None) if native else None) or make_fields(problem.scheme)
        self.norms = self.fields  # the norms, relative changes and damped update (one object)
        self._solve_hjb = hjb.solve_native if native and hasattr(hjb, "solve_native") else hjb.solve
        self._solve_fp = fp.solve_native if native and hasattr(fp, "solve_native") else fp.solve

    # --- what rules call -----------------------------------------------------------------------
    def evaluate(self, k: int, solve, X: np.ndarray) -> np.ndarray:
        """One solve inside iteration ``k``: a non-finite result is divergence at iteration ``k``;
        other failures keep their type and get the iteration as a note."""
        try:
            return solve(X)
        except NonFiniteError as exc:
            raise DivergenceError(f"non-finite iterate at iteration {k}: {exc}", k) from exc
        except (ValueError, ConvergenceError) as exc:
            exc.add_note(f"(in the Picard map at fixed-point iteration {k})")
            exc.iteration = k
            raise

    def hjb(self, k: int, M: np.ndarray) -> np.ndarray:
        return self.evaluate(k, self._solve_hjb, M)

    def fp(self, k: int, U: np.ndarray) -> np.ndarray:
        return self.evaluate(k, self._solve_fp, U)

    # --- the loop ------------------------------------------------------------------------------
    def initial_guess(self, kind: str = "terminal") -> tuple[np.ndarray, np.ndarray]:
        """``"terminal"``: ``U = g``, ``M = m0`` at every time; ``"heat"``: ``U = 0`` and ``M`` the FP
        solution with zero drift (``m0`` spread by diffusion alone)."""
        p, f = self.problem, self.fields
        if kind == "terminal":
            return f.tile(p.g), f.tile(p.m_init)
        if kind == "heat":
            U = f.zeros()
            return U, f.asarray(self._solve_fp(U))
        raise ValueError(f"initial_guess must be one of {INITIAL_GUESSES}, got {kind!r}")

    def warmup(self) -> float:
        """Compile the solvers' kernels for this shape (no-op cost on numpy), and the rule's own
        (``rule.warmup(loop)``, where it has kernels: Newton's time sweeps); returns seconds."""
        seconds = sum(s.warmup() for s in (self.hjb_solver, self.fp_solver) if hasattr(s, "warmup"))
        return seconds + self.rule.warmup(self)

    def run(self, max_iterations: int = 100, tolerance: float = 1e-6, *, initial_guess: str = "terminal",
            initial: tuple[np.ndarray, np.ndarray] | None = None, warmup: bool = True,
            blowup_factor: float = 1e4, verbose: bool = False) -> FixedPointResult:
        """Iterate until converged, diverged or ``max_iterations`` (see the module docstring)."""
        max_iterations, tolerance, blowup_factor = check_solve_args(max_iterations, tolerance, blowup_factor)
        if initial_guess not in INITIAL_GUESSES:
            raise ValueError(f"initial_guess must be one of {INITIAL_GUESSES}, got {initial_guess!r}")
        p = self.problem
        if initial is not None:
            U, M = (np.array(X, dtype=np.float64) for X in initial)
            for label, X in (("initial U", U), ("initial M", M)):
                if X.shape != p.shape:
                    raise ValueError(f"{label} must have shape {p.shape}, got {X.shape}")
                if not np.all(np.isfinite(X)):
                    raise ValueError(f"{label} contains NaN or inf")
        compile_time = self.warmup() if warmup else 0.0
        start = time.perf_counter()
        if initial is None:
            U, M = self.initial_guess(initial_guess)
        else:
            U, M = self.fields.asarray(U), self.fields.asarray(M)
        U, M, k, status, reason, hist = self._iterate(U, M, max_iterations, tolerance, blowup_factor, verbose)
        U, M = self.fields.to_host(U), self.fields.to_host(M)
        wall = time.perf_counter() - start
        extra = self.rule.summary(hist)
        log.info(reason)
        problem_info = p.parameters()
        problem_info["weights"] = p.weights
        diagnostics = getattr(self.fp_solver, "diagnostics", None) or {}
        steps = {key: np.asarray(v, dtype=np.float64) for key, v in diagnostics.items() if key in STEP_DIAGNOSTICS}
        solver = self.solver_info(max_iterations, tolerance, initial_guess if initial is None else "given")
        return FixedPointResult(
            U=U, M=M, converged=status == "converged", status=status, iterations=k, reason=reason,
            history={key: np.asarray(v) for key, v in hist.items()}, coords=p.coords(),
            problem=problem_info, solver=solver, wall_time=wall, compile_time=compile_time,
            step_diagnostics=steps, extra=extra,
        )

    def solver_info(self, max_iterations: int, tolerance: float, initial_guess: str) -> dict[str, Any]:
        def be(s):
            b = getattr(s, "backend", None)
            return (b.name, b.version) if b is not None else ("", "")

        return {
            "hjb": type(self.hjb_solver).__name__, "fp": type(self.fp_solver).__name__,
            "hjb_backend": be(self.hjb_solver)[0], "fp_backend": be(self.fp_solver)[0],
            "backend_version": be(self.hjb_solver)[1], "coupling": self.method,
            "options": self.options, "max_iterations": max_iterations, "tolerance": tolerance,
            "initial_guess": initial_guess, **self.rule.describe(),
        }

    def _iterate(self, U, M, max_iterations, tolerance, blowup_factor, verbose):
        rule = self.rule
        norms = self.fields
        hist: dict[str, list] = {key: [] for key in ("change_U", "change_M", "residual_U", "residual_M",
                                                      "mass_error", "min_M", "seconds")}
        self.tolerance = tolerance  # what the rule's reset may read (Newton: its default system tolerance)
        rule.reset(self)
        status, reason = "not_converged", ""
        best = math.inf
        k = 0
        for k in range(1, max_iterations + 1):
            t0 = time.perf_counter()
            step = rule.step(self, k, U, M)
            if step.change is None:
                change_U = norms.relative_change(step.U, U)
                change_M = norms.relative_change(step.M, M)
            else:
                change_U, change_M = step.change
            if not (math.isfinite(change_U) and math.isfinite(change_M)):
                raise DivergenceError(f"the fixed-point iterate became NaN or inf at iteration {k}", k)
            U, M = step.U, step.M
            res_U, res_M = step.residual
            mass_error = norms.mass_error(M)
            hist["change_U"].append(change_U)
            hist["change_M"].append(change_M)
            hist["residual_U"].append(res_U)
            hist["residual_M"].append(res_M)
            hist["mass_error"].append(mass_error)
            hist["min_M"].append(norms.min(M))
            for key, value in step.record.items():
                hist.setdefault(key, []).append(value)
            for prefix, solver in (("hjb", self.hjb_solver), ("fp", self.fp_solver)):
                for key, value in (getattr(solver, "diagnostics", None) or {}).items():
                    if key in LINEAR_DIAGNOSTICS:
                        hist.setdefault(f"{prefix}_{key}", []).append(int(value))
            hist["seconds"].append(time.perf_counter() - t0)
            change, residual = max(change_U, change_M), max(res_U, res_M)
            self._log(f"iteration {k:4d}: change_U={change_U:.3e} change_M={change_M:.3e} "
                      f"residual={residual:.3e} mass_err={mass_error:.2e}"
                      + (f" {rule.log_note(step)}" if step.record else ""), verbose)
            if not step.accepted:
                continue
            if rule.stop_on_system:
                verdict = rule.verdict(step, tolerance)
                if verdict is not None:
                    status, reason = verdict
                    break
                continue
            if change < tolerance and (not rule.stop_on_residual or residual < tolerance):
                status = "converged"
                reason = (f"converged: change {change:.3e}" + (f" and residual {residual:.3e}"
                                                               if rule.stop_on_residual else "")
                          + f" < tolerance {tolerance:g}")
                break
            best = min(best, residual)
            if k > 3 and residual > blowup_factor * best:
                status = "diverged"
                reason = (f"diverged: fixed-point residual {residual:.3e} at iteration {k} is over "
                          f"{blowup_factor:g}x its minimum {best:.3e}; try a smaller thetaUM or Anderson")
                break
        else:
            if rule.stop_on_system:
                reason = rule.max_iterations_reason(hist, max_iterations, tolerance)
            else:
                reason = self._stop_reason(hist, best, max_iterations, tolerance) + rule.stop_note(hist)
        return U, M, k, status, reason, hist

    def _log(self, msg: str, verbose: bool) -> None:
        log.info(msg)
        if verbose:
            print(msg, file=sys.stderr, flush=True)

    @staticmethod
    def _stop_reason(hist, best, max_iterations, tolerance) -> str:
        # fmax/nanmin: a point the map could not evaluate has a NaN residual
        change = float(max(hist["change_U"][-1], hist["change_M"][-1]))
        tail = np.fmax(hist["residual_U"], hist["residual_M"])[-10:]
        trend = ("stagnating/oscillating" if np.nanmin(tail) > 0.5 * tail[0] else "still decreasing")
        return (f"max_iterations={max_iterations} reached with change {change:.3e}, residual "
                f"{float(np.fmax(hist['residual_U'][-1], hist['residual_M'][-1])):.3e} (tolerance "
                f"{tolerance:g}; {trend}; min residual {best:.3e})" + FixedPointLoop._runaway_note(hist))

    @staticmethod
    def _runaway_note(hist, window: int = 20) -> str:
        """Why a residual that rose again after its minimum did so, when the history shows it.

        A damped map contracts only where every eigenvalue ``lam`` of its derivative has
        ``|1 - thetaUM + thetaUM lam| < 1``; an iterate that drifts along a direction where that factor
        passes 1 (an attractive coupling's crowd shifting, mass moving between two clusters) first
        converges, then leaves: the steps grow geometrically by the factor. Said when the residual
        ended at least twice its minimum, reached at least ``window`` iterations before the end, and the
        step grew over the last ``window`` iterations.
        """
        res = np.fmax(np.asarray(hist["residual_U"], dtype=float), np.asarray(hist["residual_M"], dtype=float))
        step = np.fmax(np.asarray(hist["change_U"], dtype=float), np.asarray(hist["change_M"], dtype=float))
        accepted = np.asarray(hist.get("accepted", np.ones(res.size, dtype=bool)), dtype=bool)
        if res.size < 2 * window or not np.any(np.isfinite(res)):
            return ""
        j = int(np.nanargmin(np.where(accepted, res, np.nan)))
        k = res.size - 1
        growth = step[k] / step[k - window] if step[k - window] > 0 else math.nan
        if not (k - j >= window and res[k] >= 2.0 * res[j] and growth > 1.0):
            return ""
        return (f"; the residual rose from its minimum {res[j]:.3e} at iteration {j + 1}, the step growing "
                f"x{growth ** (1.0 / window):.4f} per iteration over the last {window}: the iterate moves "
                "away from a fixed point along a direction in which this damped map expands (no thetaUM "
                "makes an eigenvalue > 1 of the map's derivative contract; see mfg_core.fixed_point)")
