r"""Convergence studies: one problem on a sequence of grids, errors and observed orders.

For levels ``N_1 < N_2 < ...`` (``Nx = Nt = N``, or one of them held fixed) the problem is solved on
each grid (:func:`solve_level`); :func:`error_table` measures on each level

* the error of ``U``: ``max |U - U_ref|`` and the discrete space-time L2 norm
  ``sqrt(dt sum_n sum_i w_i e_ni^2)`` (absolute: ``u`` is a cost);
* the error of ``M`` relative to the reference's size: ``max |e| / max |M_ref|`` and
  ``||e||_2 / ||M_ref||_2``;
* the mass error ``max_n |sum(w M[n]) - 1|``;

on the nodes away from the walls (``interior``: that fraction of the domain is left out at each
wall). The reference is the closed form (``problem.exact_solution()``) where the problem has one,
otherwise the finest level's solution sampled at the coarse nodes (linear interpolation, exact at
shared nodes). Observed orders between consecutive levels: ``log(e_{k-1} / e_k) / log(N_k / N_{k-1})``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

TABLE_COLUMNS = ("level", "N", "Nx", "Nt", "reference", "status", "iterations", "error_U_max", "error_U_L2",
                 "error_M_max", "error_M_L2", "order_U_max", "order_U_L2", "order_M_max", "order_M_L2",
                 "mass_error", "wall_time_s")


def load_level(spec: Mapping[str, Any], index: int):
    """The problem of level ``index`` of a convergence plan (:func:`mfg_study.plan.convergence_plan`)."""
    import mfg_core as mc

    p = spec["problem"]
    return mc.problems.load(p["name"], **{**p["grid"], **p["params"], **spec["levels"][index]})


def solve_level(spec: Mapping[str, Any], index: int):
    """Solve level ``index``; returns ``(problem, result)``."""
    import mfg_core as mc

    problem = load_level(spec, index)
    loop = mc.build(problem, fp=spec["fp"], coupling=spec["coupling"], backend=spec["backend"], **spec["options"])
    result = loop.run(spec["solve"]["max_iterations"], spec["solve"]["tolerance"],
                      initial_guess=spec["solve"]["initial_guess"])
    return problem, result


def _interior(ds, fraction: float) -> dict[str, np.ndarray]:
    sel = {}
    for dim in ("x", "y"):
        if dim in ds.dims:
            c = ds[dim].values
            lo, hi = c.min(), c.max()
            cut = fraction * (hi - lo)
            sel[dim] = (c >= lo + cut - 1e-12) & (c <= hi - cut + 1e-12)
    return sel


def _norms(e: np.ndarray, w: np.ndarray, dt: float) -> tuple[float, float]:
    e2 = e.reshape(e.shape[0], -1)
    return float(np.max(np.abs(e2))), math.sqrt(dt * float(np.einsum("ij,ij->j", e2, e2) @ w.ravel()))


def error_table(spec: Mapping[str, Any], datasets: Sequence[Any]) -> pd.DataFrame:
    """One row per level (coarse to fine) with errors, observed orders and mass errors."""
    exact = spec["exact"]
    finest = datasets[-1]
    rows = []
    for k, ds in enumerate(datasets):
        problem = load_level(spec, k)
        row = {"level": spec["level_names"][k], "N": int(spec["level_names"][k][1:]), "Nx": problem.Nx,
               "Nt": problem.Nt, "reference": "closed form" if exact else "finest grid",
               "status": ds.attrs.get("status", ""), "iterations": int(ds.attrs.get("iterations", 0)),
               "wall_time_s": float(ds.attrs.get("wall_time", math.nan)),
               "mass_error": float(np.nanmax(np.abs(ds["mass"].values - 1.0))) if "mass" in ds else math.nan}
        if exact:
            U_ref, M_ref = problem.exact_solution()
        elif k < len(datasets) - 1:
            coords = {d: ds[d].values for d in ("t", "y", "x") if d in ds.dims}
            U_ref, M_ref = (finest[v].interp(coords).values for v in ("u", "m"))
        else:
            U_ref = M_ref = None
        if U_ref is None:
            row.update(error_U_max=math.nan, error_U_L2=math.nan, error_M_max=math.nan, error_M_L2=math.nan)
        else:
            sel = _interior(ds, spec["interior"])
            index = np.ix_(*[np.arange(ds.sizes["t"])] + [np.flatnonzero(sel[d]) for d in ("y", "x") if d in sel])
            w = problem.grid.weights[np.ix_(*[np.flatnonzero(sel[d]) for d in ("y", "x") if d in sel])]
            eU = ds["u"].values[index] - np.asarray(U_ref)[index]
            eM = ds["m"].values[index] - np.asarray(M_ref)[index]
            row["error_U_max"], row["error_U_L2"] = _norms(eU, w, problem.dt)
            mM = _norms(np.asarray(M_ref)[index], w, problem.dt)
            eMn = _norms(eM, w, problem.dt)
            row["error_M_max"], row["error_M_L2"] = eMn[0] / mM[0], eMn[1] / mM[1]
        rows.append(row)
    df = pd.DataFrame(rows)
    for col in ("U_max", "U_L2", "M_max", "M_L2"):
        e = df[f"error_{col}"].to_numpy(dtype=float)
        N = df["N"].to_numpy(dtype=float)
        orders = np.full(len(df), np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            orders[1:] = np.log(e[:-1] / e[1:]) / np.log(N[1:] / N[:-1])
        df[f"order_{col}"] = orders
    return df[list(TABLE_COLUMNS)]


def figure(label: str, table: pd.DataFrame, spec: Mapping[str, Any]):
    """Errors against N on log-log axes, with reference slopes 1 and 2."""
    from .report import _plt

    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    df = table.dropna(subset=["error_U_max"])
    N = df["N"].to_numpy(dtype=float)
    for col, style, name in (("error_U_max", "o-", "U, max"), ("error_U_L2", "o--", "U, L2"),
                             ("error_M_max", "s-", "M (relative), max"), ("error_M_L2", "s--", "M (relative), L2")):
        ax.loglog(N, df[col], style, label=name)
    if len(N):
        e0 = float(np.nanmax(df[["error_U_max", "error_M_max"]].to_numpy()[0]))
        for p, ls in ((1, ":"), (2, "-.")):
            ax.loglog(N, e0 * (N / N[0]) ** (-p), ls, color="grey", lw=0.9, label=f"slope -{p}")
    ax.set(xlabel=f"N ({'Nx = Nt' if spec['refine'] == 'together' else spec['refine'] + ' refined'})",
           ylabel=f"error (reference: {table['reference'].iloc[0]})",
           title=f"convergence: {label} ({spec['problem']['name']}, {spec['coupling']}, {spec['backend']})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
