"""The seed report's findings beside what a study measured (the report opens with them)."""

from __future__ import annotations

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


