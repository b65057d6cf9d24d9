"""The study kinds (convergence, sweep, scaling) through the workflow, on tiny inputs."""

import re

import pandas as pd
import pytest
import yaml

KINDS = {
    "study": "kinds",
    "problems": {"crowd": {"name": "congestion", "grid": {"Nx": 12, "Nt": 10}}},
    "fp_methods": ["fdm"], "couplings": ["damping"], "backends": ["numpy"],
    "convergence": {"lq": {"problem": {"name": "lq"}, "levels": [16, 32, 64], "coupling": "damping"}},
    "sweep": {"kappa": {"problem": {"name": "congestion", "grid": {"Nx": 16, "Nt": 16}}, "parameter": "kappa",
                        "values": [1, 4, 8], "couplings": ["damping", "anderson"], "continuation": True},
              "sigma": {"problem": {"name": "congestion", "grid": {"Nx": 24, "Nt": 24}}, "parameter": "sigma",
                        "values": [0.5, 0.2, 0.1], "couplings": ["damping", "anderson", "newton"],
                        "continuation": True}},
    "scaling": {"fdm": {"problem": {"name": "congestion"}, "sizes": [16, 32],
                        "backends": ["numpy", "numba", "jax", "torch"], "iterations": 1, "repeats": 2},
                "fdm2d": {"problem": {"name": "lq2d"}, "sizes": [6, 8], "backends": ["numpy", "numba"],
                          "iterations": 1, "repeats": 1}},
    "solve": {"max_iterations": 30, "tolerance": 1e-6},
}


def write(path, cfg):
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def kinds_study(run_snakemake, tmp_path_factory):
    work = tmp_path_factory.mktemp("kinds")
    cfg = write(work / "kinds.yaml", KINDS)
    proc = run_snakemake("--cores", "2", "--configfile", cfg, "--directory", work, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    return work, cfg


def test_convergence_of_lq_is_first_order(kinds_study):
    work, _ = kinds_study
    t = pd.read_csv(work / "results/kinds/tables/convergence_lq.csv")
    assert list(t["N"]) == [16, 32, 64] and (t["reference"] == "closed form").all()
    assert (t["order_U_max"].iloc[1:] >= 0.9).all(), t[["N", "error_U_max", "order_U_max"]]
    assert (t["error_U_max"].diff().iloc[1:] < 0).all() and (t["mass_error"] < 1e-12).all()
    assert (work / "results/kinds/figures/convergence_lq.png").read_bytes().startswith(b"\x89PNG")


def test_sweep_shows_where_damping_fails_and_anderson_does_not(kinds_study):
    work, _ = kinds_study
    t = pd.read_csv(work / "results/kinds/tables/sweep_kappa.csv")
    assert sorted(set(t["coupling"])) == ["anderson", "damping"] and sorted(set(t["value"])) == [1, 4, 8]
    by = t.set_index(["coupling", "value"])
    assert by.loc[("damping", 1), "converged"] and not by.loc[("damping", 4), "converged"]
    assert by.loc[("anderson", 4), "converged"]  # the failure point of damping is not Anderson's
    assert by.loc[("damping", 4), "warm_start"]  # continuation from the converged kappa = 1
    assert (work / "results/kinds/figures/sweep_kappa.png").read_bytes().startswith(b"\x89PNG")


def test_a_viscosity_sweep_where_newton_converges_and_damped_picard_does_not(kinds_study):
    work, _ = kinds_study
    t = pd.read_csv(work / "results/kinds/tables/sweep_sigma.csv").set_index(["coupling", "value"])
    converged = t["converged"].astype(bool)
    for value in (0.5, 0.2, 0.1):  # newton converges wherever any method does, and beyond
        assert converged.loc[("newton", value)] or not converged.xs(value, level="value").any()
    assert any(converged.loc[("newton", v)] and not converged.loc[("damping", v)] for v in (0.5, 0.2, 0.1))
    assert (t.loc["newton", "iterations"] <= 10).all()


def test_scaling_table_has_every_backend_with_speedups(kinds_study):
    work, _ = kinds_study
    t = pd.read_csv(work / "results/kinds/tables/scaling_fdm.csv")
    assert sorted(set(t["backend"])) == ["jax", "numba", "numpy", "torch"]
    assert sorted(set(t["size"])) == [16, 32]
    assert (t["iteration_ms"] > 0).all() and (t["compile_s"] >= 0).all()
    assert (t.loc[t["backend"] == "numpy", "speedup_vs_numpy"] == 1.0).all()
    assert t["speedup_vs_numpy"].notna().all()


def test_2d_scaling_counts_the_krylov_iterations_and_the_report_shows_them(kinds_study):
    work, _ = kinds_study
    t = pd.read_csv(work / "results/kinds/tables/scaling_fdm2d.csv").set_index(["backend", "size"])
    assert (t.loc["numba", "krylov_per_newton_step"] >= 1).all() and (t.loc["numba", "krylov_unconverged"] == 0).all()
    assert (t.loc["numpy", "krylov_per_fp_step"] == 0).all()  # direct FP solves
    one_d = pd.read_csv(work / "results/kinds/tables/scaling_fdm.csv")
    assert one_d["krylov_per_newton_step"].isna().all()  # 1D kernels count no Krylov iterations
    page = (work / "results/kinds/report.html").read_text().replace("<wbr>", "")
    sections = dict(re.findall(r"<section id='scaling-(\w+)'>(.*?)</section>", page, re.S))
    assert "krylov_per_newton_step" in sections["fdm2d"] and "krylov_per_newton_step" not in sections["fdm"]


def test_the_report_has_a_section_per_study_kind(kinds_study):
    work, _ = kinds_study
    page = (work / "results/kinds/report.html").read_text()
    for title in ("Convergence: lq", "Sweep: kappa", "Scaling: fdm", "Scaling: fdm2d"):
        assert title in page


def test_rerun_is_a_no_op_and_one_edit_reruns_only_what_depends_on_it(run_snakemake, kinds_study):
    work, cfg = kinds_study
    proc = run_snakemake("-n", "--cores", "2", "--configfile", cfg, "--directory", work)
    assert "Nothing to be done" in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]
    edited = {**KINDS, "sweep": {"kappa": {**KINDS["sweep"]["kappa"], "values": [1, 4, 16]}}}
    proc = run_snakemake("-n", "--cores", "2", "--configfile", write(work / "edited.yaml", edited),
                         "--directory", work)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0
    assert re.search(r"^sweep_solve\s+2$", out, re.M) and re.search(r"^sweep_table\s+1$", out, re.M), out[-3000:]
    assert "sweep_solve" in out and "sigma" not in "".join(l for l in out.splitlines() if "wildcards" in l)
    for rule in ("solve", "convergence_solve", "scaling_time"):
        assert not re.search(rf"^{rule}\s+\d+$", out, re.M), f"{rule} re-ran:\n{out[-3000:]}"


