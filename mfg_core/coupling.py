r"""Fixed-point (Picard) coupling of the HJB and FP solvers, with damping.

One Picard evaluation maps the current iterate ``(U_k, M_k)`` to

    U* = HJB(M_k),    M* = FP(U*)        (the FP solve sees the fresh U*, as in the seed library)

and damping with weight ``thetaUM`` (the weight of the new iterate) gives

    U_{k+1} = (1 - thetaUM) U_k + thetaUM U*,    M_{k+1} = (1 - thetaUM) M_k + thetaUM M*.

A convex combination of densities of mass 1 is a density of mass 1, so damping preserves both the
mass and the positivity produced by the FP solver. The iteration stops when the relative change
between iterates, in the space-time L2 norm ``sqrt(dt * sum_n sum_i w_i X_ni^2)``, is below
``tolerance`` for both U and M.

With ``use_anderson=True`` the damped update is replaced by safeguarded type-II Anderson
acceleration of the same Picard map (:mod:`mfg_core.anderson`, equations and safeguards there):

    x_{k+1} = sum_j alpha_j (x_j + beta f_j),   f_j = Phi(x_j) - x_j,   sum_j alpha_j = 1,

falling back to the damped step ``x_k + thetaUM f_k`` whenever the least-squares problem is
unusable (too little history, ill-conditioned, NaN) or the residual-decrease check rejects the
point. There the iteration stops when the relative change between iterates *and* the relative
fixed-point residual ``||Phi(x_k) - x_k|| / ||Phi(x_k)||`` are below ``tolerance`` for U and M.
Every iteration is one Picard evaluation (rejected points included), so iteration counts compare.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from typing import Any

import numpy as np

from . import anderson as _aa
from .backends import Backend, get_backend
from .problem import MFGProblem
from .result import FixedPointResult
from .solvers import ConvergenceError, NonFiniteError

log = logging.getLogger("mfg_core")


class DivergenceError(ConvergenceError):
    """The fixed-point iterate became NaN or inf."""


def _norm(problem: MFGProblem, X: np.ndarray) -> float:
    """Space-time L2 norm ``sqrt(dt * sum_n sum_i w_i X_ni^2)``; NaN/inf if X has any.

    einsum sums the squares column by column without an (Nt+1) x N temporary: at Nx = Nt = 1600 the
    temporary cost more than a compiled HJB sweep.
    """
    return math.sqrt(problem.dt * float(np.einsum("ij,ij->j", X, X) @ problem.weights))


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
    **anderson_options : the Anderson settings of :class:`mfg_core.anderson.AndersonOptions`
        (``regularization``, ``restart_condition``, ``beta``, ``accelerate``, and the safeguards
        ``residual_check``, ``residual_growth``, ``restart_on_reject``, ``positivity``,
        ``common_random_numbers``, all on by default). They are validated even when
        ``use_anderson=False``, so that a typo is never silently ignored.
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
        # validated before any work: bad depth / regularisation / beta raise ValueError naming them
        if "depth" in anderson_options:
            raise ValueError("give the Anderson depth as anderson_depth=, not depth=")
        self.anderson = _aa.make_options(anderson_depth, **anderson_options)
        self.anderson_depth = self.anderson.depth
        if backend is not None:
            be = get_backend(backend)
            for s in (hjb_solver, fp_solver):
                s.use_backend(be)
        self.backend = getattr(hjb_solver, "backend", None)

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
            **({"anderson": self.anderson.as_dict(), "anderson_status_codes": _aa.STATUS_NAMES,
                "fp_common_random_numbers": getattr(self, "_crn_used", None)}
               if self.use_anderson else {}),
        }

    def solve(self, max_iterations: int = 100, tolerance: float = 1e-6, *,
              initial: tuple[np.ndarray, np.ndarray] | None = None, warmup: bool = True,
              blowup_factor: float = 1e4, verbose: bool = False) -> FixedPointResult:
        """Iterate until the relative changes of U and M are both below ``tolerance``.

        Reaching ``max_iterations`` returns ``converged=False`` with the reason; a residual that
        grows by ``blowup_factor`` over its minimum stops early (``converged=False``, reason
        "diverged"); a non-finite iterate raises :class:`DivergenceError` naming the iteration.

        ``result.history`` holds, per iteration: ``res_U``, ``res_M`` (relative change of the
        iterates), ``fp_res_U``, ``fp_res_M`` (relative fixed-point residual of the point evaluated,
        ``||Phi(x)_U - U|| / ||Phi(x)_U||``), ``mass_error`` (``max_n |sum(w M[n]) - 1|`` of the new
        iterate), ``min_M``, ``seconds``; with Anderson also ``accepted`` (the point evaluated was
        accepted), ``anderson_step`` (the new iterate is an Anderson extrapolation),
        ``anderson_status`` (code, see :data:`mfg_core.anderson.STATUS_NAMES`), ``residual`` (the
        weighted norm ``||Phi(x) - x||_W`` the safeguard compares; inf if the map failed there),
        ``condition`` and ``anderson_columns`` (the least-squares matrix's condition number, width).
        """
        if isinstance(max_iterations, bool) or int(max_iterations) < 1:
            raise ValueError(f"max_iterations must be >= 1, got {max_iterations!r}")
        if not (tolerance > 0):
            raise ValueError(f"tolerance must be > 0, got {tolerance!r}")
        p = self.problem
        U, M = initial if initial is not None else self.initial_guess()
        U = np.array(U, dtype=np.float64)
        M = np.array(M, dtype=np.float64)
        for label, X in (("initial U", U), ("initial M", M)):
            if X.shape != p.shape:
                raise ValueError(f"{label} must have shape {p.shape}, got {X.shape}")
            if not np.all(np.isfinite(X)):
                raise ValueError(f"{label} contains NaN or inf")
        compile_time = self.warmup() if warmup else 0.0
        start = time.perf_counter()
        if self.use_anderson:
            with self._common_random_numbers():
                U, M, k, converged, reason, hist = self._iterate_anderson(
                    U, M, int(max_iterations), float(tolerance), blowup_factor, verbose)
        else:
            U, M, k, converged, reason, hist = self._iterate_damped(
                U, M, int(max_iterations), float(tolerance), blowup_factor, verbose)
        wall = time.perf_counter() - start
        log.info(reason)
        problem_info = p.parameters()
        problem_info["weights"] = p.weights
        diagnostics = getattr(self.fp_solver, "diagnostics", None) or {}
        steps = {k: np.asarray(v, dtype=np.float64) for k, v in diagnostics.items()
                 if k in ("reflected_fraction", "wrapped_fraction", "bandwidth")}
        return FixedPointResult(
            step_diagnostics=steps,
            U=U, M=M, converged=converged, iterations=k, reason=reason,
            history={key: np.asarray(v) for key, v in hist.items()}, x=p.x.copy(), t=p.t.copy(),
            problem=problem_info, solver=self._solver_info(int(max_iterations), float(tolerance)),
            wall_time=wall, compile_time=compile_time,
        )

    # ------------------------------------------------------------------------------------------
    def _evaluate(self, k: int, U: np.ndarray, M: np.ndarray, order: str = "HJB-FP"):
        """One Picard evaluation, turning a failure on a non-finite iterate into DivergenceError.

        ``order="HJB-FP"``: ``U* = HJB(M), M* = FP(U*)``; ``"FP-HJB"``: ``M* = FP(U), U* = HJB(M*)``
        (the map of ``accelerate="U"``, whose state is U).
        """
        try:
            if order == "HJB-FP":
                U_star, M_star = self.picard_map(M)
            else:
                M_star = self.fp_solver.solve(U)
                U_star = self.hjb_solver.solve(M_star)
        except NonFiniteError as exc:
            raise DivergenceError(f"non-finite iterate at iteration {k}: {exc}") from exc
        except (ValueError, ConvergenceError) as exc:
            exc.add_note(f"(in the Picard map at fixed-point iteration {k})")
            raise
        return U_star, M_star

    def _log(self, msg: str, verbose: bool) -> None:
        log.info(msg)
        if verbose:
            print(msg, file=sys.stderr, flush=True)

    @staticmethod
    def _stop_reason(hist, best, max_iterations, tolerance, key_U="res_U", key_M="res_M"):
        # fmax/nanmin: an Anderson point the map could not evaluate has a NaN residual
        res = float(np.fmax(hist[key_U][-1], hist[key_M][-1]))
        tail = np.fmax(hist[key_U], hist[key_M])[-10:]
        trend = ("stagnating/oscillating" if np.nanmin(tail) > 0.5 * tail[0] else "still decreasing")
        return (f"max_iterations={max_iterations} reached with residual {res:.3e} > tolerance "
                f"{tolerance:g} ({trend}; min residual {min(best, res):.3e})")

    def _iterate_damped(self, U, M, max_iterations, tolerance, blowup_factor, verbose):
        """The damped Picard loop (thetaUM); see the module docstring."""
        p = self.problem
        theta = self.thetaUM
        hist: dict[str, list] = {k: [] for k in ("res_U", "res_M", "fp_res_U", "fp_res_M",
                                                 "mass_error", "min_M", "seconds")}
        converged, reason = False, ""
        best = math.inf
        k = 0
        for k in range(1, max_iterations + 1):
            t0 = time.perf_counter()
            U_star, M_star = self._evaluate(k, U, M)
            # X_next - X = theta (X* - X): one difference per field gives both the change between
            # iterates and the fixed-point residual; a NaN or inf anywhere makes its norm non-finite.
            dU = np.subtract(U_star, U)
            dM = np.subtract(M_star, M)
            U_next = U + theta * dU
            M_next = M + theta * dM
            nU, nM = _norm(p, U_next), _norm(p, M_next)
            n_dU, n_dM = _norm(p, dU), _norm(p, dM)
            if not all(math.isfinite(v) for v in (nU, nM, n_dU, n_dM)):
                raise DivergenceError(f"the fixed-point iterate became NaN or inf at iteration {k}")
            res_U = theta * n_dU / max(nU, 1e-300)
            res_M = theta * n_dM / max(nM, 1e-300)
            hist["fp_res_U"].append(n_dU / max(_norm(p, U_star), 1e-300))
            hist["fp_res_M"].append(n_dM / max(_norm(p, M_star), 1e-300))
            U, M = U_next, M_next
            hist["res_U"].append(res_U)
            hist["res_M"].append(res_M)
            hist["mass_error"].append(float(np.max(np.abs(p.mass(M) - 1.0))))
            hist["min_M"].append(float(M.min()))
            hist["seconds"].append(time.perf_counter() - t0)
            self._log(f"iteration {k:4d}: res_U={res_U:.3e} res_M={res_M:.3e} "
                      f"mass_err={hist['mass_error'][-1]:.2e}", verbose)
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
            reason = self._stop_reason(hist, best, max_iterations, tolerance)
        return U, M, k, converged, reason, hist

    # ------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _common_random_numbers(self):
        """Switch a particle FP solver to common random numbers for this solve (then restore).

        Only solvers that expose a boolean ``common_random_numbers`` attribute are touched; the
        finite-difference solvers are deterministic already.
        """
        fp = self.fp_solver
        current = getattr(fp, "common_random_numbers", None)
        self._crn_used = current  # recorded in result.solver["fp_common_random_numbers"]
        if not self.anderson.common_random_numbers or not isinstance(current, (bool, np.bool_)) or current:
            yield
            return
        fp.common_random_numbers = True
        self._crn_used = True
        try:
            yield
        finally:
            fp.common_random_numbers = current

    def _norm_weights(self, U_star: np.ndarray, M_star: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Space-time L2 weights ``dt * w`` per block, divided by the block's squared norm.

        So that the least-squares norm measures the *relative* residual of U and of M, like the
        iterator's stopping criterion; fixed at the first evaluation so that every difference in
        the history is measured in the same norm.
        """
        p = self.problem
        base = np.broadcast_to(p.dt * p.weights, p.shape).ravel()
        nU = _norm(p, U_star)
        nM = _norm(p, M_star)
        wU = base / (nU * nU if nU > 1e-150 else 1.0)
        wM = base / (nM * nM if nM > 1e-150 else 1.0)
        return wU, wM

    def _iterate_anderson(self, U, M, max_iterations, tolerance, blowup_factor, verbose):
        """Safeguarded type-II Anderson iteration (see :mod:`mfg_core.anderson`).

        Bookkeeping: ``(U, M)`` is the point evaluated at iteration ``k``; ``acc`` the last accepted
        point with its image and residual. A point produced by an Anderson step is *candidate*: it
        is accepted if its residual is at most ``residual_growth`` times the accepted residual (or
        if ``residual_check`` is off); otherwise the iteration returns to ``acc`` and takes the
        damped step from there. Damped points are always accepted (this guarantees progress of the
        bookkeeping and makes the safeguarded method reduce to damping in the worst case).
        """
        p = self.problem
        opts = self.anderson
        theta = self.thetaUM
        mode = opts.accelerate
        order = "FP-HJB" if mode == "U" else "HJB-FP"
        n = U.size
        keys = ("res_U", "res_M", "fp_res_U", "fp_res_M", "residual", "mass_error", "min_M", "seconds", "accepted",
                "anderson_step", "anderson_status", "condition", "anderson_columns")
        hist: dict[str, list] = {key: [] for key in keys}

        def state(U_, M_):
            if mode == "both":
                return np.concatenate([U_.ravel(), M_.ravel()])
            return (U_ if mode == "U" else M_).ravel().copy()

        def unstate(x, U_slave, M_slave):
            # the field that is not accelerated follows the map: it is the Picard image's
            if mode == "both":
                return x[:n].reshape(p.shape), x[n:].reshape(p.shape)
            if mode == "U":
                return x.reshape(p.shape), M_slave
            return U_slave, x.reshape(p.shape)

        mixer = None
        acc = None  # (x, g, residual norm, U_star, M_star) of the last accepted point
        candidate = False  # is (U, M) an Anderson extrapolation?
        converged, reason = False, ""
        best = math.inf
        k = 0
        for k in range(1, max_iterations + 1):
            t0 = time.perf_counter()
            try:
                U_star, M_star = self._evaluate(k, U, M, order)
                failed = None
            except (ValueError, ConvergenceError) as exc:
                # an extrapolated point the map cannot handle is a rejected point, not a crash
                if not (candidate and opts.residual_check and acc is not None):
                    raise
                failed = exc
            if failed is None and not (np.all(np.isfinite(U_star)) and np.all(np.isfinite(M_star))):
                raise DivergenceError(f"the Picard map returned NaN or inf at iteration {k}")
            x = state(U, M)
            if failed is None:
                g = state(U_star, M_star)
                if mixer is None:
                    wU, wM = self._norm_weights(U_star, M_star)
                    W = np.concatenate([wU, wM]) if mode == "both" else (wU if mode == "U" else wM)
                    mixer = _aa.AndersonMixer(opts.depth, opts.regularization, opts.restart_condition,
                                              opts.beta, weights=W)
                r = mixer.norm(g - x)
                fp_U, fp_M = relative_change(p, U_star, U), relative_change(p, M_star, M)
            else:
                g, r, fp_U, fp_M = None, math.inf, math.nan, math.nan
            reject = candidate and opts.residual_check and acc is not None and not (
                r <= opts.residual_growth * acc[2])
            info = None
            if reject:
                if opts.restart_on_reject:
                    mixer.reset(keep_last=True)  # the newest pair is the accepted point's image
                elif g is not None:
                    mixer.push(x, g)  # still a valid secant pair of the map
                xa, ga, _, Ua, Ma = acc
                x_next = xa + theta * (ga - xa)
                U_slave, M_slave = Ua, Ma
                status, accepted = _aa.STATUS_REJECTED, False
            else:
                acc = (x, g, r, U_star, M_star)
                info = mixer.update(x, g)
                if info.x_next is not None:
                    x_next = info.x_next
                else:
                    x_next = x + theta * (g - x)  # fallback: the damped Picard step
                U_slave, M_slave = U_star, M_star
                status, accepted = info.status, True
            U_next, M_next = unstate(x_next, U_slave, M_slave)
            U_next, M_next = np.array(U_next), np.array(M_next)
            if opts.positivity:
                M_next = _aa.project_density(M_next, p.weights)
            if not (np.all(np.isfinite(U_next)) and np.all(np.isfinite(M_next))):
                raise DivergenceError(f"the fixed-point iterate became NaN or inf at iteration {k}")
            res_U = relative_change(p, U_next, U)
            res_M = relative_change(p, M_next, M)
            hist["res_U"].append(res_U)
            hist["res_M"].append(res_M)
            hist["fp_res_U"].append(fp_U)
            hist["fp_res_M"].append(fp_M)
            hist["residual"].append(r)
            hist["mass_error"].append(float(np.max(np.abs(p.mass(M_next) - 1.0))))
            hist["min_M"].append(float(M_next.min()))
            hist["seconds"].append(time.perf_counter() - t0)
            hist["accepted"].append(accepted)
            hist["anderson_step"].append(status == _aa.STATUS_ANDERSON)
            hist["anderson_status"].append(status)
            hist["condition"].append(info.condition if info is not None else math.nan)
            hist["anderson_columns"].append(info.columns if info is not None else 0)
            self._log(f"iteration {k:4d}: fp_res_U={fp_U:.3e} fp_res_M={fp_M:.3e} res_U={res_U:.3e} "
                      f"res_M={res_M:.3e} {_aa.STATUS_NAMES[status]} "
                      f"mass_err={hist['mass_error'][-1]:.2e} min_M={hist['min_M'][-1]:.2e}", verbose)
            U, M = U_next, M_next
            candidate = status == _aa.STATUS_ANDERSON
            res = max(res_U, res_M)
            fp_res = max(fp_U, fp_M)
            if accepted and res < tolerance and fp_res < tolerance:
                converged, reason = True, (f"converged: max(res_U, res_M) = {res:.3e} and fixed-point "
                                           f"residual {fp_res:.3e} < tolerance {tolerance:g}")
                break
            if accepted:
                best = min(best, fp_res)
                if k > 3 and fp_res > blowup_factor * best:
                    reason = (f"diverged: fixed-point residual {fp_res:.3e} at iteration {k} is over "
                              f"{blowup_factor:g}x its minimum {best:.3e}")
                    break
        else:
            reason = self._stop_reason(hist, best, max_iterations, tolerance, "fp_res_U", "fp_res_M")
            n_rej = int(np.sum(~np.asarray(hist["accepted"])))
            reason += f"; {n_rej} Anderson points rejected"
        return U, M, k, converged, reason, hist
