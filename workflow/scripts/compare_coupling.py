"""Each coupling method beside damping (table) and residual histories on a log scale (figures)."""

import pandas as pd

from mfg_study import io, jobs

with jobs.job_log(snakemake.log[0]) as log:  # noqa: F821 - injected by Snakemake
    from mfg_study import report, tables

    runs = io.open_runs(snakemake.params.runs, load=False)  # noqa: F821
    table = tables.coupling_table(pd.read_csv(snakemake.input.runs_table))  # noqa: F821
    io.write_csv(table, snakemake.output.table)  # noqa: F821
    tolerances = {"fdm": snakemake.params.tolerance, "particle": snakemake.params.particle_tolerance}  # noqa: F821
    for problem, path in zip(snakemake.params.problems, snakemake.output.figures, strict=True):  # noqa: F821
        io.save_figure(report.residual_figure(problem, runs, tolerances), path)
    log.info("coupling table (%d rows) and figures written", len(table))