@pytest.mark.parametrize("kind, field, message", [
    ({"convergence": {"c": {"problem": {"name": "lq"}, "levels": [32, 16]}}}, "convergence.c.levels", "increasing"),
    ({"convergence": {"c": {"problem": {"name": "lq"}, "levels": [16]}}}, "convergence.c.levels", "too short"),
    ({"sweep": {"s": {"problem": {"name": "congestion"}, "parameter": "kapa", "values": [1]}}},
     "sweep.s.parameter", "'kapa' is neither"),
    ({"sweep": {"s": {"problem": {"name": "congestion"}, "parameter": "sigma", "values": [0.2, -1]}}},
     "sweep.s.values.1", "sigma must be finite and > 0"),
    ({"scaling": {"x": {"problem": {"name": "congestion"}}}}, "scaling.x.sizes", "grid sizes"),
    ({"scaling": {"x": {"problem": {"name": "congestion"}, "fp": "particle"}}}, "scaling.x.num_particles",
     "particle counts"),
    ({"scaling": {"x": {"problem": {"name": "congestion"}, "sizes": [16], "backends": ["cuda"]}}},
     "scaling.x.backends.0", "'cuda' is not one of"),
])
def test_a_bad_study_kind_is_refused_naming_the_field(run_snakemake, tmp_path, kind, field, message):
    cfg = write(tmp_path / "bad.yaml", {"study": "bad", "problems": KINDS["problems"], **kind})
    proc = run_snakemake("-n", "--cores", "1", "--configfile", cfg, "--directory", tmp_path, timeout=120)
    err = proc.stdout + proc.stderr
    assert proc.returncode != 0 and f"{field}: " in err and message in err, err[-3000:]


def test_the_report_flags_methods_that_reached_different_equilibria(run_snakemake, tmp_path):
    """On the attractive quick-start problem damping and Anderson converge to different equilibria
    (one peak, two peaks): the comparison lists the pair and drops their iteration ratio."""
    cfg = write(tmp_path / "att.yaml", {"study": "att", "problems": {"q": {"name": "attractive_quickstart"}},
                                         "couplings": ["damping", "anderson"],
                                         "solve": {"max_iterations": 200, "tolerance": 1e-6}})
    proc = run_snakemake("--cores", "2", "--configfile", cfg, "--directory", tmp_path, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    eq = pd.read_csv(tmp_path / "results/att/tables/equilibria.csv")
    assert len(eq) == 1 and not eq["same_solution"].iloc[0] and eq["equilibria"].iloc[0] == 2
    c = pd.read_csv(tmp_path / "results/att/tables/coupling.csv").set_index("coupling")
    assert not c.loc["anderson", "same_solution"] and pd.isna(c.loc["anderson", "iteration_ratio"])
    page = (tmp_path / "results/att/report.html").read_text()
    assert "reached 2 different solutions" in page[:page.index("id='runs'")]  # in the summary, before the runs
