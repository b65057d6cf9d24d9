"""Figure of the solution fields of one problem (rule plot_fields): no numerics, stores in, PNG out."""

from mfg_study import io, jobs

with jobs.job_log(snakemake.log[0]) as log:  # noqa: F821 - injected by Snakemake
    from mfg_study import report

    runs = io.open_runs(snakemake.params.runs)  # noqa: F821
    chosen = report.pick_field_runs(runs, reference=snakemake.params.reference)  # noqa: F821
    problem = snakemake.wildcards.problem  # noqa: F821
    if chosen:
        io.save_figure(report.fields_figure(problem, chosen), snakemake.output[0])  # noqa: F821
        log.info("fields of %s from %s", problem, {fp: "/".join(k.values()) for fp, (k, _) in chosen.items()})
    else:  # every run diverged or failed: the report still builds and says what happened
        io.save_figure(report.no_solution_figure(problem, runs), snakemake.output[0])  # noqa: F821
        log.warning("no run of %s produced a finite density; drew what each run did instead", problem)
