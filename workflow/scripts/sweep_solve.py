"""One coupling method over every value of one sweep (rule sweep_solve): one store, dimension value."""

from mfg_study import jobs

jobs.set_threads(snakemake.threads)  # noqa: F821
jobs.use_caches(snakemake.params.cache_dir)  # noqa: F821

with jobs.job_log(snakemake.log[0]) as log:  # noqa: F821
    from mfg_study import io, provenance, sweep

    sm = snakemake  # noqa: F821
    spec = sm.params.spec
    ds = sweep.run_sweep(spec, sm.wildcards.coupling, log.info)
    ds.attrs.update(provenance.provenance_attrs(config=sm.config, run={**spec, "coupling": sm.wildcards.coupling},
                                                backend=spec["backend"], repo=sm.scriptdir))
    io.write_store(ds, sm.output[0])
