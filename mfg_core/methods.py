r"""One registry of the solver methods: Fokker-Planck methods and coupling methods, by name.

    mc.methods.names("fp")          # ["fdm", "particle"]
    mc.methods.names("coupling")    # ["damping", "damping_gs", "anderson", "anderson_plain", ...]
    mc.methods.get("coupling", "anderson").options     # option name -> default

Each :class:`Method` says what builds it (an import path, imported on first use), its options with
their defaults, the backends and dimensions it runs on (``backends_by_dim`` narrows the backends for
a dimension), and -- for a coupling method -- the defaults
it imposes on the FP method's options (``anderson`` needs a deterministic map, so its particle
solver uses common random numbers unless told otherwise). Everything that names methods reads this
registry: :func:`mfg_core.solve`, the workflow's schema checks and wildcard constraints, the
comparison tables and the report's styles. Adding a method is one class and one :func:`register`
call.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import backends as _backends

KINDS = ("hjb", "fp", "coupling")


@dataclass(frozen=True)
class Method:
    """A registered method (see the module docstring)."""

    kind: str
    name: str
    target: str  # "module:attribute" of the class that builds it
    description: str
    options: Mapping[str, Any] = field(default_factory=dict)
    backends: tuple[str, ...] | None = None  # None: every registered backend
    dims: tuple[int, ...] = (1,)
    #: per dimension, the backends it runs on there, where fewer than ``backends``
    backends_by_dim: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    fp_defaults: Mapping[str, Any] = field(default_factory=dict)  # coupling methods only
    #: whether it solves problems with an obstacle (2D)
    obstacles: bool = True
    #: extra float64 space-time fields the method holds, from its resolved options (memory estimate)
    #: (called with the resolved options and the grid's dimension)
    extra_fields: Callable[[Mapping[str, Any], int], int] | None = None
    #: coupling methods only: the FP methods it works with (None: every one)
    fp_methods: tuple[str, ...] | None = None

    def load(self):
        """The class (or factory) this method is built with."""
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)

    def runs_on(self, dim: int | None = None) -> tuple[str, ...]:
        """The backends it runs on (in ``dim`` dimensions, if given)."""
        every = tuple(self.backends) if self.backends is not None else tuple(_backends.names())
        if dim is not None and dim in self.backends_by_dim:
            return tuple(b for b in every if b in self.backends_by_dim[dim])
        return every

    def works_with(self, fp: str) -> bool:
        """Whether this coupling method can be combined with the FP method ``fp``."""
        return self.fp_methods is None or fp in self.fp_methods

    def check(self, backend: str, dim: int, fp: str | None = None, obstacle: bool = False) -> None:
        """Refuse a backend, dimension, obstacle (or, for a coupling method, FP method) this method
        does not handle, naming both."""
        if fp is not None and not self.works_with(fp):
            raise ValueError(f"{self.kind} method {self.name!r} does not work with fp method {fp!r}; "
                             f"it works with {list(self.fp_methods)}")
        if obstacle and not self.obstacles:
            raise ValueError(f"{self.kind} method {self.name!r} does not solve problems with an obstacle "
                             "(use fp='fdm')")
        if backend not in self.runs_on():
            raise ValueError(f"{self.kind} method {self.name!r} does not run on backend {backend!r}; "
                             f"it runs on {list(self.runs_on())}")
        if dim not in self.dims:
            raise ValueError(f"{self.kind} method {self.name!r} does not solve {dim}D problems "
                             f"(it solves {', '.join(f'{d}D' for d in self.dims)})")
        if backend not in self.runs_on(dim):
            raise ValueError(f"{self.kind} method {self.name!r} solves {dim}D problems only on backend(s) "
                             f"{list(self.runs_on(dim))}, not on {backend!r}")


_REGISTRY: dict[str, dict[str, Method]] = {kind: {} for kind in KINDS}


def register(method: Method) -> Method:
    if method.kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {method.kind!r}")
    _REGISTRY[method.kind][method.name] = method
    return method


def names(kind: str) -> list[str]:
    """Names of the registered methods of ``kind`` (``"fp"``, ``"coupling"`` or ``"hjb"``)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return list(_REGISTRY[kind])


def get(kind: str, name: str) -> Method:
    """The method called ``name``; ``ValueError`` naming the known ones otherwise."""
    known = names(kind)
    if name not in known:
        raise ValueError(f"unknown {kind} method {name!r}; known: {known}")
    return _REGISTRY[kind][name]


