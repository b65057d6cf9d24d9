"""The seed report's findings beside what a study measured, and the numbered findings the report opens with."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from .tables import ANDERSON

SEED_FINDINGS = (
    ("backend_speedup", "Backend speed-up over numpy",
     "Zero: the backend object was stored but not used; all computation ran in NumPy/scipy."),
    ("mass_damping_particles", "Mass deviation under damping (particle FP)",
     "2.82% max deviation (\"within statistical bounds\")."),
    ("anderson_particles", "Anderson acceleration on particles",
     "378% mass deviation, errors compound: \"DO NOT USE\"."),
    ("anderson_deterministic", "Anderson acceleration on deterministic solvers (FDM)",
     "Expected 2-5x speed-up (stated as expected, not measured)."),
)

NOT_RUN = "not run in this study"


def seed_comparison(runs_df: pd.DataFrame, coupling_df: pd.DataFrame | None,
                    backends_df: pd.DataFrame | None, reference_backend: str = "numpy") -> pd.DataFrame:
    """One row per seed-report finding: what the seed said, what this study measured, from which runs.

    Measured values are reported whatever they show; a finding whose runs are not part of the study
    says "not run in this study".
    """
    measured = {
        "backend_speedup": _measured_speedup(backends_df, reference_backend),
        "mass_damping_particles": _measured_mass(runs_df),
        "anderson_particles": _measured_anderson(runs_df, coupling_df, "particle"),
        "anderson_deterministic": _measured_anderson(runs_df, coupling_df, "fdm"),
    }
    rows = []
    for key, finding, seed in SEED_FINDINGS:
        text, basis = measured[key]
        rows.append({"finding": finding, "seed report": seed, "this study": text, "runs": basis})
    return pd.DataFrame(rows)


def _measured_speedup(df, reference):
    if df is None or df.empty:
        return NOT_RUN, ""
    others = df[(df["backend"] != reference) & (df["reference"] != "")]
    if others.empty:
        return NOT_RUN + f" (no backend besides {reference})", ""
    parts = []
    for backend, g in others.groupby("backend", sort=True):
        s = g["speedup_per_iteration"].dropna()
        c = g["compile_time_s"].dropna()
        if s.empty:
            parts.append(f"{backend}: no comparable run")
            continue
        text = f"{backend}: {_median_range(s)} per iteration"
        if len(c):
            text += f", compile {c.median():.2f} s (median)"
        parts.append(text)
    return "; ".join(parts), f"{len(others)} runs vs {reference}"


def _measured_mass(runs_df):
    sel = runs_df[(runs_df["fp"] == "particle") & (runs_df["coupling"] == "damping")]
    if sel.empty:
        return NOT_RUN, ""
    dev = sel["mass_deviation_pct"]
    text = _pct_summary(dev)
    fdm = runs_df[(runs_df["fp"] == "fdm") & (runs_df["coupling"] == "damping")]["mass_deviation_pct"].dropna()
    if len(fdm):
        text += f" (FDM with damping, for comparison: max {fdm.max():.2g}%)"
    return text, f"{len(sel)} particle runs with damping"


def _measured_anderson(runs_df, coupling_df, fp):
    sel = runs_df[(runs_df["fp"] == fp) & runs_df["coupling"].isin(ANDERSON)]
    if sel.empty:
        return NOT_RUN, ""
    parts = []
    for coupling, g in sel.groupby("coupling", sort=True):
        status = ", ".join(f"{n}/{len(g)} {s}" for s, n in g["status"].value_counts().sort_index().items())
        text = f"{coupling}: {status}"
        if coupling_df is not None and not coupling_df.empty:
            c = coupling_df[(coupling_df["fp"] == fp) & (coupling_df["coupling"] == coupling)]
            both = c[c["both_converged"].astype(bool)]
            if len(both):
                text += (f"; iterations: damping/{coupling} = {_median_range(both['iteration_ratio'])}, wall "
                         f"time: damping/{coupling} = {_median_range(both['time_ratio'])} (above 1: faster "
                         "than damping)")
            only = c[(c["status"] == "converged") & (c["reference_status"] != "converged")]
            if len(both) and len(only):
                text += f"; converged where damping did not in {len(only)} runs"
            elif len(c) and not len(both):
                ref = c["reference_status"].value_counts().to_dict()
                text += ("; no pair with damping where both converged (damping: "
                         + ", ".join(f"{n} {k}" for k, n in sorted(ref.items())) + ")")
        if "final_residual" in g:
            damp = runs_df[(runs_df["fp"] == fp) & (runs_df["coupling"] == "damping")]["final_residual"]
            text += f"; final residual {_median_range(g['final_residual'], '', '.2e')}"
            if len(damp.dropna()):
                text += f" (damping: {_median_range(damp, '', '.2e')})"
        text += f"; mass deviation {_pct_summary(g['mass_deviation_pct'])}"
        if "min_m" in g and g["min_m"].notna().any():
            text += f"; min m {g['min_m'].min():.3g}"
        parts.append(text)
    return "; ".join(parts), f"{len(sel)} {fp} runs with Anderson"


def _median_range(series, unit: str = "x", fmt: str = ".2f") -> str:
    s = pd.Series(series, dtype=float).dropna()
    if s.empty:
        return "no data"
    if len(s) == 1 or np.isclose(s.min(), s.max(), rtol=1e-6, atol=0):
        return f"{s.iloc[0]:{fmt}}{unit}" + (f" (all {len(s)} runs)" if len(s) > 1 else "")
    return f"{s.median():{fmt}}{unit} (median of {len(s)}; range {s.min():{fmt}} to {s.max():{fmt}}{unit})"


def _pct_summary(series) -> str:
    s = pd.Series(series, dtype=float)
    finite = s.dropna()
    nan = int(s.isna().sum())
    if finite.empty:
        return "undefined (every run diverged to NaN)" if nan else "no data"
    text = f"max {finite.max():.3g}%" + (f" (median {finite.median():.3g}%)" if len(finite) > 1 else "")
    if nan:
        text += f", {nan} diverged to NaN"
    return text




# ---------------------------------------------------------------------------------------------
# the report's summary: numbered findings, a sentence or two each with the number that answers it
SEED_SAID = {key: seed for key, _, seed in SEED_FINDINGS}
TITLES = {key: title for key, title, _ in SEED_FINDINGS}
BAD = ("diverged", "failed")


def summary_findings(runs_df: pd.DataFrame, coupling_df: pd.DataFrame | None = None,
                     backends_df: pd.DataFrame | None = None, *, mass_df: pd.DataFrame | None = None,
                     scaling: Mapping[str, pd.DataFrame] | None = None,
                     sweeps: Mapping[str, pd.DataFrame] | None = None,
                     convergence: Mapping[str, pd.DataFrame] | None = None,
                     equilibria_df: pd.DataFrame | None = None,
                     reference_backend: str = "numpy", round_off: float = 1e-10) -> list[dict[str, Any]]:
    """The findings the report opens with, from the study's tables (nothing is solved here).

    One dict per finding, in order: run outcomes (and whether any run diverged or failed), the seed
    report's four findings (backend speed-up: from a scaling study where there is one, else from the
    comparison; particle mass under damping; Anderson on particles; Anderson on FDM), where damping stops
    converging and Anderson does not (sweeps), observed orders at the finest levels (convergence studies).
    Keys: ``key``, ``title``, ``headline`` (the number, short), ``answer`` (one or two sentences),
    ``seed`` (what the seed report said, or ""), ``level`` (``ok``, ``warn``, ``not_run``), ``see`` (the
    report section: ``runs``, ``mass``, ``coupling``, ``backends``, ``scaling-<label>``, ``sweep-<label>``,
    ``convergence-<label>``) and ``figure``: ``(kind, label)`` -- kind ``scaling``, ``sweep`` or
    ``convergence`` with the study label, or ``backends``, ``mass``, ``residuals`` with the problem -- or None.
    A finding whose runs or study kind are not part of the study says :data:`NOT_RUN`.
    """
    scaling, sweeps, convergence = dict(scaling or {}), dict(sweeps or {}), dict(convergence or {})
    findings = [
        _outcomes(runs_df, sweeps),
        _speedup_finding(backends_df, scaling, reference_backend),
        _particle_mass_finding(runs_df, mass_df, round_off),
        _anderson_particles_finding(runs_df, round_off),
        _anderson_fdm_finding(runs_df, coupling_df),
        _sweep_finding(sweeps),
        _convergence_finding(convergence),
    ]
    if equilibria_df is not None and len(equilibria_df) and (~equilibria_df["same_solution"].astype(bool)).any():
        findings.insert(1, {"key": "equilibria", "title": "Methods that converged to different solutions",
                            "headline": "several equilibria", "answer": " ".join(equilibria_statements(equilibria_df))
                            + " Their iteration counts are not compared (they did different work).",
                            "seed": "", "level": "warn", "see": "coupling", "figure": None})
    return findings


def equilibria_statements(equilibria_df: pd.DataFrame) -> list[str]:
    """One sentence per (problem, fp) whose converged runs reached more than one solution."""
    if equilibria_df is None or not len(equilibria_df):
        return []
    out = []
    for (problem, fp), g in equilibria_df.groupby(["problem", "fp"], sort=True):
        if g["same_solution"].astype(bool).all():
            continue
        groups: dict[int, set[str]] = {}
        for r in g.itertuples():
            groups.setdefault(int(r.equilibrium_a), set()).add(f"{r.coupling_a}/{r.backend_a}")
            groups.setdefault(int(r.equilibrium_b), set()).add(f"{r.coupling_b}/{r.backend_b}")
        parts = "; ".join(f"solution {i + 1}: {', '.join(sorted(members))}" for i, members in sorted(groups.items()))
        out.append(f"{problem} ({fp}): the converged runs reached {len(groups)} different solutions "
                   f"(U or M differ by up to {g[['max_rel_diff_U', 'max_rel_diff_M']].max().max():.2g} relative) "
                   f"-- {parts}.")
    return out


def _finding(key, title, answer, *, headline="", seed="", level="ok", see=None, figure=None):
    return {"key": key, "title": title, "headline": headline, "answer": answer, "seed": seed, "level": level,
            "see": see, "figure": figure}


def _not_run(key, title, seed, see=None, why=""):
    return _finding(key, title, NOT_RUN + (f" ({why})" if why else "") + ".", seed=seed, level="not_run", see=see)


def _run_label(row, skip=()) -> str:
    return "/".join(str(row[k]) for k in ("problem", "fp", "coupling", "backend") if k not in skip and k in row)


def _g(v, digits=3) -> str:
    return f"{float(v):.{digits}g}"


def _mass_text(pct_max: float, round_off: float) -> str:
    """A maximum mass deviation given in percent, said as round-off where it is."""
    if not np.isfinite(pct_max):
        return "undefined (no finite mass)"
    if pct_max / 100.0 < round_off:
        return f"at round-off (max |mass - 1| = {pct_max / 100.0:.2g})"
    return f"{_g(pct_max)}%"


def _outcomes(runs_df, sweeps):
    n = len(runs_df)
    counts = runs_df["status"].value_counts()
    order = ["converged", "not_converged", "diverged", "failed"]
    parts = [f"{int(counts[s])} {s}" for s in order + sorted(set(counts.index) - set(order)) if s in counts]
    text = f"{n} run{'s' if n != 1 else ''}: " + ", ".join(parts) + "."
    if "not_converged" in counts:
        text += " not_converged: the iteration cap was reached."
    bad = runs_df[runs_df["status"].isin(BAD)]
    lines = []
    for _, r in bad.head(3).iterrows():
        reason = str(r.get("reason", "") or "")
        lines.append(f"{_run_label(r)} {r['status']} at iteration {int(r['iterations'])}"
                     + (f": {reason[:120]}{'...' if len(reason) > 120 else ''}" if reason else ""))
    if len(bad) > 3:
        lines.append(f"and {len(bad) - 3} more (Runs section)")
    n_sweep_bad = 0
    for label, t in sweeps.items():
        sb = t[t["status"].isin(BAD)]
        n_sweep_bad += len(sb)
        for _, r in sb.head(2).iterrows():
            lines.append(f"sweep {label}: {r['parameter']} = {r['value']:g} with {r['coupling']} {r['status']} at "
                         f"iteration {int(r['iterations'])}")
    if lines:
        text += "\n\nNo solution: " + "; ".join(lines) + "."
    conv = int(counts.get("converged", 0))
    headline = f"{conv} of {n} converged" if conv < n else f"all {n} converged"
    if len(bad):
        headline += f"; {len(bad)} diverged or failed"
    return _finding("outcomes", "Run outcomes", text, headline=headline,
                    level="warn" if len(bad) or n_sweep_bad else "ok", see="runs")


def _speedup_finding(backends_df, scaling, reference):
    from .scaling import crossover

    key, title, seed = "backend_speedup", TITLES["backend_speedup"], SEED_SAID["backend_speedup"]
    sentences, figure, see, headline = [], None, None, ""
    for label, t in scaling.items():
        others = sorted(set(t["backend"]) - {"numpy"})
        if "numpy" not in set(t["backend"]) or not others:
            continue
        axis = "particles" if (t.get("num_particles", pd.Series([0])) > 0).any() else "N"
        largest = t["size"].max()
        at = t[(t["size"] == largest) & (t["backend"] != "numpy")].sort_values("speedup_vs_numpy", ascending=False)
        speed = ", ".join(f"{r.backend} {_g(r.speedup_vs_numpy)}x" for r in at.itertuples())
        smallest = t["size"].min()
        cross = []
        for b in list(at["backend"]) + [b for b in others if b not in set(at["backend"])]:  # fastest first
            c = crossover(t, b)
            cross.append(f"{b} at no size measured" if not np.isfinite(c) else
                         f"{b} from {axis} = {c:g}" + (" (every size)" if c == smallest else ""))
        comp = t[t["backend"] != "numpy"].groupby("backend")["compile_s"].max()
        sentences.append(f"Scaling study {label}, time per Picard iteration at the largest size "
                         f"({axis} = {largest:g}): {speed} numpy's speed. Faster than numpy: {', '.join(cross)}. "
                         "Compile time (once): " + ", ".join(f"{b} {v:.2g} s" for b, v in comp.items()) + ".")
        if figure is None:
            best = at.iloc[0]
            headline = f"{best['backend']} {_g(best['speedup_vs_numpy'])}x at {axis} = {largest:g}"
            figure, see = ("scaling", label), f"scaling-{label}"
    if sentences:
        return _finding(key, title, "\n\n".join(sentences), headline=headline, seed=seed, see=see, figure=figure)
    if backends_df is None or backends_df.empty:
        return _not_run(key, title, seed, "backends")
    others = backends_df[(backends_df["backend"] != reference) & (backends_df["reference"].fillna("") != "")]
    if others.empty:
        return _not_run(key, title, seed, "backends", f"no backend besides {reference}")
    parts, best = [], None
    for backend, g in others.groupby("backend", sort=True):
        s = g["speedup_per_iteration"].dropna()
        if s.empty:
            parts.append(f"{backend}: no comparable run")
            continue
        parts.append(f"{backend} {_g(s.median())}x" + (f" ({_g(s.min())} to {_g(s.max())}x)" if len(s) > 1 else ""))
        if best is None or s.median() > best[1]:
            best = (backend, s.median())
    agree = others[["max_rel_diff_U", "max_rel_diff_M"]].max(axis=None) if {"max_rel_diff_U", "max_rel_diff_M"} <= \
        set(others) else math.nan
    text = (f"Per Picard iteration on this study's grids (median over runs): {', '.join(parts)} {reference}'s "
            f"speed; compile time apart.")
    if np.isfinite(agree):
        text += f" Results agree with {reference} to {agree:.1g} (max relative difference of U and M)."
    text += "\n\nSmall grids measure per-call overhead; a scaling study answers by size."
    problem = others["problem"].iloc[0]
    return _finding(key, title, text, headline=f"{best[0]} {_g(best[1])}x" if best else "", seed=seed,
                    see="backends", figure=("backends", problem))


def _particle_mass_finding(runs_df, mass_df, round_off):
    key, title, seed = "mass_damping_particles", TITLES["mass_damping_particles"], SEED_SAID["mass_damping_particles"]
    sel = runs_df[(runs_df["fp"] == "particle") & (runs_df["coupling"] == "damping")]
    if sel.empty:
        return _not_run(key, title, seed, "mass", "no particle run with damping")
    dev = sel["mass_deviation_pct"].astype(float)
    finite = dev.dropna()
    nan = len(dev) - len(finite)
    if finite.empty:
        return _finding(key, title, f"Every one of the {len(sel)} particle runs with damping ended without a "
                        "finite density (diverged or failed).", headline="no finite mass", seed=seed, level="warn",
                        see="runs")
    worst = sel.loc[finite.idxmax()]
    top = float(finite.max())
    quiet = top / 100.0 < round_off
    text = (f"Max over time of |mass(t) - 1| in {len(sel)} particle run{'s' if len(sel) != 1 else ''} with damping: "
            f"{_mass_text(top, round_off)}" + ("" if quiet or len(finite) == 1 else f", median {_g(finite.median())}%")
            + f" ({_run_label(worst)})."
            + (" The density estimate has mass 1 by construction." if quiet else ""))
    if nan:
        text += f" {nan} run(s) have no finite mass (diverged or failed)."
    return _finding(key, title, text, headline="at round-off" if quiet else f"{_g(top)}%", seed=seed,
                    level="warn" if nan else "ok", see="mass", figure=None if quiet else ("mass", worst["problem"]))


def _anderson_particles_finding(runs_df, round_off):
    key, title, seed = "anderson_particles", TITLES["anderson_particles"], SEED_SAID["anderson_particles"]
    sel = runs_df[(runs_df["fp"] == "particle") & runs_df["coupling"].isin(ANDERSON)]
    if sel.empty:
        return _not_run(key, title, seed, "coupling", "no particle run with Anderson")
    damp = runs_df[(runs_df["fp"] == "particle") & (runs_df["coupling"] == "damping")]["final_residual"].dropna()
    parts, masses = [], []
    for coupling, g in sel.groupby("coupling", sort=True):
        conv = int((g["status"] == "converged").sum())
        bad = int(g["status"].isin(BAD).sum())
        text = f"{coupling}: {conv} of {len(g)} converged" + (f", {bad} diverged or failed" if bad else "")
        res = g["final_residual"].dropna()
        if len(res):
            text += f", final residual {res.median():.2g}"
        parts.append(text)
        masses.append(f"{coupling} {_mass_text(g['mass_deviation_pct'].astype(float).max(), round_off)}")
    top = sel["mass_deviation_pct"].astype(float).max()
    bad = sel["status"].isin(BAD).any()
    text = "; ".join(parts) + (f" (damping: {damp.median():.2g})." if len(damp) else ".")
    if np.isfinite(top) and top / 100.0 < round_off:
        text += f" Mass deviation: {_mass_text(top, round_off)} in every run."
    else:
        text += " Mass deviation (max): " + ", ".join(masses) + "."
    return _finding(key, title, text,
                    headline=("no finite mass" if not np.isfinite(top) else
                              "mass at round-off" if top / 100.0 < round_off else f"mass deviation {_g(top)}%"),
                    seed=seed, level="warn" if bad else "ok", see="coupling",
                    figure=("residuals", sel["problem"].iloc[0]))


def _anderson_fdm_finding(runs_df, coupling_df):
    key, title, seed = "anderson_deterministic", TITLES["anderson_deterministic"], SEED_SAID["anderson_deterministic"]
    sel = runs_df[(runs_df["fp"] == "fdm") & runs_df["coupling"].isin(ANDERSON)]
    if sel.empty:
        return _not_run(key, title, seed, "coupling", "no FDM run with Anderson")
    parts, headline = [], ""
    for coupling, g in sel.groupby("coupling", sort=True):
        conv = int((g["status"] == "converged").sum())
        text = f"{coupling}"
        c = pd.DataFrame()
        if coupling_df is not None and not coupling_df.empty:
            c = coupling_df[(coupling_df["fp"] == "fdm") & (coupling_df["coupling"] == coupling)]
        both = c[c["both_converged"].astype(bool)] if len(c) else c
        if len(both):
            r = float(both["iteration_ratio"].median())
            t = float(both["time_ratio"].median())
            it_d, it_a = both["reference_iterations"].median(), both["iterations"].median()
            text += (f" needed {r:.2f}x fewer iterations than damping" if r >= 1 else
                     f" needed {1 / r:.2f}x more iterations than damping")
            text += (f" ({it_a:g} vs {it_d:g}, median of {len(both)} pair{'s' if len(both) != 1 else ''} where both "
                     f"converged); wall time: damping / {coupling} = {t:.2g}x")
            headline = headline or (f"{r:.2f}x fewer iterations" if r >= 1 else f"{1 / r:.2f}x more iterations")
        else:
            text += ": no pair with damping where both converged"
        only = c[(c["status"] == "converged") & (c["reference_status"] != "converged")] if len(c) else c
        if len(only):
            text += f"; converged where damping did not in {len(only)} run{'s' if len(only) != 1 else ''}"
        if conv < len(g):
            text += f"; {len(g) - conv} of {len(g)} did not converge"
        parts.append(text)
    return _finding(key, title, "; ".join(parts) + ".", headline=headline, seed=seed,
                    level="warn" if sel["status"].isin(BAD).any() else "ok", see="coupling",
                    figure=("residuals", sel["problem"].iloc[0]))


def _sweep_finding(sweeps):
    from .sweep import failure_points

    key, title = "sweep", "Where damping stops converging and Anderson does not"
    seed = "not measured (it recommended Anderson for the deterministic solvers)"
    if not sweeps:
        return _not_run(key, title, seed, None, "no sweep")
    sentences, headline = [], ""
    for label, t in sweeps.items():
        param = str(t["parameter"].iloc[0])
        values = sorted(set(t["value"].astype(float)))
        fails = failure_points(t)
        said = []
        for coupling, v in fails.items():
            said.append(f"{coupling} converges at every value" if not np.isfinite(v) else
                        f"{coupling} first fails at {param} = {v:g}")
        conv = t.assign(ok=t["converged"].astype(bool)).pivot_table(index="value", columns="coupling", values="ok",
                                                                     aggfunc="all")
        rescued = []
        if "damping" in conv:
            for c in [c for c in conv.columns if c != "damping"]:
                where = [v for v in conv.index if not conv.loc[v, "damping"] and conv.loc[v, c]]
                if where:
                    rescued.append(f"{c} converges where damping does not at {param} = "
                                   + ", ".join(f"{v:g}" for v in where))
                    headline = headline or f"{c} converges at {param} = {where[0]:g}, damping does not"
        sentences.append(f"Sweep {label} ({param} = {', '.join(f'{v:g}' for v in values)}): " + "; ".join(said)
                         + "." + (" " + "; ".join(rescued) + "." if rescued else ""))
    first = next(iter(sweeps))
    if not headline:
        fd = failure_points(sweeps[first]).get("damping", math.nan)
        headline = (f"damping fails from {sweeps[first]['parameter'].iloc[0]} = {fd:g}" if np.isfinite(fd)
                    else "damping converges at every value")
    return _finding(key, title, "\n\n".join(sentences), headline=headline, seed=seed, see=f"sweep-{first}",
                    figure=("sweep", first))


def _convergence_finding(convergence):
    key, title = "convergence", "Observed order of convergence at the finest levels"
    seed = "not measured"
    if not convergence:
        return _not_run(key, title, seed, None, "no convergence study")
    sentences, headline, level = [], "", "ok"
    for label, t in convergence.items():
        t = t.sort_values("N")
        finite = t.dropna(subset=["order_U_max"])
        if finite.empty:
            sentences.append(f"{label}: no observed order (fewer than two levels with an error).")
            level = "warn"
            continue
        last = finite.iloc[-1]
        prev_n = t["N"].iloc[list(t["N"]).index(last["N"]) - 1]
        o = {c: last[f"order_{c}"] for c in ("U_max", "U_L2", "M_max", "M_L2")}
        sentences.append(f"{label} (reference: {last['reference']}), between N = {prev_n:g} and {last['N']:g}: "
                         f"U {o['U_max']:.2f} (max) / {o['U_L2']:.2f} (L2), M {o['M_max']:.2f} / {o['M_L2']:.2f}.")
        bad = t[t["status"] != "converged"]
        if len(bad):
            level = "warn"
            sentences[-1] += (" Not converged at " + ", ".join(str(v) for v in bad["level"])
                              + ": those errors include the iteration error.")
        headline = headline or f"U {o['U_max']:.2f}, M {o['M_max']:.2f}"
    first = next(iter(convergence))
    return _finding(key, title, "\n\n".join(sentences), headline=f"order {headline}" if headline else "", seed=seed,
                    level=level, see=f"convergence-{first}", figure=("convergence", first))
