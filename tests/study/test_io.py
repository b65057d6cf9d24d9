"""mfg_study.io: JSON-clean attrs, atomic writes, zarr stores with Snakemake's timestamp file."""

import json
import math
import os
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
    ds = io.failed_dataset(p, "diverged", "the fixed-point iterate became NaN or inf at iteration 7", 7)
    io.write_store(ds, tmp_path / "d.zarr")
    back = io.open_store(tmp_path / "d.zarr")
    assert back.attrs["converged"] == 0 and "iteration 7" in back.attrs["reason"]
    assert np.all(np.isnan(back["u"].values)) and back["u"].shape == p.shape


# ---------------------------------------------------------------------------------------------
# several writers of one store (after kill -9 of Snakemake its jobs keep running and a re-run starts
# new ones): a reader must find a complete store or none, never one being deleted or half-written
def _store(value):
    ds = xr.Dataset({"u": (("t", "x"), np.full((64, 64), float(value)))})
    ds["u"].encoding["chunks"] = (4, 64)  # 16 chunk files: a write takes a while
    return ds


def _writer(target, value, seconds):
    import time

    ds = _store(value)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        io.write_store(ds, target)


def _reader(target, seconds, queue):
    import time

    seen, bad = 0, []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            u = io.open_store(target)["u"].values
        except (FileNotFoundError, OSError, KeyError, ValueError):
            continue  # between a rename aside and the rename in: no store, which is not a lie
        seen += 1
        if not (np.all(np.isfinite(u)) and np.unique(u).size == 1):
            bad.append((int(np.isnan(u).sum()), np.unique(u[np.isfinite(u)]).tolist()))
    queue.put((seen, bad))


def test_concurrent_writers_never_expose_a_partial_store(tmp_path):
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    target = tmp_path / "run.zarr"
    io.write_store(_store(0.0), target)
    queue = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(target, v, 4.0)) for v in (1.0, 2.0)]
    procs.append(ctx.Process(target=_reader, args=(target, 4.0, queue)))
    for p in procs:
        p.start()
    seen, bad = queue.get(timeout=120)
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    assert seen > 5, "the reader never found the store"
    assert bad == [], f"{len(bad)} of {seen} reads found a partial store, e.g. {bad[:3]}"
    assert io.open_store(target)["u"].shape == (64, 64)
    assert not [q for q in tmp_path.iterdir() if q.name != "run.zarr"]  # no leftovers


def test_a_killed_writers_temporaries_are_cleaned_on_the_next_write(tmp_path):
    import subprocess
    import sys

    target = tmp_path / "run.zarr"
    # a writer that dies (kill -9) in the middle of writing its temporary
    code = ("import os, numpy as np, xarray as xr\n"
            "from mfg_study import io\n"
            "with io.atomic_path(%r) as tmp:\n"
            "    xr.Dataset({'u': ('x', np.ones(5))}).to_zarr(tmp, zarr_format=3, consolidated=False)\n"
            "    os.kill(os.getpid(), 9)\n" % str(target))
    proc = subprocess.run([sys.executable, "-c", code])
    assert proc.returncode == -9
    leftovers = [q for q in tmp_path.iterdir() if q.name.startswith(".run.zarr.tmp-")]
    assert len(leftovers) == 1 and not target.exists()
    # a live writer's temporary is not touched; the dead one's is
    live = tmp_path / f".run.zarr.tmp-{io._HOST}-{os.getpid()}-abcdef12"
    live.mkdir()
    io.write_store(xr.Dataset({"u": ("x", np.zeros(5))}), target)
    assert not leftovers[0].exists() and live.exists()
    assert io.open_store(target)["u"].values.tolist() == [0.0] * 5
