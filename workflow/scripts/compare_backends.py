"""Every backend beside the reference backend: time, compile time, speed-up, agreement of U and M."""

from mfg_study import io, jobs

with jobs.job_log(snakemake.log[0]) as log:  # noqa: F821 - injected by Snakemake
    from mfg_study import report, tables

    runs = io.open_runs(snakemake.params.runs)  # noqa: F821
    table = tables.backend_table(runs, reference=snakemake.params.reference)  # noqa: F821
    io.write_csv(table, snakemake.output.table)  # noqa: F821
    for problem, path in zip(snakemake.params.problems, snakemake.output.figures, strict=True):  # noqa: F821
        io.save_figure(report.backend_figure(problem, table), path)
    log.info("backend table (%d rows) and figures written", len(table))
