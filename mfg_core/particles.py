r"""Particle (Monte-Carlo) Fokker-Planck solver: Euler-Maruyama particles + a binned FFT KDE.

The FP equation ``m_t - nu m_xx - (m u_x / lam)_x = 0`` is the law of the controlled diffusion

    dX = -u_x(t, X) / lam dt + sigma dW,      X(0) ~ m0,    (nu = sigma^2 / 2)

reflected at Neumann walls, wrapped if periodic. ``N`` particles follow the Euler-Maruyama scheme

    X^{n+1} = fold( X^n - (dt/lam) I[u_x^n](X^n) + sigma sqrt(dt) Z^n ),    Z^n ~ N(0, I_N),

where ``u_x^n`` is the centred difference ``(U[n, i+1] - U[n, i-1]) / (2 dx)`` of the given value
function at the nodes (0 on a Neumann wall, where ``u_x = 0`` is the boundary condition; wrapped if
periodic), ``I[.]`` its piecewise-linear interpolant, and ``fold`` reflects into ``[xmin, xmax]``
(modulo ``2 (xmax - xmin)``, exact for any step size) or wraps modulo the period. The density
``M[n]`` for ``n >= 1`` is the Gaussian KDE of the particles on the grid (:mod:`mfg_core.kde`:
linear binning + FFT, reflected/wrapped kernel), normalised to discrete mass 1 in the problem's
quadrature. ``M[0]`` is ``problem.m_init`` itself, the law the particles are drawn from: the KDE of
the initial sample would only add smoothing bias and noise at ``t = 0`` (and the HJB step never uses
``M[0]``).

Initial particles are the inverse-CDF transform of uniforms through the piecewise-linear
interpolant of ``m_init`` (exact sampling of that density: quadratic CDF inside each cell).

Random numbers are drawn in numpy (``np.random.default_rng(seed)``: the uniforms for the initial
particles, then the standard normals step by step) and handed to the backend kernel, so every
backend integrates the same paths and their densities agree to round-off. With
``common_random_numbers=True`` each ``solve`` restarts the generator from ``seed`` (the same
particles and increments every call: the map ``U -> M`` is deterministic, which a fixed-point
iteration needs to converge); with ``False`` a generator seeded once at construction keeps drawing
fresh numbers in every call. Memory is bounded by drawing the increments in chunks of whole time
steps, at most ``2**23`` numbers (64 MB) or one step if ``N`` is larger; the chunks continue one
stream, so the result does not depend on the chunking.

The error of ``M`` is the Monte-Carlo/KDE trade-off: bias ``~ h^2 m''/2`` (plus ``dx^2/6`` binning
smoothing and the ``O(dt)`` weak error of Euler-Maruyama) and standard deviation
``~ sqrt(m / (2 sqrt(pi) N h))``; Scott's rule ``h ~ N^(-1/5)`` balances them at ``O(N^(-2/5))``.

Two dimensions (every backend; the numpy reference in ``backends/numpy/particles2d.py``). The same scheme per axis on the rectangle: ``dX = -grad u / lam dt +
sigma dW`` in R^2, the nodal gradient by centred differences along each axis (the normal component
0 on a Neumann wall), interpolated bilinearly, each coordinate reflected or wrapped by its axis'
rule, and the 2D binned FFT KDE (:mod:`mfg_core.backends.numpy.particles2d`: bilinear binning,
product Gaussian, mirrored on Neumann axes, wrapped on periodic ones; a bandwidth per axis, Scott
``N^(-1/6)`` / Silverman factors for d = 2). Initial particles are exact samples of the bilinear
interpolant of ``m_init``: a cell with probability its mass, then the ``y`` fraction from the cell's
(linear) marginal and the ``x`` fraction from the (linear) conditional, each by the 1D quadratic
inversion. ``diagnostics["bandwidth"]`` is ``(Nt, 2)``, ``(h_y, h_x)``; ``reflected_fraction``
counts particles that crossed a wall or a periodic seam (``wrapped_fraction`` if both axes are
periodic). A problem with an obstacle is refused: particles reflect only at the rectangle's walls.

Common random numbers on an attractive crowd (measured)
-------------------------------------------------------
On ``attractive_quickstart`` (F = -0.1 m, sigma 0.1, Nx = 50, Nt = 20) with 50,000 particles, seed 0
and common random numbers, damped Picard (thetaUM 0.5) brings the residual down to 9.1e-4 (iteration
133) and then up again to 2.4e-2 and on oscillating, although the map is deterministic -- and
continuous: positions, binning and the std-based bandwidth all depend continuously on ``U``. It is
not noise but the fixed-point iteration itself:

* the damped iterate drifts along one slow direction, the concentrated crowd's peak moving sideways
  (``M_{k+1} - M_k`` is a dipole centred on the peak at the last times), and the ratio of successive
  steps along it climbs from 0.98 to 1.02 per iteration: the damped map stops contracting there and
  then expands. Damping cannot converge to a fixed point where the map's derivative has an eigenvalue
  above 1, whatever thetaUM (``1 - thetaUM + thetaUM lam > 1``); the loop's reason now says so when
  a residual runs away from its minimum (:meth:`mfg_core.fixed_point.FixedPointLoop._runaway_note`).
* The finite-difference map has no such trouble at its own one-peak equilibrium: the top eigenvalue
  of its derivative there is 0.44 (damped multiplier 0.72, exactly damping's observed rate); its
  two-peak equilibrium has 3.75, unreachable by damping, which is why Anderson (a secant method)
  finds that one and damping the other (``tests/core/test_newton.py``).
* What decides is how the KDE smooths the crowd. Scott's rule re-estimated from the concentrating
  crowd gives ``h = 0.0028 - 0.0032`` (dx/7 - dx/6) at the late times; a *fixed* ``h = 0.003``
  reproduces the run above exactly (minimum 9.2e-4 at 131, then rising), ``h = 0.01`` converges
  slowly (7e-5 at iteration 200), ``h = 0.05`` converges at 50,000 particles (1e-4 at ~90) but not
  for the 10,000- or 30,000-particle samples (the multiplier sits within 1 % of 1, on a side that
  depends on the sample), and ``h = 0.1`` converges for every sample tried (1e-4 at iteration 27
  with 50,000 particles, 87 with 10,000). The price is smoothing bias: the crowd's peak is 3.9
  instead of 15.6 (Scott) and 28 (FDM).
* Anderson does not rescue it: every variant tried (depth 2-10, beta 1, restart on reject,
  residual check off) stalls at 4e-4 - 1e-2 with many rejected points. At one such iterate the
  particle map's derivative along a fixed direction is 47 for perturbations >= 1e-4 but 414 for
  perturbations <= 1e-6 (single particles near the divide between two wells of ``U`` move 3e3 times
  the perturbation): below that scale secants do not describe the map.

So: with common random numbers on an attractive problem, give the particle solver a numeric
bandwidth that smooths the crowd (``bandwidth=0.1`` here) -- damping then converges to 1e-4 -- or
solve the finite-difference system (``newton`` with a damped warm-up converges in 7 Newton steps).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from . import validation
from .backends import Backend
from .errors import NonFiniteError
from .kde import bandwidth_factor, check_bandwidth
from .problem import MFGProblem
from .solvers import KernelSolver, check_field, check_problem

__all__ = ["FPParticleSolver", "sample_piecewise_linear", "sample_bilinear", "grid_gradient", "grid_gradient_2d"]

#: the Brownian increments are drawn (and handed to the kernel) in chunks of at most this many numbers
CHUNK_NUMBERS = 2**23


def sample_piecewise_linear(density: np.ndarray, xmin: float, dx: float, periodic: bool,
                            uniforms: np.ndarray) -> np.ndarray:
    """Map ``uniforms`` in [0, 1) to samples of the piecewise-linear density through its exact CDF.

    Neumann: the cells are ``[x_j, x_{j+1}]``, ``j < K-1``; periodic: also the cell from the last
    node to ``xmin + K dx`` (the image of node 0). Inside a cell with end values ``a, b`` the mass up
    to the fraction ``f`` is ``dx (a f + (b - a) f^2 / 2)``; the root is taken in the cancellation-free
    form ``f = 2 q / (a + sqrt(a^2 + 2 (b - a) q))``, ``q = mass / dx``.
    """
    m = np.asarray(density, dtype=np.float64)
    K = m.shape[0]
    left = m if periodic else m[:-1]
    right = np.roll(m, -1) if periodic else m[1:]
    cell = 0.5 * dx * (left + right)
    cdf = np.cumsum(cell)
    r = np.asarray(uniforms, dtype=np.float64) * cdf[-1]
    # side="right" never picks a cell of zero mass: it needs cdf[j] > r >= cdf[j-1]
    j = np.minimum(np.searchsorted(cdf, r, side="right"), cell.size - 1)
    q = (r - (cdf[j] - cell[j])) / dx
    a, b = left[j], right[j]
    disc = np.maximum(a * a + 2.0 * (b - a) * q, 0.0)
    den = a + np.sqrt(disc)
    f = np.divide(2.0 * q, den, out=np.zeros_like(q), where=den > 0)
    X = xmin + (j + np.clip(f, 0.0, 1.0)) * dx
    if periodic:
        X = np.where(X >= xmin + K * dx, X - K * dx, X)
    return X


def _linear_fraction(a: np.ndarray, b: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The fraction ``f`` in [0, 1] where the linear density from ``a`` to ``b`` on [0, 1] has mass
    ``u`` times its total (cancellation-free root, as :func:`sample_piecewise_linear`)."""
    q = u * 0.5 * (a + b)
    disc = np.maximum(a * a + 2.0 * (b - a) * q, 0.0)
    den = a + np.sqrt(disc)
    f = np.divide(2.0 * q, den, out=np.zeros_like(q), where=den > 0)
    return np.clip(f, 0.0, 1.0)