def resolve_options(fp: str, coupling: str, options: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Split ``options`` among the HJB, FP and coupling methods and fill in their defaults.

    Returns ``{"hjb": {...}, "fp": {...}, "coupling": {...}}`` with every option of each method.
    An option no method of the three knows is a ``ValueError`` naming it and what each accepts. An
    FP option the coupling method has a default for (``fp_defaults``) takes that default unless given.
    """
    methods = {"hjb": get("hjb", "fdm"), "fp": get("fp", fp), "coupling": get("coupling", coupling)}
    unknown = [k for k in options if not any(k in m.options for m in methods.values())]
    if unknown:
        accepted = "; ".join(f"{kind} {m.name!r}: {sorted(m.options) or 'none'}" for kind, m in methods.items())
        raise ValueError(f"unknown option(s) {sorted(unknown)} for fp={fp!r}, coupling={coupling!r} "
                         f"(accepted -- {accepted})")
    out = {}
    for kind, m in methods.items():
        defaults = dict(m.options)
        if kind == "fp":
            defaults.update({k: v for k, v in methods["coupling"].fp_defaults.items() if k in defaults})
        out[kind] = {k: options.get(k, v) for k, v in defaults.items()}
    return out


def memory_estimate(problem, fp: str, coupling: str, options: Mapping[str, Any]) -> int:
    """Bytes a solve of ``problem`` with these methods and options needs (an estimate from the grid,
    the particle count and the coupling method's history; see :func:`mfg_core.problem.memory_estimate`)."""
    from .problem import memory_estimate as grid_estimate

    resolved = resolve_options(fp, coupling, options)
    method = get("coupling", coupling)
    extra = method.extra_fields(resolved["coupling"], problem.grid.dim) if method.extra_fields else 0
    nodes = problem.grid.size
    base = grid_estimate(nodes, problem.Nt, int(resolved["fp"].get("num_particles", 0)))
    return base + extra * (problem.Nt + 1) * nodes * 8


# ---------------------------------------------------------------------------------------------
# the built-in methods: all of them solve 2D problems too, on every backend
_2D = dict(dims=(1, 2), backends_by_dim={2: ("numpy", "numba", "jax", "torch")})
_ANDERSON_OPTIONS = dict(thetaUM=0.5, anderson_depth=5, regularization=1e-12, restart_condition=1e10,
                         beta=0.7, accelerate="both", residual_check=True, residual_growth=1.0,
                         restart_on_reject=False, positivity=True, stall_check=True, stall_window=10)

def _anderson_fields(options: Mapping[str, Any], dim: int) -> int:
    # depth + 1 pairs (x, G(x) - x) of the state, which holds both fields unless one is accelerated
    per_state = 2 if options["accelerate"] == "both" else 1
    return 2 * (options["anderson_depth"] + 1) * per_state


register(Method("hjb", "fdm", "mfg_core.solvers:HJBFDMSolver",
                "Implicit Euler, Engquist-Osher upwinding, Newton with the exact Jacobian per step.",
                options=dict(newton_tol=1e-12, newton_maxiter=50), **_2D))
register(Method("fp", "fdm", "mfg_core.solvers:FPFDMSolver",
                "Finite differences: the discrete adjoint of the linearised HJB (exact mass, m >= 0).", **_2D))
register(Method("fp", "particle", "mfg_core.particles:FPParticleSolver",
                "Euler-Maruyama particles and a binned FFT kernel density estimate.",
                options=dict(num_particles=10_000, seed=0, bandwidth="scott", common_random_numbers=True),
                obstacles=False, **_2D))
register(Method("coupling", "damping", "mfg_core.rules:Damping",
                "Picard iteration, both fields damped with thetaUM after U* = HJB(M), M* = FP(U*).",
                options=dict(thetaUM=0.5), **_2D))
register(Method("coupling", "damping_gs", "mfg_core.rules:DampingGS",
                "Picard iteration, the FP solve sees the relaxed U_{k+1} = (1-thetaUM) U_k + thetaUM HJB(M_k).",
                options=dict(thetaUM=0.5), **_2D))
register(Method("coupling", "anderson", "mfg_core.rules:Anderson",
                "Type-II Anderson acceleration with safeguards (residual check, positivity).",
                options=_ANDERSON_OPTIONS, fp_defaults={"common_random_numbers": True},
                extra_fields=_anderson_fields, **_2D))
register(Method("coupling", "anderson_plain", "mfg_core.rules:AndersonPlain",
                "Type-II Anderson with every safeguard off, as the seed library ran it.",
                options={**_ANDERSON_OPTIONS, "residual_check": False, "positivity": False, "stall_check": False},
                fp_defaults={"common_random_numbers": False}, extra_fields=_anderson_fields, **_2D))


def _newton_fields(options: Mapping[str, Any], dim: int) -> int:
    # the linearisation (bands, their factorisations, the coefficients of dR_M/dU: about 30 fields),
    # the iterate, its residual and the trial point, and GMRES's Krylov basis (up to gmres_restart + 1);
    # in 2D also the per-level sparse LUs (measured 23 / 31 / 42 entries of L + U per node at 32^2 /
    # 64^2 / 128^2, 12 bytes each: up to about 70 fields)
    return 36 + (70 if dim == 2 else 0) + int(options["gmres_restart"]) + 1


register(Method("coupling", "newton", "mfg_core.newton:Newton",
                "Newton's method on the whole discrete system (exact Jacobian, line search, optional "
                "Picard/Anderson warm-up and continuation in sigma or the coupling); 1D and 2D (obstacles "
                "included), finite-difference FP; numpy, and numba in 1D (compiled time sweeps).",
                options=dict(thetaUM=0.5, system_tolerance=None, linear_solver="auto", direct_limit=10_000,
                             linear_rtol=1e-4, gmres_restart=50, linear_maxiter=500, line_search=True,
                             positivity_fraction=0.95, positivity_min_step=0.1, warmup_iterations=0,
                             warmup_method="damping", warmup_tolerance=1e-2, continuation="none",
                             continuation_start=None, continuation_steps=4, continuation_min_step=1.0 / 64,
                             stage_tolerance=1e-6, stage_iterations=15, picard_residual="final"),
                backends=("numpy", "numba"), dims=(1, 2), backends_by_dim={2: ("numpy",)},
                extra_fields=_newton_fields, fp_methods=("fdm",)))
