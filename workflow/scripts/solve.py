"""Solve one (problem, fp method, coupling method, backend) run and write its store.

Run by Snakemake (rule solve). Holds no numerics: it builds the run with ``mfg_core.build`` from the
method names and the resolved options in ``params.run`` (the registry's vocabulary), runs the loop
and writes ``result.to_xarray()`` plus provenance atomically. Progress (one line per iteration) goes
to the job's log through the "mfg_core" logger.
"""

import time

from mfg_study import io, jobs, provenance

jobs.set_threads(snakemake.threads)  # noqa: F821 - before numba/torch are imported

with jobs.job_log(snakemake.log[0]) as log:  # noqa: F821
    import mfg_core as mc

    run = snakemake.params.run  # noqa: F821
    settings, solve = run["problem"], run["solve"]
    log.info("run %s/%s/%s/%s, threads=%d", settings["label"], run["fp"], run["coupling"], run["backend"],
             snakemake.threads)  # noqa: F821
    problem = mc.problems.load(settings["name"], **settings["grid"], **settings["params"])
    io.check_problem_matches(problem, io.open_store(snakemake.input.problem),  # noqa: F821
                             source=str(snakemake.input.problem))  # noqa: F821
    loop = mc.build(problem, fp=run["fp"], coupling=run["coupling"], backend=run["backend"], **run["options"])

    compile_time = loop.warmup()  # apart from the loop's wall time, on every path
    start = time.perf_counter()
    try:
        result = loop.run(solve["max_iterations"], solve["tolerance"], initial_guess=solve["initial_guess"],
                          warmup=False)
    except mc.ConvergenceError as exc:
        # a non-finite iterate (diverged) or an inner solve that did not converge (failed): a
        # measured outcome, recorded with the iteration and the reason unless told to fail
        if solve["on_divergence"] == "fail":
            raise
        status = "diverged" if isinstance(exc, mc.DivergenceError) else "failed"
        reason = " ".join([str(exc), *getattr(exc, "__notes__", [])])
        log.warning("%s at iteration %s, recorded as such (solve.on_divergence = record): %s",
                    status, exc.iteration, reason)
        ds = io.failed_dataset(problem, status, f"{type(exc).__name__}: {reason}", exc.iteration)
        wall = time.perf_counter() - start
    else:
        ds = result.to_xarray()
        status, wall = result.status, result.wall_time
        log.info("%s after %d iterations: %s", status, result.iterations, result.reason)

    backend = loop.hjb_solver.backend
    ds.attrs.update(provenance.provenance_attrs(
        config=snakemake.config, run=run, backend=backend.name,  # noqa: F821
        backend_version=backend.version, wall_time=wall, compile_time=compile_time,
        repo=snakemake.scriptdir,  # noqa: F821 - the git revision of the workflow, wherever it runs
        extra={"status": status, "threads": int(snakemake.threads), "problem": settings["label"],  # noqa: F821
               "fp": run["fp"], "coupling": run["coupling"]},
    ))
    io.write_store(ds, snakemake.output[0])  # noqa: F821
    log.info("wrote %s (wall %.3f s)", snakemake.output[0], wall)  # noqa: F821
