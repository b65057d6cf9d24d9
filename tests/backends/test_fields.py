"""The fixed-point loop's field arithmetic (``backend.make_fields``) on every backend against the
numpy reference: norms, relative changes, mass error, minimum, finiteness and the damped update.

jax and torch keep the fields on their device; on the CPU they hand the loop numpy arrays (their
kernels return numpy views there), so their device path is checked here on the CPU with
``keep_native=True``: the same arithmetic on jax arrays / torch tensors.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest

import mfg_core as mc
from mfg_core.backends import available, get_backend
from mfg_core.backends.numpy.fields import Fields as Reference


def _problems():
    yield mc.problems.load("congestion", Nx=40, Nt=12)
    yield mc.problems.load("lq2d", Nx=9, Ny=7, Nt=5)


def _native(name, scheme):
    module = importlib.import_module(f"mfg_core.backends.{name}.fields")
    if name in ("jax", "torch"):
        return module.Fields(scheme, "cpu", keep_native=True)
    return module.Fields(scheme)


@pytest.mark.parametrize("name", [b for b in ("numba", "jax", "torch") if b in available()])
@pytest.mark.parametrize("problem", list(_problems()), ids=["1d", "2d"])
def test_fields_match_the_numpy_reference(name, problem):
    scheme = problem.scheme
    ref, f = Reference(scheme), _native(name, scheme)
    rng = np.random.default_rng(3)
    X, Y = rng.standard_normal(problem.shape), rng.standard_normal(problem.shape)
    M = np.abs(Y)
    fx, fy, fm = f.asarray(X), f.asarray(Y), f.asarray(M)
    assert np.array_equal(f.to_host(fx), X)
    close = dict(rtol=1e-13, atol=0)
    assert np.isclose(f.norm(fx), ref.norm(X), **close)
    assert np.isclose(f.relative_change(fx, fy), ref.relative_change(X, Y), **close)
    assert np.isclose(f.mass_error(fm), ref.mass_error(M), rtol=1e-12, atol=1e-15)
    assert f.min(fx) == ref.min(X)
    assert f.finite(fx)
    bad = X.copy()
    bad[-1, 2] = np.nan
    assert not f.finite(f.asarray(bad))
    assert np.array_equal(f.to_host(f.tile(problem.g)), ref.tile(problem.g))
    assert np.array_equal(f.to_host(f.zeros()), np.zeros(problem.shape))
    new, d, s, n = f.relax(f.asarray(X.copy()), fy, 0.3)
    ref_new, rd, rs, rn = ref.relax(X.copy(), Y, 0.3)
    np.testing.assert_allclose(f.to_host(new), ref_new, rtol=0, atol=4e-16 * np.abs(ref_new).max())
    np.testing.assert_allclose([d, s, n], [rd, rs, rn], **close)


@pytest.mark.parametrize("name", available())
def test_backend_fields_are_host_arrays_on_the_cpu(name):
    """On the CPU every backend's loop arithmetic is on numpy arrays (no conversion per iteration)."""
    problem = mc.problems.load("congestion", Nx=20, Nt=6)
    f = get_backend(name).make_fields(problem.scheme)
    assert isinstance(f.tile(problem.m_init), np.ndarray)
    assert isinstance(f.zeros(), np.ndarray)


def test_damping_keeps_the_loop_on_the_fields_of_the_backend():
    """Damping runs on the solvers' native solves and the backend's fields (so on a device the iterate
    stays there); Anderson and Newton run on host arrays."""
    problem = mc.problems.load("congestion", Nx=30, Nt=10)
    damped = mc.build(problem, "fdm", "damping", "numba")
    assert damped.fields is damped.hjb_solver.fields
    assert damped._solve_hjb == damped.hjb_solver.solve_native
    anderson = mc.build(problem, "fdm", "anderson", "numba")
    assert anderson._solve_hjb == anderson.hjb_solver.solve
    assert type(anderson.fields) is Reference


def _simulate_device(monkeypatch, name):
    """Make the backend behave on the CPU as on an accelerator: kernels return the library's arrays
    (jax arrays / tensors), and the loop's fields keep them (``keep_native``)."""
    package = importlib.import_module(f"mfg_core.backends.{name}")
    fields = importlib.import_module(f"mfg_core.backends.{name}.fields")
    monkeypatch.setattr(fields, "make_fields", lambda scheme, device="cpu": fields.Fields(scheme, device, True))
    for mod in ("fdm", "fdm2d", "particles", "particles2d"):
        module = importlib.import_module(f"{package.__name__}.{mod}")
        # jax: native(device) -> how to hand back an output; torch: native(tensor) -> the output
        monkeypatch.setattr(module, "native", (lambda device: (lambda x: x)) if name == "jax" else (lambda t: t))
    return fields


@pytest.mark.parametrize("name", [b for b in ("jax", "torch") if b in available()])
@pytest.mark.parametrize("problem", list(_problems()), ids=["1d", "2d"])
def test_damping_on_device_arrays_gives_the_numbers_of_the_cpu(monkeypatch, name, problem):
    """The device path end to end (kernels returning device arrays, the iterate kept on the device
    between iterations, F evaluated on the host) gives numpy's result to round-off."""
    ref = mc.solve(problem, "fdm", "damping", "numpy", max_iterations=6, tolerance=1e-12)
    _simulate_device(monkeypatch, name)
    loop = mc.build(problem, "fdm", "damping", name)
    assert loop.fields.native
    seen = []
    solve = loop._solve_fp
    loop._solve_fp = lambda U: seen.append(type(U).__module__) or solve(U)
    r = loop.run(max_iterations=6, tolerance=1e-12)
    assert seen and all(not m.startswith("numpy") for m in seen)  # the FP solve got device arrays
    assert isinstance(r.U, np.ndarray) and isinstance(r.M, np.ndarray)
    assert r.iterations == ref.iterations
    for a, b in ((r.U, ref.U), (r.M, ref.M)):
        assert np.max(np.abs(a - b)) <= 1e-12 * np.max(np.abs(b))
    np.testing.assert_allclose(r.history["change_U"], ref.history["change_U"], rtol=1e-9)
    np.testing.assert_allclose(r.history["mass_error"], ref.history["mass_error"], atol=1e-13)
