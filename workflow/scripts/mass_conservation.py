"""Mass over time and over iterations for every run: CSV tables and one figure per problem."""

from mfg_study import io, jobs

with jobs.job_log(snakemake.log[0]) as log:  # noqa: F821 - injected by Snakemake
    from mfg_study import report, tables

    runs = io.open_runs(snakemake.params.runs, load=False)  # noqa: F821
    over_time = tables.mass_over_time(runs)
    over_iterations = tables.mass_over_iterations(runs)
    io.write_csv(tables.mass_table(runs), snakemake.output.table)  # noqa: F821
    io.write_csv(over_time, snakemake.output.over_time)  # noqa: F821
    io.write_csv(over_iterations, snakemake.output.over_iterations)  # noqa: F821
    for problem, path in zip(snakemake.params.problems, snakemake.output.figures, strict=True):  # noqa: F821
        io.save_figure(report.mass_figure(problem, over_time, over_iterations), path)
    log.info("mass tables and %d figures written", len(snakemake.output.figures))  # noqa: F821
