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
    summary = seed_findings.summary_findings(table, None, None)
    summary[1]["figure"] = ("res", png)
    page = report.render_report(study="t<x>", summary=summary, sections=[
        {"id": "runs", "title": "Runs", "text": "a & b", "tables": [("all", table)], "figures": [("res", png)]}],
        what_was_run={"config": {"study": "t"}, "revision": "abc"})
    assert page.startswith("<!DOCTYPE html>") and page.count("data:image/png;base64,") == 2  # summary + section
    assert "t&lt;x&gt;" in page and "a &amp; b" in page  # escaped
    assert page.index("<h2>Summary</h2>") < page.index("Backend speed-up") < page.index("<h2>Runs</h2>")
    assert "<a href='#runs'>" in page and "<section id='runs'>" in page  # findings link to their section
    assert "src='r.png'" not in page and "http" not in page.split("<body>")[1]
    assert "<script src" not in page and "<link" not in page  # the sort script is inline
    io.write_text(tmp_path / "fake.png", "text")
    with pytest.raises(ValueError, match="not a PNG"):
        report.png_data_uri(tmp_path / "fake.png")


def test_tables_are_collapsible_sortable_and_sized_to_the_page():
    long = pd.DataFrame({"name": [f"run {i}" for i in range(12)], "value": np.arange(12) * 0.5,
                         "reason": ["a long reason " * 20] * 12})
    closed = report.collapsible_table("Long", long)
    assert closed.startswith("<details><summary>Long") and "(12 rows, click to show;" in closed
    opened = report.collapsible_table("Short", long.head(3))
    assert opened.startswith("<details open>")
    html_ = report.table_html(long)
    assert "class='sortable'" in html_ and "<colgroup>" in html_  # fixed layout with widths
    widths = [float(w) for w in __import__("re").findall(r"width:([0-9.]+)%", html_)]
    assert len(widths) == 3 and abs(sum(widths) - 100) < 0.1 and widths[2] == max(widths)  # the reason wraps
    assert "<td class='num' data-v='0.5'>0.5</td>" in html_  # numbers sort by value
    assert "re_<wbr>" not in html_ and "<th scope='col'>reason</th>" in html_
    narrow = report.table_html(pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}))
    assert "narrow" in narrow  # a few short columns keep their natural widths
    bad = report.table_html(pd.DataFrame({"status": ["diverged", "converged"], "final_residual": [math.nan, 1e-7]}))
    assert "<td class='bad'>diverged</td>" in bad and "<td>-</td>" in bad and "final_<wbr>residual" in bad


def test_mass_at_round_off_is_a_sentence_not_a_figure(runs, tmp_path):
    mass = tables.mass_table(runs)
    info = report.mass_round_off(mass, "c")
    assert not info["at_round_off"] and info["above"][0][0] == "fdm/damping/numba"  # the 5% copy
    assert info["above"][0][1] == pytest.approx(0.05)
    fdm_only = report.mass_round_off(mass[mass["backend"] == "numpy"], "c")
    assert fdm_only["at_round_off"] and fdm_only["max"] < 1e-10 and fdm_only["run"] == "fdm/damping/numpy"
    # the figure leaves out the runs at round-off and says so
    fig = report.mass_figure("c", tables.mass_over_time(runs), tables.mass_over_iterations(runs))
    assert "not drawn: 1 of 2 runs at round-off" in fig._suptitle.get_text()
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["fdm/damping/numba"]
    io.save_figure(fig, tmp_path / "m.png")


def _runs_df(rows):
    base = dict(problem="c", backend="numpy", wall_time_s=1.0, mass_deviation_pct=1e-12, final_residual=1e-7,
                min_m=0.0, reason="")
    return pd.DataFrame([{**base, **r} for r in rows])


