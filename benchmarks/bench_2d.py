"""2D kernels on every installed backend: ``python -m benchmarks 2d``.

FDM: the HJB sweep (Newton per time step, each Newton step a BiCGStab solve on the backends that
have one, a sparse LU on numpy) and the FP sweep of ``evacuation2d`` (congestion around a pillar:
the obstacle is in the grid) at ``Nx = Ny = N`` for ``N`` in ``SIZES``, ``Nt = NT``, evaluated at
the density ``M = m0``. Particles: the FP sweep of ``lq2d`` with ``PARTICLES`` particles at the
same sizes (a product-Gaussian KDE by FFT on the grid). Each sweep is timed ``REPEATS`` times after
one warm-up (jit compilation); the median is reported per time step, with the Newton steps and
Krylov iterations per step where the kernel counts them, the speed-up over numpy and the largest
difference from numpy's result (relative to ``max|numpy|``; the particles' random increments are
the same numbers on every backend, so the difference is the kernels' round-off and binning).

At ``N = 128`` also the published comparison: one Picard iteration of a periodic double-well
problem with 10 time steps (:func:`double_well`), every backend, against the published 3.6 s of a
NumPy/SciPy implementation (another machine: a reference point, not a target of ours).

Targets (reported, not asserted): at ``N = 128`` numba at least 20x numpy on the FDM step (HJB +
FP), jax and torch within 3x of numba. ``iteration_s`` is one Picard iteration's kernels (an HJB
and an FP sweep over the ``NT`` time steps); ``compile_s`` the warm-up's excess over the median.
``MFG_BENCH_2D_SIZES`` (comma-separated N) replaces ``SIZES``, ``MFG_BENCH_2D_PARTICLES`` ``PARTICLES``;
``MFG_BENCH_DEVICE`` puts jax and torch on another device (``cuda``: ``benchmarks/gpu_check.sh``).
Writes ``2d.md`` and ``2d.csv`` to ``outdir``.
"""

from __future__ import annotations

import math
import os
import pathlib
import statistics
import time

import numpy as np

import mfg_core as mc
from mfg_core import backends

from ._table import write_table

SIZES = tuple(int(n) for n in os.environ.get("MFG_BENCH_2D_SIZES", "64,128,256").split(","))
#: the device of jax and torch (``MFG_BENCH_DEVICE``: cpu, or cuda on a GPU machine; numpy and numba: the CPU)
DEVICE = os.environ.get("MFG_BENCH_DEVICE", "cpu")
NT = 50
REPEATS = 3
PARTICLES = int(os.environ.get("MFG_BENCH_2D_PARTICLES", "100000"))
#: numpy's direct solves at 256^2 take minutes per sweep; it is timed up to this size
NUMPY_MAX = 128
TARGET_N = 128
NUMBA_SPEEDUP_TARGET = 20.0
WITHIN_NUMBA_TARGET = 3.0
#: on a GPU (``MFG_BENCH_DEVICE=cuda``): jax or torch at least this much faster than numba at GPU_TARGET_N
GPU_TARGET_N = 256
GPU_SPEEDUP_TARGET = 5.0
#: the published figure to beat (the 2D-speed issue): a NumPy/SciPy Picard iteration of a periodic
#: double-well problem at 128^2 nodes and 10 time steps took about 3.6 s
DOUBLE_WELL_NT = 10
DOUBLE_WELL_PUBLISHED_S = 3.6


def _median_time(fn, repeats: int = REPEATS):
    """``(median seconds, compile seconds, result)``: the warm-up's excess over the median is the
    one-off cost (jit compilation, first-touch allocation)."""
    start = time.perf_counter()
    out = fn()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return median, max(first - median, 0.0), out


def _on_device(backend: str):
    return backends.get_backend(backend, device=DEVICE if backend in backends.DEVICE_BACKENDS else None)


def _relative(a, ref) -> float:
    if ref is None:
        return math.nan
    return float(np.max(np.abs(np.asarray(a) - ref)) / max(float(np.max(np.abs(ref))), 1e-300))


