"""Solve every level of one convergence study (rule convergence_solve): one store per level."""

from mfg_study import jobs

jobs.set_threads(snakemake.threads)  # noqa: F821
jobs.use_caches(snakemake.params.cache_dir)  # noqa: F821

with jobs.job_log(snakemake.log[0]) as log:  # noqa: F821
    from mfg_study import convergence, io, provenance

    sm = snakemake  # noqa: F821
    spec = sm.params.spec
    with io.atomic_path(sm.output[0]) as folder:
        folder.mkdir()
        for k, name in enumerate(spec["level_names"]):
            problem, result = convergence.solve_level(spec, k)
            log.info("%s level %s (Nx=%d, Nt=%d): %s after %d iterations", spec["label"], name, problem.Nx,
                     problem.Nt, result.status, result.iterations, )
            ds = result.to_xarray()
            ds.attrs.update(provenance.provenance_attrs(
                config=sm.config, run={**spec, "level": name}, backend=spec["backend"], wall_time=result.wall_time,
                compile_time=result.compile_time, repo=sm.scriptdir, extra={"status": result.status, "level": name}))
            io.write_store(ds, folder / f"{name}.zarr")
