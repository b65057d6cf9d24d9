"""KDE and particle Fokker-Planck benchmark: ``python -m benchmarks kde``.

1. ``mfg_core.kde.kde_on_grid`` (linear binning + FFT, O(N + M log M)) on every installed backend
   against ``scipy.stats.gaussian_kde`` (direct O(N M) sum; no wall reflection, so it does less work
   than ours) at N in {1e4, 1e5, 1e6} samples x M in {101, 401, 1601} nodes. scipy is run only where
   its time, predicted by its O(N M) cost at the per-pair rate of the largest case measured so far, stays under ``SCIPY_LIMIT_S``;
   elsewhere the prediction is reported and marked ``extrapolated``.
2. A full particle FP solve (``FPParticleSolver.solve``) of ``congestion`` per backend, after a
   warm-up (jit compilation, reported separately), with the density's deviation from numpy.

Every time is the median of ``REPEATS`` runs; the speed-up of a row divides two times measured in
the same run of this script. Writes ``kde.md`` and ``kde.csv`` to ``outdir``.
"""

from __future__ import annotations

import contextlib
import csv
import pathlib
import platform
import statistics
import time

import numpy as np

import mfg_core as mc
from mfg_core import backends
from mfg_study.io import atomic_path, write_text
from mfg_core.kde import kde_on_grid
from mfg_core.particles import FPParticleSolver

REPEATS = 3
SCIPY_LIMIT_S = 20.0
SIZES_N = (10_000, 100_000, 1_000_000)
SIZES_M = (101, 401, 1601)
PARTICLE_CASE = dict(problem="congestion", Nx=100, Nt=100, num_particles=100_000)


@contextlib.contextmanager
def _torch_threads(threads: int | None):
    """Run the block with ``threads`` torch intra-op threads (None: leave torch alone)."""
    if threads is None:
        yield
        return
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def _variants(names: list[str]) -> list[tuple[str, str, int | None]]:
    """(backend, label, torch threads): every backend, plus torch single-threaded.

    torch's intra-op threads suffer badly when the cores are shared with other processes (each small
    op can cost ~100x more), so torch is also timed with one thread.
    """
    out = [(name, name, None) for name in names]
    if "torch" in names:
        out.append(("torch", "torch[1 thread]", 1))
    return out


