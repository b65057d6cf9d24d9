# Stage 3a: mass conservation of every run -- mass over time of the solution and the mass error of
# each iterate -- as CSV tables and one figure per problem.


rule mass_conservation:
    input:
        runs=batch_dirs(),
    output:
        table=report(
            f"{TABLES}/mass_conservation.csv",
            caption="../report/mass.rst",
            category="Mass conservation",
        ),
        over_time=f"{TABLES}/mass_over_time.csv",
        over_iterations=f"{TABLES}/mass_over_iterations.csv",
        figures=[
            report(
                f"{FIGURES}/mass_{p}.png",
                caption="../report/mass.rst",
                category="Mass conservation",
                labels={"problem": p},
            )
            for p in PROBLEMS
        ],
    params:
        runs=run_keys(),
        problems=list(PROBLEMS),
    log:
        f"{LOGS}/mass_conservation.log",
    benchmark:
        f"{BENCH}/mass_conservation.tsv"
    threads: res("light", "threads")
    resources:
        mem_mb=res("light", "mem_mb"),
        runtime=res("light", "runtime"),
    conda:
        "../envs/mfg.yaml"
    script:
        "../scripts/mass_conservation.py"
