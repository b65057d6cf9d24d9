"""The self-contained HTML report of a study: results/<study>/report.html.

Reads the tables, figures and stores the other stages wrote (it never re-solves). Opens with a summary:
numbered findings answering the seed report's questions, each with its measured numbers and figure;
then one section per stage and study kind.
"""

import json

import pandas as pd

from mfg_study import io, jobs

with jobs.job_log(snakemake.log[0]) as log:  # noqa: F821 - injected by Snakemake
    from mfg_study import provenance, report, scaling, seed

    sm = snakemake  # noqa: F821
    problems_ = list(sm.params.problems)
    runs_df = pd.read_csv(sm.input.runs_table)
    mass_df = pd.read_csv(sm.input.mass)
    coupling_df = pd.read_csv(sm.input.coupling)
    equilibria_df = pd.read_csv(sm.input.equilibria)
    backends_df = pd.read_csv(sm.input.backends)
    kinds = {
        "convergence": dict(zip(sm.params.convergence, map(pd.read_csv, sm.input.convergence_tables), strict=True)),
        "sweep": dict(zip(sm.params.sweeps, map(pd.read_csv, sm.input.sweep_tables), strict=True)),
        "scaling": dict(zip(sm.params.scaling, map(pd.read_csv, sm.input.scaling_tables), strict=True)),
    }
    figure_paths = {
        "fields": dict(zip(problems_, sm.input.field_figures, strict=True)),
        "mass": dict(zip(problems_, sm.input.mass_figures, strict=True)),
        "residuals": dict(zip(problems_, sm.input.residual_figures, strict=True)),
        "backends": dict(zip(problems_, sm.input.backend_figures, strict=True)),
        "convergence": dict(zip(sm.params.convergence, sm.input.convergence_figures, strict=True)),
        "sweep": dict(zip(sm.params.sweeps, sm.input.sweep_figures, strict=True)),
        "scaling": dict(zip(sm.params.scaling, sm.input.scaling_figures, strict=True)),
    }
    captions = {
        "fields": "Solution fields", "mass": "Mass deviation over time and over iterations",
        "residuals": "Fixed-point residual per iteration (log scale), one panel per FP method",
        "backends": "Seconds per iteration and compile time per backend", "convergence": "Errors against N",
        "sweep": "Iterations against the parameter (x: did not converge)",
        "scaling": "Time per Picard iteration against size, per backend",
    }

    def cols(df, drop=(), keep=None):
        """The columns a table shows (the CSV keeps them all)."""
        shown = [c for c in (keep or df.columns) if c in df.columns and c not in drop]
        return df[shown]

    # ---- sections (ids: what the summary's findings link to)
    not_converged = runs_df[runs_df["status"] != "converged"].copy()
    not_converged["_order"] = not_converged["status"].map({"diverged": 0, "failed": 1}).fillna(2)
    not_converged = not_converged.sort_values(["_order", "problem", "fp", "coupling", "backend"])
    run_cols = ["problem", "fp", "coupling", "backend", "status", "iterations", "final_residual", "wall_time_s",
                "compile_time_s", "seconds_per_iteration", "mass_deviation_pct", "min_m", "rejected_steps"]
    mass_statements, mass_figures = [], []
    for p in problems_:
        info = report.mass_round_off(mass_df, p)
        if info["at_round_off"]:
            mass_statements.append(
                f"{p}: mass is conserved to round-off in all {info['runs']} runs with a solution: max |mass - 1| = "
                f"{info['max']:.2g} over time and iterations ({info['run']}). No figure: it would show "
                "floating-point noise only.")
        elif info["above"]:
            worst = ", ".join(f"{label} {v:.2g}" for label, v in info["above"][:4])
            mass_statements.append(
                f"{p}: {len(info['above'])} of {info['runs']} runs above round-off ({info['round_off']:g}): "
                f"max |mass - 1| {worst}{', ...' if len(info['above']) > 4 else ''}. The figure leaves out the runs "
                "at round-off.")
            mass_figures.append((f"{captions['mass']}: {p}", figure_paths["mass"][p]))
        if info["no_mass"]:
            mass_statements.append(f"{p}: {info['no_mass']} run(s) have no finite mass (diverged or failed).")

    sections = [
        {"id": "solutions", "title": "Solutions",
         "text": "What was computed. 1D: m(t, x) and u(t, x) of the reference finite-difference run, and the "
                 "density at three times, finite differences (solid) beside particles (dashed). 2D: the density "
                 "at four times and u at t = 0, obstacles in grey. Then the density over time as an animation.",
         "figures": [fig for p, gif in zip(problems_, sm.input.animations, strict=True)
                     for fig in ((f"{captions['fields']}: {p}", figure_paths["fields"][p]),
                                 (f"The density over time (animation): {p}", gif))]},
        {"id": "runs", "title": "Runs",
         "text": "One row per (problem, FP method, coupling method, backend). status: converged, not_converged "
                 "(max_iterations reached), diverged (residual blow-up or a non-finite iterate; fields NaN) or "
                 "failed (an inner solve did not converge). final_residual: the relative fixed-point residual "
                 "max(||Phi(x)_U - U|| / ||Phi(x)_U||, same for M) of the last point, comparable across coupling "
                 "methods. wall_time_s: the fixed-point loop; compile_time_s: the one-off warm-up before it.",
         "tables": [("All runs", cols(runs_df, keep=run_cols), "More columns (final_change, backend_version, "
                     "threads, reason, ...) in tables/runs.csv.")]
                   + ([("Runs without a converged solution: status, iteration reached, reason",
                        cols(not_converged, keep=["problem", "fp", "coupling", "backend", "status", "iterations",
                                                  "final_residual", "reason"]))]
                      if len(not_converged) else [])
                   + ([("Not run: combinations that do not exist (not applicable) and backends missing here "
                        "(skip_unavailable)", pd.DataFrame(sm.params.skipped))]
                      if sm.params.skipped else [])},
        {"id": "mass", "title": "Mass conservation",
         "text": "Mass deviation = max over t of |mass(t) - 1| of the final density, in percent; the iteration "
                 "mass error is the same quantity for each iterate. Discrete mass = sum(weights * m) with the "
                 f"solver's quadrature weights. Below {report.ROUND_OFF:g} a deviation is round-off.",
         "statements": mass_statements,
         "tables": [("Per run", cols(mass_df, drop=("mass_t0",)))],
         "figures": mass_figures},
        {"id": "coupling", "title": "Coupling methods: Anderson beside damping",
         "text": "For the same problem, FP method and backend, beside damping (the reference): iteration_ratio = "
                 "damping iterations / iterations and time_ratio = damping wall time / wall time (above 1: fewer "
                 "iterations, less time); they mean something only where both_converged is true. The figure: "
                 "damping stops when thetaUM times the residual falls below the tolerance.",
         "statements": seed.equilibria_statements(equilibria_df),
         "tables": [("Coupling methods", cols(coupling_df, drop=("reference", "mass_deviation_pct")))]
                   + ([("Pairs of converged runs that reached different solutions", equilibria_df.loc[
                        ~equilibria_df["same_solution"].astype(bool),
                        ["problem", "fp", "coupling_a", "backend_a", "coupling_b", "backend_b", "max_rel_diff_U",
                         "max_rel_diff_M"]])]
                      if len(equilibria_df) and (~equilibria_df["same_solution"].astype(bool)).any() else []),
         "figures": [(f"{captions['residuals']}: {p}", figure_paths["residuals"][p]) for p in problems_]},
        {"id": "backends", "title": "Backends: time and agreement",
         "text": f"Reference backend: {sm.params.reference}. speedup_per_iteration = reference seconds per "
                 "iteration / seconds per iteration (compile time apart). Agreement: max|X - X_ref| / max|X_ref| "
                 "for X = U, M. Particle runs draw their random numbers with numpy on every backend, so they too "
                 "agree to round-off."
                 "\n\nWall-clock times of jobs that ran side by side on the study's machine (contention "
                 "included); tiny grids measure per-call overhead, not throughput: a scaling study does.",
         "tables": [("Backends", cols(backends_df, drop=("backend_version", "reference")))],
         "figures": [(f"{captions['backends']}: {p}", figure_paths["backends"][p]) for p in problems_]},
    ]

    def kind_sections(kind, title, text, drop):
        out = []
        for label, table in kinds[kind].items():
            shown = cols(table, drop=drop(table))
            out.append({"id": f"{kind}-{label}", "title": f"{title}: {label}", "text": text,
                        "tables": [(label, shown, f"All columns in tables/{kind}_{label}.csv.")],
                        "figures": [(f"{title}: {label}", figure_paths[kind][label])]})
        return out

    sections[1:1] = (
        kind_sections("convergence", "Convergence", "Errors against the closed form (or the finest grid), observed "
                      "orders between levels and the mass error per level.",
                      lambda t: [c for c in ("Nx", "Nt") if (t[c] == t["N"]).all()])
        + kind_sections("sweep", "Sweep", "Per value of the parameter and coupling method: converged or not, "
                        "iterations, final residual, wall time; warm_start: started from the previous value's "
                        "solution (continuation).", lambda t: ["parameter", "converged"])
        + kind_sections("scaling", "Scaling", "Time per Picard iteration after warm-up (median of repeats), "
                        "compile time apart, speed-up over numpy at each size; for 2D finite differences the "
                        "Krylov iterations per Newton step and per FP time step (numpy: its LU-preconditioned "
                        "Newton solves, direct FP solves) and the linear solves left short of their tolerance.",
                        lambda t: (["num_particles"] if (t["num_particles"] == 0).all() else [])
                        + [c for c in scaling.KRYLOV_COLUMNS if c in t and t[c].isna().all()]))

    # ---- the summary: findings with their figures
    findings = seed.summary_findings(runs_df, coupling_df, backends_df, mass_df=mass_df, scaling=kinds["scaling"],
                                     sweeps=kinds["sweep"], convergence=kinds["convergence"],
                                     equilibria_df=equilibria_df, reference_backend=sm.params.reference,
                                     round_off=report.ROUND_OFF)
    summary = []
    for f in findings:
        fig = f.get("figure")
        path = figure_paths.get(fig[0], {}).get(fig[1]) if fig else None
        summary.append({**f, "figure": (f"{captions[fig[0]]}: {fig[1]}", path) if path else None})

    stores = [ds for _, ds in io.open_runs(sm.params.runs, load=False)]  # attrs only: no field is read
    prov = provenance.provenance_summary(stores)
    problems = {label: json.loads(io.open_store(path, load=False).attrs["problem_parameters"])
                for label, path in zip(problems_, sm.input.problems, strict=True)}
    what = {
        "Problems (as materialised)": problems,
        "Package versions (from the run stores)": prov["package_versions"],
        "Backends and their versions": prov["backends"],
        "Git revision(s)": ", ".join(prov["git_revisions"]) or "unknown",
        "Resolved study config": sm.params.config,
    }
    page = report.render_report(study=sm.params.study, summary=summary, sections=sections, what_was_run=what)
    io.write_text(sm.output[0], page)
    log.info("report written: %s (%d bytes, %d findings)", sm.output[0], len(page), len(summary))