def sample_bilinear(density: np.ndarray, lo: tuple[float, float], h: tuple[float, float],
                    periodic: tuple[bool, bool], uniforms: np.ndarray) -> np.ndarray:
    """Map ``uniforms`` ``(N, 3)`` in [0, 1) to exact samples ``(N, 2)``, columns ``(y, x)``, of the
    bilinear interpolant of ``density`` ``(Ky, Kx)``; ``lo``, ``h``, ``periodic`` are ``(y, x)``
    pairs (a periodic axis has the extra cell from its last node to the image of node 0)."""
    m = np.asarray(density, dtype=np.float64)
    if periodic[0]:
        m = np.concatenate([m, m[:1]], axis=0)
    if periodic[1]:
        m = np.concatenate([m, m[:, :1]], axis=1)
    a, b, c, d = m[:-1, :-1], m[:-1, 1:], m[1:, :-1], m[1:, 1:]  # corners (y0 x0, y0 x1, y1 x0, y1 x1)
    cell = 0.25 * (a + b + c + d)
    cdf = np.cumsum(cell.ravel())
    u = np.asarray(uniforms, dtype=np.float64)
    r = u[:, 0] * cdf[-1]
    k = np.minimum(np.searchsorted(cdf, r, side="right"), cdf.size - 1)  # never a cell of zero mass
    a, b, c, d = (z.ravel()[k] for z in (a, b, c, d))
    fy = _linear_fraction(a + b, c + d, u[:, 1])  # the cell's marginal in y is linear
    fx = _linear_fraction((1.0 - fy) * a + fy * c, (1.0 - fy) * b + fy * d, u[:, 2])
    jy, jx = np.divmod(k, cell.shape[1])
    Y = lo[0] + (jy + fy) * h[0]
    X = lo[1] + (jx + fx) * h[1]
    K = density.shape
    if periodic[0]:
        Y = np.where(Y >= lo[0] + K[0] * h[0], Y - K[0] * h[0], Y)
    if periodic[1]:
        X = np.where(X >= lo[1] + K[1] * h[1], X - K[1] * h[1], X)
    return np.column_stack([Y, X])


