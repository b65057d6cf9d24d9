# Stage 4: the per-run summary table and the self-contained HTML report (results/<study>/report.html).
# The report reads stores and tables only; it never re-solves.


rule runs_table:
    input:
        runs=batch_dirs(),
    output:
        report(f"{TABLES}/runs.csv", caption="../report/runs.rst", category="Runs"),
    params:
        runs=run_keys(),
    log:
        f"{LOGS}/runs_table.log",
    benchmark:
        f"{BENCH}/runs_table.tsv"
    threads: res("light", "threads")
    resources:
        mem_mb=res("light", "mem_mb"),
        runtime=res("light", "runtime"),
    conda:
        "../envs/mfg.yaml"
    script:
        "../scripts/runs_table.py"


rule report:
    input:
        runs_table=f"{TABLES}/runs.csv",
        mass=f"{TABLES}/mass_conservation.csv",
        coupling=f"{TABLES}/coupling.csv",
        equilibria=f"{TABLES}/equilibria.csv",
        backends=f"{TABLES}/backends.csv",
        mass_figures=expand(f"{FIGURES}/mass_{{problem}}.png", problem=PROBLEMS),
        residual_figures=expand(f"{FIGURES}/residuals_{{problem}}.png", problem=PROBLEMS),
        backend_figures=expand(f"{FIGURES}/backends_{{problem}}.png", problem=PROBLEMS),
        field_figures=expand(f"{FIGURES}/fields_{{problem}}.png", problem=PROBLEMS),
        animations=expand(f"{FIGURES}/animation_{{problem}}.gif", problem=PROBLEMS),
        problems=expand(f"{OUT}/problems/{{problem}}.zarr", problem=PROBLEMS),
        runs=batch_dirs(),
        convergence_tables=expand(f"{TABLES}/convergence_{{label}}.csv", label=CONVERGENCE),
        convergence_figures=expand(f"{FIGURES}/convergence_{{label}}.png", label=CONVERGENCE),
        sweep_tables=expand(f"{TABLES}/sweep_{{label}}.csv", label=SWEEPS),
        sweep_figures=expand(f"{FIGURES}/sweep_{{label}}.png", label=SWEEPS),
        scaling_tables=expand(f"{TABLES}/scaling_{{label}}.csv", label=SCALING),
        scaling_figures=expand(f"{FIGURES}/scaling_{{label}}.png", label=SCALING),
    output:
        report(f"{OUT}/report.html", caption="../report/report.rst", category="Report"),
    params:
        study=STUDY,
        problems=list(PROBLEMS),
        runs=run_keys(),
        skipped=SKIPPED,
        reference=REFERENCE,
        config=config,
        convergence=CONVERGENCE,
        sweeps=SWEEPS,
        scaling=SCALING,
    log:
        f"{LOGS}/report.log",
    benchmark:
        f"{BENCH}/report.tsv"
    threads: res("light", "threads")
    resources:
        mem_mb=res("light", "mem_mb"),
        runtime=res("light", "runtime"),
    conda:
        "../envs/mfg.yaml"
    script:
        "../scripts/report.py"
