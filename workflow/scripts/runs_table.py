"""One row per run (outcome, iterations, times, mass deviation): results/<study>/tables/runs.csv."""

from mfg_study import io, jobs

with jobs.job_log(snakemake.log[0]) as log:  # noqa: F821 - injected by Snakemake
    from mfg_study import tables

    runs = [(k, io.open_store(p, load=False)) for k, p in zip(snakemake.params.runs, snakemake.input.runs, strict=True)]  # noqa: F821
    table = tables.runs_table(runs)
    io.write_csv(table, snakemake.output[0])  # noqa: F821
    log.info("%d runs: %s", len(table), table["status"].value_counts().to_dict())
