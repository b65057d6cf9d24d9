"""The Snakemake study runner end to end: lint, dry runs, bad configs, and a tiny real study."""

import json
import re
import shutil
import warnings
from pathlib import Path

import pytest
import xarray as xr
import yaml

from mfg_study import io, report

ROOT = Path(__file__).resolve().parents[2]

TINY = {
    "study": "tiny",
    "problems": {"crowd": {"name": "congestion", "grid": {"Nx": 12, "Nt": 10}}},
    "fp_methods": ["fdm", "particle"],
    "couplings": ["damping", "anderson"],
    "backends": ["numpy", "numba"],
    # numba particle runs would only add jit time; the fdm runs already compare the backends
    "exclude": [{"fp": "particle", "backend": "numba"}],
    "solve": {"max_iterations": 30, "tolerance": 1e-6},
    "particle": {"num_particles": 200, "max_iterations": 6, "tolerance": 1e-3,
                 "common_random_numbers": False},
}
TINY_RUNS = [("fdm", "damping", "numpy"), ("fdm", "damping", "numba"), ("fdm", "anderson", "numpy"),
             ("fdm", "anderson", "numba"), ("particle", "damping", "numpy"),
             ("particle", "anderson", "numpy")]


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_lint_is_clean(run_snakemake):
    proc = run_snakemake("--lint", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations, your workflow is in a good condition" in proc.stdout + proc.stderr


def test_dry_run_of_the_default_study(run_snakemake):
    proc = run_snakemake("-n", "--cores", "2", "--rerun-triggers", "mtime", timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    # the default profile is picked up automatically
    assert "profiles/default" in out
    default = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    n_runs = (len(default["problems"]) * len(default["fp_methods"]) * len(default["couplings"])
              * len(default["backends"]))
    m = re.search(r"^solve\s+(\d+)$", out, re.M)
    if m:  # on a machine where the default study already ran, nothing may be left to do
        assert int(m.group(1)) <= n_runs


@pytest.mark.parametrize("bad, field, message", [
    ({"solv": {"tolerance": 1e-3}}, "(top level)", "'solv' was unexpected"),
    ({"solve": {"tolerance": 1e-3, "max_iteration": 5}}, "solve", "'max_iteration' was unexpected"),
    ({"backends": ["numpy", "cuda"]}, "backends.1", "'cuda' is not one of"),
    ({"problems": {"c": {"name": "congestio"}}}, "problems.c.name", "'congestio' is not one of"),
    ({"solve": {"thetaUM": 1.5}}, "solve.thetaUM", "greater than the maximum of 1"),
    ({"problems": {"c": {"name": "congestion", "grid": {"Nx": 2}}}}, "problems.c.grid.Nx", "minimum of 3"),
    ({"problems": {"c": {"name": "congestion", "params": {"kapa": 1.0}}}}, "problems.c", "'kapa'"),
    ({"backends": ["numba"]}, "reference_backend", "not one of the study's backends"),
    ({"anderson": {"options": {"betta": 0.5}}}, "anderson.options", "'betta' was unexpected"),
])
def test_invalid_config_fails_before_any_job_naming_the_field(run_snakemake, tmp_path, bad, field, message):
    cfg = write_config(tmp_path / "bad.yaml", {"study": "bad", **bad})
    proc = run_snakemake("--cores", "1", "--configfile", cfg, "--directory", tmp_path, timeout=120)
    err = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"{field}: " in err and message in err, err[-3000:]
    assert not (tmp_path / "results").exists()  # nothing ran


def test_slurm_profile_dry_run(run_snakemake, tmp_path):
    if not (ROOT / "profiles/slurm").is_dir():
        pytest.skip("profiles/slurm/ not present")
    cfg = write_config(tmp_path / "c.yaml", {**TINY, "fp_methods": ["fdm"], "backends": ["numpy"],
                                             "exclude": []})
    proc = run_snakemake("-n", "--profile", ROOT / "profiles/slurm", "--configfile", cfg,
                         "--directory", tmp_path, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert re.search(r"^solve\s+1$", proc.stdout + proc.stderr, re.M)  # one batch: crowd/fdm/numpy


@pytest.fixture(scope="module")
def tiny_study(run_snakemake, tmp_path_factory):
    """The tiny study run once for real (about a minute on two busy cores)."""
    work = tmp_path_factory.mktemp("study")
    cfg = write_config(work / "tiny.yaml", TINY)
    proc = run_snakemake("--cores", "2", "--configfile", cfg, "--directory", work, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    return work, cfg


def test_tiny_study_stores(tiny_study):
    work, _ = tiny_study
    out = work / "results/tiny"
    for fp, coupling, backend in TINY_RUNS:
        store = out / f"runs/crowd/{fp}/{backend}/{coupling}.zarr"
        assert (store.parent / ".snakemake_timestamp").exists()  # the batch directory is the job's output
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zarr's note about Snakemake's timestamp file
            ds = xr.open_zarr(store, consolidated=False)
        assert ds["u"].dims == ("t", "x") and ds["m"].dims == ("t", "x")
        assert ds.sizes == {**ds.sizes, "t": 11, "x": 13}
        json.dumps(dict(ds.attrs), allow_nan=False)  # plain JSON
        assert ds.attrs["backend"] == backend and ds.attrs["backend_version"]
        assert ds.attrs["status"] in ("converged", "not_converged", "diverged")
        assert ds.attrs["wall_time"] >= 0 and "compile_time" in ds.attrs
        cfg = json.loads(ds.attrs["provenance_config"])
        assert cfg["study"] == "tiny" and cfg["solve"]["thetaUM"] == 0.5  # resolved: defaults filled
        run = json.loads(ds.attrs["provenance_run"])
        assert (run["fp"], run["coupling"], run["backend"]) == (fp, coupling, backend)
        versions = json.loads(ds.attrs["provenance_package_versions"])
        assert versions["zarr"].startswith("3") and versions["mfg_core"]
        assert re.fullmatch(r"[0-9a-f]{40}|unknown", ds.attrs["provenance_git_revision"])
        # no temporary left beside the stores
        assert not list(store.parent.glob(".*.tmp-*"))
    ds = io.open_store(out / "problems/crowd.zarr")
    assert {"m0", "V", "g", "weights"} <= set(ds.data_vars)
    log = (out / "logs/solve/crowd/fdm/numpy.log").read_text()
    assert "iteration    1: change_U=" in log  # progress in the job log


def test_tiny_study_tables_figures_report(tiny_study):
    import pandas as pd

    work, _ = tiny_study
    out = work / "results/tiny"
    runs = pd.read_csv(out / "tables/runs.csv")
    assert sorted(zip(runs.fp, runs.coupling, runs.backend)) == sorted(TINY_RUNS)
    backends = pd.read_csv(out / "tables/backends.csv")
    numba = backends[(backends.backend == "numba") & (backends.coupling == "damping")].iloc[0]
    assert numba.max_rel_diff_U < 1e-10 and numba.max_rel_diff_M < 1e-10  # same scheme, round-off apart
    coupling = pd.read_csv(out / "tables/coupling.csv")
    assert set(coupling.coupling) == {"damping", "anderson"}
    for name in ("mass_conservation", "mass_over_time", "mass_over_iterations"):
        assert len(pd.read_csv(out / f"tables/{name}.csv")) > 0
    for fig in ("mass_crowd", "residuals_crowd", "backends_crowd", "fields_crowd"):
        assert (out / f"figures/{fig}.png").read_bytes().startswith(b"\x89PNG")
    page = (out / "report.html").read_text()
    summary = page[:page.index("<h2>Solutions</h2>")]
    assert page.index("<h2>Summary</h2>") < page.index("<h2>Solutions</h2>") < page.index("<h2>Runs</h2>")
    for finding in ("Backend speed-up", "2.82%", "378%", "2-5x", "Run outcomes"):
        assert finding in summary
    assert re.search(r"numba [0-9.e+-]+x", summary)  # the speed-up was measured (from the backends table)
    assert "not run in this study (no sweep)" in summary and "not run in this study (no convergence study)" in summary
    uri = {f: report.png_data_uri(out / f"figures/{f}.png")
           for f in ("fields_crowd", "residuals_crowd", "backends_crowd", "mass_crowd")}
    assert uri["residuals_crowd"] in summary and uri["backends_crowd"] in summary  # findings show their figure
    assert uri["fields_crowd"] in page
    # every run's mass is round-off (FDM exact, the particles' KDE has mass 1): a sentence, not a figure
    assert uri["mass_crowd"] not in page and "mass is conserved to round-off in all 6 runs" in page
    assert page.count("<details") >= 6 and "class='sortable" in page  # tables collapsible and sortable
    assert "Package versions" in page and "Resolved study config" in page
    assert "<img" in page and "src='results" not in page  # embedded, not linked


def test_tiny_study_rerun_is_a_no_op_and_edits_trigger_reruns(run_snakemake, tiny_study):
    work, cfg = tiny_study
    proc = run_snakemake("-n", "--cores", "2", "--configfile", cfg, "--directory", work)
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]
    edited = write_config(work / "edited.yaml", {**TINY, "solve": {"max_iterations": 30, "tolerance": 1e-5}})
    proc = run_snakemake("-n", "--cores", "2", "--configfile", edited, "--directory", work)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "params have changed" in out
    # the fdm batches (numpy, numba); the particle batch has its own tolerance
    assert re.search(r"^solve\s+2$", out, re.M), out[-3000:]


def test_snakemake_report(run_snakemake, tiny_study):
    work, cfg = tiny_study
    target = work / "snakemake-report.html"
    proc = run_snakemake("--cores", "1", "--configfile", cfg, "--directory", work, "--report", target,
                         timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    text = target.read_text(errors="replace")
    assert "Mass conservation" in text and "Backends" in text
    shutil.rmtree(work / "results", ignore_errors=True)
