"""Shared fixtures: a ``backend`` fixture over every registered backend (absent ones skipped).

Also: the packages under test are this checkout's. The venv's start-up hook
(``mfg_study_snakemake_hook.pth``) imports ``mfg_study`` before pytest puts the repository on the
path, so with a venv shared by several checkouts (git worktrees) the study tests would otherwise test
whichever checkout the venv was installed from.
"""

import pathlib
import sys

import pytest

_ROOT = pathlib.Path(__file__).resolve().parents[1]
for _name in ("mfg_study", "mfg_core"):
    _mod = sys.modules.get(_name)
    if _mod is not None and pathlib.Path(_mod.__file__).resolve().parents[1] != _ROOT:
        for _sub in [n for n in sys.modules if n == _name or n.startswith(_name + ".")]:
            del sys.modules[_sub]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

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

            def solve_native(self, U):  # what the fixed-point loop calls (solve goes through it)
                self.calls += 1
                M = super().solve_native(U)
                if self.calls == at:
                    M[5, 5] = np.nan
                return M

        return PoisonedFP(problem)

    return make
