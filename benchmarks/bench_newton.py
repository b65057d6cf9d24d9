"""Wall time to ``max|F| <= 1e-10`` on the whole discrete system: damping, Anderson and Newton, 1D and 2D.

For ``congestion`` at ``Nx = Nt = N`` (N in ``SIZES``) every method runs until the residual of the
discrete system (:func:`mfg_core.newton.discrete_system`: HJB and FP rows, dt-scaled) is at most
``TARGET`` -- the same stopping test for all, so the times compare the work to one accuracy. Damping
and Anderson are run through a wrapper rule that measures ``max|F|`` of each iterate (its cost is
timed and subtracted) and stops the loop on it; Newton stops on it by itself. Damping and Anderson
run on numpy and on numba (their fastest); Newton on numpy and, in 1D, on numba (the same Newton,
its linear solves' time sweeps compiled: ``make_block_sweeps``), with its default linear solver (``auto``: SuperLU up to 10,000 unknowns, Schur-complement GMRES above) and no
Picard residual (``picard_residual="none"``: the diagnostic Picard evaluation is not part of the
solve). The Picard methods on numpy are left out above ``NUMPY_MAX`` (minutes per run).

2D rows: ``lq2d`` with the congestion coupling ``F(m) = m`` (lq2d itself has none; all three methods
converge on it) at ``Nx = Ny = N`` for N in ``SIZES_2D``, ``Nt = N / 2``. The same methods and
backends (numba's 2D kernels for the Picard methods); Newton's linear solver in 2D is always the
Schur-complement GMRES with one sparse LU per time level and Newton step. A Picard run still short
of the target after ``PICARD_CAP_2D`` seconds is stopped and recorded as not reached.

Sizes: ``MFG_BENCH_NEWTON_SIZES`` and ``MFG_BENCH_NEWTON_SIZES_2D`` (comma-separated N; empty for
none) replace ``SIZES`` and ``SIZES_2D``, e.g. ``MFG_BENCH_NEWTON_SIZES= MFG_BENCH_NEWTON_SIZES_2D=32
python -m benchmarks newton`` runs the smallest 2D size only.

Writes ``newton.md`` and ``newton.csv``: one row per (dimension, N, method, backend) with the wall
time (best of ``RUNS`` after warm-up), Picard evaluations or Newton steps, linear iterations, the
final ``max|F|``, and at each size Newton's time over the faster Anderson run's.
"""

from __future__ import annotations

import math
import os
import pathlib
import time

import numpy as np

import mfg_core as mc
from mfg_core import newton as nw
from mfg_core.fixed_point import Step
from mfg_core.rules import UpdateRule

from ._table import write_table

SIZES = (100, 200, 400, 800, 1600)
SIZES_2D = (32, 64, 128)
TARGET = 1e-10
RUNS = 2  # best of, at N <= 400 in 1D and N <= 64 in 2D (one run above)
#: wall-clock cap of a 2D Picard run (seconds)
PICARD_CAP_2D = 90.0
#: the largest N of the Picard methods on numpy (minutes per run above)
NUMPY_MAX = {"damping": 400, "anderson": 800}
PICARD = (("damping", "numpy"), ("damping", "numba"), ("anderson", "numpy"), ("anderson", "numba"))
#: Newton's backends per dimension (numba: compiled time sweeps in the linear solves, 1D)
NEWTON_BACKENDS = {1: ("numpy", "numba"), 2: ("numpy",)}


def _sizes(var: str, default: tuple[int, ...]) -> tuple[int, ...]:
    raw = os.environ.get(var)
    if raw is None:
        return default
    try:
        return tuple(int(x) for x in raw.replace(",", " ").split())
    except ValueError:
        raise SystemExit(f"{var} must be comma-separated integers, got {raw!r}") from None


def congestion_coupling(m):
    return m


def congestion_coupling_dm(m):
    return np.ones_like(m)


def problem(dim: int, N: int):
    if dim == 1:
        return mc.problems.load("congestion", Nx=N, Nt=N)
    return mc.problems.load("lq2d", Nx=N, Ny=N, Nt=N // 2, coupling=congestion_coupling,
                            coupling_dm=congestion_coupling_dm)


