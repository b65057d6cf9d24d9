"""mfg_core: verified Mean Field Game solvers (HJB-FDM, FP-FDM, FP-particles) on several backends.

    import mfg_core as mc
    problem = mc.problems.load("congestion")
    result = mc.solve(problem, fp="fdm", coupling="anderson", backend="numba")
    mc.methods.names("coupling")    # the coupling methods by name

The package is a library: it never imports the study runner (``mfg_study``), Snakemake, or I/O.
"""

from . import backends, methods, problems
from .api import build, solve
from .backends import BackendUnavailableError, get_backend
from .coupling import FixedPointIterator
from .errors import ConvergenceError, DivergenceError, NonFiniteError
from .problem import MFGProblem
from .result import FixedPointResult
from .solvers import FPFDMSolver, HJBFDMSolver

__version__ = "0.2.0"

__all__ = [
    "MFGProblem", "problems", "backends", "methods", "get_backend", "BackendUnavailableError",
    "HJBFDMSolver", "FPFDMSolver", "FPParticleSolver", "FixedPointIterator", "FixedPointResult",
    "solve", "build", "ConvergenceError", "DivergenceError", "NonFiniteError", "__version__",
]


_LAZY_MODULES = ("kde", "anderson", "particles", "rules", "fixed_point", "grid")


def __getattr__(name):
    # Modules that pull in more (scipy.fft) are imported on first use, so that importing mfg_core
    # stays cheap. importlib, not "from . import", which would re-enter this hook.
    import importlib

    if name in _LAZY_MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name == "FPParticleSolver":
        return importlib.import_module(f"{__name__}.particles").FPParticleSolver
    raise AttributeError(f"module 'mfg_core' has no attribute {name!r}")
