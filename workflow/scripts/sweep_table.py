"""The couplings of one sweep side by side (table) and iterations against the parameter (figure)."""

from mfg_study import jobs

with jobs.job_log(snakemake.log[0]) as log:  # noqa: F821
    from mfg_study import io, sweep

    sm = snakemake  # noqa: F821
    spec = sm.params.spec
    datasets = {c: io.open_store(p) for c, p in zip(spec["couplings"], sm.input, strict=True)}
    table = sweep.sweep_table(spec, datasets)
    io.write_csv(table, sm.output.table)
    io.save_figure(sweep.figure(spec["label"], table, spec), sm.output.figure)
    log.info("first value that did not converge, per coupling: %s", sweep.failure_points(table))