class SystemStop(UpdateRule):
    """Run ``inner`` and stop when ``max|F|`` of its iterate is at most ``target``, or (not reached)
    once ``time_limit`` seconds have passed."""

    stop_on_system = True

    def __init__(self, inner: UpdateRule, target: float, time_limit: float = math.inf):
        self.inner, self.target, self.name = inner, target, inner.name
        self.time_limit = time_limit
        self.measure_seconds = 0.0
        self.capped = False

    def reset(self, loop):
        self.inner.reset(loop)
        self._system = nw.discrete_system(loop.problem.scheme, nw.SystemData.of(loop.problem))
        self.measure_seconds = 0.0
        self.capped = False
        self._start = time.perf_counter()

    def describe(self):
        return self.inner.describe()

    def step(self, loop, k, U, M):
        st = self.inner.step(loop, k, U, M)
        t0 = time.perf_counter()
        res = self._system.max_residual(st.U, st.M)
        self.measure_seconds += time.perf_counter() - t0
        return Step(st.U, st.M, st.residual, change=st.change, accepted=st.accepted,
                    record={**st.record, "newton_residual": res})

    def verdict(self, step, tolerance):
        if step.record["newton_residual"] <= self.target:
            return "converged", f"max|F| {step.record['newton_residual']:.3e} <= {self.target:g}"
        if time.perf_counter() - self._start > self.time_limit:
            self.capped = True
            return "not_converged", (f"max|F| <= {self.target:g} not reached in {self.time_limit:g} s "
                                     f"(max|F| {step.record['newton_residual']:.3e})")
        return None


def _run(dim: int, N: int, method: str, backend: str, max_iterations: int = 400):
    p = problem(dim, N)
    cap = PICARD_CAP_2D if dim == 2 else math.inf
    if method == "newton":
        loop = mc.build(p, coupling="newton", backend=backend, picard_residual="none")
    else:
        loop = mc.build(p, coupling=method, backend=backend)
        loop.rule = SystemStop(loop.rule, TARGET, cap)
    loop.warmup()
    best = None
    for _ in range(RUNS if N <= (400 if dim == 1 else 64) else 1):
        r = loop.run(max_iterations, TARGET, warmup=False)
        seconds = r.wall_time - getattr(loop.rule, "measure_seconds", 0.0)
        if best is None or seconds < best[0]:
            best = (seconds, r)
        if getattr(loop.rule, "capped", False):
            break  # a capped run is not repeated
    seconds, r = best
    h = r.history
    if method == "newton":
        solver = "gmres" if dim == 2 or 2 * p.Nt * p.grid.size > 10_000 else "direct"
    return {
        "dim": dim, "N": N, "Nt": p.Nt, "method": method, "backend": backend, "status": r.status,
        "seconds": seconds, "iterations": r.iterations,
        "linear_iterations": int(h["linear_iterations"].sum()) if "linear_iterations" in h else 0,
        "final_max_F": float(h["newton_residual"][-1]),
        "solver": solver if method == "newton" else "",
        "note": f"not reached in {cap:g} s" if getattr(loop.rule, "capped", False) else "",
    }


def main(outdir: pathlib.Path) -> list[dict]:
    rows = []
    for dim, sizes in ((1, _sizes("MFG_BENCH_NEWTON_SIZES", SIZES)),
                       (2, _sizes("MFG_BENCH_NEWTON_SIZES_2D", SIZES_2D))):
        for N in sizes:
            here = []
            for method, backend in PICARD:
                if dim == 1 and backend == "numpy" and N > NUMPY_MAX[method]:
                    continue
                here.append(_run(dim, N, method, backend))
            for backend in NEWTON_BACKENDS[dim]:
                here.append(_run(dim, N, "newton", backend))
            anderson = min((r["seconds"] for r in here if r["method"] == "anderson" and r["status"] == "converged"),
                           default=math.nan)
            for r in here:
                r["vs_fastest_anderson"] = r["seconds"] / anderson if math.isfinite(anderson) else math.nan
                print(f"  {dim}D N={N:5d} {r['method']:9s} {r['backend']:6s} {r['status']:13s} "
                      f"{r['seconds']:8.2f} s {r['iterations']:4d} it  lin {r['linear_iterations']:5d}  "
                      f"max|F| {r['final_max_F']:.1e} {r['note']}", flush=True)
            rows += here
    if not rows:
        raise SystemExit("bench_newton: no sizes to run (MFG_BENCH_NEWTON_SIZES and _2D are both empty)")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    write_table(outdir, "newton", rows,
                title="Wall time to max|F| <= 1e-10 on the whole discrete system (congestion 1D, lq2d with "
                      "F(m) = m 2D)",
                notes=[f"1D: `congestion`, `Nx = Nt = N`; 2D: `lq2d` with `F(m) = m`, `Nx = Ny = N`, "
                       f"`Nt = N/2`. Best of {RUNS} runs after warm-up at N <= 400 (1D) / 64 (2D), one run "
                       f"above; 2D Picard runs are stopped after {PICARD_CAP_2D:g} s (note: not reached). "
                       "iterations: Picard evaluations (damping, Anderson) or Newton steps; Newton's linear "
                       "solves: SuperLU up to 10,000 unknowns in 1D, Schur-complement GMRES above and always "
                       "in 2D (one sparse LU per time level and Newton step; linear_iterations: its Krylov "
                       "iterations). vs_fastest_anderson: seconds / the faster Anderson run's at that size.",
                       f"Load average at the end: {load} ({os.cpu_count()} cores, shared)."],
                columns=["dim", "N", "Nt", "method", "backend", "status", "seconds", "iterations",
                         "linear_iterations", "final_max_F", "vs_fastest_anderson", "note"])
    return rows
