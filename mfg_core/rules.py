r"""Update rules of the fixed-point loop: how ``(U_{k+1}, M_{k+1})`` is formed from ``(U_k, M_k)``.

A rule asks the loop for solves (``loop.hjb(k, M)``, ``loop.fp(k, U)``) and returns a
:class:`~mfg_core.fixed_point.Step`; the loop does the rest (:mod:`mfg_core.fixed_point`). Each rule
is registered by name in :mod:`mfg_core.methods`.

``damping`` (the seed library's rule): ``U* = HJB(M_k)``, ``M* = FP(U*)`` -- the FP solve sees the
undamped ``U*`` -- then ``X_{k+1} = (1 - thetaUM) X_k + thetaUM X*`` for both fields.

``damping_gs`` (the damping common in the literature, Gauss-Seidel in the fields): the FP solve sees
the *relaxed* value function,

    U_{k+1} = (1 - thetaUM) U_k + thetaUM HJB(M_k),   M_{k+1} = (1 - thetaUM) M_k + thetaUM FP(U_{k+1}).

Its residual is that of the map it iterates: ``HJB(M_k) - U_k`` and ``FP(U_{k+1}) - M_k``.

``anderson``: safeguarded type-II Anderson acceleration of the damping map (:mod:`mfg_core.anderson`
states the equations and the safeguards); ``anderson_plain`` is the same rule with the safeguards off.

A convex combination of densities of mass 1 is a density of mass 1, so both dampings keep the mass
and positivity the FP solver produces.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import anderson as _aa
from . import validation
from .errors import ConvergenceError, DivergenceError
from .fixed_point import Step


def check_theta(thetaUM: Any) -> float:
    return validation.in_range("thetaUM", thetaUM, 0.0, 1.0)


class UpdateRule:
    """Base of the update rules: the hooks the loop calls."""

    name = ""
    #: also require the fixed-point residual below the tolerance to stop
    stop_on_residual = False
    #: the rule judges convergence itself (on the residual of the whole system): the loop calls
    #: :meth:`verdict` instead of its change/residual and blow-up tests
    stop_on_system = False
    #: the rule's arithmetic is the loop's ``fields`` (on the backend's own arrays, on its device);
    #: otherwise it gets host numpy arrays
    native_fields = False

    def reset(self, loop) -> None:
        """Forget the state of a previous solve."""

    def step(self, loop, k: int, U: np.ndarray, M: np.ndarray) -> Step:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """The rule's settings, for the result's ``solver`` record."""
        return {}

    def log_note(self, step: Step) -> str:
        return ""

    def stop_note(self, hist) -> str:
        return ""

    def warmup(self, loop) -> float:
        """Compile the rule's own kernels, if it has any (the loop's warm-up); returns seconds."""
        return 0.0

    def verdict(self, step: Step, tolerance: float) -> tuple[str, str] | None:
        """``(status, reason)`` to stop after this accepted step, or None (``stop_on_system`` rules)."""
        return None

    def max_iterations_reason(self, hist, max_iterations: int, tolerance: float) -> str:
        """The reason of a ``stop_on_system`` rule's run that reached ``max_iterations``."""
        return f"max_iterations={max_iterations} reached (tolerance {tolerance:g})"

    def summary(self, hist) -> dict[str, Any]:
        """What the result's ``extra`` records of this run (counts the history does not sum up)."""
        return {}


def _ratio(a: float, b: float) -> float:
    return a / max(b, 1e-300)


class Damping(UpdateRule):
    """``U* = HJB(M_k)``, ``M* = FP(U*)``, both fields damped with ``thetaUM``."""

    name = "damping"
    native_fields = True

    def __init__(self, thetaUM: float = 0.5):
        self.thetaUM = check_theta(thetaUM)

    def describe(self):
        return {"thetaUM": self.thetaUM}

    def step(self, loop, k, U, M):
        theta, relax = self.thetaUM, loop.fields.relax
        U_star = loop.hjb(k, M)
        M_star = loop.fp(k, U_star)
        U_next, dU, nU_star, nU = relax(U, U_star, theta)
        M_next, dM, nM_star, nM = relax(M, M_star, theta)
        return Step(U_next, M_next, (_ratio(dU, nU_star), _ratio(dM, nM_star)),
                    change=(theta * dU / max(nU, 1e-300), theta * dM / max(nM, 1e-300)))


