"""Backend benchmark: FDM-FDM Picard iterations of ``congestion`` on every installed backend.

For ``N`` in ``SIZES`` (``Nx = Nt = N``) and each installed backend this times full
``FixedPointIterator`` solves (``thetaUM = 0.5``, a tolerance nobody reaches, so that every run does
the same fixed number of iterations) after the solvers' ``warmup()`` (jit compilation, reported
apart). Per Picard iteration it reports the median over ``RUNS[N]`` runs of (a) the kernel time: the
HJB sweep with Newton plus the FP sweep, as the solvers time them (``last_seconds``: the backend
call and its array conversions) -- what the backends change, used for speed-ups and targets -- and
(b) the whole iteration, which adds the iterator's numpy work (coupling, damping, norms), the same
for every backend.

The floor is what the arithmetic of one iteration costs at best: one compiled (numba) Thomas solve
of size ``len(x)`` per Newton step actually taken (counted during the runs) plus one per FP time
step, i.e. ``(sum of Newton steps + Nt) * t_Thomas``. Each backend's ratio to that floor says how
much it loses to overheads (dispatch, residual and band evaluation, copies).

Writes ``backends.md`` (a Markdown table with a column saying whether each target is met) and
``backends.csv`` under ``outdir``. Targets (reported, not asserted): numba and jax at least 5x faster
than numpy at N = 400; at N = 1600 numba and jax within 3x of the floor, torch within 10x.
"""

from __future__ import annotations

import csv
import os
import pathlib
import platform
import statistics
import sys
import time

import numpy as np

import mfg_core as mc
from mfg_core import backends
from mfg_study.tables import max_relative_difference
from mfg_study.io import atomic_path, write_text

SIZES = (100, 400, 1600)
#: timed runs per size (median reported); fewer on the large grid to keep ``make bench`` short
RUNS = {100: 5, 400: 5, 1600: 3}
#: Picard iterations per timed run (fewer on the large grid to keep ``make bench`` short)
ITERATIONS = {100: 5, 400: 5, 1600: 3}
SPEEDUP_TARGET = {("numba", 400): 5.0, ("jax", 400): 5.0}
FLOOR_TARGET = {("numba", 1600): 3.0, ("jax", 1600): 3.0, ("torch", 1600): 10.0}


def _thomas_chain():
    """A compiled textbook Thomas solver run ``reps`` times in a chain (each rhs the last solution)."""
    from numba import njit

    @njit(cache=True)
    def chain(a, b, c, d, reps):
        n = b.shape[0]
        cp = np.empty(n)
        x = d.copy()
        for _ in range(reps):
            m = 1.0 / b[0]
            cp[0] = c[0] * m
            x[0] = x[0] * m
            for i in range(1, n):
                m = 1.0 / (b[i] - a[i] * cp[i - 1])
                cp[i] = c[i] * m
                x[i] = (x[i] - a[i] * x[i - 1]) * m
            for i in range(n - 2, -1, -1):
                x[i] -= cp[i] * x[i + 1]
        return x

    return chain


def thomas_seconds(n: int, reps: int = 2000) -> float:
    """Seconds for one compiled Thomas solve of size ``n`` (median of 5 timings of ``reps`` solves)."""
    chain = _thomas_chain()
    rng = np.random.default_rng(0)
    # an M-matrix like the scheme's J = I + dt A
    a = -rng.random(n)
    c = -rng.random(n)
    b = 1.0 - a - c
    d = rng.random(n)
    chain(a, b, c, d, 2)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        chain(a, b, c, d, reps)
        times.append((time.perf_counter() - start) / reps)
    return statistics.median(times)


