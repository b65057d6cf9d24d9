r"""``FixedPointIterator``: the seed library's signature for the one fixed-point loop.

It builds the update rule (``damping``, or ``anderson`` with ``use_anderson=True``) and runs
:class:`mfg_core.fixed_point.FixedPointLoop`; :func:`mfg_core.solve` is the same loop built from the
method registry by name. The rules and the loop are documented in :mod:`mfg_core.rules` and
:mod:`mfg_core.fixed_point`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import validation
from .backends import Backend, get_backend
from .errors import DivergenceError
from .fixed_point import FixedPointLoop
from .problem import MFGProblem
from .result import FixedPointResult
from .rules import Anderson, Damping

__all__ = ["FixedPointIterator", "DivergenceError"]


class FixedPointIterator(FixedPointLoop):
    """Picard iteration for the coupled HJB-FP system with damping or Anderson acceleration.

    Parameters
    ----------
    problem : the :class:`MFGProblem`.
    hjb_solver, fp_solver : objects with ``solve(M) -> U`` and ``solve(U) -> M``.
    thetaUM : damping weight of the new iterate, in (0, 1]; 1 is plain Picard.
    use_anderson, anderson_depth : Anderson acceleration (see :mod:`mfg_core.anderson`).
    backend : if given, both solvers are switched to this backend (as in the seed library).
    **anderson_options : the settings of :class:`mfg_core.anderson.AndersonOptions`, validated even
        when ``use_anderson=False`` so that a typo is never silently ignored. ``common_random_numbers``
        (default True) states that the FP solver must be deterministic: a particle solver built with
        ``common_random_numbers=False`` is refused (build it with True, or pass False here).
    """

    def __init__(self, problem: MFGProblem, hjb_solver, fp_solver, thetaUM: float = 0.5,
                 use_anderson: bool = False, anderson_depth: int = 5,
                 backend: str | Backend | None = None, **anderson_options: Any):
        crn = validation.flag("common_random_numbers", anderson_options.pop("common_random_numbers", True))
        anderson_rule = Anderson(thetaUM, anderson_depth, **anderson_options)  # validates every option
        self.use_anderson = bool(use_anderson)
        if self.use_anderson and crn and getattr(fp_solver, "common_random_numbers", True) is False:
            raise ValueError("Anderson needs a deterministic Picard map: build the particle solver with "
                             "common_random_numbers=True, or pass common_random_numbers=False to run "
                             "Anderson on a noisy map")
        rule = anderson_rule if self.use_anderson else Damping(thetaUM)
        if backend is not None:
            be = get_backend(backend)
            for s in (hjb_solver, fp_solver):
                s.use_backend(be)
        super().__init__(problem, hjb_solver, fp_solver, rule,
                         method="anderson" if self.use_anderson else "damping")
        self.thetaUM = rule.thetaUM
        self.anderson = anderson_rule.options
        self.anderson_depth = self.anderson.depth
        self.backend = getattr(hjb_solver, "backend", None)

    def picard_map(self, M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One Picard evaluation: ``U* = HJB(M)``, ``M* = FP(U*)``."""
        U_new = self.hjb_solver.solve(M)
        return U_new, self.fp_solver.solve(U_new)

    def solve(self, max_iterations: int = 100, tolerance: float = 1e-6, *,
              initial: tuple[np.ndarray, np.ndarray] | None = None, initial_guess: str = "terminal",
              warmup: bool = True, blowup_factor: float = 1e4, verbose: bool = False) -> FixedPointResult:
        """Iterate until converged (see :mod:`mfg_core.fixed_point` for the stopping rules)."""
        return self.run(max_iterations, tolerance, initial_guess=initial_guess, initial=initial,
                        warmup=warmup, blowup_factor=blowup_factor, verbose=verbose)


