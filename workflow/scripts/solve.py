"""Solve one (problem, fp method, coupling method, backend) run and write its store.

Run by Snakemake (rule solve). Holds no numerics: it maps the names in ``params.run`` to mfg_core
constructors, calls ``FixedPointIterator.solve`` and writes ``result.to_xarray()`` plus provenance
atomically. Progress (one line per iteration) goes to the job's log through the "mfg_core" logger.
"""

import time

from mfg_core import io

io.set_thread_env(snakemake.threads)  # noqa: F821 - before numba/torch are imported

with io.job_log(snakemake.log[0]) as log:  # noqa: F821
    import mfg_core as mc

    run = snakemake.params.run  # noqa: F821
    settings, solve = run["problem"], run["solve"]
    log.info("run %s/%s/%s/%s, threads=%d", settings["label"], run["fp"], run["coupling"], run["backend"],
             snakemake.threads)  # noqa: F821
    problem = mc.problems.load(settings["name"], **settings["grid"], **settings["params"])
    io.check_problem_matches(problem, io.open_store(snakemake.input.problem),  # noqa: F821
                             source=str(snakemake.input.problem))  # noqa: F821

    hjb = mc.HJBFDMSolver(problem, backend=run["backend"])
    if run["fp"] == "fdm":
        fp = mc.FPFDMSolver(problem, backend=run["backend"])
    elif run["fp"] == "particle":
        fp = mc.FPParticleSolver(problem, backend=run["backend"], **run["particle"])
    else:
        raise ValueError(f"params.run.fp: unknown FP method {run['fp']!r} (fdm | particle)")

    if run["coupling"] == "damping":
        coupling = {"use_anderson": False}
    elif run["coupling"] in ("anderson", "anderson_plain"):
        coupling = {"use_anderson": True, "anderson_depth": run["anderson"]["depth"],
                    **run["anderson"]["options"]}
    else:
        raise ValueError(f"params.run.coupling: unknown coupling {run['coupling']!r}")
    iterator = mc.FixedPointIterator(problem, hjb, fp, thetaUM=solve["thetaUM"], **coupling)

    compile_time = iterator.warmup()  # apart from the loop's wall time, on every path
    start = time.perf_counter()
    try:
        result = iterator.solve(max_iterations=solve["max_iterations"], tolerance=solve["tolerance"],
                                warmup=False)
    except mc.DivergenceError as exc:
        if solve["on_divergence"] == "fail":
            raise
        log.warning("diverged, recorded as such (solve.on_divergence = record): %s", exc)
        ds = io.diverged_dataset(problem, str(exc))
        status, wall = "diverged", time.perf_counter() - start
    else:
        ds = result.to_xarray()
        status = ("converged" if result.converged
                  else "diverged" if result.reason.startswith("diverged") else "not_converged")
        wall = result.wall_time
        log.info("%s after %d iterations: %s", status, result.iterations, result.reason)

    ds.attrs.update(io.provenance_attrs(
        config=snakemake.config, run=run, backend=hjb.backend.name,  # noqa: F821
        backend_version=hjb.backend.version, wall_time=wall, compile_time=compile_time,
        repo=snakemake.scriptdir,  # noqa: F821 - the git revision of the workflow, wherever it runs
        extra={"status": status, "threads": int(snakemake.threads), "problem": settings["label"],  # noqa: F821
               "fp": run["fp"], "coupling": run["coupling"]},
    ))
    io.write_store(ds, snakemake.output[0])  # noqa: F821
    log.info("wrote %s (wall %.3f s)", snakemake.output[0], wall)  # noqa: F821
