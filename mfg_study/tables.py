"""Tables that compare the runs of a study: per-run summary, mass conservation, coupling, backends.

Works on the datasets written by the workflow (``result.to_xarray()`` plus provenance, read with
:func:`mfg_study.io.open_store`); it never solves anything. Every function returns a
``pandas.DataFrame`` with one row per run or per comparison, ready for CSV and the HTML report.

Definitions used throughout (so that the numbers in the report mean one thing):

* mass deviation of a run: ``max_t |mass(t) - 1|`` of the final density, in percent (the discrete
  mass ``sum(weights * m)`` recorded by the solver; the initial density has mass 1);
* mass error over iterations: the history ``mass_error`` (the same quantity for each iterate);
* residual of an iteration: ``max(residual_U, residual_M)``, the relative fixed-point residual;
* change of an iteration: ``max(change_U, change_M)``, the relative change between iterates;
* agreement of two backends: ``max|X_b - X_ref| / max|X_ref|`` for X = U, M (relative to the largest
  reference value, so that near-zero densities do not blow the ratio up);
* speed-up: reference seconds per iteration / seconds per iteration (compile time excluded and
  reported separately; per iteration so that runs stopping at different iterations compare fairly).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

RUN_KEYS = ("problem", "fp", "coupling", "backend")
ANDERSON = ("anderson", "anderson_plain")

Run = tuple[Mapping[str, str], Any]  # (run key, xarray.Dataset)


def _key(run: Mapping[str, str]) -> dict[str, str]:
    missing = [k for k in RUN_KEYS if k not in run]
    if missing:
        raise ValueError(f"run key {dict(run)} lacks {missing}")
    return {k: str(run[k]) for k in RUN_KEYS}


def _attr_float(ds, name: str) -> float:
    v = ds.attrs.get(name)
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _history(ds, name: str) -> np.ndarray:
    return np.asarray(ds[name].values, dtype=float) if name in ds else np.zeros(0)


def _max_pair(ds, a: str, b: str) -> np.ndarray:
    ru, rm = _history(ds, a), _history(ds, b)
    if ru.size == 0 or rm.size == 0:
        return np.zeros(0)
    return np.maximum(ru, rm)


def residual_history(ds) -> np.ndarray:
    """Relative fixed-point residual ``max(residual_U, residual_M)`` per iteration.

    This is the quantity that compares across coupling methods: under damping the change between
    iterates (``change_U``, ``change_M``, what damping stops on) is ``thetaUM`` times it, under Anderson it
    is the length of the extrapolated step. Stores without it fall back to the change; a run that
    diverged to NaN gives an empty array.
    """
    res = _max_pair(ds, "residual_U", "residual_M")
    return res if res.size else change_history(ds)


def change_history(ds) -> np.ndarray:
    """``max(change_U, change_M)``: the relative change between iterates (the stopping criterion)."""
    return _max_pair(ds, "change_U", "change_M")


def mass_deviation_pct(ds) -> float:
    """``max_t |mass(t) - 1|`` in percent (NaN if the run diverged)."""
    if "mass" not in ds:
        raise ValueError("store has no 'mass' variable (written by FixedPointResult.to_xarray)")
    mass = np.asarray(ds["mass"].values, dtype=float)
    if mass.size == 0 or not np.all(np.isfinite(mass)):
        return math.nan
    return float(np.max(np.abs(mass - 1.0)) * 100.0)


def run_summary(run: Mapping[str, str], ds) -> dict[str, Any]:
    """One row describing a run: outcome, cost and the headline numbers."""
    row: dict[str, Any] = _key(run)
    iterations = int(ds.attrs.get("iterations", _history(ds, "change_U").size))
    wall = _attr_float(ds, "wall_time")
    res = residual_history(ds)
    change = change_history(ds)
    mass_err = _history(ds, "mass_error")
    min_m = float(np.nanmin(ds["m"].values)) if np.any(np.isfinite(ds["m"].values)) else math.nan
    row.update({
        "status": ds.attrs.get("status", "converged" if ds.attrs.get("converged") else "not_converged"),
        "converged": bool(ds.attrs.get("converged", 0)),
        "iterations": iterations,
        "final_residual": float(res[-1]) if res.size else math.nan,
        "min_residual": float(np.nanmin(res)) if np.any(np.isfinite(res)) else math.nan,
        "final_change": float(change[-1]) if change.size else math.nan,
        "wall_time_s": wall,
        "compile_time_s": _attr_float(ds, "compile_time"),
        "seconds_per_iteration": wall / iterations if iterations > 0 and math.isfinite(wall) else math.nan,
        "mass_deviation_pct": mass_deviation_pct(ds),
        "max_mass_error_over_iterations_pct": float(mass_err.max() * 100) if mass_err.size else math.nan,
        "min_m": min_m,
        # newton only: its linear solves in all (NaN where not recorded)
        "linear_iterations": (int(np.nansum(_history(ds, "linear_iterations"))) if "linear_iterations" in ds
                              else math.nan),
        # Anderson only: points rejected by the residual safeguard (NaN where not recorded)
        "rejected_steps": (int(np.sum(_history(ds, "accepted") == 0)) if "accepted" in ds else math.nan),
        "backend_version": ds.attrs.get("backend_version", ""),
        "threads": ds.attrs.get("threads", ""),
        "reason": ds.attrs.get("reason", ""),
    })
    return row


def runs_table(runs: Iterable[Run]) -> pd.DataFrame:
    """:func:`run_summary` of every run."""
    rows = [run_summary(k, ds) for k, ds in runs]
    if not rows:
        raise ValueError("no runs to summarise")
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# mass conservation
def mass_over_time(runs: Iterable[Run]) -> pd.DataFrame:
    """Long table: mass(t) and its deviation from 1 for every run and time node."""
    frames = []
    for k, ds in runs:
        mass = np.asarray(ds["mass"].values, dtype=float)
        frames.append(pd.DataFrame({**_key(k), "t": ds["t"].values, "mass": mass,
                                    "deviation": mass - 1.0}))
    return pd.concat(frames, ignore_index=True)


def mass_over_iterations(runs: Iterable[Run]) -> pd.DataFrame:
    """Long table: the iterate's mass error (max over t of |mass - 1|) at every iteration."""
    frames = []
    for k, ds in runs:
        err = _history(ds, "mass_error")
        frames.append(pd.DataFrame({**_key(k), "iteration": np.arange(1, err.size + 1),
                                    "mass_error": err}))
    return pd.concat(frames, ignore_index=True)


