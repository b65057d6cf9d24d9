"""One row per run (outcome, iterations, times, mass deviation): results/<study>/tables/runs.csv."""

from mfg_study import io, jobs

with jobs.job_log(snakemake.log[0]) as log:  # noqa: F821 - injected by Snakemake
    from mfg_study import tables

    runs = io.open_runs(snakemake.params.runs, load=False)  # noqa: F821
    table = tables.runs_table(runs)
    io.write_csv(table, snakemake.output[0])  # noqa: F821
    log.info("%d runs: %s", len(table), table["status"].value_counts().to_dict())
