# Stage 3c: every backend beside the reference backend for the same (problem, fp, coupling): time per
# iteration, compile time, speed-up, and agreement (max relative difference of U and M).


rule compare_backends:
    input:
        runs=batch_dirs(),
    output:
        table=report(
            f"{TABLES}/backends.csv",
            caption="../report/backends.rst",
            category="Backends",
        ),
        figures=[
            report(
                f"{FIGURES}/backends_{p}.png",
                caption="../report/backends.rst",
                category="Backends",
                labels={"problem": p},
            )
            for p in PROBLEMS
        ],
    params:
        runs=run_keys(),
        problems=list(PROBLEMS),
        reference=REFERENCE,
    log:
        f"{LOGS}/compare_backends.log",
    benchmark:
        f"{BENCH}/compare_backends.tsv"
    threads: res("light", "threads")
    resources:
        mem_mb=res("light", "mem_mb"),
        runtime=res("light", "runtime"),
    conda:
        "../envs/mfg.yaml"
    script:
        "../scripts/compare_backends.py"
