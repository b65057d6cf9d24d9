"""Materialise one problem of the study as a zarr store (grid, m0, V, g, weights, parameters).

Run by Snakemake (rule setup_problem); holds no numerics: builds the named problem from the
settings in ``params.problem`` and writes :func:`mfg_study.io.problem_to_xarray` atomically.
"""

from mfg_study import io, jobs, provenance

jobs.set_threads(snakemake.threads)  # noqa: F821 - injected by Snakemake

with jobs.job_log(snakemake.log[0]) as log:  # noqa: F821
    import mfg_core as mc

    settings = snakemake.params.problem  # noqa: F821
    problem = mc.problems.load(settings["name"], **settings["grid"], **settings["params"])
    log.info("problem %s: %r", settings["label"], problem)
    ds = io.problem_to_xarray(problem)
    ds.attrs.update(provenance.provenance_attrs(config=snakemake.config, run={"problem": settings},  # noqa: F821
                                        repo=snakemake.scriptdir))  # noqa: F821
    io.write_store(ds, snakemake.output[0])  # noqa: F821
    log.info("wrote %s", snakemake.output[0])  # noqa: F821
