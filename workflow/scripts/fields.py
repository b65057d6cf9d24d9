"""Figures of the solution fields of one problem (rule plot_fields): no numerics, stores in, images out.

1D: m(t, x) and u(t, x) as space-time maps and the density at three times; 2D: density snapshots with
the obstacle drawn. Both: an animated GIF of the density over time (embedded in the report).
"""

from mfg_study import jobs

with jobs.job_log(snakemake.log[0]) as log:  # noqa: F821 - injected by Snakemake
    from mfg_study import animation, io, report

    sm = snakemake  # noqa: F821
    problem = sm.wildcards.problem
    runs = io.open_runs(sm.params.runs)
    inputs = io.open_store(sm.input.problem)
    obstacle = inputs["obstacle"].values.astype(bool) if "obstacle" in inputs else None
    chosen = report.pick_field_runs(runs, reference=sm.params.reference)
    if chosen:
        main = chosen.get("fdm", next(iter(chosen.values())))
        two_d = "y" in main[1].dims
        fig = animation.density_snapshots(problem, main, obstacle) if two_d else report.fields_figure(problem, chosen)
        io.save_figure(fig, sm.output.figure)
        gif = animation.animate(problem, main, obstacle)
        log.info("fields of %s from %s", problem, {fp: "/".join(k.values()) for fp, (k, _) in chosen.items()})
    else:  # every run diverged or failed: the report still builds and says what happened
        io.save_figure(report.no_solution_figure(problem, runs), sm.output.figure)
        gif = b""
        log.warning("no run of %s produced a finite density; drew what each run did instead", problem)
    with io.atomic_path(sm.output.animation) as tmp:
        tmp.write_bytes(gif or animation.placeholder_gif())
