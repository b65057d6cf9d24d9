"""Wall time to ``max|F| <= 1e-10`` on the whole discrete system: damping, Anderson and Newton, 1D.

For ``congestion`` at ``Nx = Nt = N`` (N in ``SIZES``) every method runs until the residual of the
discrete system (:class:`mfg_core.newton.DiscreteSystem`: HJB and FP rows, dt-scaled) is at most
``TARGET`` -- the same stopping test for all, so the times compare the work to one accuracy. Damping
and Anderson are run through a wrapper rule that measures ``max|F|`` of each iterate (its cost is
timed and subtracted) and stops the loop on it; Newton stops on it by itself. Damping and Anderson
run on numpy (the backend Newton runs on) and on numba (their fastest); Newton on numpy with its
default linear solver (``auto``: SuperLU up to 10,000 unknowns, Schur-complement GMRES above) and no
Picard residual (``picard_residual="none"``: the diagnostic Picard evaluation is not part of the
solve). The Picard methods on numpy are left out above ``NUMPY_MAX`` (minutes per run).

Writes ``newton.md`` and ``newton.csv``: one row per (N, method, backend) with the wall time (best of
``RUNS`` after warm-up), Picard evaluations or Newton steps, linear iterations, the final ``max|F|``,
and at each N Newton's time over the faster Anderson run's.
"""

from __future__ import annotations

import math
import os
import pathlib
import time

import mfg_core as mc
from mfg_core import newton as nw
from mfg_core.fixed_point import Step
from mfg_core.rules import UpdateRule

from ._table import write_table

SIZES = (100, 200, 400, 800, 1600)
TARGET = 1e-10
RUNS = 2  # best of, at N <= 400 (one run above)
#: the largest N of the Picard methods on numpy (minutes per run above)
NUMPY_MAX = {"damping": 400, "anderson": 800}
PICARD = (("damping", "numpy"), ("damping", "numba"), ("anderson", "numpy"), ("anderson", "numba"))


class SystemStop(UpdateRule):
    """Run ``inner`` and stop when ``max|F|`` of its iterate is at most ``target``."""

    stop_on_system = True

    def __init__(self, inner: UpdateRule, target: float):
        self.inner, self.target, self.name = inner, target, inner.name
        self.measure_seconds = 0.0

    def reset(self, loop):
        self.inner.reset(loop)
        self._system = nw.DiscreteSystem(loop.problem.scheme, nw.SystemData.of(loop.problem))
        self.measure_seconds = 0.0

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
        return None


def _run(N: int, method: str, backend: str, max_iterations: int = 400):
    p = mc.problems.load("congestion", Nx=N, Nt=N)
    if method == "newton":
        loop = mc.build(p, coupling="newton", backend="numpy", picard_residual="none")
    else:
        loop = mc.build(p, coupling=method, backend=backend)
        loop.rule = SystemStop(loop.rule, TARGET)
    loop.warmup()
    best = None
    for _ in range(RUNS if N <= 400 else 1):
        r = loop.run(max_iterations, TARGET, warmup=False)
        seconds = r.wall_time - getattr(loop.rule, "measure_seconds", 0.0)
        if best is None or seconds < best[0]:
            best = (seconds, r)
    seconds, r = best
    h = r.history
    return {
        "N": N, "method": method, "backend": backend, "status": r.status, "seconds": seconds,
        "iterations": r.iterations,
        "linear_iterations": int(h["linear_iterations"].sum()) if "linear_iterations" in h else 0,
        "final_max_F": float(h["newton_residual"][-1]),
        "solver": ("direct" if 2 * N * (N + 1) <= 10_000 else "gmres") if method == "newton" else "",
    }


def main(outdir: pathlib.Path) -> list[dict]:
    rows = []
    for N in SIZES:
        here = []
        for method, backend in PICARD:
            if backend == "numpy" and N > NUMPY_MAX[method]:
                continue
            here.append(_run(N, method, backend))
        here.append(_run(N, "newton", "numpy"))
        anderson = min(r["seconds"] for r in here if r["method"] == "anderson" and r["status"] == "converged")
        for r in here:
            r["vs_fastest_anderson"] = r["seconds"] / anderson if math.isfinite(anderson) else math.nan
            print(f"  N={N:5d} {r['method']:9s} {r['backend']:6s} {r['status']:10s} {r['seconds']:8.2f} s "
                  f"{r['iterations']:4d} it  lin {r['linear_iterations']:5d}  max|F| {r['final_max_F']:.1e}",
                  flush=True)
        rows += here
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    write_table(outdir, "newton", rows,
                title="Wall time to max|F| <= 1e-10 on the whole discrete system (congestion, 1D)",
                notes=[f"`Nx = Nt = N`; best of {RUNS} runs after warm-up at N <= 400, one run above. "
                       "iterations: Picard evaluations (damping, Anderson) or Newton steps; Newton's linear "
                       "solves: SuperLU up to 10,000 unknowns, Schur-complement GMRES above "
                       "(linear_iterations: its Krylov iterations). vs_fastest_anderson: seconds / the faster "
                       "Anderson run's at that N.",
                       f"Load average at the end: {load} ({os.cpu_count()} cores, shared)."],
                columns=["N", "method", "backend", "status", "seconds", "iterations", "linear_iterations",
                         "final_max_F", "vs_fastest_anderson"])
    return rows
