# Study kinds beside the comparison, each a block of the config (mfg_study.plan decides what runs):
#   convergence -- one problem on a list of grids: errors, observed orders, mass (tables/convergence_<label>.csv)
#   sweep       -- one parameter over values, per coupling method (tables/sweep_<label>.csv)
#   scaling     -- time per Picard iteration against size, per backend (tables/scaling_<label>.csv)


rule convergence_solve:
    output:
        directory(f"{OUT}/convergence/{{label}}"),
    params:
        spec=lambda wc: CONVERGENCE[wc.label],
        cache_dir=CACHE_DIR,
    log:
        f"{LOGS}/convergence/{{label}}.log",
    benchmark:
        f"{BENCH}/convergence/{{label}}.tsv"
    threads: res("solve", "threads")
    resources:
        mem_mb=res("solve", "mem_mb"),
        runtime=res("solve", "runtime"),
    conda:
        "../envs/mfg.yaml"
    script:
        "../scripts/convergence_solve.py"


rule convergence_table:
    input:
        f"{OUT}/convergence/{{label}}",
    output:
        table=f"{TABLES}/convergence_{{label}}.csv",
        figure=f"{FIGURES}/convergence_{{label}}.png",
    params:
        spec=lambda wc: CONVERGENCE[wc.label],
    log:
        f"{LOGS}/convergence/{{label}}_table.log",
    threads: res("light", "threads")
    resources:
        mem_mb=res("light", "mem_mb"),
        runtime=res("light", "runtime"),
    conda:
        "../envs/mfg.yaml"
    script:
        "../scripts/convergence_table.py"


rule sweep_solve:
    output:
        directory(f"{OUT}/sweeps/{{label}}/{{coupling}}.zarr"),
    params:
        spec=lambda wc: SWEEPS[wc.label],
        cache_dir=CACHE_DIR,
    log:
        f"{LOGS}/sweeps/{{label}}/{{coupling}}.log",
    benchmark:
        f"{BENCH}/sweeps/{{label}}/{{coupling}}.tsv"
    threads: res("solve", "threads")
    resources:
        mem_mb=res("solve", "mem_mb"),
        runtime=res("solve", "runtime"),
    conda:
        "../envs/mfg.yaml"
    script:
        "../scripts/sweep_solve.py"


rule sweep_table:
    input:
        lambda wc: [f"{OUT}/sweeps/{wc.label}/{c}.zarr" for c in SWEEPS[wc.label]["couplings"]],
    output:
        table=f"{TABLES}/sweep_{{label}}.csv",
        figure=f"{FIGURES}/sweep_{{label}}.png",
    params:
        spec=lambda wc: SWEEPS[wc.label],
    log:
        f"{LOGS}/sweeps/{{label}}_table.log",
    threads: res("light", "threads")
    resources:
        mem_mb=res("light", "mem_mb"),
        runtime=res("light", "runtime"),
    conda:
        "../envs/mfg.yaml"
    script:
        "../scripts/sweep_table.py"


rule scaling_time:
    output:
        f"{OUT}/scaling/{{label}}/{{backend}}.csv",
    params:
        spec=lambda wc: SCALING[wc.label],
        cache_dir=CACHE_DIR,
    log:
        f"{LOGS}/scaling/{{label}}/{{backend}}.log",
    benchmark:
        f"{BENCH}/scaling/{{label}}/{{backend}}.tsv"
    # every core: nothing else of the study runs beside a timing job
    threads: workflow.cores
    resources:
        mem_mb=res("solve", "mem_mb"),
        runtime=res("solve", "runtime"),
    conda:
        "../envs/mfg.yaml"
    script:
        "../scripts/scaling_time.py"


rule scaling_table:
    input:
        lambda wc: [f"{OUT}/scaling/{wc.label}/{b}.csv" for b in SCALING[wc.label]["backends"]],
    output:
        table=f"{TABLES}/scaling_{{label}}.csv",
        figure=f"{FIGURES}/scaling_{{label}}.png",
    params:
        spec=lambda wc: SCALING[wc.label],
    log:
        f"{LOGS}/scaling/{{label}}_table.log",
    threads: res("light", "threads")
    resources:
        mem_mb=res("light", "mem_mb"),
        runtime=res("light", "runtime"),
    conda:
        "../envs/mfg.yaml"
    script:
        "../scripts/scaling_table.py"