def _fdm(N: int, backend: str, reference: dict) -> dict:
    problem = mc.problems.load("evacuation2d", Nx=N, Ny=N, Nt=NT)
    hjb = mc.HJBFDMSolver(problem, _on_device(backend))
    fp = mc.FPFDMSolver(problem, _on_device(backend))
    M0 = np.broadcast_to(problem.m_init, problem.shape).copy()
    t_hjb, c_hjb, U = _median_time(lambda: hjb.solve(M0))
    diag = dict(hjb.diagnostics)
    t_fp, c_fp, M = _median_time(lambda: fp.solve(U if backend == "numpy" else reference.get("U", U)))
    newton = int(np.sum(hjb.newton_iterations))
    row = {"kind": "fdm", "N": N, "backend": backend,
           "hjb_ms_per_step": 1e3 * t_hjb / NT, "fp_ms_per_step": 1e3 * t_fp / NT,
           "step_ms": 1e3 * (t_hjb + t_fp) / NT, "iteration_s": t_hjb + t_fp, "compile_s": c_hjb + c_fp,
           "newton_per_step": newton / NT,
           "krylov_per_newton": (diag.get("krylov_iterations", math.nan) / newton) if newton else math.nan,
           "diff_U": _relative(U, reference.get("U")), "diff_M": _relative(M, reference.get("M"))}
    if backend == "numpy":
        reference.update(U=U, M=M)
    return row


def double_well(N: int) -> mc.MFGProblem:
    """The published comparison's setting: periodic unit square, a double-well potential (wells at
    ``(1/4, 1/2)`` and ``(3/4, 1/2)``), ``N^2`` nodes and ``DOUBLE_WELL_NT`` time steps; ``F(m) = m``."""
    return mc.MFGProblem(xmin=0, xmax=1, Nx=N, ymin=0, ymax=1, Ny=N, T=1.0, Nt=DOUBLE_WELL_NT, sigma=0.3,
                         boundary="periodic", coupling=lambda m: m, coupling_dm=np.ones_like,
                         potential=lambda x, y: np.cos(4 * np.pi * x) + np.cos(2 * np.pi * y),
                         terminal_cost=lambda x, y: 0.0 * x * y,
                         m0=lambda x, y: np.exp(-10 * ((x - 0.5) ** 2 + (y - 0.5) ** 2)))


def _double_well(N: int, backend: str, reference: dict) -> dict:
    """One Picard iteration (HJB + FP sweep) of :func:`double_well`, from ``M = m0``."""
    problem = double_well(N)
    hjb = mc.HJBFDMSolver(problem, _on_device(backend))
    fp = mc.FPFDMSolver(problem, _on_device(backend))
    M0 = np.broadcast_to(problem.m_init, problem.shape).copy()
    t, c, (U, M) = _median_time(lambda: (lambda U: (U, fp.solve(U)))(hjb.solve(M0)))
    row = {"kind": "double_well", "N": N, "backend": backend, "step_ms": 1e3 * t / DOUBLE_WELL_NT,
           "iteration_s": t, "compile_s": c, "newton_per_step": float(np.sum(hjb.newton_iterations)) / DOUBLE_WELL_NT,
           "diff_U": _relative(U, reference.get("U")), "diff_M": _relative(M, reference.get("M"))}
    if backend == "numpy":
        reference.update(U=U, M=M)
    return row


def _particles(N: int, backend: str, reference: dict) -> dict:
    problem = mc.problems.load("lq2d", Nx=N, Ny=N, Nt=NT)
    U = reference.setdefault("U_lq", mc.HJBFDMSolver(problem, "numba" if "numba" in backends.available()
                                                    else "numpy").solve(
        np.broadcast_to(problem.m_init, problem.shape).copy()))
    fp = mc.FPParticleSolver(problem, num_particles=PARTICLES, seed=0, backend=_on_device(backend))
    t, c, M = _median_time(lambda: fp.solve(U))
    row = {"kind": "particles", "N": N, "backend": backend, "fp_ms_per_step": 1e3 * t / NT,
           "step_ms": 1e3 * t / NT, "iteration_s": t, "compile_s": c,
           "diff_M": _relative(M, reference.get("M_particles"))}
    if backend == "numpy":
        reference["M_particles"] = M
    return row


