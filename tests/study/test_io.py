"""mfg_study.io: JSON-clean attrs, atomic writes, zarr stores with Snakemake's timestamp file."""

import json
import math
import warnings

import numpy as np
import pytest
import xarray as xr

import mfg_core as mc
from mfg_study import io, provenance


def tiny_result():
    p = mc.problems.load("congestion", Nx=8, Nt=6)
    it = mc.FixedPointIterator(p, mc.HJBFDMSolver(p), mc.FPFDMSolver(p), thetaUM=0.5)
    return p, it.solve(max_iterations=5, tolerance=1e-3)


def test_json_clean_rejects_nan_and_objects_naming_the_field():
    assert io.json_clean({"a": np.float64(1.5), "b": [np.int64(2)], "c": np.bool_(True)}) == \
        {"a": 1.5, "b": [2], "c": True}
    with pytest.raises(ValueError, match=r"attrs\.wall_time"):
        io.json_clean({"wall_time": math.nan})
    with pytest.raises(ValueError, match=r"attrs\.solver"):
        io.json_clean({"solver": object()})


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.csv"
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    io.write_text(target, "whole")
    assert target.read_text() == "whole" and [q.name for q in tmp_path.iterdir()] == ["out.csv"]


def test_interrupted_store_write_keeps_the_old_store_and_no_temporary(tmp_path, monkeypatch):
    p, result = tiny_result()
    target = tmp_path / "run.zarr"
    io.write_store(result.to_xarray(), target)
    before = sorted(q.name for q in target.iterdir())

    def boom(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(xr.Dataset, "to_zarr", boom)
    with pytest.raises(KeyboardInterrupt):
        io.write_store(result.to_xarray(), target)
    assert sorted(q.name for q in target.iterdir()) == before
    assert [q.name for q in tmp_path.iterdir()] == ["run.zarr"]


def test_store_roundtrip_with_provenance_and_timestamp_file(tmp_path):
    p, result = tiny_result()
    ds = result.to_xarray()
    ds.attrs.update(provenance.provenance_attrs(config={"study": "t", "solve": {"tolerance": 1e-3}},
                                        run={"backend": "numpy"}, backend="numpy",
                                        backend_version=np.__version__, wall_time=result.wall_time,
                                        compile_time=result.compile_time))
    target = tmp_path / "run.zarr"
    io.write_store(ds, target)
    (target / io.SNAKEMAKE_TIMESTAMP).touch()  # what Snakemake adds to directory() outputs
    meta = json.loads((target / "zarr.json").read_text())
    assert meta["zarr_format"] == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the timestamp warning is silenced, nothing else is raised
        back = io.open_store(target)
    np.testing.assert_array_equal(back["u"].values, result.U)
    np.testing.assert_array_equal(back["m"].values, result.M)
    assert back["u"].dims == ("t", "x")
    assert json.loads(back.attrs["provenance_config"])["solve"]["tolerance"] == 1e-3
    versions = json.loads(back.attrs["provenance_package_versions"])
    assert versions["numpy"] == np.__version__ and versions["zarr"]
    assert back.attrs["backend"] == "numpy" and back.attrs["compile_time"] >= 0
    json.dumps(back.attrs, allow_nan=False)  # plain JSON throughout


def test_open_store_names_a_missing_store(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.zarr"):
        io.open_store(tmp_path / "nothing.zarr")


def test_problem_store_and_mismatch_names_the_field(tmp_path):
    p = mc.problems.load("congestion", Nx=8, Nt=6)
    io.write_store(io.problem_to_xarray(p), tmp_path / "p.zarr")
    ds = io.open_store(tmp_path / "p.zarr")
    io.check_problem_matches(p, ds)
    other = mc.problems.load("congestion", Nx=8, Nt=6, m0_mean=0.5)
    with pytest.raises(ValueError, match=r"m0 differs"):
        io.check_problem_matches(other, ds)


def test_diverged_dataset_is_marked_and_json_clean(tmp_path):
    p = mc.problems.load("congestion", Nx=8, Nt=6)
    ds = io.diverged_dataset(p, "the fixed-point iterate became NaN or inf at iteration 7")
    io.write_store(ds, tmp_path / "d.zarr")
    back = io.open_store(tmp_path / "d.zarr")
    assert back.attrs["converged"] == 0 and "iteration 7" in back.attrs["reason"]
    assert np.all(np.isnan(back["u"].values)) and back["u"].shape == p.shape
