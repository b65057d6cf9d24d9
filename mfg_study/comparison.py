r"""Coupling methods side by side on one problem, in one process (for notebooks and tests).

The workflow's ``compare_coupling`` stage draws the same comparison from its stored runs instead
(one Snakemake job per run, so runs are cached, parallel and shared with the other stages; see
:func:`mfg_study.tables.coupling_table`). This function adds a sweep over several ``thetaUM`` and
runs everything in one call, through :func:`mfg_core.solve`, by the registered method names
(:mod:`mfg_core.methods`):

* a damping-like method (``damping``, ``damping_gs``): one run per ``thetaUM`` in ``thetas``;
* an Anderson-like method (one with an ``anderson_depth`` option: ``anderson``, ``anderson_plain``):
  one run per depth in ``depths``, its damped fallback steps weighted ``anderson_theta``;
* any other method (``newton``): one run with its registered defaults (``thetaUM`` =
  ``anderson_theta``), stopping when ``max|F|`` of the discrete system is below ``tolerance``;

and for each Fokker-Planck method in ``fp_methods``. Particle runs of a method that needs a deterministic map
(``anderson``: its registered default is common random numbers) use common random numbers; the
others run once per value of ``particle_common_random_numbers``. Every run uses the same HJB solver, initial guess,
``max_iterations`` and ``tolerance``; one iteration is one Picard evaluation (one HJB and one FP
solve) for every Picard method, rejected Anderson points included, so iteration counts and wall
times compare directly; a Newton iteration is one Newton step (its linear solves are counted in its
own history).

Equilibria. An attractive (non-monotone) coupling can have several equilibria, and two methods can
converge to different ones (``attractive_quickstart``: damping to one peak in 44 iterations,
Anderson to two peaks in 76). Iteration counts then compare different work, so the table labels the
solution each converged run reached (``equilibrium``: 0 for the first distinct solution of that FP
method in run order, 1 for the next, ...; -1 if the run did not converge; U and M compared by
:func:`mfg_study.tables.equilibrium_labels` within ``equilibrium_rtol``) and counts them
(``equilibria``): compare iteration counts only within one label.
"""

from __future__ import annotations

import math
import time
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

import mfg_core as mc
from mfg_core import methods as _methods
from mfg_core import problems as _problems
from mfg_core.backends import get_backend
from mfg_core.errors import ConvergenceError
from mfg_core.problem import MFGProblem

from . import tables

METHODS = ("damping", "anderson_plain", "anderson")

