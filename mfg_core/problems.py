r"""Named benchmark problems: ``load(name, **overrides)`` and ``names()``.

Each problem is a :class:`ProblemSpec`: a description, default grid settings (any
:class:`~mfg_core.MFGProblem` argument), its own named parameters, a builder of the callables and,
where one exists, a closed-form solution. ``load`` accepts any ``MFGProblem`` argument and any of the
problem's own parameters as overrides and rejects anything else by name.

Problems with a closed form return a :class:`BenchmarkProblem` whose ``exact_solution()`` gives
``(U, M)`` on the problem's grid.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .problem import MFGProblem

_GRID_KEYS = ("xmin", "xmax", "Nx", "T", "Nt", "sigma", "boundary", "lam", "ymin", "ymax", "Ny")
_CALLABLE_KEYS = ("potential", "coupling", "coupling_dm", "terminal_cost", "m0", "obstacle")
MFG_KEYS = tuple(k for k in inspect.signature(MFGProblem.__init__).parameters
                 if k not in ("self", "name", "params"))


class ExactSolution(NamedTuple):
    U: np.ndarray
    M: np.ndarray


@dataclass(frozen=True)
class ProblemSpec:
    name: str
    description: str
    grid: dict[str, Any]
    params: dict[str, Any]
    build: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]
    exact: Callable[["BenchmarkProblem"], ExactSolution] | None = None


class BenchmarkProblem(MFGProblem):
    """An :class:`MFGProblem` built from a named :class:`ProblemSpec`."""

    def __init__(self, spec: ProblemSpec, callables_overridden: tuple[str, ...], **kwargs):
        self.spec = spec
        self.callables_overridden = callables_overridden
        super().__init__(**kwargs)

    @property
    def has_exact_solution(self) -> bool:
        return self.spec.exact is not None and not self.callables_overridden

    def exact_solution(self) -> ExactSolution:
        """Closed-form ``(U, M)`` on ``(t, x)``; raises ``ValueError`` if this problem has none."""
        if self.spec.exact is None:
            raise ValueError(f"problem {self.name!r} has no closed-form solution")
        if self.callables_overridden:
            raise ValueError(f"problem {self.name!r}: no closed form once {self.callables_overridden} "
                             "are overridden")
        return self.spec.exact(self)


# ---------------------------------------------------------------------------------------------
# lq: linear-quadratic, no m-coupling, Gaussian m0. u = P x^2/2 + r x + s, m Gaussian.
def _gaussian(mean: float, std: float) -> Callable[[np.ndarray], np.ndarray]:
    def m0(x):
        return np.exp(-0.5 * ((x - mean) / std) ** 2) / (std * np.sqrt(2 * np.pi))

    return m0


def _lq_build(p, grid):
    q, gw, xt = p["q"], p["g_weight"], p["x_target"]
    return {
        "potential": lambda x: 0.5 * q * x**2,
        "terminal_cost": lambda x: 0.5 * gw * (x - xt) ** 2,
        "m0": _gaussian(p["m0_mean"], p["m0_std"]),
    }


def _lq_exact(problem: BenchmarkProblem) -> ExactSolution:
    r"""Riccati system for ``u = P x^2/2 + r x + s`` (forward-time derivatives)

        P' = P^2/lam - q,   r' = P r / lam,   s' = r^2/(2 lam) - nu P,
        P(T) = g_weight, r(T) = -g_weight x_target, s(T) = g_weight x_target^2 / 2,

    and the Gaussian law of ``dX = -(P X + r)/lam dt + sigma dW``:
        mean' = -(P mean + r)/lam,   var' = -2 P var / lam + sigma^2.
    Integrated with DOP853 at rtol 1e-12: far below any discretisation error tested.
    """
    p = problem.params
    return ExactSolution(*_lq_1d(problem.t, problem.x, problem.lam, problem.nu, problem.sigma, problem.T,
                                 p["q"], p["g_weight"], p["x_target"], p["m0_mean"], p["m0_std"]))


def _lq_1d(t, x, lam, nu, sigma, T, q, gw, xt, mean0, std0):
    """``(U, M)`` of the 1D linear-quadratic problem on ``(t, x)`` (see :func:`_lq_exact`)."""
    from scipy.integrate import solve_ivp

    def back(t, y):
        P, r, s = y
        return [P * P / lam - q, P * r / lam, r * r / (2 * lam) - nu * P]

    sol_b = solve_ivp(back, (T, 0.0), [gw, -gw * xt, 0.5 * gw * xt**2], method="DOP853",
                      rtol=1e-12, atol=1e-13, dense_output=True)

    def fwd(t, y):
        P, r, _ = sol_b.sol(t)
        mean, var = y
        return [-(P * mean + r) / lam, -2 * P * var / lam + sigma**2]

    sol_f = solve_ivp(fwd, (0.0, T), [mean0, std0 ** 2], method="DOP853",
                      rtol=1e-12, atol=1e-13, dense_output=True)
    P, r, s = sol_b.sol(t)
    mean, var = sol_f.sol(t)
    U = 0.5 * P[:, None] * x[None, :] ** 2 + r[:, None] * x[None, :] + s[:, None]
    M = np.exp(-0.5 * (x[None, :] - mean[:, None]) ** 2 / var[:, None]) / np.sqrt(2 * np.pi * var[:, None])
    return U, M


# ---------------------------------------------------------------------------------------------
# stationary_log: log coupling, a stationary pair (ubar, mbar) exact for neumann and periodic.
def _stationary_parts(p, nu, lam):
    A, k = p["amplitude"], 2 * np.pi
    from scipy.special import i0

    Z = i0(A / (lam * nu))  # integral over one period of exp(-A cos(2 pi x)/(lam nu))
    ubar = lambda x: A * np.cos(k * x)  # noqa: E731
    mbar = lambda x: np.exp(-A * np.cos(k * x) / (lam * nu)) / Z  # noqa: E731
    return A, k, Z, ubar, mbar


def _stationary_build(p, grid):
    nu, lam = 0.5 * float(grid["sigma"]) ** 2, float(grid["lam"])
    A, k, Z, ubar, mbar = _stationary_parts(p, nu, lam)

    def potential(x):
        # V = -nu u'' + |u'|^2/(2 lam) - log(mbar)   so that  -nu u'' + |u'|^2/(2lam) = V + log(mbar)
        du = -A * k * np.sin(k * x)
        d2u = -A * k * k * np.cos(k * x)
        return -nu * d2u + du * du / (2 * lam) + A * np.cos(k * x) / (lam * nu) + np.log(Z)

    return {
        "potential": potential,
        "coupling": lambda m: np.log(np.maximum(m, 1e-300)),
        "coupling_dm": lambda m: 1.0 / np.maximum(m, 1e-300),
        "terminal_cost": ubar,
        "m0": mbar,
    }


def _stationary_exact(problem: BenchmarkProblem) -> ExactSolution:
    _, _, _, ubar, mbar = _stationary_parts(problem.params, problem.nu, problem.lam)
    shape = problem.shape
    return ExactSolution(np.broadcast_to(ubar(problem.x), shape).copy(),
                         np.broadcast_to(mbar(problem.x), shape).copy())


# ---------------------------------------------------------------------------------------------
def _congestion_build(p, grid):
    kappa, xt, gw = p["kappa"], p["x_target"], p["g_weight"]
    return {
        "coupling": lambda m: kappa * m,
        "coupling_dm": lambda m: np.full_like(m, kappa),
        "terminal_cost": lambda x: 0.5 * gw * (x - xt) ** 2,
        "m0": _gaussian(p["m0_mean"], p["m0_std"]),
    }


def _evacuation_build(p, grid):
    a, b = float(grid["xmin"]), float(grid["xmax"])
    kappa, G = p["kappa"], p["exit_weight"]
    return {
        # staying inside costs `stay_cost` per unit time; the exits are at both walls, so the
        # terminal cost is the (smooth) distance to the nearest exit.
        "potential": lambda x: np.full_like(x, p["stay_cost"]),
        "coupling": lambda m: kappa * m,
        "coupling_dm": lambda m: np.full_like(m, kappa),
        "terminal_cost": lambda x: G * np.sin(np.pi * (x - a) / (b - a)),
        "m0": _gaussian(p["m0_mean"], p["m0_std"]),
    }


# ---------------------------------------------------------------------------------------------
# 2D problems. Callables take (x, y) arrays; fields are (t, y, x).

def _lq2d_axis(p, a):
    """The 1D lq parameters of axis ``a`` ("x" or "y") of lq2d."""
    return dict(q=p[f"q_{a}"], gw=p[f"g_{a}"], xt=p[f"target_{a}"], mean0=p[f"mean_{a}"], std0=p[f"std_{a}"])


def _lq2d_build(p, grid):
    X, Y = _lq2d_axis(p, "x"), _lq2d_axis(p, "y")
    mx, my = _gaussian(X["mean0"], X["std0"]), _gaussian(Y["mean0"], Y["std0"])
    return {
        "potential": lambda x, y: 0.5 * X["q"] * x**2 + 0.5 * Y["q"] * y**2,
        "terminal_cost": lambda x, y: 0.5 * X["gw"] * (x - X["xt"]) ** 2 + 0.5 * Y["gw"] * (y - Y["xt"]) ** 2,
        "m0": lambda x, y: mx(x) * my(y),
    }


def _lq2d_exact(problem: BenchmarkProblem) -> ExactSolution:
    r"""Separable: with ``V`` and ``g`` sums of 1D lq terms and no coupling, the HJB splits
    (``|grad u|^2 = u_x^2 + u_y^2``) and the optimal drift of each coordinate depends on that
    coordinate only, so ``u = u_x(t, x) + u_y(t, y)`` and ``m = m_x(t, x) m_y(t, y)`` with each 1D pair
    from :func:`_lq_1d` (Riccati + Gaussian). Exact on R^2: compare away from the walls."""
    p, args = problem.params, (problem.lam, problem.nu, problem.sigma, problem.T)
    Ux, Mx = _lq_1d(problem.t, problem.x, *args, **_lq2d_axis(p, "x"))
    Uy, My = _lq_1d(problem.t, problem.y, *args, **_lq2d_axis(p, "y"))
    return ExactSolution(Uy[:, :, None] + Ux[:, None, :], My[:, :, None] * Mx[:, None, :])


def _stationary2d_parts(p, nu, lam):
    from scipy.special import i0

    k = 2 * np.pi
    A, B = p["amplitude_x"], p["amplitude_y"]
    Z = i0(A / (lam * nu)) * i0(B / (lam * nu))  # integral of exp(-ubar/(lam nu)) over the unit square
    ubar = lambda x, y: A * np.cos(k * x) + B * np.cos(k * y)  # noqa: E731
    mbar = lambda x, y: np.exp(-ubar(x, y) / (lam * nu)) / Z  # noqa: E731
    return A, B, k, Z, ubar, mbar


def _stationary2d_build(p, grid):
    nu, lam = 0.5 * float(grid["sigma"]) ** 2, float(grid["lam"])
    A, B, k, Z, ubar, mbar = _stationary2d_parts(p, nu, lam)

    def potential(x, y):
        # V = -nu Lap(ubar) + |grad ubar|^2/(2 lam) - log(mbar): (ubar, mbar) is a stationary pair
        ux, uy = -A * k * np.sin(k * x), -B * k * np.sin(k * y)
        lap = -A * k * k * np.cos(k * x) - B * k * k * np.cos(k * y)
        return -nu * lap + (ux * ux + uy * uy) / (2 * lam) + ubar(x, y) / (lam * nu) + np.log(Z)

    return {
        "potential": potential,
        "coupling": lambda m: np.log(np.maximum(m, 1e-300)),
        "coupling_dm": lambda m: 1.0 / np.maximum(m, 1e-300),
        "terminal_cost": ubar,
        "m0": mbar,
    }


def _stationary2d_exact(problem: BenchmarkProblem) -> ExactSolution:
    *_, ubar, mbar = _stationary2d_parts(problem.params, problem.nu, problem.lam)
    Y, X = problem.grid.mesh()
    shape = problem.shape
    return ExactSolution(np.broadcast_to(ubar(X, Y), shape).copy(), np.broadcast_to(mbar(X, Y), shape).copy())


def _evacuation2d_build(p, grid):
    kappa, G, ex, ey = p["kappa"], p["exit_weight"], p["exit_x"], p["exit_y"]
    cx, cy, R = p["crowd_x"], p["crowd_y"], p["crowd_radius"]
    px, py, hx, hy = p["pillar_x"], p["pillar_y"], p["pillar_half_width"], p["pillar_half_height"]
    eps2 = 0.05**2  # smooths the distance at the exit

    def m0(x, y):
        # a crowd in a disc: a smooth bump with compact support, so none of it sits in the pillar
        r2 = ((x - cx) ** 2 + (y - cy) ** 2) / (R * R)
        return np.maximum(1.0 - r2, 0.0) ** 2

    return {
        "potential": lambda x, y: np.full_like(x, p["stay_cost"]),
        "coupling": lambda m: kappa * m,
        "coupling_dm": lambda m: np.full_like(m, kappa),
        # the (smoothed) straight-line distance to the exit; the HJB finds the way around the pillar
        "terminal_cost": lambda x, y: G * np.sqrt((x - ex) ** 2 + (y - ey) ** 2 + eps2),
        "m0": m0,
        # (the slack keeps nodes on the pillar's edges in it on both sides, so the mask is symmetric)
        "obstacle": lambda x, y: (np.abs(x - px) <= hx + 1e-9) & (np.abs(y - py) <= hy + 1e-9),
    }


def _attractive_build(p, grid):
    c, a, x0 = p["strength"], p["m0_width"], p["m0_center"]
    return {
        "coupling": lambda m: -c * m,
        "coupling_dm": lambda m: np.full_like(m, -c),
        "m0": lambda x: np.exp(-a * (x - x0) ** 2),
    }


SPECS: dict[str, ProblemSpec] = {}


def register(spec: ProblemSpec) -> ProblemSpec:
    SPECS[spec.name] = spec
    return spec


register(ProblemSpec(
    "lq", "Linear-quadratic: V = q x^2/2, g = g_weight (x - x_target)^2/2, no m-coupling, Gaussian m0; "
          "closed form from a Riccati ODE (u quadratic, m Gaussian). Exact on R: compare away from walls.",
    grid=dict(xmin=-2.0, xmax=2.0, Nx=100, T=1.0, Nt=100, sigma=0.6, boundary="neumann", lam=1.0),
    params=dict(q=1.0, g_weight=0.5, x_target=0.5, m0_mean=-0.5, m0_std=0.25),
    build=_lq_build, exact=_lq_exact,
))
register(ProblemSpec(
    "stationary_log", "Log coupling F(m) = log m with V chosen so that u = A cos(2 pi x), "
                      "m = exp(-u/(lam nu))/Z is an exact stationary pair (neumann and periodic).",
    grid=dict(xmin=0.0, xmax=1.0, Nx=100, T=0.5, Nt=100, sigma=0.5, boundary="neumann", lam=1.0),
    params=dict(amplitude=0.05),
    build=_stationary_build, exact=_stationary_exact,
))
_CONGESTION = register(ProblemSpec(
    "congestion", "Quick start: quadratic Hamiltonian, congestion F(m) = kappa m on [0, 1], Neumann, "
                  "Gaussian bump at m0_mean, terminal cost g_weight (x - x_target)^2/2 moves the crowd.",
    grid=dict(xmin=0.0, xmax=1.0, Nx=100, T=1.0, Nt=100, sigma=0.5, boundary="neumann", lam=1.0),
    params=dict(kappa=1.0, x_target=0.75, g_weight=4.0, m0_mean=0.25, m0_std=0.08),
    build=_congestion_build,
))
register(dataclasses.replace(
    _CONGESTION, name="congestion_strong",
    description="congestion with strong coupling (kappa = 5): the Picard map's dominant eigenvalue is "
                "large and negative, so thetaUM = 0.5 damping does not converge.",
    params={**_CONGESTION.params, "kappa": 5.0},
))
register(ProblemSpec(
    "evacuation", "Crowd motion: a crowd starting at m0_mean leaves a room [0, 1] through exits at both "
                  "walls; the terminal cost is the distance to the nearest exit, staying costs stay_cost, "
                  "congestion kappa m spreads the crowd over the two exits.",
    grid=dict(xmin=0.0, xmax=1.0, Nx=100, T=1.0, Nt=100, sigma=0.4, boundary="neumann", lam=1.0),
    params=dict(kappa=0.5, exit_weight=1.0, stay_cost=0.0, m0_mean=0.45, m0_std=0.1),
    build=_evacuation_build,
))


register(ProblemSpec(
    "lq2d", "2D linear-quadratic, separable: V and g sums of 1D lq terms per axis (q_a, g_a, target_a), "
            "no m-coupling, m0 a product of Gaussians (mean_a, std_a); u is the sum and m the product of the "
            "1D closed forms. Exact on R^2: compare away from the walls.",
    grid=dict(xmin=-2.0, xmax=2.0, Nx=32, ymin=-2.0, ymax=2.0, Ny=32, T=1.0, Nt=32, sigma=0.6,
              boundary="neumann", lam=1.0),
    params=dict(q_x=0.0, g_x=0.5, target_x=0.5, mean_x=0.25, std_x=0.25,
                q_y=0.5, g_y=0.5, target_y=-0.25, mean_y=-0.5, std_y=0.25),
    build=_lq2d_build, exact=_lq2d_exact,
))
register(ProblemSpec(
    "stationary_log2d", "2D log coupling F(m) = log m with V chosen so that u = A cos(2 pi x) + B cos(2 pi y), "
                        "m = exp(-u/(lam nu))/Z is an exact stationary pair on the unit square (neumann and "
                        "periodic).",
    grid=dict(xmin=0.0, xmax=1.0, Nx=32, ymin=0.0, ymax=1.0, Ny=32, T=0.5, Nt=8, sigma=0.5,
              boundary="neumann", lam=1.0),
    params=dict(amplitude_x=0.05, amplitude_y=0.03),
    build=_stationary2d_build, exact=_stationary2d_exact,
))
register(ProblemSpec(
    "evacuation2d", "Crowd motion in a room [0, 1]^2: a crowd (a disc of radius crowd_radius at crowd_x, crowd_y) "
                    "heads for an exit at (exit_x, exit_y) on the right wall (terminal cost exit_weight x the "
                    "distance to it) around a pillar (an obstacle: no flux through its walls), with congestion "
                    "kappa m; staying costs stay_cost per unit time.",
    grid=dict(xmin=0.0, xmax=1.0, Nx=40, ymin=0.0, ymax=1.0, Ny=40, T=1.0, Nt=40, sigma=0.2,
              boundary="neumann", lam=1.0),
    params=dict(kappa=0.5, exit_weight=1.0, stay_cost=0.0, exit_x=1.0, exit_y=0.5, crowd_x=0.25, crowd_y=0.5,
                crowd_radius=0.18, pillar_x=0.6, pillar_y=0.5, pillar_half_width=0.06, pillar_half_height=0.15),
    build=_evacuation2d_build,
))


register(ProblemSpec(
    "attractive_quickstart",
    "The peer library's quick-start problem in this convention: attractive coupling F(m) = -strength m "
    "(agents like crowds), no potential, g = 0, m0 ~ exp(-m0_width (x - m0_center)^2) on [0, 1], Neumann, "
    "sigma 0.1, T = 1, Nx = 50, Nt = 20. An attractive coupling need not have a unique equilibrium: "
    "damping and Anderson converge to different ones (one peak / two peaks).",
    grid=dict(xmin=0.0, xmax=1.0, Nx=50, T=1.0, Nt=20, sigma=0.1, boundary="neumann", lam=1.0),
    params=dict(strength=0.1, m0_width=5.0, m0_center=0.5),
    build=_attractive_build,
))

#: named problems whose coupling is monotone (repulsive, ``F`` nondecreasing in ``m``; no coupling
#: counts): the Lasry-Lions condition, under which the equilibrium is unique
MONOTONE = ("lq", "stationary_log", "congestion", "congestion_strong", "evacuation", "lq2d", "stationary_log2d",
            "evacuation2d")


def names() -> list[str]:
    """Names of the registered problems."""
    return list(SPECS)


def _spec(name: str) -> ProblemSpec:
    if name not in SPECS:
        raise ValueError(f"unknown problem {name!r}; known problems: {names()}")
    return SPECS[name]


def _ones(x, *_):
    """A flat density for validating a grid before the builders run (``(x)`` or ``(x, y)``)."""
    return np.ones_like(x)


def load(name: str, **overrides: Any) -> BenchmarkProblem:
    """Build the named problem, with ``overrides`` of grid settings, callables or named parameters.

    >>> load("congestion", Nx=200, kappa=2.0, boundary="periodic")  # doctest: +SKIP
    """
    spec = _spec(name)
    allowed = set(MFG_KEYS) | set(spec.params)
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for problem {name!r}; allowed: grid/problem "
                         f"settings {list(MFG_KEYS)} and the problem's parameters {list(spec.params)}")
    params = {**spec.params, **{k: v for k, v in overrides.items() if k in spec.params}}
    for k, v in params.items():
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not np.isfinite(v):
            raise ValueError(f"problem parameter {k!r} of {name!r} must be a finite number, got {v!r}")
        params[k] = float(v)
    grid = {**spec.grid, **{k: v for k, v in overrides.items() if k in _GRID_KEYS}}
    # validate the grid first, so that an error names e.g. sigma rather than failing inside a builder
    MFGProblem(**grid, m0=_ones)
    fns = spec.build(params, grid)
    overridden = tuple(k for k in _CALLABLE_KEYS if k in overrides)
    fns.update({k: overrides[k] for k in overridden})
    return BenchmarkProblem(spec, overridden, **grid, **fns, name=name, params=params)