def main(outdir: pathlib.Path) -> list[dict]:
    have = [b for b in ("numpy", "numba", "jax", "torch") if b in backends.available()]
    rows = []
    for N in SIZES:
        kinds = (("fdm", _fdm), ("particles", _particles)) + ((("double_well", _double_well),) if N == TARGET_N else ())
        for kind, run in kinds:
            reference: dict = {}
            here = []
            for backend in have:
                if backend == "numpy" and kind == "fdm" and N > NUMPY_MAX:
                    continue
                try:
                    here.append(run(N, backend, reference))
                except ValueError as exc:  # a backend without 2D kernels says so
                    here.append({"kind": kind, "N": N, "backend": backend, "note": str(exc)[:120]})
            base = {r["backend"]: r.get("step_ms") for r in here}
            for r in here:
                ms = r.get("step_ms")
                r["vs_numpy"] = base["numpy"] / ms if ms and base.get("numpy") else math.nan
                r["vs_numba"] = ms / base["numba"] if ms and base.get("numba") else math.nan
                print(f"  {kind:9s} N={N:4d} {r['backend']:6s} step {ms or math.nan:9.2f} ms  "
                      f"x{r['vs_numpy']:.1f} vs numpy  {r['vs_numba']:.2f} of numba", flush=True)
            rows += here
    for r in rows:
        target = ""
        if r["kind"] == "fdm" and r["N"] == TARGET_N and r.get("step_ms"):
            if r["backend"] == "numba":
                target = (f"numba >= {NUMBA_SPEEDUP_TARGET:g}x numpy: "
                          + ("met" if r["vs_numpy"] >= NUMBA_SPEEDUP_TARGET else "missed"))
            elif r["backend"] in ("jax", "torch"):
                target = (f"within {WITHIN_NUMBA_TARGET:g}x numba: "
                          + ("met" if r["vs_numba"] <= WITHIN_NUMBA_TARGET else "missed"))
        if (DEVICE != "cpu" and r["kind"] == "fdm" and r["N"] == GPU_TARGET_N and r["backend"] in ("jax", "torch")
                and r.get("step_ms")):
            target = (f"on {DEVICE} >= {GPU_SPEEDUP_TARGET:g}x numba: "
                      + ("met" if r["vs_numba"] <= 1.0 / GPU_SPEEDUP_TARGET else "missed"))
        if r["kind"] == "double_well" and r.get("iteration_s"):
            target = (f"published numpy/scipy {DOUBLE_WELL_PUBLISHED_S:g} s: "
                      f"{DOUBLE_WELL_PUBLISHED_S / r['iteration_s']:.0f}x faster")
        r["target"] = target
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    columns = ["kind", "N", "backend", "hjb_ms_per_step", "fp_ms_per_step", "step_ms", "iteration_s",
               "compile_s", "newton_per_step",
               "krylov_per_newton", "vs_numpy", "vs_numba", "diff_U", "diff_M", "target"]
    rows = [{c: r.get(c, math.nan if c not in ("target", "note") else "") for c in columns + ["note"]}
            for r in rows]
    write_table(outdir, "2d", rows, title="2D sweeps per time step, every installed backend",
                notes=[f"FDM: `evacuation2d` (obstacle included) at `Nx = Ny = N`, `Nt = {NT}`, HJB at "
                       f"`M = m0`, FP at numpy's `U`; particles: `lq2d`, {PARTICLES:,} particles. Median of "
                       f"{REPEATS} runs after a warm-up, ms per time step and s per Picard iteration (one HJB and one FP "
                       f"sweep; particles: the FP sweep), compile_s: the warm-up's excess; numpy's FDM timed up to N = "
                       f"{NUMPY_MAX} (direct sparse LU per Newton step). diff: max|X - X_numpy| / "
                       "max|X_numpy|.",
                       f"double_well: the published comparison (periodic double well, `N = {TARGET_N}`, "
                       f"`Nt = {DOUBLE_WELL_NT}`, `F(m) = m`): one Picard iteration from `M = m0`, against the "
                       f"published NumPy/SciPy {DOUBLE_WELL_PUBLISHED_S:g} s per iteration (another machine).",
                       f"jax and torch on device {DEVICE!r}. Load average at the end: {load} ({os.cpu_count()} cores, "
                       "shared)."],
                columns=columns + (["note"] if any(r["note"] for r in rows) else []))
    return rows
