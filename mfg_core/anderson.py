r"""Type-II Anderson acceleration (Walker & Ni 2011) of the MFG Picard map, with safeguards.

The method
----------
Let ``G`` be the Picard map (one HJB solve and one FP solve, see :mod:`mfg_core.rules`) acting
on the state ``x`` (``(U, M)`` flattened, or ``U`` or ``M`` alone: ``accelerate``), and
``f_j = G(x_j) - x_j`` its fixed-point residual. With the last ``m_k = min(depth, k)`` differences

    dX = [x_{k-m_k+1} - x_{k-m_k}, ..., x_k - x_{k-1}],   dF = [f_{k-m_k+1} - f_{k-m_k}, ..., f_k - f_{k-1}],

type-II Anderson solves the small least-squares problem (Tikhonov-regularised)

    gamma = argmin_g  || f_k - dF g ||_W^2 + reg * sum_i ||dF_i||_W^2 g_i^2            (1)

and steps to

    x_{k+1} = x_k + beta f_k - (dX + beta dF) gamma  =  sum_j alpha_j (x_j + beta f_j),      (2)

where ``alpha`` (``sum_j alpha_j = 1``) are the coefficients of the equivalent constrained problem
``min || sum_j alpha_j f_j ||_W``; ``beta`` in (0, 1] damps the accelerated step (``beta = 1``:
undamped Anderson). Because ``sum alpha_j = 1``, (2) is an *affine* combination of the points
``(1 - beta) x_j + beta G(x_j)``: it preserves the mass of a density exactly, but not its sign.

Norm. ``||v||_W^2 = sum_i W_i v_i^2``: the caller passes ``W`` (the space-time L2 weights
``dt * quadrature weights``, divided by the squared norm of each block so that U and M count
relatively, like the iterator's relative-change criterion).

Solving (1). The columns of ``sqrt(W) dF`` are scaled to unit length (the solution of (1) does not
depend on that scaling, only its conditioning does), and the augmented system
``[A; sqrt(reg) I] g = [b; 0]`` is solved by Householder QR (:func:`least_squares`) and a
triangular solve -- never by the normal equations, which square the condition number. The
condition number of the column-scaled ``A`` (from ``R``) measures linear dependence of the history; above
``restart_condition`` the history is dropped (restart) and the caller falls back to a damped Picard
step. A non-finite least-squares solution (NaN in the history or a breakdown) is treated the same
way and never reaches the iterate.

Safeguards (applied by the rule :class:`mfg_core.rules.Anderson`, each switchable)
---------------------------------------------------------------------------------
``residual_check``
    An Anderson point ``x_{k+1}`` is accepted only if its residual satisfies
    ``||f_{k+1}||_W <= residual_growth * ||f_acc||_W`` (``f_acc``: residual of the last accepted
    point). Otherwise it is rejected: the iterate returns to the last accepted point and takes the
    damped Picard step ``x_acc + thetaUM f_acc``. The evaluated pair ``(x_{k+1}, G(x_{k+1}))`` is
    still a valid secant of ``G`` and stays in the history unless ``restart_on_reject``.
``stall_check``, ``stall_window``
    Accelerated steps must pay for themselves against the damping they fall back to. Every damped
    step's residual decrease ``||f_after|| / ||f_before||`` is recorded (the first step, the
    fallbacks after a rejection or a restart); ``rho_D`` is the largest of them (the slowest damped
    step seen: a single damped step that decreased the residual says little about damping's rate in
    a transient, one that increased it says that damping is no contraction here).
    Every ``stall_window`` evaluations the best accepted residual is compared with its value a window
    earlier: if it fell by less than ``rho_D^stall_window`` -- what damping would have done with as
    many evaluations -- the accelerated steps have stopped paying. The first time the history is
    dropped (``restart_stalled``: a stale history is the usual cause); at a second stall within two
    windows of a restart acceleration pauses for ``stall_window`` damped steps (``paused``; each
    further pause twice as long, so that a method whose acceleration never pays costs little more
    than damping), then resumes from the history of the damped steps. Where damping does not contract (``rho_D >= 1``, or no damped step
    seen yet) the check never fires. Each of these iterations says so in ``anderson_status``.
``positivity``
    After every step (accelerated or fallback), ``M <- max(M, 0)`` and each time slice is rescaled
    to discrete mass 1 (``sum(weights * M[n]) = 1``): the extrapolation (2) can produce negative
    densities, and a particle density is only as normalised as its KDE.
Common random numbers
    are not an Anderson setting but the particle solver's own option (``common_random_numbers``):
    a noisy ``G`` makes the differences ``dF`` pure noise and (1) meaningless, so the registered
    method ``anderson`` builds its particle solver with common random numbers unless told otherwise
    (:mod:`mfg_core.methods`).

Reference: H. F. Walker and P. Ni, "Anderson acceleration for fixed-point iterations",
SIAM J. Numer. Anal. 49(4), 2011, 1715-1735.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.linalg import qr_multiply, solve_triangular

from . import validation as v

ACCELERATE = ("both", "U", "M")

# Per-iteration status codes (recorded in FixedPointResult.history["anderson_status"]). Integer codes
# rather than strings so that the history stays a numeric array (zarr-friendly).
STATUS_ANDERSON = 0  #: the next iterate is an accepted-history Anderson extrapolation (2)
STATUS_NO_HISTORY = 1  #: not enough history yet (first iteration or after a restart): damped step
STATUS_RESTART = 2  #: least-squares matrix ill-conditioned: history dropped, damped step
STATUS_NONFINITE = 3  #: least-squares data or solution NaN/inf: history dropped, damped step
STATUS_REJECTED = 4  #: the point just evaluated raised the residual: rejected, damped step from the last accepted point
STATUS_RESTART_STALLED = 5  #: accelerated steps stopped paying (stall check): history dropped, damped step
STATUS_PAUSED = 6  #: acceleration paused after repeated stalls: damped step
STATUS_NAMES = {
    STATUS_ANDERSON: "anderson",
    STATUS_NO_HISTORY: "no_history",
    STATUS_RESTART: "restart_ill_conditioned",
    STATUS_NONFINITE: "fallback_nonfinite",
    STATUS_REJECTED: "rejected_residual_growth",
    STATUS_RESTART_STALLED: "restart_stalled",
    STATUS_PAUSED: "paused",
}


@dataclass(frozen=True)
class AndersonOptions:
    """Validated Anderson settings (the ``**anderson_options`` of ``FixedPointIterator``).

    depth : number of residual differences kept (``m`` >= 1).
    regularization : Tikhonov weight ``reg >= 0`` of (1), relative to the column norms.
    restart_condition : drop the history when the condition number of the (column-scaled)
        least-squares matrix exceeds this (> 1).
    beta : damping of the accelerated step (2), in (0, 1] (default 0.7, see the comment below).
    accelerate : ``"both"`` (state ``(U, M)``), ``"M"`` (state ``M``, map ``M -> FP(HJB(M))``) or
        ``"U"`` (state ``U``, map ``U -> HJB(FP(U))``). The other field follows the map.
    residual_check, residual_growth, restart_on_reject : the residual-decrease safeguard.
    positivity : project M onto ``M >= 0`` and renormalise the mass of each time slice.
    stall_check, stall_window : restart, then pause, acceleration that stops beating damping.
    """

    depth: int = 5
    regularization: float = 1e-12
    restart_condition: float = 1e10
    # beta = 0.7 rather than the textbook 1: measured at Nx = Nt = 50, depth 5, tol 1e-8, it never
    # costs iterations and saves many under strong coupling (congestion 16 -> 15, evacuation 15 -> 15,
    # congestion_strong 56 -> 35 with FDM-FP, 58 -> 38 with particle FP).
    beta: float = 0.7
    accelerate: str = "both"
    residual_check: bool = True
    residual_growth: float = 1.0
    restart_on_reject: bool = False
    positivity: bool = True
    stall_check: bool = True
    stall_window: int = 10

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


OPTION_NAMES = tuple(AndersonOptions.__dataclass_fields__)
#: the safeguards off: Anderson as the seed library ran it (the method ``anderson_plain``)
PLAIN_OPTIONS = {"residual_check": False, "positivity": False, "stall_check": False}


def make_options(depth: Any = 5, **options: Any) -> AndersonOptions:
    """Validate Anderson settings; bad values raise ``ValueError`` naming the argument."""
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise ValueError(f"unknown Anderson option(s) {unknown}; known: {list(OPTION_NAMES)}")
    d = AndersonOptions()
    opt = {**d.as_dict(), **options}
    if opt["accelerate"] not in ACCELERATE:
        raise ValueError(f"accelerate must be one of {ACCELERATE}, got {opt['accelerate']!r}")
    return AndersonOptions(
        depth=v.integer("anderson_depth (depth)", depth, 1),
        regularization=v.in_range("regularization", opt["regularization"], 0.0, math.inf, closed_low=True,
                                  closed_high=False),
        restart_condition=v.in_range("restart_condition", opt["restart_condition"], 1.0, math.inf,
                                     closed_high=False),
        beta=v.in_range("beta", opt["beta"], 0.0, 1.0),
        accelerate=opt["accelerate"],
        residual_check=v.flag("residual_check", opt["residual_check"]),
        residual_growth=v.in_range("residual_growth", opt["residual_growth"], 1.0, math.inf,
                                   closed_low=True, closed_high=False),
        restart_on_reject=v.flag("restart_on_reject", opt["restart_on_reject"]),
        positivity=v.flag("positivity", opt["positivity"]),
        stall_check=v.flag("stall_check", opt["stall_check"]),
        stall_window=v.integer("stall_window", opt["stall_window"], 2),
    )


@dataclass
class StepInfo:
    """Outcome of :meth:`AndersonMixer.update`: ``x_next`` is ``None`` when the caller must fall back."""

    x_next: np.ndarray | None
    status: int
    condition: float = math.nan
    columns: int = 0
    alpha: np.ndarray | None = None


def least_squares(A: np.ndarray, b: np.ndarray, regularization: float, *,
                  overwrite_a: bool = False) -> tuple[np.ndarray, float]:
    """``argmin_g ||A g - b||^2 + reg ||g||^2`` by Householder QR (never the normal equations), and
    the condition number of ``A``.

    ``A = Q R`` (reduced, LAPACK ``geqrf`` through ``scipy.linalg.qr_multiply``, which applies the
    reflectors to ``b`` without forming ``Q``) turns the tall problem into the small one
    ``||R g - Q^T b||^2 + reg ||g||^2`` (the part of ``b`` outside ``range(A)`` is a constant),
    solved by a second QR of the ``2n x n`` stack ``[R; sqrt(reg) I]``. ``cond(A) = cond(R)``, from
    the singular values of the small ``R``. One tall factorisation per step: on a shared machine
    every multi-threaded BLAS call on the long vectors costs far more than its flops.
    Kept as a module-level function so that tests can inject a failing solve. ``A`` and ``b`` must
    be finite (not checked again here); ``overwrite_a`` lets LAPACK factorise ``A`` in place.
    """
    c, R = qr_multiply(A, b, mode="right", overwrite_a=overwrite_a)
    sv = np.linalg.svd(R, compute_uv=False)
    cond = float(sv[0] / sv[-1]) if sv[-1] > 0 else math.inf
    n = R.shape[1]
    if regularization > 0:
        Q2, R = np.linalg.qr(np.vstack([R, math.sqrt(regularization) * np.eye(n)]), mode="reduced")
        c = Q2.T @ np.concatenate([c, np.zeros(n)])
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        gamma = solve_triangular(R, c, lower=False, check_finite=False)
    return gamma, cond


def _sq_norm(v: np.ndarray) -> float:
    # one single-threaded pass, no temporary (not a BLAS dot: see least_squares)
    return float(np.einsum("i,i->", v, v))


class AndersonMixer:
    """Type-II Anderson mixing on flat vectors (see the module docstring, equations (1)-(2)).

    ``update(x, g)`` records the pair ``(x, G(x))`` and returns the next iterate, or ``x_next=None``
    with a status when there is not enough (or no usable) history: the caller then takes its own
    damped step. ``weights`` (the ``W`` of the norm) default to ones.

    The history is kept as its differences (the columns of ``dX + beta dF`` and ``sqrt(W) dF``, each
    computed, measured and checked once, when its pair arrives), so that a step touches the long
    vectors only to factorise the least-squares matrix and to form the new iterate: the state of a
    fine space-time grid holds millions of numbers.
    """

    def __init__(self, depth: int = 5, regularization: float = 1e-12, restart_condition: float = 1e10,
                 beta: float = 0.7, weights: np.ndarray | None = None):
        opts = make_options(depth, regularization=regularization, restart_condition=restart_condition,
                            beta=beta)
        self.depth = opts.depth
        self.regularization = opts.regularization
        self.restart_condition = opts.restart_condition
        self.beta = opts.beta
        self.sqrt_w = None if weights is None else np.sqrt(np.asarray(weights, dtype=np.float64))
        if self.sqrt_w is not None and not np.all(np.isfinite(self.sqrt_w)):
            raise ValueError("weights must be finite and >= 0")
        self._last: tuple[np.ndarray, np.ndarray, np.ndarray, bool] | None = None  # x, f, sqrt(W) f, finite
        self._dG: list[np.ndarray] = []  # (x_j - x_{j-1}) + beta (f_j - f_{j-1}), oldest first
        self._A: list[np.ndarray] = []  # sqrt(W) (f_j - f_{j-1})
        self._scale: list[float] = []  # ||column of A||
        self._finite: list[bool] = []
        self._tmp: np.ndarray | None = None

    def reset(self, keep_last: bool = True) -> None:
        """Drop the history (keeping the newest pair, a valid starting point, if ``keep_last``)."""
        self._dG, self._A, self._scale, self._finite = [], [], [], []
        if not keep_last:
            self._last = None

    @property
    def history_length(self) -> int:
        """Number of recorded pairs ``(x_j, G(x_j))``."""
        return 0 if self._last is None else len(self._dG) + 1

    def _weighted(self, v: np.ndarray) -> np.ndarray:
        return v if self.sqrt_w is None else self.sqrt_w * v

    def norm(self, v: np.ndarray) -> float:
        """The weighted norm ``||v||_W``."""
        return math.sqrt(_sq_norm(self._weighted(v)))

    def push(self, x: np.ndarray, g: np.ndarray, f: np.ndarray | None = None) -> None:
        """Record the pair ``(x, G(x))`` (differences older than ``depth`` are dropped); ``f`` is
        ``G(x) - x`` if the caller has it already."""
        x = np.array(x, dtype=np.float64).ravel()
        f = np.asarray(g, dtype=np.float64).ravel() - x if f is None else np.asarray(f).ravel()
        if self.sqrt_w is not None and self.sqrt_w.shape != x.shape:
            raise ValueError(f"weights have shape {self.sqrt_w.shape}, the state has {x.shape}")
        b = self._weighted(f)
        if self._last is not None:
            x0, f0, b0, _ = self._last
            df = f - f0
            dg = x - x0
            dg += self.beta * df
            a = b - b0 if self.sqrt_w is not None else df
            self._dG.append(dg)
            self._A.append(a)
            self._scale.append(math.sqrt(_sq_norm(a)))
            self._finite.append(bool(np.isfinite(self._scale[-1]) and np.isfinite(np.add.reduce(dg))))
            if len(self._dG) > self.depth:
                for lst in (self._dG, self._A, self._scale, self._finite):
                    del lst[0]
        finite = bool(np.isfinite(_sq_norm(b)) and np.isfinite(np.add.reduce(x)))
        self._last = (x, f, b, finite)

    def update(self, x: np.ndarray, g: np.ndarray) -> StepInfo:
        """Record ``(x, G(x))`` and return the Anderson step (2) from ``x`` (see :class:`StepInfo`)."""
        self.push(x, g)
        return self.step()

    def step(self) -> StepInfo:
        """The Anderson step (2) from the newest recorded pair."""
        if self._last is None or not self._dG:
            return StepInfo(None, STATUS_NO_HISTORY)
        x, f, b, finite = self._last
        k = len(self._dG)
        if not (finite and all(self._finite)):
            # keep the newest pair only if it is itself usable as a restart point
            self.reset(keep_last=finite)
            return StepInfo(None, STATUS_NONFINITE, columns=k)
        scale = np.array(self._scale)
        if np.any(scale == 0.0):
            # a repeated residual: the difference is zero, the problem singular
            self.reset()
            return StepInfo(None, STATUS_RESTART, condition=math.inf, columns=k)
        # columns scaled to unit length: the solution does not depend on it, the condition does
        As = np.empty((x.size, k), order="F")
        for j in range(k):
            np.divide(self._A[j], scale[j], out=As[:, j])
        try:
            gamma, cond = least_squares(As, b, self.regularization, overwrite_a=True)
            gamma = np.asarray(gamma, dtype=np.float64) / scale
        except (np.linalg.LinAlgError, ValueError):
            self.reset()
            return StepInfo(None, STATUS_NONFINITE, columns=k)
        if not cond <= self.restart_condition:  # also catches NaN
            self.reset()
            return StepInfo(None, STATUS_RESTART, condition=cond, columns=k)
        if not np.all(np.isfinite(gamma)):
            self.reset()
            return StepInfo(None, STATUS_NONFINITE, condition=cond, columns=k)
        x_next = x + self.beta * f
        if self._tmp is None or self._tmp.shape != x.shape:
            self._tmp = np.empty_like(x)
        for j in range(k):  # column by column: elementwise, no BLAS gemv on the long vectors
            x_next -= np.multiply(self._dG[j], gamma[j], out=self._tmp)
        if not np.isfinite(float(np.add.reduce(x_next))):
            self.reset()
            return StepInfo(None, STATUS_NONFINITE, condition=cond, columns=k)
        # alpha: the affine weights of (2) over the stored pairs, oldest first
        alpha = np.zeros(k + 1)
        alpha[-1] = 1.0
        alpha[1:] -= gamma
        alpha[:-1] += gamma
        return StepInfo(x_next, STATUS_ANDERSON, condition=cond, columns=k, alpha=alpha)


def project_density(M: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``max(M, 0)`` with each time slice rescaled to discrete mass ``sum(weights * M[n]) = 1``.

    ``weights`` has the shape of one slice. A slice with no positive mass left (not produced by a
    convex mix of densities, but possible after a wild extrapolation) is replaced by the uniform
    density.
    """
    M = np.maximum(M, 0.0)
    space = tuple(range(1, M.ndim))
    mass = np.sum(M * weights, axis=space)
    bad = ~(mass > 0) | ~np.isfinite(mass)
    if np.any(bad):
        M[bad] = 1.0 / float(np.sum(weights))
        mass = np.sum(M * weights, axis=space)
    return M / mass.reshape((-1,) + (1,) * len(space))


