r"""Parameter sweeps: one parameter over a list of values, for each coupling method.

:func:`run_sweep` solves the problem at every value with one coupling method, in the order given;
with ``continuation`` each value starts from the previous value's solution when that one converged
(a warm start: the classic way to reach a hard parameter value through easier ones). The outcome of
every value -- status, iterations, final residual, wall time, mass error, whether it was warm-started
-- and its fields go into one dataset (dimension ``value``). :func:`sweep_table` lays the couplings
side by side; :func:`figure` draws iterations against the parameter, one line per method, failures
marked: where damping stops converging and Anderson does not.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

TABLE_COLUMNS = ("parameter", "value", "coupling", "status", "converged", "iterations", "final_residual",
                 "final_change", "wall_time_s", "compile_time_s", "mass_error", "warm_start", "reason")


def problem_at(spec: Mapping[str, Any], value: float):
    import mfg_core as mc

    p = spec["problem"]
    extra = {spec["parameter"]: value} if spec["where"] != "option" else {}
    return mc.problems.load(p["name"], **{**p["grid"], **p["params"], **extra})


def run_sweep(spec: Mapping[str, Any], coupling: str, log: Callable[[str], None] = print):
    """Solve every value of the sweep with ``coupling``; returns an ``xarray.Dataset``."""
    import xarray as xr

    import mfg_core as mc

    solve = spec["solve"]
    fields_u, fields_m, rows = [], [], []
    previous = None
    for value in spec["values"]:
        problem = problem_at(spec, value)
        options = dict(spec["options"][coupling])
        if spec["where"] == "option":
            options[spec["parameter"]] = value
        loop = mc.build(problem, fp=spec["fp"], coupling=coupling, backend=spec["backend"], **options)
        compile_time = loop.warmup()
        warm = bool(spec["continuation"] and previous is not None and previous[0].shape == problem.shape)
        start = time.perf_counter()
        try:
            r = loop.run(solve["max_iterations"], solve["tolerance"], initial_guess=solve["initial_guess"],
                         initial=previous if warm else None, warmup=False)
        except mc.ConvergenceError as exc:
            status = "diverged" if isinstance(exc, mc.DivergenceError) else "failed"
            rows.append({"status": status, "iterations": int(exc.iteration or 0), "final_residual": math.nan,
                         "final_change": math.nan, "wall_time_s": time.perf_counter() - start,
                         "compile_time_s": compile_time, "mass_error": math.nan, "warm_start": warm,
                         "reason": f"{type(exc).__name__}: {exc}"})
            fields_u.append(np.full(problem.shape, np.nan))
            fields_m.append(np.full(problem.shape, np.nan))
            previous = None
        else:
            h = r.history
            rows.append({"status": r.status, "iterations": r.iterations,
                         "final_residual": float(max(h["residual_U"][-1], h["residual_M"][-1])),
                         "final_change": float(max(h["change_U"][-1], h["change_M"][-1])),
                         "wall_time_s": r.wall_time, "compile_time_s": compile_time,
                         "mass_error": float(np.max(np.abs(r.mass - 1.0))), "warm_start": warm,
                         "reason": r.reason})
            fields_u.append(r.U)
            fields_m.append(r.M)
            previous = (r.U, r.M) if r.converged else None
        log(f"{spec['parameter']} = {value:g}, {coupling}: {rows[-1]['status']} after {rows[-1]['iterations']} "
            f"iterations{' (warm start)' if warm else ''}")
    dims = ("value", "t", *problem.grid.names)
    same_shape = len({u.shape for u in fields_u}) == 1
    data = {k: (("value",), np.asarray([row[k] for row in rows])) for k in rows[0]}
    if same_shape:  # a sweep that changes the grid keeps its outcomes only
        data["u"] = (dims, np.stack(fields_u))
        data["m"] = (dims, np.stack(fields_m))
        coords = {"value": np.asarray(spec["values"], dtype=float), **problem.coords()}
    else:
        coords = {"value": np.asarray(spec["values"], dtype=float)}
    return xr.Dataset(data, coords=coords, attrs={"parameter": spec["parameter"], "coupling": coupling,
                                                    "fp": spec["fp"], "backend": spec["backend"],
                                                    "continuation": int(spec["continuation"])})


def sweep_table(spec: Mapping[str, Any], datasets: Mapping[str, Any]) -> pd.DataFrame:
    """One row per (value, coupling)."""
    frames = []
    for coupling, ds in datasets.items():
        df = pd.DataFrame({k: ds[k].values for k in TABLE_COLUMNS if k in ds.data_vars})
        df.insert(0, "value", ds["value"].values)
        df.insert(0, "parameter", spec["parameter"])
        df.insert(2, "coupling", coupling)
        df["converged"] = df["status"] == "converged"
        frames.append(df)
    return pd.concat(frames, ignore_index=True)[list(TABLE_COLUMNS)]


def failure_points(table: pd.DataFrame) -> dict[str, float]:
    """Per coupling, the first value at which it did not converge (NaN if it always did)."""
    out = {}
    for coupling, g in table.groupby("coupling", sort=False):
        bad = g.loc[~g["converged"].astype(bool), "value"]
        out[coupling] = float(bad.iloc[0]) if len(bad) else math.nan
    return out


def figure(label: str, table: pd.DataFrame, spec: Mapping[str, Any]):
    """Iterations against the parameter, one line per coupling; a value that did not converge is a
    cross at the iterations it used."""
    from .report import _COLORS, _plt

    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    for coupling, g in table.groupby("coupling", sort=False):
        color = _COLORS.get(coupling)
        ok = g["converged"].astype(bool)
        ax.plot(g["value"], g["iterations"], "-", color=color, alpha=0.6)
        ax.plot(g.loc[ok, "value"], g.loc[ok, "iterations"], "o", color=color, label=f"{coupling} (converged)")
        if (~ok).any():
            ax.plot(g.loc[~ok, "value"], g.loc[~ok, "iterations"], "x", color=color, markersize=10, mew=2,
                    label=f"{coupling} (not converged)")
    values = table["value"].to_numpy(dtype=float)
    if np.all(values > 0) and values.max() / values.min() > 20:
        ax.set_xscale("log")
    ax.set(xlabel=spec["parameter"], ylabel="iterations (Picard evaluations)",
           title=f"sweep: {label} ({spec['problem']['name']}, {spec['fp']}, {spec['backend']}"
                 + (", continuation" if spec["continuation"] else "") + ")")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
