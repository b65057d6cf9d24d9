"""Scaling studies' timing on 2D problems: every backend, FDM and particles (tiny sizes)."""

import pytest

from mfg_study import scaling

BACKENDS = ("numpy", "numba", "jax", "torch")


def _spec(name, fp, axis, sizes, grid=None):
    return {"problem": {"name": name, "grid": grid or {}, "params": {}}, "fp": fp, "coupling": "damping",
            "axis": axis, "sizes": sizes, "iterations": 2, "repeats": 2, "device": "cpu",
            "options": {"thetaUM": 0.5} if fp == "fdm" else {"thetaUM": 0.5, "seed": 0}}


@pytest.mark.parametrize("backend", BACKENDS)
def test_2d_fdm_scaling_times_a_square_grid_per_size(backend):
    pytest.importorskip(backend) if backend != "numpy" else None
    spec = _spec("lq2d", "fdm", "N", [6, 10])
    t = scaling.run_scaling(spec, backend, log=lambda _: None)
    assert list(t["size"]) == [6, 10] and list(t["Nx"]) == [6, 10] and list(t["Nt"]) == [6, 10]
    # work = (Nt + 1) (Nx + 1) (Ny + 1) space-time nodes: the y axis is refined with x
    assert list(t["work"]) == [7 * 7 * 7, 11 * 11 * 11]
    assert (t["iteration_ms"] > 0).all() and (t["compile_s"] >= 0).all()
    # the linear solves are counted per size: lq2d's Newton steps take at least one Krylov iteration
    # on the iterative backends (numpy: its LU-preconditioned BiCGStab, often 0; FP: direct, 0)
    assert (t["krylov_per_newton_step"] >= (0 if backend == "numpy" else 1)).all()
    assert (t["krylov_per_fp_step"] == 0).all() if backend == "numpy" else (t["krylov_per_fp_step"] >= 1).all()
    assert (t["krylov_unconverged"] == 0).all() if backend != "numpy" else t["krylov_unconverged"].isna().all()


def test_1d_scaling_has_no_krylov_counts():
    spec = _spec("lq", "fdm", "N", [20])
    t = scaling.run_scaling(spec, "numpy", log=lambda _: None)
    assert t[list(scaling.KRYLOV_COLUMNS)].isna().all().all()
    assert list(scaling.scaling_table([t]).columns) == list(scaling.TABLE_COLUMNS)


@pytest.mark.parametrize("backend", BACKENDS)
def test_2d_particle_scaling_times_particle_counts(backend):
    pytest.importorskip(backend) if backend != "numpy" else None
    spec = _spec("lq2d", "particle", "num_particles", [200, 400], grid={"Nx": 8, "Ny": 8, "Nt": 4})
    t = scaling.run_scaling(spec, backend, log=lambda _: None)
    assert list(t["num_particles"]) == [200, 400] and list(t["work"]) == [200 * 4, 400 * 4]
    assert (t["iteration_ms"] > 0).all()
