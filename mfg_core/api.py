"""``mfg_core.solve``: one entry point that builds the solvers and the loop from the method registry."""

from __future__ import annotations

from typing import Any

from . import methods
from .backends import Backend, get_backend
from .fixed_point import FixedPointLoop
from .problem import MFGProblem
from .result import FixedPointResult


def build(problem: MFGProblem, fp: str = "fdm", coupling: str = "damping",
          backend: str | Backend | None = "numpy", **options: Any) -> FixedPointLoop:
    """The :class:`~mfg_core.fixed_point.FixedPointLoop` :func:`solve` runs (for warm-up or reuse).

    ``options`` are the options of the HJB, FP and coupling methods (:func:`mfg_core.methods.
    resolve_options`); everything is validated before any solver is built.
    """
    if not isinstance(problem, MFGProblem):
        raise ValueError(f"problem must be an MFGProblem, got {type(problem).__name__}")
    be = get_backend(backend, options.pop("device", None))
    resolved = methods.resolve_options(fp, coupling, options)
    fp_method, coupling_method = methods.get("fp", fp), methods.get("coupling", coupling)
    for m in (methods.get("hjb", "fdm"), fp_method, coupling_method):
        m.check(be.name, problem.dim, fp if m is coupling_method else None,
                problem.grid.obstacle is not None)
    rule = coupling_method.load()(**resolved["coupling"])
    hjb = methods.get("hjb", "fdm").load()(problem, be, **resolved["hjb"])
    fps = fp_method.load()(problem, backend=be, **resolved["fp"])
    return FixedPointLoop(problem, hjb, fps, rule, method=coupling,
                          options={"fp_method": fp, **{f"{k}.{n}": v for k, d in resolved.items()
                                                       for n, v in d.items()}})


def solve(problem: MFGProblem, fp: str = "fdm", coupling: str = "damping",
          backend: str | Backend | None = "numpy", *, max_iterations: int = 100, tolerance: float = 1e-6,
          initial_guess: str = "terminal", warmup: bool = True, verbose: bool = False,
          **options: Any) -> FixedPointResult:
    """Solve ``problem`` with the FP method ``fp`` and the coupling method ``coupling`` on ``backend``.

    ``options`` go to the method that owns them (``thetaUM``, ``anderson_depth``, ``num_particles``,
    ``seed``, ``newton_tol``, ...; see ``mfg_core.methods.get(kind, name).options``); an unknown one
    is a ``ValueError`` naming it. ``device`` (jax, torch: ``"cpu"`` by default, ``"cuda"``/``"gpu"``
    where present) selects where the backend runs; one that is not there is a ``ValueError``. ``initial_guess`` is ``"terminal"`` or ``"heat"``. Returns the
    :class:`~mfg_core.result.FixedPointResult` (``status`` converged / not_converged / diverged).
    """
    loop = build(problem, fp, coupling, backend, **options)
    return loop.run(max_iterations, tolerance, initial_guess=initial_guess, warmup=warmup, verbose=verbose)