def grid_gradient_2d(U: np.ndarray, dy: float, dx: float, periodic: tuple[bool, bool]) -> np.ndarray:
    """``(u_y, u_x)`` by centred differences on ``(..., Ky, Kx)``: shape ``(..., 2, Ky, Kx)``
    (the normal component 0 on a Neumann wall, wrapped on a periodic axis)."""
    gx = grid_gradient(U, dx, periodic[1])
    gy = np.swapaxes(grid_gradient(np.swapaxes(U, -1, -2), dy, periodic[0]), -1, -2)
    return np.stack([gy, gx], axis=-3)


def grid_gradient(U: np.ndarray, dx: float, periodic: bool) -> np.ndarray:
    """Centred-difference ``u_x`` at the nodes along the last axis (0 on Neumann walls, wrapped if periodic)."""
    if periodic:
        return (np.roll(U, -1, axis=-1) - np.roll(U, 1, axis=-1)) / (2.0 * dx)
    G = np.zeros_like(U)
    G[..., 1:-1] = (U[..., 2:] - U[..., :-2]) / (2.0 * dx)
    return G


class FPParticleSolver(KernelSolver):
    """Particle FP solver (see the module docstring): ``solve(U) -> M`` with ``M[0] = problem.m_init``.

    Parameters
    ----------
    problem : the :class:`~mfg_core.MFGProblem`.
    num_particles : number of particles ``N >= 1`` (``>= 2`` with a bandwidth rule).
    seed : seed of ``np.random.default_rng``.
    backend : ``"numpy" | "numba" | "jax" | "torch"`` or a :class:`~mfg_core.backends.Backend`.
    bandwidth : ``"scott"``, ``"silverman"`` (re-evaluated from the particles at every step) or a
        fixed positive number.
    common_random_numbers : reuse the same initial particles and increments in every ``solve``.

    After a solve: ``last_seconds`` (wall time of the kernel) and ``diagnostics`` -- ``mass`` (Nt+1,)
    the discrete mass of every ``M[n]``; ``reflected_fraction`` (Neumann) or ``wrapped_fraction``
    (periodic), (Nt,) the fraction of particles that crossed the boundary in each step;
    ``bandwidth`` (Nt,) the bandwidth of each KDE; ``num_particles`` counted at the end.
    """

    def __init__(self, problem: MFGProblem, num_particles: int = 10_000, seed: int = 0,
                 backend: str | Backend | None = "numpy", bandwidth: str | float = "scott",
                 common_random_numbers: bool = True):
        check_problem(problem)
        if problem.dim == 2 and problem.grid.obstacle is not None:
            raise ValueError("FPParticleSolver: the problem has an obstacle, and particles reflect only at the "
                             "walls of the rectangle (not at obstacles); solve it with fp='fdm' (FPFDMSolver)")
        num_particles = validation.integer("num_particles", num_particles, 1)
        seed = validation.integer("seed", seed, 0)
        bw = check_bandwidth(bandwidth)
        if isinstance(bw, str) and num_particles < 2:
            raise ValueError(f"bandwidth={bw!r} estimates the spread of the particles and needs "
                             f"num_particles >= 2, got {num_particles}; give a numeric bandwidth")
        self.num_particles = num_particles
        self.seed = seed
        self.bandwidth = bw
        self.common_random_numbers = validation.flag("common_random_numbers", common_random_numbers)
        self._rng = np.random.default_rng(self.seed)
        self.diagnostics: dict[str, Any] = {}
        super().__init__(problem, backend)

    def _build(self, backend):
        h, scale = self._bandwidth_args()
        return backend.make_particle_sweep(self.problem.scheme, bandwidth=h, scale_by_std=scale)

    # ------------------------------------------------------------------------------------------
    def _bandwidth_args(self) -> tuple[float, bool]:
        if isinstance(self.bandwidth, str):
            return bandwidth_factor(self.bandwidth, self.num_particles, self.problem.dim), True
        return float(self.bandwidth), False

    def _run(self, U: np.ndarray, rng: np.random.Generator):
        p = self.problem
        N = self.num_particles
        if p.dim == 1:
            X = sample_piecewise_linear(p.m_init, p.xmin, p.dx, p.periodic, rng.random(N))
            grad = grid_gradient(U[:-1], p.dx, p.periodic)
            per_particle, h_shape = (), ()
        else:
            ay, ax = p.grid.axes
            X = sample_bilinear(p.m_init, (ay.lo, ax.lo), (ay.spacing, ax.spacing), p.grid.periodic,
                                rng.random((N, 3)))
            grad = grid_gradient_2d(U[:-1], ay.spacing, ax.spacing, p.grid.periodic)
            per_particle, h_shape = (2,), (2,)  # one normal per coordinate; a bandwidth per axis
        M = np.empty(p.shape)
        M[0] = p.m_init
        crossed = np.zeros(p.Nt, dtype=np.int64)
        hs = np.full((p.Nt, *h_shape), np.nan)
        # equal chunks, so that a jit backend compiles at most two shapes
        chunks = math.ceil(p.Nt * N * (2 if per_particle else 1) / CHUNK_NUMBERS)
        size = math.ceil(p.Nt / chunks)
        host = self.backend.to_host
        for start in range(0, p.Nt, size):
            stop = min(start + size, p.Nt)
            noise = rng.standard_normal((stop - start, N, *per_particle))
            X, Mc, cc, hc = self._kernel(X, noise, grad[start:stop])
            M[start + 1:stop + 1] = np.asarray(host(Mc), dtype=np.float64)
            crossed[start:stop] = np.asarray(host(cc))
            hs[start:stop] = np.asarray(host(hc), dtype=np.float64)
        return np.asarray(host(X), dtype=np.float64), M, crossed, hs

    def _inside(self, X: np.ndarray) -> tuple[bool, str]:
        """Are the final positions finite and inside the domain? (and the domain, for the message)"""
        p = self.problem
        if not np.all(np.isfinite(X)):
            return False, ""
        if p.dim == 1:
            hi = p.xmin + (p.Nx * p.dx)
            return bool(X.min() >= p.xmin and X.max() <= hi), f"[{p.xmin}, {hi}]"
        ok, parts = True, []
        for k, a in enumerate(p.grid.axes):
            hi = a.lo + a.intervals * a.spacing
            ok &= bool(X[:, k].min() >= a.lo and X[:, k].max() <= hi)
            parts.append(f"{a.name} in [{a.lo}, {hi}]")
        return ok, ", ".join(parts)

    def solve(self, U: np.ndarray) -> np.ndarray:
        """Move the particles in the drift ``-U_x / lam``; returns ``M`` of shape ``problem.shape``."""
        p = self.problem
        U = check_field("U", U, p.shape)
        rng = np.random.default_rng(self.seed) if self.common_random_numbers else self._rng
        start = time.perf_counter()
        X, M, crossed, hs = self._run(U, rng)
        self.last_seconds = time.perf_counter() - start
        if not np.all(np.isfinite(M)):
            raise NonFiniteError(f"particle FP solve on backend {self.backend.name!r} produced NaN or inf "
                                   f"(bandwidths {hs.min():.3g}..{hs.max():.3g})")
        # the kernels neither create nor lose particles, and fold them all into the domain
        if X.shape[0] != self.num_particles:
            raise RuntimeError(f"particle count changed: {X.shape[0]} != {self.num_particles}")
        inside, domain = self._inside(X)
        if not inside:
            raise RuntimeError(f"particles left the domain {domain} (backend {self.backend.name!r})")
        label = "wrapped_fraction" if p.periodic else "reflected_fraction"
        self.diagnostics = {
            "mass": p.mass(M),
            label: crossed / self.num_particles,
            "bandwidth": hs,
            "num_particles": int(X.shape[0]),
            "final_positions": X,
        }
        return M

    def solve_native(self, U):
        """:meth:`solve` for the fixed-point loop's arrays: the particles' drift and density are host
        arrays (the sweep's chunks come back to the host between chunks anyway)."""
        return self.fields.asarray(self.solve(self.fields.to_host(U)))

    def warmup(self) -> float:
        """Run one sweep on this problem's shape (jit compilation); returns the seconds taken.

        Uses its own generator, so it does not advance the stream of a ``common_random_numbers=False``
        solver, and leaves ``diagnostics`` and ``last_seconds`` alone.
        """
        start = time.perf_counter()
        self._run(np.zeros(self.problem.shape), np.random.default_rng(self.seed))
        return time.perf_counter() - start

    def __repr__(self) -> str:
        return (f"FPParticleSolver(N={self.num_particles}, seed={self.seed}, backend={self.backend.name!r}, "
                f"bandwidth={self.bandwidth!r}, common_random_numbers={self.common_random_numbers})")
