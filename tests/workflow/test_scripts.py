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


def run_settings(options=None, coupling="damping", **solve):
    return {"problem": settings(), "fp": "fdm", "coupling": coupling, "backend": "numpy",
            "solve": {"max_iterations": 50, "tolerance": 1e-6, "on_divergence": "record",
                      "initial_guess": "terminal", **solve},
            "options": {"thetaUM": 0.5, **(options or {})}}


def solve_batch(tmp_path, problem_store, *runs, out="batch", log="solve.log"):
    """Run the batch script on ``runs``; returns the batch directory."""
    batch = tmp_path / out
    run_script("solve.py", params=SimpleNamespace(runs=list(runs), cache_dir=str(tmp_path / "cache")),
               input=Files(problem=str(problem_store)), output=Files(str(batch)), log=Files(str(tmp_path / log)))
    return batch


def test_setup_then_solve(problem_store, tmp_path):
    ds = io.open_store(problem_store)
    assert ds["m0"].shape == (11,) and "problem_parameters" in ds.attrs
    batch = solve_batch(tmp_path, problem_store, run_settings(), run_settings(coupling="anderson"))
    ds = io.open_store(batch / "damping.zarr")
    assert ds.attrs["status"] == "converged" and ds.attrs["backend"] == "numpy"
    assert io.open_store(batch / "anderson.zarr").attrs["coupling"] == "anderson"
    assert "iteration    1:" in (tmp_path / "solve.log").read_text()


def test_a_rerun_batch_takes_unchanged_runs_from_the_solve_cache(problem_store, tmp_path):
    first = solve_batch(tmp_path, problem_store, run_settings(), run_settings(coupling="anderson"), out="b1")
    second = solve_batch(tmp_path, problem_store, run_settings(),
                         run_settings(coupling="anderson", options={"anderson_depth": 3}), out="b2", log="s2.log")
    log = (tmp_path / "s2.log").read_text()
    assert "fdm/damping/numpy: unchanged settings and code, taken from the solve cache" in log
    assert "run c/fdm/anderson/numpy" in log  # its settings changed: solved again
    a, b = io.open_store(first / "damping.zarr"), io.open_store(second / "damping.zarr")
    np.testing.assert_array_equal(a["u"].values, b["u"].values)
    assert b.attrs["solve_cache_reused"] == "true" and "solve_cache_reused" not in a.attrs


def test_solve_records_a_divergence_instead_of_failing(problem_store, tmp_path, monkeypatch):
    def diverge(self, *a, **k):
        raise mc.DivergenceError("the fixed-point iterate became NaN or inf at iteration 3", 3)

    monkeypatch.setattr(mc.fixed_point.FixedPointLoop, "run", diverge)
    ds = io.open_store(solve_batch(tmp_path, problem_store, run_settings()) / "damping.zarr")
    assert ds.attrs["status"] == "diverged" and "iteration 3" in ds.attrs["reason"]
    assert ds.attrs["iterations"] == 3 and ds.attrs["failed_at_iteration"] == 3
    assert np.all(np.isnan(ds["u"].values))
    with pytest.raises(mc.DivergenceError):
        solve_batch(tmp_path, problem_store, run_settings(on_divergence="fail"), out="b2", log="solve2.log")
    assert not (tmp_path / "b2").exists()
    assert "job failed" in (tmp_path / "solve2.log").read_text()


@pytest.mark.parametrize("change, message", [
    ({"params": {"m0_mean": 0.4}}, "m0 differs"),                       # a stored array
    ({"params": {"kappa": 3.0}}, "parameter params is"),                # only in the parameters
    ({"grid": {"Nx": 10, "Nt": 8, "sigma": 0.3}}, "parameter nu is"),
])
def test_solve_refuses_a_stale_problem_store(problem_store, tmp_path, change, message):
    run = run_settings()
    run["problem"].update(change)
    with pytest.raises(ValueError, match=message):
        solve_batch(tmp_path, problem_store, run)
    assert not (tmp_path / "batch").exists()


def test_an_inner_newton_failure_is_recorded_as_a_failed_run(problem_store, tmp_path):
    """HJB Newton that cannot reach its tolerance is a ConvergenceError: recorded as status failed
    with the iteration and the reason (like a divergence), or a failed job with on_divergence: fail."""
    ds = io.open_store(solve_batch(tmp_path, problem_store,
                                   run_settings(options={"newton_tol": 1e-300, "newton_maxiter": 1})) / "damping.zarr")
    assert ds.attrs["status"] == "failed" and ds.attrs["converged"] == 0
    assert ds.attrs["failed_at_iteration"] == 1 and "HJB Newton did not reach" in ds.attrs["reason"]
    assert "iteration 1" in ds.attrs["reason"]
    with pytest.raises(mc.ConvergenceError):
        solve_batch(tmp_path, problem_store, run_settings(options={"newton_tol": 1e-300, "newton_maxiter": 1},
                                                          on_divergence="fail"), out="b2", log="solve2.log")
    assert not (tmp_path / "b2").exists()


def test_each_attempt_starts_its_log_afresh(problem_store, tmp_path):
    log = tmp_path / "solve.log"
    log.write_text("an earlier attempt's lines\n")
    solve_batch(tmp_path, problem_store, run_settings())
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
        runs.append({"problem": "c", "fp": "fdm", "coupling": coupling, "backend": "numpy", "store": str(store)})
        stores.append(str(store))
    fig, gif = tmp_path / "fields_c.png", tmp_path / "animation_c.gif"
    problem_store = tmp_path / "c_problem.zarr"
    io.write_store(io.problem_to_xarray(p), problem_store)
    run_script("fields.py", params=SimpleNamespace(runs=runs, reference="numpy"),
               input=Files(runs=stores, problem=str(problem_store)), output=Files(figure=str(fig), animation=str(gif)),
               log=Files(str(tmp_path / "fields.log")), wildcards=SimpleNamespace(problem="c"))
    assert fig.read_bytes().startswith(b"\x89PNG") and gif.read_bytes().startswith(b"GIF89a")
    table = tmp_path / "runs.csv"
    run_script("runs_table.py", params=SimpleNamespace(runs=runs), input=Files(runs=stores),
               output=Files(str(table)), log=Files(str(tmp_path / "runs.log")))
    df = pd.read_csv(table)
    assert list(df["status"]) == ["diverged", "failed"] and list(df["iterations"]) == [4, 5]
    assert df["reason"].str.contains("test case").all()
