r"""Damping versus Anderson acceleration on one problem, in one process (for notebooks and tests).

The workflow's ``compare_coupling`` stage draws the same comparison from its stored runs instead
(one Snakemake job per run, so runs are cached, parallel and shared with the other stages; see
:func:`mfg_core.analysis.coupling_table`); both run "plain" Anderson with :data:`PLAIN_OPTIONS`, and
a test keeps the workflow's schema default in step with it. This module adds a sweep over several
``thetaUM`` and runs everything in one call.

:func:`compare_coupling` solves one MFG problem with the Picard iteration of
:class:`mfg_core.FixedPointIterator` under three kinds of update of the state ``x = (U, M)``,
``f_k = Phi(x_k) - x_k``:

* ``"damping"``: ``x_{k+1} = x_k + thetaUM f_k`` for every ``thetaUM`` in ``thetas``;
* ``"anderson_plain"``: type-II Anderson of depth ``m`` (:mod:`mfg_core.anderson`, equation (2))
  with every safeguard off (no residual check, no positivity projection, no common random numbers):
  the method as the predecessor ran it;
* ``"anderson_safeguarded"``: the defaults of ``use_anderson=True`` (residual-decrease check,
  positivity projection + mass renormalisation, common random numbers for the particle solver).

and for each Fokker-Planck solver in ``fp_methods``: ``"fdm"`` (:class:`mfg_core.FPFDMSolver`,
deterministic) and ``"particle"`` (:class:`mfg_core.FPParticleSolver`). Every run uses the same
HJB solver (:class:`mfg_core.HJBFDMSolver`), initial guess, ``max_iterations`` and ``tolerance``;
one iteration is one Picard evaluation (one HJB and one FP solve) for every method, rejected
Anderson points included, so iteration counts and wall times compare directly.
"""

from __future__ import annotations

import math
import time
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from . import problems as _problems
from .backends import get_backend
from .coupling import FixedPointIterator
from .problem import MFGProblem
from .solvers import ConvergenceError, FPFDMSolver, HJBFDMSolver

FP_METHODS = ("fdm", "particle")
METHODS = ("damping", "anderson_plain", "anderson_safeguarded")

#: the safeguards off: Anderson as the predecessor ran it
PLAIN_OPTIONS = dict(residual_check=False, positivity=False, common_random_numbers=False)

TABLE_COLUMNS = (
    "run", "problem", "fp", "method", "thetaUM", "depth", "beta", "iterations",
    "iterations_to_tolerance", "converged", "final_residual", "final_change", "min_residual",
    "max_mass_error", "min_m", "rejected", "wall_time", "num_particles", "seed",
    "common_random_numbers", "tolerance", "max_iterations", "Nx", "Nt", "reason",
)
HISTORY_COLUMNS = (
    "run", "problem", "fp", "method", "thetaUM", "depth", "iteration", "fp_residual", "fp_res_U",
    "fp_res_M", "res_U", "res_M", "mass_error", "min_m", "accepted",
)