TABLE_COLUMNS = (
    "run", "problem", "fp", "method", "thetaUM", "depth", "beta", "iterations",
    "iterations_to_tolerance", "converged", "final_residual", "final_change", "min_residual",
    "max_mass_error", "min_m", "rejected", "wall_time", "num_particles", "seed",
    "common_random_numbers", "tolerance", "max_iterations", "Nx", "Nt", "equilibrium", "equilibria", "reason",
)
HISTORY_COLUMNS = (
    "run", "problem", "fp", "method", "thetaUM", "depth", "iteration", "residual", "residual_U",
    "residual_M", "change_U", "change_M", "mass_error", "min_m", "accepted",
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
    fp_methods: tuple[str, ...] = ("fdm", "particle"),
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
    equilibrium_rtol: float = tables.EQUILIBRIUM_RTOL,
) -> Comparison:
    r"""Run the coupling ``methods`` on one problem; tabulate the outcome (see the module docstring).

    Parameters
    ----------
    problem : a registered problem name (``mfg_core.problems.names()``) or an :class:`MFGProblem`.
    fp_methods : registered FP methods (``mfg_core.methods.names("fp")``).
    thetas : ``thetaUM`` in (0, 1] of the damping-like runs.
    depths : Anderson depths ``m >= 1`` of the Anderson-like runs.
    anderson_theta : the ``thetaUM`` of the damped fallback steps of the Anderson runs.
    max_iterations, tolerance : as in :func:`mfg_core.solve`.
    num_particles, seed : particle solver settings (the same particles for every particle run).
    backend : the backend every solver runs on.
    particle_common_random_numbers : the particle solver's setting(s) for the methods that do not
        set their own; each value gives its own runs. Default ``(False, True)``: fresh random numbers
        in every Picard evaluation (the ordinary particle method) *and* common random numbers, so that
        their effect is separated from that of the coupling method.
    methods : registered coupling methods (``mfg_core.methods.names("coupling")``).
    problem_overrides : keyword overrides for ``mfg_core.problems.load``; only with a problem name.
    equilibrium_rtol : two converged runs reached different solutions when U or M differ by more
        than this, relative to their largest value.

    Returns
    -------
    :class:`Comparison` ``(table, histories)``, two tidy :class:`pandas.DataFrame`.

    ``table`` -- one row per run (:data:`TABLE_COLUMNS`): ``run`` (unique id, e.g.
    ``"particle/anderson/m5"``, ``"particle/damping/theta0.5/crn"``; ``/crn``: common random
    numbers), ``problem``, ``fp``, ``method``, ``thetaUM``, ``depth`` (0 for damping-like), ``beta``
    (NaN for damping-like), ``iterations``, ``iterations_to_tolerance`` (NaN unless converged),
    ``converged``, ``final_residual`` (relative fixed-point residual of the last point evaluated),
    ``final_change`` (relative change of the last update), ``min_residual``, ``max_mass_error``
    (over iterations and times of ``|sum(w M[n]) - 1|``), ``min_m``, ``rejected`` (Anderson points
    rejected by the residual check), ``wall_time``, ``num_particles`` / ``seed`` (NaN for fdm),
    ``common_random_numbers``, ``tolerance``, ``max_iterations``, ``Nx``, ``Nt``, ``equilibrium``
    and ``equilibria`` (see the module docstring), ``reason``.

    ``histories`` -- one row per run and iteration (:data:`HISTORY_COLUMNS`), with ``residual``
    (= max(residual_U, residual_M)), the per-field residuals and changes, ``mass_error``, ``min_m``
    and ``accepted``.

    A run that raises (:class:`mfg_core.ConvergenceError` / ``DivergenceError``) gives a row with
    ``converged=False``, ``iterations = 0``, NaN measurements and the message in ``reason``; it does
    not stop the comparison.
    """
    # ---- validate everything before any work
    fp_methods = tuple(fp_methods)
    if not fp_methods or any(f not in _methods.names("fp") for f in fp_methods):
        raise ValueError(f"fp_methods must be a non-empty subset of {_methods.names('fp')}, got {fp_methods!r}")
    methods = tuple(methods)
    if not methods or any(m not in _methods.names("coupling") for m in methods):
        raise ValueError(f"methods must be a non-empty subset of {_methods.names('coupling')}, got {methods!r}")
    anderson_like = {m for m in methods if "anderson_depth" in _methods.get("coupling", m).options}
    damping_like = {m for m in methods if set(_methods.get("coupling", m).options) == {"thetaUM"}}
    for m in methods:
        for f in fp_methods:
            if not _methods.get("coupling", m).works_with(f):
                raise ValueError(f"methods: coupling method {m!r} does not work with fp method {f!r} "
                                 f"(it works with {list(_methods.get('coupling', m).fp_methods)}); "
                                 "leave one of them out")
    thetas = tuple(thetas)
    for th in thetas:
        if isinstance(th, bool) or not isinstance(th, (int, float, np.number)) or not (0 < th <= 1):
            raise ValueError(f"thetas must be numbers in (0, 1], got {thetas!r}")
    if damping_like and not thetas:
        raise ValueError("thetas must not be empty when a damping method is among the methods")
    depths = tuple(_check_int("depths", d, 1) for d in depths)
    if anderson_like and not depths:
        raise ValueError("depths must not be empty when an Anderson method is among the methods")
    if isinstance(anderson_theta, bool) or not isinstance(anderson_theta, (int, float, np.number)) \
            or not (0 < anderson_theta <= 1):
        raise ValueError(f"anderson_theta must be in (0, 1], got {anderson_theta!r}")
    max_iterations = _check_int("max_iterations", max_iterations, 1)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float, np.number)) \
            or not (0 < tolerance < 1):
        raise ValueError(f"tolerance must be a number in (0, 1), got {tolerance!r}")
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

    runs: list[tuple[str, str, str, dict[str, Any], bool]] = []  # (run id, fp, method, options, crn)
    for fp in fp_methods:
        particle = "common_random_numbers" in _methods.get("fp", fp).options
        for method in methods:
            # a method that needs a deterministic map runs with it; the others with each setting
            own = True if _methods.get("coupling", method).fp_defaults.get("common_random_numbers") else None
            crns = (None,) if not particle else ((own,) if own is not None else tuple(dict.fromkeys(crn_values)))
            if method in anderson_like:
                variants = [(f"m{m}", {"thetaUM": float(anderson_theta), "anderson_depth": m}) for m in depths]
            elif method in damping_like:
                variants = [(f"theta{th:g}", {"thetaUM": float(th)}) for th in thetas]
            else:
                variants = [("default", {"thetaUM": float(anderson_theta)})]
            for label, opts in variants:
                for crn in crns:
                    extra = {} if crn is None else {"num_particles": num_particles, "seed": seed,
                                                    "common_random_numbers": bool(crn)}
                    suffix = "/crn" if crn and own is None else ""
                    runs.append((f"{fp}/{method}/{label}{suffix}", fp, method, {**opts, **extra}, bool(crn)))

    rows, hist_frames, solutions = [], [], []
    for run_id, fp, method, options, crn in runs:
        loop = mc.build(prob, fp=fp, coupling=method, backend=backend, **options)
        start = time.perf_counter()
        try:
            res = loop.run(max_iterations, tolerance)
            error = None
        except ConvergenceError as exc:
            res, error = None, f"{type(exc).__name__}: {exc}"
        wall = time.perf_counter() - start
        depth = options.get("anderson_depth", 0)
        row = {
            "run": run_id, "problem": prob.name, "fp": fp, "method": method, "thetaUM": options["thetaUM"],
            "depth": depth, "beta": loop.rule.options.beta if depth else math.nan,
            "num_particles": float(num_particles) if "num_particles" in options else math.nan,
            "seed": float(seed) if "seed" in options else math.nan, "common_random_numbers": crn,
            "tolerance": float(tolerance), "max_iterations": max_iterations, "Nx": prob.Nx, "Nt": prob.Nt,
            "equilibrium": -1, "equilibria": 0,
        }
        solutions.append((fp, res.U, res.M) if res is not None and res.converged else None)
        if res is None:
            row.update(iterations=0, iterations_to_tolerance=math.nan, converged=False,
                       final_residual=math.nan, final_change=math.nan, min_residual=math.nan,
                       max_mass_error=math.nan, min_m=math.nan, rejected=0, wall_time=wall,
                       reason=error)
        else:
            h = res.history
            residual = np.maximum(h["residual_U"], h["residual_M"])
            accepted = np.asarray(h.get("accepted", np.ones(res.iterations, dtype=bool)), dtype=bool)
            row.update(
                iterations=int(res.iterations),
                iterations_to_tolerance=float(res.iterations) if res.converged else math.nan,
                converged=bool(res.converged),
                final_residual=float(residual[-1]),
                final_change=float(max(h["change_U"][-1], h["change_M"][-1])),
                min_residual=float(np.nanmin(residual)) if np.any(np.isfinite(residual)) else math.nan,
                max_mass_error=float(np.max(h["mass_error"])),
                min_m=float(np.min(h["min_M"])),
                rejected=int(np.sum(~accepted)),
                wall_time=float(res.wall_time),
                reason=res.reason,
            )
            hist_frames.append(pd.DataFrame({
                "run": run_id, "problem": prob.name, "fp": fp, "method": method, "thetaUM": options["thetaUM"],
                "depth": depth, "iteration": np.arange(1, res.iterations + 1),
                "residual": residual, "residual_U": h["residual_U"], "residual_M": h["residual_M"],
                "change_U": h["change_U"], "change_M": h["change_M"], "mass_error": h["mass_error"],
                "min_m": h["min_M"], "accepted": accepted,
            }))
        rows.append(row)
    for fp in fp_methods:
        idx = [i for i, sol in enumerate(solutions) if sol is not None and sol[0] == fp]
        labels = tables.equilibrium_labels([solutions[i][1:] for i in idx], equilibrium_rtol)
        for i, lab in zip(idx, labels):
            rows[i]["equilibrium"] = lab
        for row in rows:
            if row["fp"] == fp:
                row["equilibria"] = max(labels) + 1 if labels else 0
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    table["converged"] = table["converged"].astype(bool)
    table["common_random_numbers"] = table["common_random_numbers"].astype(bool)
    histories = (pd.concat(hist_frames, ignore_index=True) if hist_frames
                 else pd.DataFrame(columns=list(HISTORY_COLUMNS)))
    return Comparison(table, histories[list(HISTORY_COLUMNS)])


__all__ = ["compare_coupling", "Comparison", "TABLE_COLUMNS", "HISTORY_COLUMNS", "METHODS"]
