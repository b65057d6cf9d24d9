# Stage 3b: each coupling method (Anderson, Anderson without safeguards) beside damping for the same
# problem, FP method and backend, and the residual histories on a log scale (one figure per problem).


rule compare_coupling:
    input:
        runs_table=f"{TABLES}/runs.csv",
        runs=batch_dirs(),
    output:
        table=report(
            f"{TABLES}/coupling.csv",
            caption="../report/coupling.rst",
            category="Coupling methods",
        ),
        equilibria=f"{TABLES}/equilibria.csv",
        figures=[
            report(
                f"{FIGURES}/residuals_{p}.png",
                caption="../report/coupling.rst",
                category="Coupling methods",
                labels={"problem": p},
            )
            for p in PROBLEMS
        ],
    params:
        runs=run_keys(),
        problems=list(PROBLEMS),
        tolerance=config["solve"]["tolerance"],
        particle_tolerance=config["particle"]["tolerance"],
    log:
        f"{LOGS}/compare_coupling.log",
    benchmark:
        f"{BENCH}/compare_coupling.tsv"
    threads: res("light", "threads")
    resources:
        mem_mb=res("light", "mem_mb"),
        runtime=res("light", "runtime"),
    conda:
        "../envs/mfg.yaml"
    script:
        "../scripts/compare_coupling.py"