def mass_table(runs: Iterable[Run]) -> pd.DataFrame:
    """Per run: mass deviation of the solution (over t) and of the iterates (over iterations)."""
    rows = []
    for k, ds in runs:
        mass = np.asarray(ds["mass"].values, dtype=float)
        err = _history(ds, "mass_error")
        finite = mass.size > 0 and bool(np.all(np.isfinite(mass)))
        rows.append({
            **_key(k), "status": ds.attrs.get("status", ""),
            "mass_t0": float(mass[0]) if finite else math.nan,
            "mass_T": float(mass[-1]) if finite else math.nan,
            "max_deviation_over_time_pct": mass_deviation_pct(ds),
            "max_mass_error_over_iterations_pct": float(err.max() * 100) if err.size else math.nan,
            "final_iteration_mass_error_pct": float(err[-1] * 100) if err.size else math.nan,
        })
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# coupling methods
def coupling_table(runs_df: pd.DataFrame, reference: str = "damping",
                   equilibria_df: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each coupling method beside ``reference`` for the same (problem, fp, backend).

    ``iteration_ratio`` = reference iterations / iterations and ``time_ratio`` = reference wall time
    / wall time: above 1 means the method needed fewer iterations / less time. Ratios are only
    meaningful when both runs converged, which the table says next to them -- and when both reached
    the same solution: given ``equilibria_df`` (:func:`equilibria` of the same runs), the column
    ``same_solution`` says so (NaN where either did not converge) and the ratios are NaN for two
    converged runs that reached different equilibria.
    """
    _require(runs_df, ("status", "iterations", "wall_time_s", "mass_deviation_pct", "final_residual"))
    rows = []
    group_keys = ["problem", "fp", "backend"]
    for keys, group in runs_df.groupby(group_keys, sort=True):
        ref = group[group["coupling"] == reference]
        r = ref.iloc[0] if len(ref) else None
        for _, row in group.iterrows():
            out = dict(zip(group_keys, keys))
            out.update({
                "coupling": row["coupling"], "status": row["status"], "iterations": row["iterations"],
                "final_residual": row["final_residual"], "wall_time_s": row["wall_time_s"],
                "mass_deviation_pct": row["mass_deviation_pct"],
                "rejected_steps": row.get("rejected_steps", math.nan),
                "reference": reference if r is not None else "",
                "reference_status": r["status"] if r is not None else "",
                "reference_iterations": r["iterations"] if r is not None else math.nan,
                "iteration_ratio": _ratio(r["iterations"], row["iterations"]) if r is not None else math.nan,
                "time_ratio": _ratio(r["wall_time_s"], row["wall_time_s"]) if r is not None else math.nan,
                "both_converged": bool(r is not None and r["status"] == "converged"
                                       and row["status"] == "converged"),
            })
            if equilibria_df is not None:
                same = _same_solution(equilibria_df, out, r["coupling"] if r is not None else None) \
                    if out["both_converged"] else math.nan
                out["same_solution"] = same
                if same is False:
                    out["iteration_ratio"] = out["time_ratio"] = math.nan
            rows.append(out)
    return pd.DataFrame(rows)


def _same_solution(eq: pd.DataFrame, row: Mapping[str, Any], reference: str | None):
    """Whether the run ``row`` and the reference run of its (problem, fp, backend) reached the same
    solution, from an :func:`equilibria` table (True for the reference itself)."""
    if reference is None:
        return math.nan
    if row["coupling"] == reference:
        return True
    b = row["backend"]
    hit = eq[(eq["problem"] == row["problem"]) & (eq["fp"] == row["fp"]) & (
        ((eq["coupling_a"] == reference) & (eq["backend_a"] == b) & (eq["coupling_b"] == row["coupling"])
         & (eq["backend_b"] == b))
        | ((eq["coupling_b"] == reference) & (eq["backend_b"] == b) & (eq["coupling_a"] == row["coupling"])
           & (eq["backend_a"] == b)))]
    return bool(hit["same_solution"].iloc[0]) if len(hit) else math.nan


# ---------------------------------------------------------------------------------------------
# equilibria: did two converged runs reach the same solution?
#: two converged runs reached different solutions when U or M differ by more than this (relative to the
#: largest value, :func:`max_relative_difference`): far above what runs of one solution differ by at
#: tolerances <= 1e-5 (measured <= 1e-5), far below what distinct equilibria of the attractive
#: quick-start problem differ by (measured 1.0 in M, 0.4 in U)
EQUILIBRIUM_RTOL = 1e-3


def equilibrium_labels(fields, rtol: float = EQUILIBRIUM_RTOL) -> list[int]:
    """Group solutions ``[(U, M), ...]`` into equilibria: label 0 is the first one's, each next one
    joins the first label whose first member it matches (U and M within ``rtol``,
    :func:`max_relative_difference`), or opens a new label."""
    reps: list[tuple[np.ndarray, np.ndarray]] = []
    labels = []
    for U, M in fields:
        for j, (U0, M0) in enumerate(reps):
            if max_relative_difference(U, U0) <= rtol and max_relative_difference(M, M0) <= rtol:
                labels.append(j)
                break
        else:
            reps.append((U, M))
            labels.append(len(reps) - 1)
    return labels


def equilibria(runs: Iterable[Run], rtol: float = EQUILIBRIUM_RTOL) -> pd.DataFrame:
    """Every pair of *converged* runs of one (problem, fp): do they have the same solution?

    An attractive (non-monotone) coupling can have several equilibria, and two coupling methods can
    converge to different ones (the attractive quick-start problem: damping to one peak, Anderson to
    two); their iteration counts then measure different work. One row per pair: ``problem``, ``fp``,
    ``coupling_a``, ``backend_a``, ``coupling_b``, ``backend_b``, ``max_rel_diff_U``,
    ``max_rel_diff_M``, ``same_solution`` (both within ``rtol``), ``equilibrium_a``,
    ``equilibrium_b`` (labels per problem/fp from :func:`equilibrium_labels`, in run order) and
    ``equilibria`` (how many distinct solutions the converged runs of that problem/fp reached).
    """
    groups: dict[tuple[str, str], list[tuple[dict[str, str], Any]]] = {}
    for k, ds in runs:
        key = _key(k)
        if bool(ds.attrs.get("converged", 0)):
            groups.setdefault((key["problem"], key["fp"]), []).append((key, ds))
    rows = []
    for (problem, fp), members in groups.items():
        fields = [(np.asarray(ds["u"].values), np.asarray(ds["m"].values)) for _, ds in members]
        labels = equilibrium_labels(fields, rtol)
        for a in range(len(members)):
            for b in range(a + 1, len(members)):
                dU = max_relative_difference(fields[a][0], fields[b][0])
                dM = max_relative_difference(fields[a][1], fields[b][1])
                rows.append({
                    "problem": problem, "fp": fp,
                    "coupling_a": members[a][0]["coupling"], "backend_a": members[a][0]["backend"],
                    "coupling_b": members[b][0]["coupling"], "backend_b": members[b][0]["backend"],
                    "max_rel_diff_U": dU, "max_rel_diff_M": dM,
                    "same_solution": bool(dU <= rtol and dM <= rtol),
                    "equilibrium_a": labels[a], "equilibrium_b": labels[b], "equilibria": max(labels) + 1,
                })
    columns = ["problem", "fp", "coupling_a", "backend_a", "coupling_b", "backend_b", "max_rel_diff_U",
               "max_rel_diff_M", "same_solution", "equilibrium_a", "equilibrium_b", "equilibria"]
    return pd.DataFrame(rows, columns=columns)


# ---------------------------------------------------------------------------------------------
# backends
def max_relative_difference(a: np.ndarray, ref: np.ndarray) -> float:
    """``max|a - ref| / max|ref|`` (NaN if either is not finite or the shapes differ)."""
    a, ref = np.asarray(a, dtype=float), np.asarray(ref, dtype=float)
    if a.shape != ref.shape or not (np.all(np.isfinite(a)) and np.all(np.isfinite(ref))):
        return math.nan
    scale = float(np.max(np.abs(ref)))
    diff = float(np.max(np.abs(a - ref)))
    return diff / scale if scale > 0 else (0.0 if diff == 0 else math.inf)


def backend_table(runs: Iterable[Run], reference: str = "numpy") -> pd.DataFrame:
    """Each backend beside ``reference`` for the same (problem, fp, coupling): time and agreement."""
    runs = list(runs)
    by_key = {tuple(_key(k)[c] for c in RUN_KEYS): (k, ds) for k, ds in runs}
    rows = []
    for key, (k, ds) in sorted(by_key.items()):
        problem, fp, coupling, backend = key
        summ = run_summary(k, ds)
        ref = by_key.get((problem, fp, coupling, reference))
        row = {"problem": problem, "fp": fp, "coupling": coupling, "backend": backend,
               "backend_version": summ["backend_version"], "status": summ["status"],
               "iterations": summ["iterations"], "wall_time_s": summ["wall_time_s"],
               "compile_time_s": summ["compile_time_s"],
               "seconds_per_iteration": summ["seconds_per_iteration"], "reference": reference}
        if ref is None:
            row.update({"speedup_per_iteration": math.nan, "speedup_wall": math.nan,
                        "max_rel_diff_U": math.nan, "max_rel_diff_M": math.nan, "reference": ""})
        else:
            rsum = run_summary(*ref)
            row.update({
                "speedup_per_iteration": _ratio(rsum["seconds_per_iteration"], summ["seconds_per_iteration"]),
                "speedup_wall": _ratio(rsum["wall_time_s"], summ["wall_time_s"]),
                "max_rel_diff_U": max_relative_difference(ds["u"].values, ref[1]["u"].values),
                "max_rel_diff_M": max_relative_difference(ds["m"].values, ref[1]["m"].values),
            })
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
def _ratio(a, b) -> float:
    try:
        a, b = float(a), float(b)
    except (TypeError, ValueError):
        return math.nan
    if not (math.isfinite(a) and math.isfinite(b)) or b <= 0:
        return math.nan
    return a / b


def _require(df: pd.DataFrame, columns: Iterable[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"table lacks columns {missing} (is it a runs table from runs_table()?)")
