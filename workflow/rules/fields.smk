# Stage 3d: what the solutions look like. Per problem: m(t, x) and u(t, x) of an FDM run (converged,
# reference backend first) as space-time maps, and the density at three times, FDM beside particles.


rule plot_fields:
    input:
        runs=lambda wc: batch_dirs(wc.problem),
        problem=f"{OUT}/problems/{{problem}}.zarr",
    output:
        figure=report(
            f"{FIGURES}/fields_{{problem}}.png",
            caption="../report/fields.rst",
            category="Solutions",
            labels={"problem": "{problem}"},
        ),
        animation=f"{FIGURES}/animation_{{problem}}.gif",
    params:
        runs=lambda wc: run_keys(wc.problem),
        reference=REFERENCE,
    log:
        f"{LOGS}/fields/{{problem}}.log",
    benchmark:
        f"{BENCH}/fields/{{problem}}.tsv"
    threads: res("light", "threads")
    resources:
        mem_mb=res("light", "mem_mb"),
        runtime=res("light", "runtime"),
    conda:
        "../envs/mfg.yaml"
    script:
        "../scripts/fields.py"
