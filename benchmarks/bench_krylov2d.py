"""The 2D Krylov rule, step by step: ``python -m benchmarks krylov2d``.

What each part of :mod:`mfg_core.backends.krylov2d` buys, on numba (the other Krylov backends run the
same rule): the HJB and FP sweeps at ``M = m0`` of ``evacuation2d`` and ``lq2d`` (``Nt = 50``) and
of the published double-well comparison (:func:`bench_2d.double_well`, ``Nt = 10``) at ``N = 128``
(``MFG_BENCH_KRYLOV_N``), under the rule as it was (HJB to ``1e-13 ||b||``, FP to ``1e-15``, no
shift) and with the parts added one at a time. Median of ``REPEATS`` after a warm-up; numpy's
direct solves are the reference (time and ``diff``: ``max|X - X_numpy| / max|X_numpy|``).
"""

from __future__ import annotations

import math
import os
import pathlib

import numpy as np

import mfg_core as mc
from mfg_core.backends import krylov2d

from ._table import write_table
from .bench_2d import _median_time, _relative, double_well

N = int(os.environ.get("MFG_BENCH_KRYLOV_N", "128"))
REPEATS = 3
BACKEND = "numba"
#: (name, HJB_FORCING, HJB_FLOOR, FP_RTOL, SWITCH); the last is the rule in force
VARIANTS = (
    ("before: 1e-13 / 1e-15, alpha = 1", 1e-13, 0.0, 1e-15, 10**9),
    ("+ inexact Newton (forcing, floor)", krylov2d.HJB_FORCING, krylov2d.HJB_FLOOR, 1e-15, 10**9),
    ("+ FP at 1e-12", krylov2d.HJB_FORCING, krylov2d.HJB_FLOOR, krylov2d.FP_RTOL, 10**9),
    ("+ shift after a slow solve (the rule)", krylov2d.HJB_FORCING, krylov2d.HJB_FLOOR, krylov2d.FP_RTOL,
     krylov2d.SWITCH),
)


def _problems():
    yield "evacuation2d", mc.problems.load("evacuation2d", Nx=N, Ny=N, Nt=50)
    yield "lq2d", mc.problems.load("lq2d", Nx=N, Ny=N, Nt=50)
    yield "double_well", double_well(N)


def _run(problem, backend):
    hjb = mc.HJBFDMSolver(problem, backend)
    fp = mc.FPFDMSolver(problem, backend)
    M0 = np.broadcast_to(problem.m_init, problem.shape).copy()
    t_hjb, _, U = _median_time(lambda: hjb.solve(M0), REPEATS)
    t_fp, _, M = _median_time(lambda: fp.solve(U), REPEATS)
    return t_hjb, t_fp, U, M, dict(hjb.diagnostics), dict(fp.diagnostics), int(np.sum(hjb.newton_iterations))


def main(outdir: pathlib.Path) -> list[dict]:
    saved = (krylov2d.HJB_FORCING, krylov2d.HJB_FLOOR, krylov2d.FP_RTOL, krylov2d.SWITCH)
    rows = []
    try:
        for name, problem in _problems():
            t_hjb, t_fp, U0, M0, _, _, newton0 = _run(problem, "numpy")
            base = t_hjb + t_fp
            rows.append({"problem": name, "N": N, "variant": "numpy (sparse LU)", "hjb_s": t_hjb, "fp_s": t_fp,
                         "iteration_s": base, "vs_numpy": 1.0, "newton_steps": newton0,
                         "krylov_per_newton": math.nan, "krylov_per_fp_step": math.nan,
                         "diff_U": 0.0, "diff_M": 0.0})
            for label, forcing, floor, fp_rtol, switch in VARIANTS:
                krylov2d.HJB_FORCING, krylov2d.HJB_FLOOR, krylov2d.FP_RTOL, krylov2d.SWITCH = (
                    forcing, floor, fp_rtol, switch)
                t_hjb, t_fp, U, M, dh, df, newton = _run(problem, BACKEND)
                rows.append({"problem": name, "N": N, "variant": f"{BACKEND} {label}", "hjb_s": t_hjb, "fp_s": t_fp,
                             "iteration_s": t_hjb + t_fp, "vs_numpy": base / (t_hjb + t_fp),
                             "newton_steps": newton, "krylov_per_newton": dh["krylov_iterations"] / max(newton, 1),
                             "krylov_per_fp_step": df["krylov_iterations"] / problem.Nt,
                             "diff_U": _relative(U, U0), "diff_M": _relative(M, M0)})
                r = rows[-1]
                print(f"  {name:13s} {r['variant']:50s} {r['iteration_s']:7.3f} s  x{r['vs_numpy']:5.1f}  "
                      f"{r['krylov_per_newton']:5.1f} / {r['krylov_per_fp_step']:5.1f} its", flush=True)
    finally:
        krylov2d.HJB_FORCING, krylov2d.HJB_FLOOR, krylov2d.FP_RTOL, krylov2d.SWITCH = saved
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    write_table(outdir, "krylov2d", rows, title="The 2D Krylov rule, part by part (numba)",
                notes=[f"HJB and FP sweep at `M = m0`, `N = {N}`; evacuation2d and lq2d `Nt = 50`, double_well "
                       f"`Nt = 10`. Median of {REPEATS} after a warm-up. krylov_per_newton: BiCGStab iterations "
                       "per HJB Newton step; krylov_per_fp_step: per FP time step.",
                       f"Load average at the end: {load} ({os.cpu_count()} cores, shared)."])
    return rows
