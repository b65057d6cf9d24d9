"""mfg_study.tables and mfg_study.report on small synthetic and real results (no Snakemake)."""

import math

import numpy as np
import pandas as pd
import pytest

import mfg_core as mc
from mfg_study import io, report, tables
from mfg_study import seed as seed_findings


@pytest.fixture(scope="module")
def runs():
    """Two real runs (damping; numpy and a perturbed copy standing in for a second backend)."""
    p = mc.problems.load("congestion", Nx=8, Nt=6)
    res = mc.FixedPointIterator(p, mc.HJBFDMSolver(p), mc.FPFDMSolver(p)).solve(20, 1e-6)
    ds = res.to_xarray()
    ds.attrs.update(status="converged", backend="numpy", backend_version="x")
    other = ds.copy(deep=True)
    other["u"] = other["u"] * (1 + 1e-3)        # relative difference of U: exactly 1e-3
    other["mass"] = other["mass"] * 0 + 1.05     # 5% mass deviation
    other.attrs.update(backend="numba", wall_time=ds.attrs["wall_time"] / 4)
    return [({"problem": "c", "fp": "fdm", "coupling": "damping", "backend": "numpy"}, ds),
            ({"problem": "c", "fp": "fdm", "coupling": "damping", "backend": "numba"}, other)]


def test_runs_and_mass_tables(runs):
    table = tables.runs_table(runs)
    assert list(table["backend"]) == ["numpy", "numba"]
    assert table.loc[0, "mass_deviation_pct"] < 1e-10
    assert table.loc[1, "mass_deviation_pct"] == pytest.approx(5.0)
    mass = tables.mass_table(runs)
    assert mass.loc[1, "max_deviation_over_time_pct"] == pytest.approx(5.0)
    assert len(tables.mass_over_time(runs)) == 2 * 7


def test_backend_table_speedup_and_agreement(runs):
    b = tables.backend_table(runs, reference="numpy").set_index("backend")
    assert b.loc["numba", "max_rel_diff_U"] == pytest.approx(1e-3, rel=1e-9)
    assert b.loc["numba", "max_rel_diff_M"] == 0.0
    assert b.loc["numba", "speedup_wall"] == pytest.approx(4.0)
    assert b.loc["numpy", "speedup_per_iteration"] == pytest.approx(1.0)


def test_max_relative_difference_edge_cases():
    assert tables.max_relative_difference(np.ones(3), np.ones(3)) == 0.0
    assert math.isnan(tables.max_relative_difference(np.full(3, np.nan), np.ones(3)))
    assert math.isnan(tables.max_relative_difference(np.ones(2), np.ones(3)))


def test_seed_comparison_says_what_was_not_run(runs):
    table = tables.runs_table(runs)
    seed = seed_findings.seed_comparison(table, tables.coupling_table(table),
                                    tables.backend_table(runs), reference_backend="numpy")
    assert list(seed["finding"]) == [f[1] for f in seed_findings.SEED_FINDINGS]
    by = seed.set_index("finding")["this study"]
    assert by.iloc[0].startswith("numba: 4.00x")
    assert by.iloc[1] == seed_findings.NOT_RUN  # no particle runs here
    assert by.iloc[2] == seed_findings.NOT_RUN and by.iloc[3] == seed_findings.NOT_RUN
    assert "378%" in seed["seed report"].iloc[2]


def test_coupling_table_ratios():
    df = pd.DataFrame([
        dict(problem="c", fp="fdm", backend="numpy", coupling="damping", status="converged", iterations=20,
             wall_time_s=2.0, mass_deviation_pct=0.0, final_residual=1e-7),
        dict(problem="c", fp="fdm", backend="numpy", coupling="anderson", status="converged", iterations=5,
             wall_time_s=1.0, mass_deviation_pct=0.0, final_residual=1e-7),
    ])
    c = tables.coupling_table(df).set_index("coupling")
    assert c.loc["anderson", "iteration_ratio"] == 4.0 and c.loc["anderson", "time_ratio"] == 2.0
    assert bool(c.loc["anderson", "both_converged"])
    with pytest.raises(ValueError, match="lacks columns"):
        tables.coupling_table(df.drop(columns=["status"]))


def test_report_html_is_self_contained(runs, tmp_path):
    table = tables.runs_table(runs)
    fig = report.residual_figure("c", runs, {"fdm": 1e-6})
    png = io.save_figure(fig, tmp_path / "r.png")
    seed = seed_findings.seed_comparison(table, None, None)
    page = report.render_report(study="t<x>", seed=seed, sections=[
        {"title": "Runs", "text": "a & b", "tables": [("all", table)], "figures": [("res", png)]}],
        what_was_run={"config": {"study": "t"}})
    assert page.startswith("<!DOCTYPE html>") and "data:image/png;base64," in page
    assert "t&lt;x&gt;" in page and "a &amp; b" in page  # escaped
    assert page.index("Seed report findings") < page.index("<h2>Runs</h2>")
    assert "src='r.png'" not in page and "http" not in page.split("<body>")[1]
    io.write_text(tmp_path / "fake.png", "text")
    with pytest.raises(ValueError, match="not a PNG"):
        report.png_data_uri(tmp_path / "fake.png")


