r"""Scaling studies: time per Picard iteration against problem size, per backend.

For each size (``Nx = Nt = N`` for a finite-difference FP method, or the particle count on the
problem's own grid for particles) :func:`time_size` builds the solvers, compiles them (``warmup``,
which also runs each kernel once at that size: its seconds are the compile time, reported apart),
then runs ``repeats`` solves of ``iterations`` iterations each with a tolerance nobody reaches; the time per iteration is
the median over the repeats of wall time / iterations. Where the kernels count their linear solves
(2D finite differences: the fixed-point history's ``hjb_``/``fp_`` ``krylov_iterations``), the row
also has the Krylov iterations per Newton step and per FP time step and the solves left short of
their tolerance (numpy: the iterations of its LU-preconditioned Newton solves, 0 for its direct FP
solves; NaN where nothing is counted). :func:`scaling_table` adds the speed-up over
numpy at each size; :func:`figure` draws time per iteration against the work's size (space-time
nodes, or particles) on log-log axes with an O(size) reference line, so the size where each backend
starts to pay is visible.

A scaling job asks for every core of the machine, so no other job of the study runs beside it.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

TABLE_COLUMNS = ("backend", "size", "Nx", "Nt", "num_particles", "work", "iteration_ms", "iteration_runs_ms",
                 "compile_s", "speedup_vs_numpy", "krylov_per_newton_step", "krylov_per_fp_step",
                 "krylov_unconverged", "load_average")
#: the columns that only 2D finite-difference runs fill (NaN elsewhere)
KRYLOV_COLUMNS = ("krylov_per_newton_step", "krylov_per_fp_step", "krylov_unconverged")


def problem_for(spec: Mapping[str, Any], size: int):
    import mfg_core as mc

    p = spec["problem"]
    grid = dict(p["grid"])
    if spec["axis"] == "N":
        grid.update(Nx=size, Nt=size)
        base = mc.problems.load(p["name"], **{**p["grid"], **p["params"]})
        if base.dim == 2:
            grid["Ny"] = size
    return mc.problems.load(p["name"], **{**grid, **p["params"]})


def time_size(spec: Mapping[str, Any], backend: str, size: int) -> dict[str, Any]:
    """Time ``spec['iterations']`` Picard iterations, ``spec['repeats']`` times, at one size."""
    import mfg_core as mc

    problem = problem_for(spec, size)
    from mfg_core.backends import DEVICE_BACKENDS

    options = dict(spec["options"])
    if backend in DEVICE_BACKENDS:
        options["device"] = spec.get("device", "cpu")
    if spec["axis"] == "num_particles":
        options["num_particles"] = size
    loop = mc.build(problem, fp=spec["fp"], coupling=spec["coupling"], backend=backend, **options)
    start = time.perf_counter()
    loop.warmup()  # compiles, and runs each kernel once at this size
    compile_s = time.perf_counter() - start
    per_iteration = []
    for _ in range(spec["repeats"]):
        r = loop.run(spec["iterations"], 1e-300, warmup=False)
        per_iteration.append(r.wall_time / r.iterations)
    krylov = linear_solves(r.history, r.iterations * problem.Nt)
    work = (problem.Nt + 1) * problem.grid.size if spec["axis"] == "N" else size * problem.Nt
    return {"backend": backend, "size": size, "Nx": problem.Nx, "Nt": problem.Nt,
            "num_particles": size if spec["axis"] == "num_particles" else 0, "work": work,
            "iteration_ms": statistics.median(per_iteration) * 1e3,
            "iteration_runs_ms": " ".join(f"{s * 1e3:.4g}" for s in per_iteration), "compile_s": compile_s,
            **krylov, "load_average": os.getloadavg()[0]}


def linear_solves(history: Mapping[str, Any], fp_steps: int) -> dict[str, float]:
    """Krylov iterations per Newton step and per FP time step (``fp_steps`` FP solves in the run),
    and the solves left short, from a fixed-point history (NaN where the kernels do not count)."""
    def total(key):
        return float(np.sum(history[key])) if key in history else math.nan

    newton, short = total("hjb_newton_steps"), [total(f"{s}_krylov_unconverged") for s in ("hjb", "fp")]
    return {"krylov_per_newton_step": total("hjb_krylov_iterations") / newton if newton > 0 else math.nan,
            "krylov_per_fp_step": total("fp_krylov_iterations") / fp_steps if fp_steps > 0 else math.nan,
            "krylov_unconverged": math.nan if all(map(math.isnan, short)) else float(np.nansum(short))}


def run_scaling(spec: Mapping[str, Any], backend: str, log: Callable[[str], None] = print) -> pd.DataFrame:
    rows = []
    for size in spec["sizes"]:
        rows.append(time_size(spec, backend, size))
        row = rows[-1]
        krylov = (f", {row['krylov_per_newton_step']:.1f} Krylov iterations per Newton step"
                  if math.isfinite(row["krylov_per_newton_step"]) else "")
        log(f"{backend} {spec['axis']}={size}: {row['iteration_ms']:.3f} ms per iteration "
            f"(compile {row['compile_s']:.2f} s{krylov}, load {row['load_average']:.2f})")
    return pd.DataFrame(rows)


def scaling_table(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """All backends' rows with the speed-up over numpy at the same size (NaN without numpy)."""
    df = pd.concat(frames, ignore_index=True)
    ref = df[df["backend"] == "numpy"].set_index("size")["iteration_ms"]
    df["speedup_vs_numpy"] = [ref.get(s, math.nan) / t for s, t in zip(df["size"], df["iteration_ms"])]
    return df.reindex(columns=list(TABLE_COLUMNS))  # a backend's table from before a column was added: NaN


