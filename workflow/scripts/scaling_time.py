"""Time per Picard iteration of one backend at every size of one scaling study (rule scaling_time)."""

from mfg_study import jobs

jobs.set_threads(1)  # the kernels' single-thread speed: the job holds every core only to run alone
jobs.use_caches(snakemake.params.cache_dir)  # noqa: F821

with jobs.job_log(snakemake.log[0]) as log:  # noqa: F821
    from mfg_study import io, scaling

    sm = snakemake  # noqa: F821
    table = scaling.run_scaling(sm.params.spec, sm.wildcards.backend, log.info)
    io.write_csv(table, sm.output[0])