class StallGuard:
    """The ``stall_check`` safeguard's bookkeeping (see the module docstring).

    ``damped(before, after)`` records a damped step's residual decrease; ``check(k, best)`` is
    called once per evaluation with the best accepted residual so far and returns ``None`` (go on),
    ``STATUS_RESTART_STALLED`` or ``STATUS_PAUSED``; ``pausing`` says whether this iteration's step
    must be damped.
    """

    def __init__(self, window: int):
        self.window = window
        self._ratios: list[float] = []
        self._ref: tuple[int, float] | None = None  # (evaluation, best residual) a window ago
        self._last_restart = -(10**9)
        self._pause_until = -1
        self._pauses = 0

    @property
    def rho(self) -> float:
        """Damping's per-step decrease, conservatively: the slowest damped step seen (NaN before two)."""
        return max(self._ratios) if len(self._ratios) >= 2 else math.nan

    def damped(self, before: float, after: float) -> None:
        if before > 0 and math.isfinite(before) and math.isfinite(after):
            self._ratios.append(after / before)

    def pausing(self, k: int) -> bool:
        return k <= self._pause_until

    def check(self, k: int, best: float):
        if self.pausing(k) or not math.isfinite(best):
            return None
        if self._ref is None:
            self._ref = (k, best)
            return None
        k0, best0 = self._ref
        if k - k0 < self.window:
            return None
        self._ref = (k, best)
        rho = self.rho
        if not rho < 1.0 or best <= rho ** (k - k0) * best0:
            return None
        if k - self._last_restart <= 2 * self.window:
            length = self.window * 2**self._pauses  # each pause twice as long as the one before
            self._pauses += 1
            self._pause_until = k + length - 1
            self._last_restart = k + length  # the fresh history starts after the pause
            self._ref = None
            return STATUS_PAUSED
        self._last_restart = k
        return STATUS_RESTART_STALLED
