"""mfg_core: verified 1D Mean Field Game solvers (HJB-FDM, FP-FDM, FP-particles) on several backends.

    import mfg_core as mc
    problem = mc.problems.load("congestion")
    it = mc.FixedPointIterator(problem, mc.HJBFDMSolver(problem), mc.FPFDMSolver(problem), thetaUM=0.5)
    result = it.solve(max_iterations=100, tolerance=1e-6)
"""

from . import backends, problems
from .backends import BackendUnavailableError, get_backend
from .coupling import DivergenceError, FixedPointIterator
from .problem import MFGProblem
from .result import FixedPointResult
from .solvers import ConvergenceError, FPFDMSolver, HJBFDMSolver, NonFiniteError

__version__ = "0.1.0"

__all__ = [
    "MFGProblem", "problems", "backends", "get_backend", "BackendUnavailableError",
    "HJBFDMSolver", "FPFDMSolver", "FixedPointIterator", "FixedPointResult",
    "ConvergenceError", "DivergenceError", "NonFiniteError", "__version__",
]


_LAZY_MODULES = ("kde", "anderson", "comparison", "particles")


def __getattr__(name):
    # Modules that pull in more (scipy.fft, pandas) are imported on first use, so that importing
    # mfg_core stays cheap. importlib, not "from . import", which would re-enter this hook.
    import importlib

    if name in _LAZY_MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name == "FPParticleSolver":
        return importlib.import_module(f"{__name__}.particles").FPParticleSolver
    raise AttributeError(f"module 'mfg_core' has no attribute {name!r}")
