"""Two-dimensional problems through every stage of the workflow (tiny grids, numpy)."""

import pandas as pd
import pytest
import yaml

from mfg_study import io

TINY2D = {
    "study": "tiny2d",
    "problems": {"lq": {"name": "lq2d", "grid": {"Nx": 12, "Ny": 12, "Nt": 8}},
                 "room": {"name": "evacuation2d", "grid": {"Nx": 16, "Ny": 16, "Nt": 10}}},
    "fp_methods": ["fdm", "particle"], "couplings": ["damping", "anderson"], "backends": ["numpy"],
    # particles reflect only at the walls of the rectangle: the room's pillar is for fdm alone
    "exclude": [{"problem": "room", "fp": "particle"}],
    "solve": {"max_iterations": 40, "tolerance": 1e-6},
    "particle": {"num_particles": 500, "max_iterations": 5, "tolerance": 1e-3},
    "convergence": {"lq2d": {"problem": {"name": "lq2d"}, "levels": [8, 16, 32], "coupling": "damping"}},
}


@pytest.fixture(scope="module")
def study2d(run_snakemake, tmp_path_factory):
    work = tmp_path_factory.mktemp("study2d")
    cfg = work / "tiny2d.yaml"
    cfg.write_text(yaml.safe_dump(TINY2D))
    proc = run_snakemake("--cores", "2", "--configfile", cfg, "--directory", work, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    return work / "results/tiny2d"


def test_2d_stores_hold_u_and_m_on_t_y_x(study2d):
    for problem, fp in (("lq", "fdm"), ("lq", "particle"), ("room", "fdm")):
        ds = io.open_store(study2d / f"runs/{problem}/{fp}/numpy/anderson.zarr")
        assert ds["u"].dims == ("t", "y", "x") and ds["m"].dims == ("t", "y", "x")
        assert ds.attrs["status"] in ("converged", "not_converged")
        if fp == "fdm":
            assert abs(ds["mass"].values - 1.0).max() < 1e-12 and ds["m"].values.min() >= 0.0
    inputs = io.open_store(study2d / "problems/room.zarr")
    assert inputs["m0"].dims == ("y", "x") and inputs["obstacle"].values.sum() > 0


def test_2d_figures_and_animation_and_report(study2d):
    for name in ("fields_room.png", "fields_lq.png", "mass_room.png", "residuals_lq.png"):
        assert (study2d / "figures" / name).read_bytes().startswith(b"\x89PNG"), name
    assert (study2d / "figures/animation_room.gif").read_bytes().startswith(b"GIF89a")
    runs = pd.read_csv(study2d / "tables/runs.csv")
    assert len(runs) == 6 and set(runs["problem"]) == {"lq", "room"}
    assert "room" in (study2d / "report.html").read_text()


def test_convergence_on_lq2d(study2d):
    t = pd.read_csv(study2d / "tables/convergence_lq2d.csv")
    assert (t["reference"] == "closed form").all()
    assert t["order_U_max"].iloc[-1] >= 0.9 and t["error_M_max"].iloc[-1] < 0.05


def test_particles_in_a_room_with_an_obstacle_are_left_out_as_not_applicable(run_snakemake, tmp_path):
    """The cross product leaves out what the registry says does not exist (particles reflect only at
    the rectangle's walls), names it, and plans every other run; a study of nothing else is refused."""
    from mfg_study import plan

    config = {**TINY2D, "exclude": [], "skip_unavailable": False}
    problems = {label: plan.build_problem(plan.problem_settings(label, spec), f"problems.{label}")
                for label, spec in TINY2D["problems"].items()}
    runs, skipped = plan.plan_runs(config, problems)
    assert {(s["problem"], s["fp"]) for s in skipped} == {("room", "particle")}
    assert all("not applicable" in s["reason"] and "obstacle" in s["reason"] for s in skipped)
    assert len(runs) == 6 and ("room", "particle") not in {(r["problem"], r["fp"]) for r in runs}

    cfg = tmp_path / "room_particles.yaml"
    cfg.write_text(yaml.safe_dump({**TINY2D, "problems": {"room": TINY2D["problems"]["room"]},
                                   "fp_methods": ["particle"], "exclude": [], "convergence": {}}))
    proc = run_snakemake("-n", "--cores", "1", "--configfile", cfg, "--directory", tmp_path, timeout=120)
    err = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "no run is left" in err and "obstacle" in err, err[-3000:]