def time_backend(name: str, N: int) -> dict:
    """Warm up, then ``RUNS`` timed fixed-iteration solves.

    Returns the median per-iteration wall time of the whole iteration and of the kernels alone
    (``last_seconds`` of the HJB and FP solvers: the backend call and its array conversions), and
    the mean number of Newton steps per iteration.
    """
    p = mc.problems.load("congestion", Nx=N, Nt=N)
    hjb = mc.HJBFDMSolver(p, backend=name)
    fp = mc.FPFDMSolver(p, backend=name)
    newton_steps: list[int] = []
    kernel_seconds: list[float] = []
    hjb_solve, fp_solve = hjb.solve, fp.solve

    def counting_hjb_solve(M):
        U = hjb_solve(M)
        newton_steps.append(int(np.abs(hjb.newton_iterations).sum()))
        kernel_seconds.append(hjb.last_seconds)
        return U

    def counting_fp_solve(U):
        M = fp_solve(U)
        kernel_seconds[-1] += fp.last_seconds
        return M

    hjb.solve, fp.solve = counting_hjb_solve, counting_fp_solve
    it = mc.FixedPointIterator(p, hjb, fp, thetaUM=0.5)
    compile_seconds = it.warmup()
    K = ITERATIONS[N]
    per_iteration, kernel_per_iteration = [], []
    result = None
    for _ in range(RUNS[N]):
        del kernel_seconds[:]
        result = it.solve(max_iterations=K, tolerance=1e-300, warmup=False)
        assert result.iterations == K
        per_iteration.append(result.wall_time / K)
        kernel_per_iteration.append(sum(kernel_seconds) / K)
    return {
        "seconds": statistics.median(per_iteration), "all": per_iteration,
        "kernel": statistics.median(kernel_per_iteration), "kernel_all": kernel_per_iteration,
        "compile": compile_seconds, "newton_per_iteration": float(np.mean(newton_steps)),
        "Nt": p.Nt, "n": p.x.size, "U": result.U, "M": result.M, "iterations": K,
    }


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def main(outdir: pathlib.Path) -> list[dict]:
    outdir = pathlib.Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    names = [b for b in backends.names() if b in backends.available()]
    rows: list[dict] = []
    for N in SIZES:
        runs = {}
        # the floor is a best case: time it before and after the backends and keep the faster, so
        # that a burst of load from other jobs does not inflate it
        n_nodes = mc.problems.load("congestion", Nx=N, Nt=N).x.size
        thomas = [thomas_seconds(n_nodes)] if "numba" in names else []
        for name in names:
            t0 = time.perf_counter()
            runs[name] = time_backend(name, N)
            print(f"  N={N:5d} {name:6s} {runs[name]['kernel'] * 1e3:9.2f} ms kernels, "
                  f"{runs[name]['seconds'] * 1e3:9.2f} ms whole iteration "
                  f"(compile {runs[name]['compile']:.2f} s, total {time.perf_counter() - t0:.1f} s)",
                  flush=True)
        base = runs["numpy"]
        if thomas:
            thomas.append(thomas_seconds(n_nodes))
        t_thomas = min(thomas) if thomas else float("nan")
        for name, r in runs.items():
            floor = (r["newton_per_iteration"] + r["Nt"]) * t_thomas
            speedup = base["kernel"] / r["kernel"]
            ratio = r["kernel"] / floor
            target, met = "", ""
            if (name, N) in SPEEDUP_TARGET:
                goal = SPEEDUP_TARGET[(name, N)]
                target, met = f">= {goal:g}x numpy", "yes" if speedup >= goal else "NO"
            elif (name, N) in FLOOR_TARGET:
                goal = FLOOR_TARGET[(name, N)]
                target, met = f"<= {goal:g}x floor", "yes" if ratio <= goal else "NO"
            diff = max(max_relative_difference(r["U"], base["U"]), max_relative_difference(r["M"], base["M"]))
            rows.append({
                "N": N, "backend": name,
                "kernel_ms_per_iteration": r["kernel"] * 1e3,
                "kernel_runs_ms": " ".join(_fmt(s * 1e3) for s in r["kernel_all"]),
                "iteration_ms": r["seconds"] * 1e3,
                "iteration_runs_ms": " ".join(_fmt(s * 1e3) for s in r["all"]),
                "speedup_vs_numpy": speedup, "iteration_speedup_vs_numpy": base["seconds"] / r["seconds"],
                "floor_ms": floor * 1e3, "ratio_to_floor": ratio,
                "newton_steps_per_iteration": r["newton_per_iteration"], "compile_s": r["compile"],
                "max_rel_diff_vs_numpy": diff, "target": target, "target_met": met,
            })
    _write(outdir, rows)
    return rows


def _write(outdir: pathlib.Path, rows: list[dict]) -> None:
    fields = list(rows[0])
    with atomic_path(outdir / "backends.csv") as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    versions = ", ".join(f"{b} {backends.get_backend(b).version}" for b in backends.available())
    load = os.getloadavg()
    lines = [
        "# Backend benchmark: FDM-FDM Picard iterations of `congestion`",
        "",
        f"`Nx = Nt = N`, thetaUM = 0.5; after warm-up, "
        f"{', '.join(f'{RUNS[n]} runs of {k} Picard iterations (N={n})' for n, k in ITERATIONS.items())}; "
        "per-iteration "
        "times are medians over the runs. Floor = (Newton steps per iteration + Nt) x one compiled "
        "(numba) textbook Thomas solve of size len(x) (the faster of two timings, before and after the "
        "backends). Compile = the solvers' `warmup()` seconds.",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
        f"{' '.join(f'{x:.2f}' for x in load)} at the end (other jobs share the cores); Python "
        f"{platform.python_version()}; {versions}.",
        "",
        "Speed-up and x floor compare kernel times (HJB + FP sweeps as the solvers time them, "
        "`last_seconds`); the whole iteration adds the iterator's numpy work (coupling F(M), damping, "
        "norms, checks), the same for every backend.",
        "",
        "| N | backend | kernel ms / it. | speed-up vs numpy | floor ms | x floor | whole it. ms "
        "| whole-it. speed-up | Newton steps / it. | compile s | max rel. diff vs numpy | target | met |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['N']} | {r['backend']} | {r['kernel_ms_per_iteration']:.2f} | "
            f"{r['speedup_vs_numpy']:.2f} | {r['floor_ms']:.2f} | {r['ratio_to_floor']:.2f} | "
            f"{r['iteration_ms']:.2f} | {r['iteration_speedup_vs_numpy']:.2f} | "
            f"{r['newton_steps_per_iteration']:.0f} | {r['compile_s']:.2f} | "
            f"{r['max_rel_diff_vs_numpy']:.1e} | {r['target'] or '-'} | {r['target_met'] or '-'} |")
    write_text(outdir / "backends.md", "\n".join(lines) + "\n")
    print("\n".join(lines[-len(rows) - 2:]))


if __name__ == "__main__":  # pragma: no cover - ``python -m benchmarks backends`` is the entry point
    main(pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else pathlib.Path("results/bench"))
