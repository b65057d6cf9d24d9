"""The workflow scripts run outside Snakemake with a stand-in ``snakemake`` object (fast, no DAG)."""

import runpy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import mfg_core as mc
from mfg_study import io

SCRIPTS = Path(__file__).resolve().parents[2] / "workflow" / "scripts"


class Files(list):
    """Snakemake's input/output/log: a list with named entries as attributes."""

    def __init__(self, *items, **named):
        super().__init__([*items, *named.values()])
        self.__dict__.update(named)


def settings():
    return {"label": "c", "name": "congestion", "grid": {"Nx": 10, "Nt": 8}, "params": {}}


def run_script(name, **fields):
    fake = SimpleNamespace(threads=1, config={"study": "t"}, scriptdir=str(SCRIPTS), **fields)
    runpy.run_path(str(SCRIPTS / name), init_globals={"snakemake": fake}, run_name="__main__")


@pytest.fixture
def problem_store(tmp_path):
    store = tmp_path / "problems" / "c.zarr"
    run_script("setup_problem.py", params=SimpleNamespace(problem=settings()), output=Files(str(store)),
               log=Files(str(tmp_path / "setup.log")))
    return store


def solve_params(options=None, **solve):
    return SimpleNamespace(run={
        "problem": settings(), "fp": "fdm", "coupling": "damping", "backend": "numpy",
        "solve": {"max_iterations": 50, "tolerance": 1e-6, "on_divergence": "record", "initial_guess": "terminal",
                  **solve},
        "options": {"thetaUM": 0.5, **(options or {})}})


def test_setup_then_solve(problem_store, tmp_path):
    ds = io.open_store(problem_store)
    assert ds["m0"].shape == (11,) and "problem_parameters" in ds.attrs
    out = tmp_path / "run.zarr"
    run_script("solve.py", params=solve_params(), input=Files(problem=str(problem_store)),
               output=Files(str(out)), log=Files(str(tmp_path / "solve.log")))
    ds = io.open_store(out)
    assert ds.attrs["status"] == "converged" and ds.attrs["backend"] == "numpy"
    assert "iteration    1:" in (tmp_path / "solve.log").read_text()


def test_solve_records_a_divergence_instead_of_failing(problem_store, tmp_path, monkeypatch):
    def diverge(self, *a, **k):
        raise mc.DivergenceError("the fixed-point iterate became NaN or inf at iteration 3", 3)

    monkeypatch.setattr(mc.fixed_point.FixedPointLoop, "run", diverge)
    out = tmp_path / "run.zarr"
    run_script("solve.py", params=solve_params(), input=Files(problem=str(problem_store)),
               output=Files(str(out)), log=Files(str(tmp_path / "solve.log")))
    ds = io.open_store(out)
    assert ds.attrs["status"] == "diverged" and "iteration 3" in ds.attrs["reason"]
    assert ds.attrs["iterations"] == 3 and ds.attrs["failed_at_iteration"] == 3
    assert np.all(np.isnan(ds["u"].values))
    with pytest.raises(mc.DivergenceError):
        run_script("solve.py", params=solve_params(on_divergence="fail"),
                   input=Files(problem=str(problem_store)), output=Files(str(tmp_path / "r2.zarr")),
                   log=Files(str(tmp_path / "solve2.log")))
    assert not (tmp_path / "r2.zarr").exists()
    assert "job failed" in (tmp_path / "solve2.log").read_text()


@pytest.mark.parametrize("change, message", [
    ({"params": {"m0_mean": 0.4}}, "m0 differs"),                       # a stored array
    ({"params": {"kappa": 3.0}}, "parameter params is"),                # only in the parameters
    ({"grid": {"Nx": 10, "Nt": 8, "sigma": 0.3}}, "parameter nu is"),
])
def test_solve_refuses_a_stale_problem_store(problem_store, tmp_path, change, message):
    params = solve_params()
    params.run["problem"].update(change)
    with pytest.raises(ValueError, match=message):
        run_script("solve.py", params=params, input=Files(problem=str(problem_store)),
                   output=Files(str(tmp_path / "run.zarr")), log=Files(str(tmp_path / "solve.log")))
    assert not (tmp_path / "run.zarr").exists()


def test_an_inner_newton_failure_is_recorded_as_a_failed_run(problem_store, tmp_path):
    """HJB Newton that cannot reach its tolerance is a ConvergenceError: recorded as status failed
    with the iteration and the reason (like a divergence), or a failed job with on_divergence: fail."""
    out = tmp_path / "run.zarr"
    params = solve_params(options={"newton_tol": 1e-300, "newton_maxiter": 1})
    run_script("solve.py", params=params, input=Files(problem=str(problem_store)),
               output=Files(str(out)), log=Files(str(tmp_path / "solve.log")))
    ds = io.open_store(out)
    assert ds.attrs["status"] == "failed" and ds.attrs["converged"] == 0
    assert ds.attrs["failed_at_iteration"] == 1 and "HJB Newton did not reach" in ds.attrs["reason"]
    assert "iteration 1" in ds.attrs["reason"]
    with pytest.raises(mc.ConvergenceError):
        run_script("solve.py", params=solve_params(options={"newton_tol": 1e-300, "newton_maxiter": 1},
                                                   on_divergence="fail"),
                   input=Files(problem=str(problem_store)), output=Files(str(tmp_path / "r2.zarr")),
                   log=Files(str(tmp_path / "solve2.log")))
    assert not (tmp_path / "r2.zarr").exists()


def test_each_attempt_starts_its_log_afresh(problem_store, tmp_path):
    log = tmp_path / "solve.log"
    log.write_text("an earlier attempt's lines\n")
    run_script("solve.py", params=solve_params(), input=Files(problem=str(problem_store)),
               output=Files(str(tmp_path / "run.zarr")), log=Files(str(log)))
    text = log.read_text()
    assert "earlier attempt" not in text and "wrote" in text


def test_a_problem_whose_every_run_diverged_still_gets_its_figure_and_table_rows(tmp_path):
    """plot_fields used to raise when no run had a finite density, and then no report was built."""
    import pandas as pd

    p = mc.problems.load("congestion", Nx=10, Nt=8)
    runs, stores = [], []
    for i, (coupling, status) in enumerate((("damping", "diverged"), ("anderson", "failed"))):
        store = tmp_path / f"{coupling}.zarr"
        io.write_store(io.failed_dataset(p, status, f"{status} because of test case {i}", 4 + i), store)
        runs.append({"problem": "c", "fp": "fdm", "coupling": coupling, "backend": "numpy"})
        stores.append(str(store))
    fig = tmp_path / "fields_c.png"
    run_script("fields.py", params=SimpleNamespace(runs=runs, reference="numpy"), input=Files(runs=stores),
               output=Files(str(fig)), log=Files(str(tmp_path / "fields.log")),
               wildcards=SimpleNamespace(problem="c"))
    assert fig.read_bytes().startswith(b"\x89PNG")
    table = tmp_path / "runs.csv"
    run_script("runs_table.py", params=SimpleNamespace(runs=runs), input=Files(runs=stores),
               output=Files(str(table)), log=Files(str(tmp_path / "runs.log")))
    df = pd.read_csv(table)
    assert list(df["status"]) == ["diverged", "failed"] and list(df["iterations"]) == [4, 5]
    assert df["reason"].str.contains("test case").all()