def test_summary_findings_answer_each_question_or_say_not_run():
    runs_df = _runs_df([
        dict(fp="fdm", coupling="damping", status="converged", iterations=20),
        dict(fp="fdm", coupling="anderson", status="converged", iterations=8),
        dict(fp="particle", coupling="damping", status="not_converged", iterations=50, mass_deviation_pct=2.5),
        dict(fp="particle", coupling="anderson_plain", status="diverged", iterations=4, mass_deviation_pct=math.nan,
             final_residual=math.nan, reason="DivergenceError: non-finite M at iteration 4"),
    ])
    scaling_t = pd.DataFrame({"backend": ["numpy", "numpy", "numba", "numba", "torch", "torch"],
                              "size": [100, 400] * 3, "num_particles": 0, "compile_s": [0, 0, 2.0, 0.1, 0.1, 0.1],
                              "iteration_ms": [1.0, 16.0, 2.0, 2.0, 2.0, 20.0]})
    scaling_t["speedup_vs_numpy"] = [1, 1, 0.5, 8.0, 0.5, 0.8]
    sweep_t = pd.DataFrame({"parameter": "kappa", "value": [1, 4, 8] * 2,
                            "coupling": ["damping"] * 3 + ["anderson"] * 3,
                            "status": ["converged", "not_converged", "not_converged", "converged", "converged",
                                       "diverged"], "iterations": [20, 100, 100, 8, 12, 5]})
    sweep_t["converged"] = sweep_t["status"] == "converged"
    conv_t = pd.DataFrame({"level": ["N16", "N32"], "N": [16, 32], "reference": "closed form",
                           "status": "converged", "order_U_max": [math.nan, 0.98], "order_U_L2": [math.nan, 1.01],
                           "order_M_max": [math.nan, 0.85], "order_M_L2": [math.nan, 0.9]})
    f = {x["key"]: x for x in seed_findings.summary_findings(
        runs_df, tables.coupling_table(runs_df), None, scaling={"fdm": scaling_t}, sweeps={"kappa": sweep_t},
        convergence={"lq": conv_t})}
    assert list(f) == ["outcomes", "backend_speedup", "mass_damping_particles", "anderson_particles",
                       "anderson_deterministic", "sweep", "convergence"]
    out = f["outcomes"]
    assert out["level"] == "warn" and "1 diverged" in out["answer"] and "at iteration 4" in out["answer"]
    assert "non-finite M" in out["answer"] and "kappa = 8 with anderson diverged" in out["answer"]
    sp = f["backend_speedup"]
    assert sp["headline"] == "numba 8x at N = 400" and sp["figure"] == ("scaling", "fdm")
    assert "numba from N = 400" in sp["answer"] and "torch at no size measured" in sp["answer"]
    assert "Zero" in sp["seed"]
    mass = f["mass_damping_particles"]
    assert mass["headline"] == "2.5%" and mass["figure"] == ("mass", "c") and "2.82%" in mass["seed"]
    ap = f["anderson_particles"]
    assert ap["level"] == "warn" and "anderson_plain: 0 of 1 converged, 1 diverged" in ap["answer"]
    ad = f["anderson_deterministic"]
    assert ad["headline"] == "2.50x fewer iterations" and "(8 vs 20" in ad["answer"] and "2-5x" in ad["seed"]
    sw = f["sweep"]
    assert "damping first fails at kappa = 4" in sw["answer"] and "anderson first fails at kappa = 8" in sw["answer"]
    assert sw["headline"] == "anderson converges at kappa = 4, damping does not" and sw["see"] == "sweep-kappa"
    cv = f["convergence"]
    assert cv["headline"] == "order U 0.98, M 0.85" and "between N = 16 and 32" in cv["answer"]
    # a study with none of it
    fdm_only = _runs_df([dict(fp="fdm", coupling="damping", status="converged", iterations=20)])
    g = {x["key"]: x for x in seed_findings.summary_findings(fdm_only, None, None)}
    for key in ("backend_speedup", "mass_damping_particles", "anderson_particles", "anderson_deterministic",
                "sweep", "convergence"):
        assert g[key]["answer"].startswith(seed_findings.NOT_RUN) and g[key]["level"] == "not_run", g[key]
        assert g[key]["figure"] is None
    assert g["outcomes"]["level"] == "ok" and g["outcomes"]["headline"] == "all 1 converged"


def test_particle_mass_at_round_off_has_no_figure():
    runs_df = _runs_df([dict(fp="particle", coupling="damping", status="converged", iterations=5,
                             mass_deviation_pct=2e-14)])
    f = seed_findings.summary_findings(runs_df, None, None)[2]
    assert f["headline"] == "at round-off" and f["figure"] is None and "2e-16" in f["answer"]


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
