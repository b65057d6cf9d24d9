"""Each coupling method beside damping (table), which converged runs reached the same solution
(equilibria), and residual histories on a log scale (figures)."""

import pandas as pd

from mfg_study import io, jobs

with jobs.job_log(snakemake.log[0]) as log:  # noqa: F821 - injected by Snakemake
    from mfg_study import report, tables

    runs = io.open_runs(snakemake.params.runs, load=False)  # noqa: F821
    # two methods that converged to different solutions (an attractive coupling can have several
    # equilibria) did different work: their iteration ratios are dropped, and the pairs listed
    equilibria = tables.equilibria(runs)
    io.write_csv(equilibria, snakemake.output.equilibria)  # noqa: F821
    table = tables.coupling_table(pd.read_csv(snakemake.input.runs_table), equilibria_df=equilibria)  # noqa: F821
    io.write_csv(table, snakemake.output.table)  # noqa: F821
    distinct = equilibria.loc[~equilibria["same_solution"].astype(bool)] if len(equilibria) else equilibria
    if len(distinct):
        log.warning("runs converged to different solutions: %s",
                    sorted({(r.problem, r.fp) for r in distinct.itertuples()}))
    tolerances = {"fdm": snakemake.params.tolerance, "particle": snakemake.params.particle_tolerance}  # noqa: F821
    for problem, path in zip(snakemake.params.problems, snakemake.output.figures, strict=True):  # noqa: F821
        io.save_figure(report.residual_figure(problem, runs, tolerances), path)
    log.info("coupling table (%d rows) and figures written", len(table))
