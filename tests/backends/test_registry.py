"""Backend registry: the backend asked for is the backend that runs, or a clear error names the extra."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import mfg_core as mc
from mfg_core import backends

ACCELERATED = ["numba", "jax", "torch"]


@pytest.fixture
def problem():
    return mc.problems.load("congestion", Nx=12, Nt=8)


@pytest.fixture
def fresh_cache(monkeypatch):
    """An empty backend cache for this test only (the real one is restored afterwards)."""
    monkeypatch.setattr(backends, "_CACHE", {})


@pytest.mark.parametrize("name", ACCELERATED)
def test_missing_library_raises_naming_the_pip_extra(name, problem, monkeypatch, fresh_cache):
    library = backends.REGISTRY[name][1]
    monkeypatch.setitem(sys.modules, library, None)  # makes ``import <library>`` fail
    with pytest.raises(backends.BackendUnavailableError) as info:
        backends.get_backend(name)
    message = str(info.value)
    assert f"mfg-core[{name}]" in message and repr(library) in message
    assert isinstance(info.value, ImportError)
    assert name not in backends.available()
    # and through the public solver API, never a quiet numpy run
    with pytest.raises(backends.BackendUnavailableError, match=rf"mfg-core\[{name}\]"):
        mc.HJBFDMSolver(problem, backend=name)
    with pytest.raises(backends.BackendUnavailableError, match=rf"mfg-core\[{name}\]"):
        mc.FPFDMSolver(problem, backend=name)
    hjb, fp = mc.HJBFDMSolver(problem), mc.FPFDMSolver(problem)
    with pytest.raises(backends.BackendUnavailableError):
        mc.FixedPointIterator(problem, hjb, fp, backend=name)
    assert hjb.backend.name == fp.backend.name == "numpy"


def test_library_missing_after_first_use_still_raises(accelerated_backend, monkeypatch):
    """A cached backend is re-checked: removing its library later is not papered over by the cache."""
    backends.get_backend(accelerated_backend)
    monkeypatch.setitem(sys.modules, backends.REGISTRY[accelerated_backend][1], None)
    with pytest.raises(backends.BackendUnavailableError, match=accelerated_backend):
        backends.get_backend(accelerated_backend)


def test_unknown_backend_is_a_valueerror(problem):
    with pytest.raises(ValueError, match="unknown backend 'cupy'"):
        backends.get_backend("cupy")
    with pytest.raises(ValueError, match="unknown backend"):
        mc.HJBFDMSolver(problem, backend="cupy")


def test_solver_reports_the_backend_that_runs(backend, problem):
    hjb = mc.HJBFDMSolver(problem, backend=backend)
    fp = mc.FPFDMSolver(problem, backend=backend)
    assert hjb.backend.name == backend and fp.backend.name == backend
    assert isinstance(hjb.backend.version, str) and hjb.backend.version
    # the kernels come from the backend's own module
    assert hjb.backend._module("fdm").__name__ == f"mfg_core.backends.{backend}.fdm"


def test_fixed_point_iterator_switches_both_solvers(accelerated_backend, problem):
    hjb, fp = mc.HJBFDMSolver(problem), mc.FPFDMSolver(problem)
    it = mc.FixedPointIterator(problem, hjb, fp, thetaUM=0.5, backend=accelerated_backend)
    assert hjb.backend.name == fp.backend.name == accelerated_backend
    assert it.backend.name == accelerated_backend
    result = it.solve(max_iterations=2, tolerance=1e-14)
    assert result.solver["hjb_backend"] == result.solver["fp_backend"] == accelerated_backend
    assert np.all(np.isfinite(result.U)) and np.all(np.isfinite(result.M))


def test_backend_none_keeps_the_solvers_backends(accelerated_backend, problem):
    hjb = mc.HJBFDMSolver(problem, backend=accelerated_backend)
    fp = mc.FPFDMSolver(problem)
    mc.FixedPointIterator(problem, hjb, fp, backend=None)
    assert hjb.backend.name == accelerated_backend and fp.backend.name == "numpy"
