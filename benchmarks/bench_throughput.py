"""Throughput of the study runner: the comparison study's 72 runs from scratch and with warm caches.

Runs ``snakemake --cores 2`` on ``config/studies/comparison.yaml`` (the default study's set of runs
before the study kinds: 3 problems x fdm/particle x damping/anderson/anderson_plain x 4 backends) in a
fresh working directory three times:

1. scratch: empty results and an empty cache folder (numba and jax compile, every run is solved);
2. warm JIT: empty results, the cache folder of run 1 without its solve cache (compiled code is
   loaded from disk, every run is still solved);
3. warm: empty results, the whole cache folder (unchanged runs are copied from the solve cache).

Reports the wall time of each with the load average, and checks that the stores of runs 1 and 2 are
identical (u, m, iteration counts; ``benchmarks.same_numbers``). Targets (the studies issue): scratch
<= 150 s, warm JIT <= 75 s. Writes ``throughput.md`` and ``throughput.csv``.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

from ._table import write_table
from .same_numbers import compare

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config" / "studies" / "comparison.yaml"
TARGETS = {"scratch": 150.0, "warm JIT": 75.0}


def _snakemake(work: pathlib.Path) -> float:
    exe = pathlib.Path(sys.executable).with_name("snakemake")
    start = time.perf_counter()
    proc = subprocess.run([str(exe), "-s", str(ROOT / "Snakefile"), "--cores", "2", "--configfile", str(CONFIG),
                           "--directory", str(work)], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"the study failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return seconds


def main(outdir: pathlib.Path) -> list[dict]:
    base = pathlib.Path(tempfile.mkdtemp(prefix="mfg-throughput-"))
    rows = []
    try:
        runs = {}
        cache = base / "cache"
        for name in ("scratch", "warm JIT", "warm"):
            work = base / name.replace(" ", "_")
            work.mkdir()
            if name == "warm JIT":
                shutil.rmtree(cache / "solves", ignore_errors=True)
            if cache.exists():  # the cache folder the workflow owns (cache_dir: .cache/mfg-study)
                shutil.copytree(cache, work / ".cache" / "mfg-study")
            load_before = os.getloadavg()[0]
            seconds = _snakemake(work)
            runs[name] = work / "results" / "comparison"
            shutil.rmtree(cache, ignore_errors=True)
            shutil.copytree(work / ".cache" / "mfg-study", cache)
            rows.append({"run": name, "wall_s": seconds, "target_s": TARGETS.get(name, float("nan")),
                         "met": ("yes" if seconds <= TARGETS[name] else "NO") if name in TARGETS else "",
                         "load_before": load_before, "load_after": os.getloadavg()[0]})
            print(f"  {name}: {seconds:.1f} s (load {load_before:.2f} -> {rows[-1]['load_after']:.2f})", flush=True)
        diffs = compare(runs["scratch"], runs["warm JIT"])
        same = sum(1 for d in diffs if not d["missing"] and d["du"] == 0.0 and d["dm"] == 0.0
                   and d["it_old"] == d["it_new"])
        for r in rows:
            r["identical_stores"] = f"{same}/{len(diffs)}" if r["run"] == "warm JIT" else ""
    finally:
        shutil.rmtree(base, ignore_errors=True)
    write_table(outdir, "throughput", rows,
                title="Study-runner throughput: the comparison study's 72 runs (snakemake --cores 2)",
                notes=["scratch: empty results and caches; warm JIT: numba and jax compiled code on disk, every run "
                       "solved; warm: also the solve cache (unchanged runs copied). Stores of scratch and warm JIT "
                       "compared value by value.",
                       f"Machine: {os.cpu_count()} cores, shared; load averages before and after each run."])
    return rows
