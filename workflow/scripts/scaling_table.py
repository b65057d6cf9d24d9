"""All backends of one scaling study with speed-ups over numpy (table) and the log-log figure."""

from mfg_study import jobs

with jobs.job_log(snakemake.log[0]) as log:  # noqa: F821
    import pandas as pd

    from mfg_study import io, scaling

    sm = snakemake  # noqa: F821
    spec = sm.params.spec
    table = scaling.scaling_table([pd.read_csv(p) for p in sm.input])
    io.write_csv(table, sm.output.table)
    io.save_figure(scaling.figure(spec["label"], table, spec), sm.output.figure)
    log.info("speed-ups over numpy: %s", table.groupby("backend")["speedup_vs_numpy"].max().round(2).to_dict())