class DampingGS(Damping):
    """``U_{k+1} = (1 - thetaUM) U_k + thetaUM HJB(M_k)``, then the FP solve from ``U_{k+1}``."""

    name = "damping_gs"

    def step(self, loop, k, U, M):
        theta, relax = self.thetaUM, loop.fields.relax
        U_star = loop.hjb(k, M)
        U_next, dU, nU_star, nU = relax(U, U_star, theta)
        M_star = loop.fp(k, U_next)
        M_next, dM, nM_star, nM = relax(M, M_star, theta)
        return Step(U_next, M_next, (_ratio(dU, nU_star), _ratio(dM, nM_star)),
                    change=(theta * dU / max(nU, 1e-300), theta * dM / max(nM, 1e-300)))


class Anderson(UpdateRule):
    """Safeguarded type-II Anderson acceleration of the damping map (see :mod:`mfg_core.anderson`).

    Bookkeeping: ``(U, M)`` is the point evaluated at iteration ``k``; ``acc`` the last accepted
    point with its image and residual. A point produced by an Anderson step is a *candidate*: it is
    accepted if its residual is at most ``residual_growth`` times the accepted residual (or if
    ``residual_check`` is off); otherwise the iteration returns to ``acc`` and takes the damped step
    from there. Damped points are always accepted, so in the worst case the safeguarded method
    reduces to damping.
    """

    name = "anderson"
    stop_on_residual = True

    def __init__(self, thetaUM: float = 0.5, anderson_depth: int = 5, **options: Any):
        self.thetaUM = check_theta(thetaUM)
        if "depth" in options:
            raise ValueError("give the Anderson depth as anderson_depth=, not depth=")
        self.options = _aa.make_options(anderson_depth, **options)

    def describe(self):
        return {"thetaUM": self.thetaUM, "anderson_depth": self.options.depth,
                "anderson": self.options.as_dict(), "anderson_status_codes": _aa.STATUS_NAMES}

    def log_note(self, step):
        return f"{_aa.STATUS_NAMES[step.record['anderson_status']]} min_M={step.M.min():.2e}"

    def stop_note(self, hist):
        st = np.asarray(hist["anderson_status"])
        stalls = int(np.sum(st == _aa.STATUS_RESTART_STALLED)), int(np.sum(st == _aa.STATUS_PAUSED))
        return (f"; {int(np.sum(~np.asarray(hist['accepted'], dtype=bool)))} Anderson points rejected"
                + (f"; stall check: {stalls[0]} restarts, {stalls[1]} paused (damped) steps" if any(stalls) else ""))

    def reset(self, loop):
        p = loop.problem
        mode = self.options.accelerate
        self._n = int(np.prod(p.shape))
        self._shape = p.shape
        self._mode = mode
        self._mixer = None
        self._acc = None  # (x, g, residual norm, U_star, M_star) of the last accepted point
        self._candidate = False  # is the point about to be evaluated an Anderson extrapolation?
        self._guard = _aa.StallGuard(self.options.stall_window) if self.options.stall_check else None
        self._damped_from = None  # residual of the point the last damped step started from
        self._best = math.inf  # best accepted residual

    def _state(self, U, M):
        if self._mode == "both":
            return np.concatenate([U.ravel(), M.ravel()])
        return (U if self._mode == "U" else M).ravel().copy()

    def _unstate(self, x, U_slave, M_slave):
        # the field that is not accelerated follows the map: it is the Picard image's
        n, shape = self._n, self._shape
        if self._mode == "both":
            return x[:n].reshape(shape), x[n:].reshape(shape)
        if self._mode == "U":
            return x.reshape(shape), M_slave
        return U_slave, x.reshape(shape)

    def _norm_weights(self, loop, U_star, M_star):
        """Space-time L2 weights ``dt * w`` per block, divided by the block's squared norm, so that
        the least-squares norm measures the *relative* residual of U and of M (like the stopping
        test); fixed at the first evaluation so every difference in the history is measured alike."""
        p = loop.problem
        base = np.broadcast_to(p.dt * p.grid.weights, p.shape).ravel()
        nU, nM = loop.norms.norm(U_star), loop.norms.norm(M_star)
        wU = base / (nU * nU if nU > 1e-150 else 1.0)
        wM = base / (nM * nM if nM > 1e-150 else 1.0)
        return wU, wM

    def step(self, loop, k, U, M):
        opts, theta, p = self.options, self.thetaUM, loop.problem
        acc, candidate = self._acc, self._candidate
        try:
            if self._mode == "U":  # the map of U: M* = FP(U), U* = HJB(M*)
                M_star = loop.fp(k, U)
                U_star = loop.hjb(k, M_star)
            else:
                U_star = loop.hjb(k, M)
                M_star = loop.fp(k, U_star)
            failed = False
        except (ValueError, ConvergenceError):
            # an extrapolated point the map cannot handle is a rejected point, not a crash
            if not (candidate and opts.residual_check and acc is not None):
                raise
            failed = True
        x = self._state(U, M)
        if not failed:
            g = self._state(U_star, M_star)
            if self._mixer is None:
                wU, wM = self._norm_weights(loop, U_star, M_star)
                W = np.concatenate([wU, wM]) if self._mode == "both" else (wU if self._mode == "U" else wM)
                self._mixer = _aa.AndersonMixer(opts.depth, opts.regularization, opts.restart_condition,
                                                opts.beta, weights=W)
            f = g - x
            r = self._mixer.norm(f)
            if not math.isfinite(r):
                raise DivergenceError(f"the Picard map returned NaN or inf at iteration {k}", k)
            residual = (loop.norms.relative_change(U_star, U), loop.norms.relative_change(M_star, M))
        else:
            g, f, r, residual = None, None, math.inf, (math.nan, math.nan)
        reject = candidate and opts.residual_check and acc is not None and not (r <= opts.residual_growth * acc[2])
        guard = self._guard
        if guard is not None and not candidate and self._damped_from is not None:
            guard.damped(self._damped_from, r)  # this point is a damped step's result
        info = None
        if reject:
            if opts.restart_on_reject:
                self._mixer.reset(keep_last=True)  # the newest pair is the accepted point's image
            elif g is not None:
                self._mixer.push(x, g, f)  # still a valid secant pair of the map
            xa, ga, ra, Ua, Ma = acc
            x_next = xa + theta * (ga - xa)
            U_slave, M_slave = Ua, Ma
            status, accepted = _aa.STATUS_REJECTED, False
            self._damped_from = ra
        else:
            self._acc = (x, g, r, U_star, M_star)
            self._mixer.push(x, g, f)
            self._best = min(self._best, r)
            stall = guard.check(k, self._best) if guard is not None else None
            if stall is not None or (guard is not None and guard.pausing(k)):
                if stall is not None:
                    self._mixer.reset(keep_last=True)  # a stale history: start afresh from this pair
                x_next, status = x + theta * (g - x), (stall if stall is not None else _aa.STATUS_PAUSED)
            else:
                info = self._mixer.step()
                x_next = info.x_next if info.x_next is not None else x + theta * (g - x)  # fallback: damped step
                status = info.status
            U_slave, M_slave = U_star, M_star
            accepted = True
            self._damped_from = None if status == _aa.STATUS_ANDERSON else r
        U_next, M_next = (np.array(X) for X in self._unstate(x_next, U_slave, M_slave))
        if opts.positivity:
            M_next = _aa.project_density(M_next, p.grid.weights)
        self._candidate = status == _aa.STATUS_ANDERSON
        return Step(U_next, M_next, residual, accepted=accepted, record={
            "anderson_residual": r, "accepted": accepted, "anderson_step": status == _aa.STATUS_ANDERSON,
            "anderson_status": status, "condition": info.condition if info is not None else math.nan,
            "anderson_columns": info.columns if info is not None else 0,
        })


class AndersonPlain(Anderson):
    """:class:`Anderson` with every safeguard off by default: the method as the seed library ran it."""

    name = "anderson_plain"

    def __init__(self, thetaUM: float = 0.5, anderson_depth: int = 5, **options: Any):
        super().__init__(thetaUM, anderson_depth, **{**_aa.PLAIN_OPTIONS, **options})
