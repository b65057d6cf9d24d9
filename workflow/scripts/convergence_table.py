"""Errors, observed orders and mass errors of one convergence study, and its log-log figure."""

from pathlib import Path

from mfg_study import jobs

with jobs.job_log(snakemake.log[0]) as log:  # noqa: F821
    from mfg_study import convergence, io

    sm = snakemake  # noqa: F821
    spec = sm.params.spec
    stores = [io.open_store(Path(sm.input[0]) / f"{name}.zarr") for name in spec["level_names"]]
    table = convergence.error_table(spec, stores)
    io.write_csv(table, sm.output.table)
    io.save_figure(convergence.figure(spec["label"], table, spec), sm.output.figure)
    log.info("orders (U max): %s", table["order_U_max"].round(3).tolist())