def crossover(table: pd.DataFrame, backend: str) -> float:
    """The smallest size from which ``backend`` is faster than numpy at every larger size (NaN if never)."""
    g = table[table["backend"] == backend].sort_values("size")
    faster = (g["speedup_vs_numpy"] > 1.0).to_numpy()
    for i in range(len(g)):
        if faster[i:].all():
            return float(g["size"].iloc[i])
    return math.nan


def figure(label: str, table: pd.DataFrame, spec: Mapping[str, Any]):
    """Time per iteration against the work's size, per backend, with an O(size) line; compile time."""
    from .report import _STYLES, _plt

    plt = _plt()
    fig, (ax, ax_c) = plt.subplots(1, 2, figsize=(11, 4.4), gridspec_kw={"width_ratios": [3, 2]})
    for backend, g in table.groupby("backend", sort=False):
        g = g.sort_values("work")
        ax.loglog(g["work"], g["iteration_ms"], marker="o", linestyle=_STYLES.get(backend, "-"), label=backend)
        ax_c.semilogx(g["work"], g["compile_s"], marker="o", linestyle=_STYLES.get(backend, "-"), label=backend)
    ref = table[table["backend"] == "numpy"].sort_values("work")
    base = ref if len(ref) else table.sort_values("work")
    w0, t0 = float(base["work"].iloc[0]), float(base["iteration_ms"].iloc[0])
    w = np.array(sorted(table["work"].unique()), dtype=float)
    ax.loglog(w, t0 * w / w0, ":", color="grey", label="O(size)")
    what = "space-time nodes (Nx+1)(Nt+1)" if spec["axis"] == "N" else "particles x time steps"
    ax.set(xlabel=what, ylabel="ms per Picard iteration",
           title=f"scaling: {label} ({spec['problem']['name']}, {spec['fp']}, {spec['coupling']})")
    ax_c.set(xlabel=what, ylabel="s", title="compile (warm-up) time")
    ax.legend(fontsize=8)
    ax_c.legend(fontsize=8)
    fig.tight_layout()
    return fig
