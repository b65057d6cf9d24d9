"""Solve one batch -- the runs of one (problem, fp method, backend), one per coupling method -- and
write one store per run into the batch's directory (rule solve).

Holds no numerics: each run is built with ``mfg_core.build`` from its method names and resolved
options (``params.runs``, the registry's vocabulary), run, and written with provenance. One process
per batch pays the Python and backend start-up once; a run whose key is in the solve cache
(unchanged settings and code, :mod:`mfg_study.solve_cache`) is copied from it instead of solved.
The batch directory appears only when every store in it is complete (written atomically).
"""

import shutil
import time

from mfg_study import jobs

jobs.set_threads(snakemake.threads)  # noqa: F821 - before numba/torch are imported
jobs.use_caches(snakemake.params.cache_dir)  # noqa: F821 - numba and jax compile once per machine

with jobs.job_log(snakemake.log[0]) as log:  # noqa: F821
    import mfg_core as mc

    from mfg_study import io, provenance, solve_cache

    sm = snakemake  # noqa: F821
    runs = sm.params.runs
    first = runs[0]["problem"]
    problem = mc.problems.load(first["name"], **first["grid"], **first["params"])
    io.check_problem_matches(problem, io.open_store(sm.input.problem), source=str(sm.input.problem))
    with io.atomic_path(sm.output[0]) as batch:
        batch.mkdir()
        for run in runs:
            store = batch / f"{run['coupling']}.zarr"
            name = f"{run['problem']['label']}/{run['fp']}/{run['coupling']}/{run['backend']}"
            run_key = solve_cache.key(run)
            cached = solve_cache.lookup(sm.params.cache_dir, run_key)
            extra = {"threads": int(sm.threads), "problem": run["problem"]["label"], "fp": run["fp"],
                     "coupling": run["coupling"], "solve_cache_key": run_key}
            if cached is not None:
                shutil.copytree(cached, store)
                io.update_attrs(store, provenance.restamp(config=sm.config, run=run, repo=sm.scriptdir,
                                                          extra={**extra, "solve_cache_reused": "true"}))
                log.info("%s: unchanged settings and code, taken from the solve cache (%s)", name, run_key)
                continue
            log.info("run %s, threads=%d", name, sm.threads)
            loop = mc.build(problem, fp=run["fp"], coupling=run["coupling"], backend=run["backend"],
                            **run["options"])
            solve = run["solve"]
            compile_time = loop.warmup()  # apart from the loop's wall time, on every path
            start = time.perf_counter()
            try:
                result = loop.run(solve["max_iterations"], solve["tolerance"],
                                  initial_guess=solve["initial_guess"], warmup=False)
            except mc.ConvergenceError as exc:
                # a non-finite iterate (diverged) or an inner solve that did not converge (failed): a
                # measured outcome, recorded with the iteration and the reason unless told to fail
                if solve["on_divergence"] == "fail":
                    raise
                status = "diverged" if isinstance(exc, mc.DivergenceError) else "failed"
                reason = " ".join([str(exc), *getattr(exc, "__notes__", [])])
                log.warning("%s: %s at iteration %s, recorded as such (solve.on_divergence = record): %s",
                            name, status, exc.iteration, reason)
                ds = io.failed_dataset(problem, status, f"{type(exc).__name__}: {reason}", exc.iteration)
                wall = time.perf_counter() - start
            else:
                ds = result.to_xarray()
                status, wall = result.status, result.wall_time
                log.info("%s: %s after %d iterations: %s", name, status, result.iterations, result.reason)
            backend = loop.hjb_solver.backend
            ds.attrs.update(provenance.provenance_attrs(
                config=sm.config, run=run, backend=backend.name, backend_version=backend.version,
                wall_time=wall, compile_time=compile_time, repo=sm.scriptdir,
                extra={"status": status, **extra}))
            io.write_store(ds, store)
            solve_cache.put(sm.params.cache_dir, run_key, store)
            log.info("%s: wrote %s (wall %.3f s)", name, store.name, wall)
    log.info("batch %s complete: %d runs", sm.output[0], len(runs))