class Comparison(NamedTuple):
    """``table`` (one row per run) and ``histories`` (one row per run and iteration)."""

    table: pd.DataFrame
    histories: pd.DataFrame


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def compare_coupling(
    problem: str | MFGProblem = "congestion",
    fp_methods: tuple[str, ...] = FP_METHODS,
    thetas: tuple[float, ...] = (0.3, 0.5, 0.8),
    depths: tuple[int, ...] = (5,),
    *,
    anderson_theta: float = 0.5,
    max_iterations: int = 100,
    tolerance: float = 1e-6,
    num_particles: int = 2000,
    seed: int = 0,
    backend: str = "numpy",
    particle_common_random_numbers: bool | tuple[bool, ...] = (False, True),
    methods: tuple[str, ...] = METHODS,
    problem_overrides: dict[str, Any] | None = None,
) -> Comparison:
    r"""Run damping, plain Anderson and safeguarded Anderson on one problem; tabulate the outcome.

    Parameters
    ----------
    problem : a registered problem name (``mfg_core.problems.names()``) or an :class:`MFGProblem`.
    fp_methods : subset of ``("fdm", "particle")``.
    thetas : damping weights ``thetaUM`` in (0, 1] of the ``"damping"`` runs.
    depths : Anderson depths ``m >= 1``; each gives one plain and one safeguarded run.
    anderson_theta : the ``thetaUM`` of the damped fallback steps of the Anderson runs.
    max_iterations, tolerance : as in :meth:`FixedPointIterator.solve`.
    num_particles, seed : particle solver settings (the same particles for every particle run).
    backend : the backend every solver runs on.
    particle_common_random_numbers : the particle solver's own setting(s) for the damping and
        plain-Anderson particle runs; each value gives its own runs. Default ``(False, True)``: fresh
        random numbers in every Picard evaluation (the ordinary particle method) *and* common random
        numbers, so that the effect of common random numbers is separated from that of Anderson.
        The safeguarded runs switch them on themselves (one run per depth).
    methods : subset of ``("damping", "anderson_plain", "anderson_safeguarded")``.
    problem_overrides : keyword overrides for ``mfg_core.problems.load`` (e.g. ``Nx``, ``Nt``,
        ``kappa``); only with a problem name.

    Returns
    -------
    :class:`Comparison` ``(table, histories)``, two tidy :class:`pandas.DataFrame`.

    ``table`` -- one row per run, columns (:data:`TABLE_COLUMNS`):

    ``run`` (str)                 unique id, e.g. ``"particle/anderson_safeguarded/m5"``,
                                  ``"particle/damping/theta0.5/crn"`` (``/crn``: common random numbers)
    ``problem`` (str)             problem name
    ``fp`` (str)                  ``"fdm"`` or ``"particle"``
    ``method`` (str)              ``"damping"``, ``"anderson_plain"`` or ``"anderson_safeguarded"``
    ``thetaUM`` (float)           damping weight (Anderson: the weight of its damped fallback steps)
    ``depth`` (int)               Anderson depth ``m`` (0 for damping)
    ``beta`` (float)              damping of the Anderson step (NaN for damping)
    ``iterations`` (int)          Picard evaluations performed
    ``iterations_to_tolerance``   = ``iterations`` if converged, else NaN (float column)
    ``converged`` (bool)          the iterator's stopping criterion was met
    ``final_residual`` (float)    relative fixed-point residual ``max(||Phi(x)_U - U|| / ||Phi(x)_U||,
                                  same for M)`` at the last point evaluated (NaN if the map failed there)
    ``final_change`` (float)      ``max(res_U, res_M)``: relative change of the last update
    ``min_residual`` (float)      smallest ``final_residual``-type value over the run
    ``max_mass_error`` (float)    ``max`` over iterations and times of ``|sum(w M[n]) - 1|`` (iterates)
    ``min_m`` (float)             ``min`` over iterations of ``min M`` (negative: lost positivity)
    ``rejected`` (int)            Anderson points rejected by the residual check (0 otherwise)
    ``wall_time`` (float)         seconds of the solve (after warm-up)
    ``num_particles`` (float)     particles (NaN for fdm)
    ``seed`` (float)              particle seed (NaN for fdm)
    ``common_random_numbers``     whether the particle solver reused its random numbers (False for fdm)
    ``tolerance``, ``max_iterations``, ``Nx``, ``Nt``: the settings
    ``reason`` (str)              why the run stopped (an exception's message if it raised)

    ``histories`` -- one row per run and iteration, columns (:data:`HISTORY_COLUMNS`): ``run``,
    ``problem``, ``fp``, ``method``, ``thetaUM``, ``depth``, ``iteration`` (1-based),
    ``fp_residual`` (= max(fp_res_U, fp_res_M)), ``fp_res_U``, ``fp_res_M``, ``res_U``, ``res_M``,
    ``mass_error``, ``min_m``, ``accepted`` (bool; always True for damping).

    A run that raises (:class:`mfg_core.ConvergenceError` / ``DivergenceError``) gives a row with
    ``converged=False``, ``iterations = 0``, NaN measurements and the message in ``reason``; it does not stop
    the comparison.
    """
    # ---- validate everything before any work
    fp_methods = tuple(fp_methods)
    if not fp_methods or any(f not in FP_METHODS for f in fp_methods):
        raise ValueError(f"fp_methods must be a non-empty subset of {FP_METHODS}, got {fp_methods!r}")
    methods = tuple(methods)
    if not methods or any(m not in METHODS for m in methods):
        raise ValueError(f"methods must be a non-empty subset of {METHODS}, got {methods!r}")
    thetas = tuple(thetas)
    for th in thetas:
        if isinstance(th, bool) or not isinstance(th, (int, float, np.number)) or not (0 < th <= 1):
            raise ValueError(f"thetas must be numbers in (0, 1], got {thetas!r}")
    if "damping" in methods and not thetas:
        raise ValueError("thetas must not be empty when 'damping' is among the methods")
    depths = tuple(_check_int("depths", d, 1) for d in depths)
    if any(m.startswith("anderson") for m in methods) and not depths:
        raise ValueError("depths must not be empty when an Anderson method is among the methods")
    if isinstance(anderson_theta, bool) or not isinstance(anderson_theta, (int, float, np.number)) \
            or not (0 < anderson_theta <= 1):
        raise ValueError(f"anderson_theta must be in (0, 1], got {anderson_theta!r}")
    max_iterations = _check_int("max_iterations", max_iterations, 1)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float, np.number)) \
            or not (0 < tolerance < math.inf):
        raise ValueError(f"tolerance must be a finite number > 0, got {tolerance!r}")
    num_particles = _check_int("num_particles", num_particles, 2)
    seed = _check_int("seed", seed, 0)
    crn_values = (particle_common_random_numbers,) if isinstance(particle_common_random_numbers, (bool, np.bool_)) \
        else tuple(particle_common_random_numbers)
    if not crn_values or not all(isinstance(c, (bool, np.bool_)) for c in crn_values):
        raise ValueError("particle_common_random_numbers must be True, False or a non-empty tuple of them, "
                         f"got {particle_common_random_numbers!r}")
    get_backend(backend)  # unknown or missing backend: error now, not after half the runs
    if isinstance(problem, MFGProblem):
        if problem_overrides:
            raise ValueError("problem_overrides needs a problem name, not an MFGProblem")
        prob = problem
    elif isinstance(problem, str):
        prob = _problems.load(problem, **(problem_overrides or {}))
    else:
        raise ValueError(f"problem must be a problem name or an MFGProblem, got {type(problem).__name__}")

    runs: list[tuple[str, str, float, int, dict[str, Any], bool]] = []
    for fp in fp_methods:
        # common random numbers only mean something for particles
        crns = tuple(dict.fromkeys(bool(c) for c in crn_values)) if fp == "particle" else (False,)
        if "damping" in methods:
            runs += [(fp, "damping", float(th), 0, {}, c) for th in thetas for c in crns]
        for m in depths:
            if "anderson_plain" in methods:
                runs += [(fp, "anderson_plain", float(anderson_theta), m, dict(PLAIN_OPTIONS), c) for c in crns]
            if "anderson_safeguarded" in methods:
                runs.append((fp, "anderson_safeguarded", float(anderson_theta), m, {}, False))

    rows, hist_frames = [], []
    for fp, method, theta, depth, options, crn_setting in runs:
        hjb = HJBFDMSolver(prob, backend=backend)
        if fp == "fdm":
            fps = FPFDMSolver(prob, backend=backend)
        else:
            from .particles import FPParticleSolver

            fps = FPParticleSolver(prob, num_particles=num_particles, seed=seed, backend=backend,
                                   common_random_numbers=crn_setting)
        use_aa = method != "damping"
        it = FixedPointIterator(prob, hjb, fps, thetaUM=theta, use_anderson=use_aa,
                                anderson_depth=depth if use_aa else 5, **options)
        run_id = (f"{fp}/{method}/" + (f"theta{theta:g}" if method == "damping" else f"m{depth}")
                  + ("/crn" if crn_setting else ""))
        start = time.perf_counter()
        try:
            res = it.solve(max_iterations=max_iterations, tolerance=tolerance)
            error = None
        except ConvergenceError as exc:
            res, error = None, f"{type(exc).__name__}: {exc}"
        wall = time.perf_counter() - start
        # what the particle solver actually used (the safeguarded runs switch it on for the solve)
        crn = bool(getattr(it, "_crn_used", None) if use_aa else getattr(fps, "common_random_numbers", False))
        row = {
            "run": run_id, "problem": prob.name, "fp": fp, "method": method, "thetaUM": theta,
            "depth": depth, "beta": it.anderson.beta if use_aa else math.nan,
            "num_particles": float(num_particles) if fp == "particle" else math.nan,
            "seed": float(seed) if fp == "particle" else math.nan,
            "common_random_numbers": crn if fp == "particle" else False,
            "tolerance": float(tolerance), "max_iterations": max_iterations,
            "Nx": prob.Nx, "Nt": prob.Nt,
        }
        if res is None:
            row.update(iterations=0, iterations_to_tolerance=math.nan, converged=False,
                       final_residual=math.nan, final_change=math.nan, min_residual=math.nan,
                       max_mass_error=math.nan, min_m=math.nan, rejected=0, wall_time=wall,
                       reason=error)
        else:
            h = res.history
            fp_res = np.maximum(h["fp_res_U"], h["fp_res_M"])
            accepted = np.asarray(h.get("accepted", np.ones(res.iterations, dtype=bool)), dtype=bool)
            row.update(
                iterations=int(res.iterations),
                iterations_to_tolerance=float(res.iterations) if res.converged else math.nan,
                converged=bool(res.converged),
                final_residual=float(fp_res[-1]),
                final_change=float(max(h["res_U"][-1], h["res_M"][-1])),
                min_residual=float(np.nanmin(fp_res)) if np.any(np.isfinite(fp_res)) else math.nan,
                max_mass_error=float(np.max(h["mass_error"])),
                min_m=float(np.min(h["min_M"])),
                rejected=int(np.sum(~accepted)),
                wall_time=float(res.wall_time),
                reason=res.reason,
            )
            hist_frames.append(pd.DataFrame({
                "run": run_id, "problem": prob.name, "fp": fp, "method": method, "thetaUM": theta,
                "depth": depth, "iteration": np.arange(1, res.iterations + 1),
                "fp_residual": fp_res, "fp_res_U": h["fp_res_U"], "fp_res_M": h["fp_res_M"],
                "res_U": h["res_U"], "res_M": h["res_M"], "mass_error": h["mass_error"],
                "min_m": h["min_M"], "accepted": accepted,
            }))
        rows.append(row)
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    table["converged"] = table["converged"].astype(bool)
    table["common_random_numbers"] = table["common_random_numbers"].astype(bool)
    histories = (pd.concat(hist_frames, ignore_index=True) if hist_frames
                 else pd.DataFrame(columns=list(HISTORY_COLUMNS)))
    return Comparison(table, histories[list(HISTORY_COLUMNS)])


__all__ = ["compare_coupling", "Comparison", "TABLE_COLUMNS", "HISTORY_COLUMNS", "METHODS",
           "FP_METHODS", "PLAIN_OPTIONS"]
