# Stage 2: one job per batch -- the runs of one (problem, fp method, backend), one per coupling method
# -- solved in one process (one Python and backend start-up per batch). Each run's store, with
# u, m, the iteration history and provenance (config, versions, git revision, wall and compile time),
# is written to runs/<problem>/<fp>/<backend>/<coupling>.zarr. Progress (one line per iteration)
# goes to the batch's log. Runs whose settings and code did not change come from the solve cache.


rule solve:
    input:
        problem=f"{OUT}/problems/{{problem}}.zarr",
    output:
        directory(f"{OUT}/runs/{{problem}}/{{fp}}/{{backend}}"),
    params:
        runs=batch_settings,
        cache_dir=CACHE_DIR,
    log:
        f"{LOGS}/solve/{{problem}}/{{fp}}/{{backend}}.log",
    benchmark:
        f"{BENCH}/solve/{{problem}}/{{fp}}/{{backend}}.tsv"
    threads: res("solve", "threads")
    resources:
        mem_mb=res("solve", "mem_mb"),
        runtime=res("solve", "runtime"),
    conda:
        "../envs/mfg.yaml"
    script:
        "../scripts/solve.py"
