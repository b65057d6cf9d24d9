# Stage 1: materialise each problem of the study (grid, m0, V, g, weights, parameters) as a store.
# The solve jobs rebuild the problem from the same settings and check it against this store, so the
# store is both a readable record of the inputs and a guard against the two drifting apart.


rule setup_problem:
    output:
        directory(f"{OUT}/problems/{{problem}}.zarr"),
    params:
        problem=lambda w: problem_settings(w.problem),
    log:
        f"{LOGS}/setup/{{problem}}.log",
    benchmark:
        f"{BENCH}/setup/{{problem}}.tsv"
    threads: res("light", "threads")
    resources:
        mem_mb=res("light", "mem_mb"),
        runtime=res("light", "runtime"),
    conda:
        "../envs/mfg.yaml"
    script:
        "../scripts/setup_problem.py"
