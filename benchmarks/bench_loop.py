"""The fixed-point loop's own cost: what an iteration spends outside the HJB and FP kernels.

For ``congestion`` at ``Nx = Nt = N`` on numba (the fastest kernels, so the loop's numpy work shows
most) and each coupling rule, it times whole iterations of :func:`mfg_core.solve` after warm-up and,
inside them, the two kernel calls (the compiled HJB sweep with Newton, the compiled FP sweep). The
rest -- coupling ``F(M)`` and the source, the solvers' argument checks, damping, norms, history,
mass checks -- is the loop's work. Target (the architecture issue): at N = 1600 the loop's work per
iteration costs no more than the FP sweep.

Writes ``loop.md`` and ``loop.csv``; the medians of ``RUNS`` timed solves of ``ITERATIONS``
iterations each, with the machine's load.
"""

from __future__ import annotations

import os
import pathlib
import statistics
import time

import mfg_core as mc

from ._table import write_table

SIZES = (400, 1600)
RUNS = 3
ITERATIONS = 4
RULES = ("damping", "damping_gs", "anderson")


def _timed(kernel, bucket):
    def wrapper(*args):
        start = time.perf_counter()
        out = kernel(*args)
        bucket.append(time.perf_counter() - start)
        return out

    return wrapper


def time_rule(N: int, coupling: str, backend: str = "numba") -> dict:
    p = mc.problems.load("congestion", Nx=N, Nt=N)
    loop = mc.build(p, fp="fdm", coupling=coupling, backend=backend)
    loop.warmup()
    hjb_t: list[float] = []
    fp_t: list[float] = []
    loop.hjb_solver._kernel = _timed(loop.hjb_solver._kernel, hjb_t)
    loop.fp_solver._kernel = _timed(loop.fp_solver._kernel, fp_t)
    whole, hjb, fp = [], [], []
    for _ in range(RUNS):
        del hjb_t[:], fp_t[:]
        r = loop.run(ITERATIONS, 1e-300, warmup=False)
        assert r.iterations == ITERATIONS
        whole.append(r.wall_time / ITERATIONS)
        hjb.append(sum(hjb_t) / ITERATIONS)
        fp.append(sum(fp_t) / ITERATIONS)
    med = statistics.median
    loop_work = [w - h - f for w, h, f in zip(whole, hjb, fp)]
    return {"N": N, "coupling": coupling, "backend": backend, "iteration_ms": med(whole) * 1e3,
            "hjb_ms": med(hjb) * 1e3, "fp_ms": med(fp) * 1e3, "loop_ms": med(loop_work) * 1e3,
            "loop_runs_ms": " ".join(f"{x * 1e3:.1f}" for x in loop_work),
            # the target is the damped loop's; Anderson's own work (its least-squares QR over the whole
            # space-time state) is reported beside it
            "target": "loop <= FP sweep" if N == 1600 and coupling != "anderson" else "",
            "met": ("yes" if med(loop_work) <= med(fp) else "NO") if N == 1600 and coupling != "anderson" else ""}


def main(outdir: pathlib.Path) -> list[dict]:
    rows = []
    for N in SIZES:
        for coupling in RULES:
            row = time_rule(N, coupling)
            rows.append(row)
            print(f"  N={N:5d} {coupling:11s} iteration {row['iteration_ms']:8.1f} ms: HJB {row['hjb_ms']:7.1f}, "
                  f"FP {row['fp_ms']:6.1f}, loop {row['loop_ms']:6.1f} ms", flush=True)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    write_table(outdir, "loop", rows, title="The fixed-point loop's own work per iteration (numba, congestion)",
                notes=[f"`Nx = Nt = N`; medians of {RUNS} solves of {ITERATIONS} iterations after warm-up. "
                       "loop = whole iteration - HJB kernel - FP kernel (coupling F(M), source, argument "
                       "checks, damping, norms, mass checks, history).",
                       f"Load average at the end: {load} ({os.cpu_count()} cores, shared)."])
    return rows