def test_seed_rows_report_anderson_against_damping():
    rows = []
    for problem, damp_status, damp_it in (("easy", "converged", 20), ("hard", "not_converged", 100)):
        rows += [
            dict(problem=problem, fp="fdm", backend="numpy", coupling="damping", status=damp_status,
                 iterations=damp_it, wall_time_s=2.0, mass_deviation_pct=1e-12, final_residual=1e-7, min_m=0.0),
            dict(problem=problem, fp="fdm", backend="numpy", coupling="anderson", status="converged",
                 iterations=5, wall_time_s=1.0, mass_deviation_pct=1e-12, final_residual=1e-7, min_m=0.0),
        ]
    runs_df = pd.DataFrame(rows)
    seed = seed_findings.seed_comparison(runs_df, tables.coupling_table(runs_df), None)
    text = seed.set_index("finding")["this study"].iloc[3]
    assert text.startswith("anderson: 2/2 converged")
    assert "damping/anderson = 4.00x" in text  # only the pair where both converged counts
    assert "converged where damping did not in 1 runs" in text
    assert seed["this study"].iloc[2] == seed_findings.NOT_RUN  # no particle runs


def test_fields_figure_picks_converged_reference_runs(runs, tmp_path):
    import xarray as xr

    diverged = runs[0][1].copy(deep=True)
    diverged["m"] = xr.full_like(diverged["m"], np.nan)
    diverged.attrs["status"] = "diverged"
    candidates = [({"problem": "c", "fp": "fdm", "coupling": "anderson", "backend": "numpy"}, diverged),
                  *reversed(runs)]
    chosen = report.pick_field_runs(candidates, reference="numpy")
    assert set(chosen) == {"fdm"}  # no particle run given
    key, _ = chosen["fdm"]
    assert (key["backend"], key["coupling"]) == ("numpy", "damping")  # finite, reference, damping first
    path = io.save_figure(report.fields_figure("c", chosen), tmp_path / "fields.png")
    assert path.read_bytes().startswith(b"\x89PNG")
    assert report.pick_field_runs([candidates[0]]) == {}  # nothing finite to show


def test_final_residual_is_the_fixed_point_residual_not_the_damped_change():
    """Under damping the change between iterates is thetaUM times the fixed-point residual: the
    table must report the residual, so that damping and Anderson compare like for like."""
    p = mc.problems.load("congestion", Nx=20, Nt=10)
    res = mc.FixedPointIterator(p, mc.HJBFDMSolver(p), mc.FPFDMSolver(p), thetaUM=0.25).solve(6, 1e-12)
    row = tables.run_summary({"problem": "c", "fp": "fdm", "coupling": "damping", "backend": "numpy"},
                               res.to_xarray())
    assert row["final_residual"] == pytest.approx(max(res.history["residual_U"][-1], res.history["residual_M"][-1]))
    assert row["final_change"] == pytest.approx(max(res.history["change_U"][-1], res.history["change_M"][-1]))
    assert 2.5 < row["final_residual"] / row["final_change"] < 6  # about 1 / thetaUM


def test_equilibria_flags_converged_runs_with_different_solutions():
    p = mc.problems.load("attractive_quickstart")
    runs = []
    for coupling in ("damping", "anderson", "newton"):
        opts = {"warmup_iterations": 10} if coupling == "newton" else {}
        r = mc.solve(p, coupling=coupling, max_iterations=120, tolerance=1e-6, **opts)
        ds = r.to_xarray()
        ds.attrs.update(backend="numpy", backend_version="x", threads="1")
        runs.append(({"problem": "q", "fp": "fdm", "coupling": coupling, "backend": "numpy"}, ds))
    eq = tables.equilibria(runs)
    assert len(eq) == 3 and (eq["equilibria"] == 2).all()
    by = eq.set_index(["coupling_a", "coupling_b"])
    assert not by.loc[("damping", "anderson"), "same_solution"]
    assert by.loc[("damping", "anderson"), "max_rel_diff_M"] > 0.5  # one peak against two
    assert by.loc[("damping", "newton"), "same_solution"]  # Newton after a damped warm-up: damping's
    assert by.loc[("damping", "newton"), "max_rel_diff_M"] < 1e-4
    ct = tables.coupling_table(tables.runs_table(runs), equilibria_df=eq).set_index("coupling")
    assert ct.loc["anderson", "both_converged"] and ct.loc["anderson", "same_solution"] == False  # noqa: E712
    assert math.isnan(ct.loc["anderson", "iteration_ratio"])  # different work: no ratio
    assert ct.loc["newton", "same_solution"] == True and ct.loc["newton", "iteration_ratio"] > 1  # noqa: E712
    assert ct.loc["damping", "same_solution"] == True  # noqa: E712
    # a run that did not converge is never paired
    runs[1][1].attrs["converged"] = 0
    assert len(tables.equilibria(runs)) == 1
