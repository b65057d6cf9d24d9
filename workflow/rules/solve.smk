# Stage 2: one job per (problem, fp method, coupling method, backend). Each writes u(t, x), m(t, x),
# the iteration history and provenance (config, versions, git revision, wall and compile time) as a
# zarr store. Progress (iteration, residuals) goes to the job's log file.


rule solve:
    input:
        problem=f"{OUT}/problems/{{problem}}.zarr",
    output:
        directory(f"{OUT}/runs/{{problem}}/{{fp}}/{{coupling}}/{{backend}}.zarr"),
    params:
        run=run_settings,
    log:
        f"{LOGS}/solve/{{problem}}/{{fp}}/{{coupling}}/{{backend}}.log",
    benchmark:
        f"{BENCH}/solve/{{problem}}/{{fp}}/{{coupling}}/{{backend}}.tsv"
    threads: res("solve", "threads")
    resources:
        mem_mb=res("solve", "mem_mb"),
        runtime=res("solve", "runtime"),
    conda:
        "../envs/mfg.yaml"
    script:
        "../scripts/solve.py"
