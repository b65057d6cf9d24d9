"""The 2D benchmark on tiny sizes: every installed backend runs every kind (FDM, particles, the
published double-well comparison), agrees with numpy, and the table marks the targets."""

from __future__ import annotations

import csv
import math

import pytest

from benchmarks import bench_2d


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setattr(bench_2d, "SIZES", (12,))
    monkeypatch.setattr(bench_2d, "TARGET_N", 12)
    monkeypatch.setattr(bench_2d, "NT", 4)
    monkeypatch.setattr(bench_2d, "DOUBLE_WELL_NT", 3)
    monkeypatch.setattr(bench_2d, "REPEATS", 1)
    monkeypatch.setattr(bench_2d, "PARTICLES", 500)


def test_bench_2d_runs_every_kind_and_backend_and_agrees_with_numpy(tiny, tmp_path):
    rows = bench_2d.main(tmp_path)
    kinds = {(r["kind"], r["backend"]) for r in rows}
    backends = {r["backend"] for r in rows}
    assert "numpy" in backends
    assert {k for k, _ in kinds} == {"fdm", "particles", "double_well"}
    for r in rows:
        if r["backend"] != "numpy" and r["kind"] != "particles":
            assert r["diff_U"] < 1e-10 and r["diff_M"] < 1e-10, r
        assert r["iteration_s"] > 0
    well = [r for r in rows if r["kind"] == "double_well"]
    assert all("published" in r["target"] for r in well)
    if "numba" in backends:
        numba_fdm = next(r for r in rows if r["kind"] == "fdm" and r["backend"] == "numba")
        assert "numba >= 20x numpy" in numba_fdm["target"] and math.isfinite(numba_fdm["krylov_per_newton"])
    with open(tmp_path / "2d.csv") as fh:
        assert len(list(csv.DictReader(fh))) == len(rows)
    assert "double_well" in (tmp_path / "2d.md").read_text()