def _median_time(fn, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _kde_rows(names: list[str]) -> list[dict]:
    from scipy.stats import gaussian_kde

    rng = np.random.default_rng(0)
    rows = []
    per_pair, largest = None, 0  # scipy seconds per (sample, node) pair, and the N M it was measured at
    for N in SIZES_N:
        X = np.clip(rng.normal(0.4, 0.12, N), 0.0, 1.0)
        for M in SIZES_M:
            grid = np.linspace(0.0, 1.0, M)
            row = {"section": "kde", "N": N, "M": M}
            for name, label, threads in _variants(names):
                with _torch_threads(threads):
                    kde_on_grid(X, grid, "scott", backend=name)  # compile / warm caches
                    row[f"{label}_s"] = _median_time(lambda: kde_on_grid(X, grid, "scott", backend=name))
            predicted = per_pair * N * M if per_pair is not None else 0.0
            if predicted <= SCIPY_LIMIT_S:
                row["scipy_s"] = _median_time(lambda: gaussian_kde(X)(grid))
                row["scipy_status"] = "measured"
                # the rate of the largest case measured so far: small cases are dominated by overhead
                if N * M >= largest:
                    largest, per_pair = N * M, row["scipy_s"] / (N * M)
            else:
                row["scipy_s"] = predicted
                row["scipy_status"] = "extrapolated"
            row["speedup_numpy"] = row["scipy_s"] / row["numpy_s"]
            rows.append(row)
            print(f"  kde N={N:>8} M={M:>5}: numpy {row['numpy_s'] * 1e3:8.2f} ms, scipy "
                  f"{row['scipy_s']:8.3f} s ({row['scipy_status']}), x{row['speedup_numpy']:.0f}", flush=True)
    return rows


def _particle_rows(names: list[str]) -> list[dict]:
    case = PARTICLE_CASE
    p = mc.problems.load(case["problem"], Nx=case["Nx"], Nt=case["Nt"])
    # a realistic drift: the converged FDM value function of the same problem
    U = mc.FixedPointIterator(p, mc.HJBFDMSolver(p), mc.FPFDMSolver(p), thetaUM=0.5).solve(
        max_iterations=200, tolerance=1e-8).U
    rows, M_ref = [], None
    for name, label, threads in _variants(names):
        fp = FPParticleSolver(p, num_particles=case["num_particles"], seed=0, backend=name)
        with _torch_threads(threads):
            compile_s = fp.warmup()
            seconds = _median_time(lambda: fp.solve(U))
            M = fp.solve(U)
        if M_ref is None:
            M_ref = M
        rows.append({
            "section": "particle_fp", "backend": label, "N": case["num_particles"], "M": p.x.size,
            "Nt": p.Nt, "solve_s": seconds, "compile_s": compile_s,
            "max_rel_diff_vs_numpy": float(np.max(np.abs(M - M_ref)) / np.max(np.abs(M_ref))),
            "mass_error": float(np.max(np.abs(p.mass(M) - 1.0))),
        })
        print(f"  particle FP {label:>15}: {seconds:.3f} s (compile {compile_s:.2f} s)", flush=True)
    return rows


def _write(outdir: pathlib.Path, names: list[str], kde_rows: list[dict], fp_rows: list[dict]) -> None:
    labels = [label for _, label, _ in _variants(names)]
    fields = ["section", "backend", "N", "M", "Nt", *[f"{n}_s" for n in labels], "scipy_s", "scipy_status",
              "speedup_numpy", "solve_s", "compile_s", "max_rel_diff_vs_numpy", "mass_error"]
    with atomic_path(outdir / "kde.csv") as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in kde_rows + fp_rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})

    lines = [
        "# KDE and particle Fokker-Planck benchmark",
        "",
        f"Machine: {platform.machine()}, {platform.python_version()}, "
        f"backends {', '.join(f'{n} {backends.get_backend(n).version}' for n in names)}. "
        f"Median of {REPEATS} runs; speed-ups divide times measured in the same run.",
        "",
        "## `kde_on_grid` (binning + FFT) vs `scipy.stats.gaussian_kde` (direct sum)",
        "",
        "Gaussian samples on [0, 1], Scott's bandwidth, Neumann reflection (scipy: none). Times in ms; "
        f"scipy in s, *italic* = extrapolated from its O(N M) cost (would take > {SCIPY_LIMIT_S:g} s).",
        "",
        "| N | M | " + " | ".join(f"{n} (ms)" for n in labels) + " | scipy (s) | numpy speed-up |",
        "|---:|---:|" + "---:|" * len(labels) + "---:|---:|",
    ]
    for r in kde_rows:
        scipy = f"{r['scipy_s']:.3f}" if r["scipy_status"] == "measured" else f"*{r['scipy_s']:.1f}*"
        speed = f"{r['speedup_numpy']:.0f}x" if r["scipy_status"] == "measured" else f"*{r['speedup_numpy']:.0f}x*"
        lines.append(f"| {r['N']:,} | {r['M']} | " + " | ".join(f"{r[f'{n}_s'] * 1e3:.2f}" for n in labels)
                     + f" | {scipy} | {speed} |")
    target = next(r for r in kde_rows if r["N"] == 100_000 and r["M"] == 401)
    lines += [
        "",
        f"Target (>= 100x at N = 1e5, M = 401 on numpy): **{target['speedup_numpy']:.0f}x** "
        f"({'met' if target['speedup_numpy'] >= 100 else 'NOT met'}).",
        "",
        f"## Particle FP solve: `{PARTICLE_CASE['problem']}`, N = {PARTICLE_CASE['num_particles']:,} "
        f"particles, {fp_rows[0]['M']} nodes, {fp_rows[0]['Nt']} steps (drift: the FDM fixed point's U)",
        "",
        "| backend | solve (s) | compile (s) | max rel. diff vs numpy | mass error |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in fp_rows:
        lines.append(f"| {r['backend']} | {r['solve_s']:.3f} | {r['compile_s']:.2f} | "
                     f"{r['max_rel_diff_vs_numpy']:.1e} | {r['mass_error']:.1e} |")
    write_text(outdir / "kde.md", "\n".join(lines) + "\n")


def main(outdir: pathlib.Path) -> None:
    outdir = pathlib.Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    names = backends.available()
    kde_rows = _kde_rows(names)
    fp_rows = _particle_rows(names)
    _write(outdir, names, kde_rows, fp_rows)
    print(f"  wrote {outdir / 'kde.md'} and {outdir / 'kde.csv'}")
