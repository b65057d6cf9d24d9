"""The self-contained HTML report of a study: results/<study>/report.html.

Reads the tables, figures and stores the other stages wrote; opens with the seed report's findings
beside what this study measured.
"""

import json

import pandas as pd

from mfg_study import io, jobs

with jobs.job_log(snakemake.log[0]) as log:  # noqa: F821 - injected by Snakemake
    from mfg_study import provenance, report, seed

    sm = snakemake  # noqa: F821
    runs_df = pd.read_csv(sm.input.runs_table)
    mass_df = pd.read_csv(sm.input.mass)
    coupling_df = pd.read_csv(sm.input.coupling)
    backends_df = pd.read_csv(sm.input.backends)
    seed = seed.seed_comparison(runs_df, coupling_df, backends_df, reference_backend=sm.params.reference)

    problems = {}
    for label, path in zip(sm.params.problems, sm.input.problems, strict=True):
        problems[label] = json.loads(io.open_store(path, load=False).attrs["problem_parameters"])
    stores = [ds for _, ds in io.open_runs(sm.params.runs, load=False)]  # attrs only: no field is read
    prov = provenance.provenance_summary(stores)

    def figs(paths, what):
        return [(f"{what}: {label}", p) for label, p in zip(sm.params.problems, paths, strict=True)]

    sections = [
        {"title": "Solutions",
         "text": "What was computed: m(t, x) and u(t, x) of the reference finite-difference run, and the "
                 "density at three times, finite differences (solid) beside particles (dashed).",
         "figures": figs(sm.input.field_figures, "Solution fields")},
        {"title": "Runs",
         "text": "One row per (problem, FP method, coupling method, backend). status is converged, "
                 "not_converged (max_iterations reached) or diverged (residual blow-up, or a non-finite "
                 "iterate: then the fields are NaN). wall_time_s is the fixed-point loop; compile_time_s "
                 "the one-off warm-up (jit compilation) before it. final_residual is the relative "
                 "fixed-point residual max(||Phi(x)_U - U|| / ||Phi(x)_U||, same for M) of the last point "
                 "evaluated, comparable across coupling methods; final_change is the relative change between "
                 "the last two iterates, which damping stops on (thetaUM times the residual).",
         "tables": [("All runs", runs_df.drop(columns=["reason"]))]
                   + ([("Runs without a converged solution: status, iteration reached, reason",
                        runs_df.loc[runs_df["status"] != "converged",
                                    ["problem", "fp", "coupling", "backend", "status", "iterations", "reason"]])]
                      if (runs_df["status"] != "converged").any() else [])
                   + ([("Not run here (skip_unavailable)", pd.DataFrame(sm.params.skipped))]
                      if sm.params.skipped else [])},
        {"title": "Mass conservation",
         "text": "Mass deviation = max over t of |mass(t) - 1| of the final density, in percent; the "
                 "iteration mass error is the same quantity for each iterate. Discrete mass = "
                 "sum(weights * m) with the solver's quadrature weights.",
         "tables": [("Per run", mass_df)],
         "figures": figs(sm.input.mass_figures, "Mass deviation over time and over iterations")},
        {"title": "Coupling methods: Anderson beside damping",
         "text": "For the same problem, FP method and backend: iteration_ratio = damping iterations / "
                 "iterations and time_ratio = damping wall time / wall time (above 1: fewer iterations, "
                 "less time). Ratios mean something only where both_converged is true.",
         "tables": [("Coupling methods", coupling_df)],
         "figures": figs(sm.input.residual_figures, "Fixed-point residual max(||Phi(x)_U - U|| / ||Phi(x)_U||, same for M) per iteration (log scale); "
                                       "damping stops when thetaUM times it falls below the tolerance")},
        {"title": "Backends: time and agreement",
         "text": f"Reference backend: {sm.params.reference}. speedup_per_iteration = reference seconds per "
                 "iteration / seconds per iteration (compile time excluded, shown apart). Agreement: "
                 "max|X - X_ref| / max|X_ref| for X = U, M. The particle solver draws its random numbers "
                 "with numpy for every backend (same seed, same stream), so particle runs too should agree "
                 "to round-off across backends."
                 "\n\nTimes are wall-clock times of jobs that ran side by side (snakemake --cores N) on "
                 "the machine that ran the study, so they include contention for cores; tiny grids "
                 "mostly measure per-call overhead, not the kernels' throughput.",
         "tables": [("Backends", backends_df)],
         "figures": figs(sm.input.backend_figures, "Seconds per iteration and compile time")},
    ]
    def kind_sections(title, text, labels, tables_in, figures_in):
        return [{"title": f"{title}: {label}", "text": text, "tables": [(label, pd.read_csv(t))],
                 "figures": [(f"{title}: {label}", f)]}
                for label, t, f in zip(labels, tables_in, figures_in, strict=True)]

    sections[1:1] = (
        kind_sections("Convergence", "Errors against the closed form (or the finest grid), observed orders "
                      "between levels and the mass error per level.", list(sm.params.convergence),
                      sm.input.convergence_tables, sm.input.convergence_figures)
        + kind_sections("Sweep", "Per value of the parameter and coupling method: converged or not, iterations, "
                        "final residual, wall time.", list(sm.params.sweeps), sm.input.sweep_tables,
                        sm.input.sweep_figures)
        + kind_sections("Scaling", "Time per Picard iteration after warm-up (median of repeats), compile time "
                        "apart, speed-up over numpy at each size.", list(sm.params.scaling),
                        sm.input.scaling_tables, sm.input.scaling_figures))
    what = {
        "Problems (as materialised)": problems,
        "Package versions (from the run stores)": prov["package_versions"],
        "Backends and their versions": prov["backends"],
        "Git revision(s)": ", ".join(prov["git_revisions"]) or "unknown",
        "Resolved study config": sm.params.config,
    }
    page = report.render_report(study=sm.params.study, seed=seed, sections=sections, what_was_run=what)
    io.write_text(sm.output[0], page)
    log.info("report written: %s (%d bytes)", sm.output[0], len(page))
