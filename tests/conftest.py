"""Shared fixtures: a ``backend`` fixture over every registered backend (absent ones skipped)."""

import pytest

from mfg_core import backends

ALL_BACKENDS = backends.names()


@pytest.fixture(params=ALL_BACKENDS)
def backend(request):
    """Name of each backend in turn; skips those whose library is not installed here."""
    name = request.param
    if name not in backends.available():
        pytest.skip(f"backend {name!r} not installed")
    return name


@pytest.fixture(params=[b for b in ALL_BACKENDS if b != "numpy"])
def accelerated_backend(request):
    """Each non-reference backend (numba, jax, torch), skipped if absent."""
    name = request.param
    if name not in backends.available():
        pytest.skip(f"backend {name!r} not installed")
    return name


@pytest.fixture
def poisoned_fp():
    """``poisoned_fp(problem, at)``: an FPFDMSolver whose ``at``-th solve returns a NaN in M."""
    import numpy as np

    from mfg_core import FPFDMSolver

    def make(problem, at):
        class PoisonedFP(FPFDMSolver):
            calls = 0

            def solve(self, U):
                self.calls += 1
                M = super().solve(U)
                if self.calls == at:
                    M[5, 5] = np.nan
                return M

        return PoisonedFP(problem)

    return make
