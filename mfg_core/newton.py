r"""Newton's method on the whole discrete MFG system: the coupling method ``newton`` (1D and 2D).

The system is the one the Picard solvers solve, built from the same operators
(:mod:`mfg_core.backends.numpy.fdm`: ``upwind``, ``jacobian_bands``, ``transpose_bands``,
``solve_tridiagonal``), so its solution is the Picard fixed point (Achdou & Capuzzo-Dolcetta 2010;
Achdou & Perez 2012). Newton solves it for all unknowns at once. This module states the 1D system
(:class:`DiscreteSystem`) and everything dimension-free (the linear solvers, the rule);
:mod:`mfg_core.newton2d` states the 2D one (5-point stencil, obstacles) with the same interface, and
:func:`discrete_system` picks by the grid's dimension.

Unknowns and rows
-----------------
``U^0 .. U^{Nt-1}`` and ``M^1 .. M^{Nt}`` (``U^{Nt} = g`` and ``M^0 = m0`` are data), ``N`` nodes
each. For ``n = 0 .. Nt-1``, with ``J^n = I + dt A(U^n)`` the HJB Newton matrix of the kernels
(tridiagonal; periodic corners) and ``s`` a coupling scale (1 except during continuation):

    HJB row n:  R_U^n = U^n - U^{n+1} + dt ( -nu Lap_h U^n + H_h(U^n) - V - s F(M^{n+1}) )
    FP row n:   R_M^n = W^{-1} (J^n)^T W M^{n+1} - M^n              (W = diag(quadrature weights))

``R_U^n = 0`` is the implicit HJB step the HJB sweep solves; ``R_M^n = 0`` is the FP step
``(I + dt A(U^n))^T mu^{n+1} = mu^n`` in mass variables ``mu = W M``, divided by the weights so that
both residuals are dt-scaled and in the units of their field (u and m). ``max|F|`` (the history's
``newton_residual``) is the largest entry of both.

Ordering (banded in time)
-------------------------
Time level ``n`` holds the pair ``(U^n, M^{n+1})``, interleaved node by node,

    z[2 (n N + i)] = U^n_i,        z[2 (n N + i) + 1] = M^{n+1}_i,

and the residual rows in the same order (HJB row ``(n, i)`` at ``2 (n N + i)``, FP row at
``2 (n N + i) + 1``), so every diagonal entry of the Jacobian is that of its own equation and the
bandwidth is ``2N + O(1)``.

Jacobian (block tridiagonal in time, blocks ``2N x 2N``, each sparse)
--------------------------------------------------------------------
Row block ``n`` couples level ``n`` with ``n - 1`` (FP rows: ``-I`` on ``M^n``) and with ``n + 1``
(HJB rows: ``-I`` on ``U^{n+1}``). Inside level ``n``:

* ``A_UU = dR_U^n / dU^n = J^n``: tridiagonal, the HJB kernels' exact Newton Jacobian (``H_h`` is C^1);
* ``A_UM = dR_U^n / dM^{n+1} = -dt s diag(F'(M^{n+1}))``: ``problem.dF``, i.e. ``coupling_dm``;
* ``A_MM = dR_M^n / dM^{n+1} = W^{-1} (J^n)^T W``: the adjoint FP block;
* ``A_MU = dR_M^n / dU^n``: ``J^n`` depends on ``U^n`` through the upwind coefficients
  ``a^+_i = min(D^+ u_i, 0) / lam`` and ``a^-_i = max(D^- u_i, 0) / lam``, in which its bands are
  affine; with ``mu = W M^{n+1}``

      d (R_M^n)_c / d U^n_l = w_c^{-1} sum_i mu_i ( dJ_{ic}/da^+_i  da^+_i/du_l + dJ_{ic}/da^-_i  da^-_i/du_l ).

  The coefficients are piecewise linear, with kinks where ``D^+ u_i = 0`` or ``D^- u_i = 0``. The
  derivative taken is the one-sided one of the branch the residual evaluates: ``da^+_i/du`` is
  nonzero only where ``D^+ u_i < 0`` and ``da^-_i/du`` only where ``D^- u_i > 0`` (at a kink the
  residual is on the zero branch, and so is the derivative). The band derivatives ``dJ/da^\pm`` are
  read off ``jacobian_bands`` itself (affine in ``a^\pm``), so the Neumann ghost folding is the
  kernels' own. Row ``c`` reaches ``U_l`` for ``|l - c| <= 2``.

A Jacobian row has at most 11 entries. Mass: the columns of ``J^T`` sum to 1 for every ``U``, so
``sum(W R_M^n) = mass(M^{n+1}) - mass(M^n)`` and its derivative in ``U`` vanishes; a Newton step of
any length keeps the masses of an iterate whose masses are 1.

Linear solves (``linear_solver``)
---------------------------------
``"direct"``: the assembled sparse Jacobian (``scipy.sparse`` CSC in the ordering above) factorised
by SuperLU (``scipy.sparse.linalg.splu``); one linear "iteration" per Newton step. Its cost grows
like that of a 2D sparse factorisation (``(N Nt)^{3/2}``: measured 1.3 s at ``N = Nt = 200``,
12.6 s and 67-80 million factor entries at 400, whatever SuperLU's ordering), so for larger grids:

``"gmres"``: the same Newton system, reduced to ``dM`` by block elimination. ``A_UU`` is block
bidiagonal (backward in time: ``J^n dU^n = r^n + dU^{n+1}``) and ``A_MM`` block bidiagonal
(forward: the FP sweep with the adjoint blocks), each solved by one tridiagonal solve per time
level (the backend's ``make_block_sweeps``: LAPACK per level from Python on numpy, the whole time
loop compiled on numba; the rest of Newton is numpy on both). With ``back = A_UU^{-1}`` and
``fwd = A_MM^{-1}``, the system is
``(I - K) dM = fwd(r_M - A_MU back(r_U))``, ``K = fwd A_MU back A_UM`` -- ``K`` is the derivative
of the Picard map, whose eigenvalues cluster at 0 (the HJB and FP solves smooth) -- solved by GMRES
(:func:`gmres`: restarted, relative tolerance ``eta_k = min(linear_rtol, max(max|F_k|, 0.1 tol /
max|F_k|))``: ``max|F_k|`` keeps Newton quadratic, and no step is solved beyond what takes the next
residual to a tenth of the target ``tol``); ``linear_iterations`` counts its inner iterations
(measured 5-7 per Newton step on ``congestion`` at every N, 20-45 at sigma = 0.02 - 0.1). One
iteration costs one tridiagonal solve per time level forward and one backward (LAPACK
``gttrf`` once per Newton step, ``gttrs`` per solve): at ``N = Nt = 400`` a Newton step takes about
0.2 s against 1.3 s for one SuperLU factorisation at ``N = Nt = 200``.
Both solvers end with ``dU = back(r_U - A_UM dM)`` and ``dM = fwd(r_M - A_MU dU)``: the FP rows of
the step hold to round-off, which keeps the mass exact. ``"auto"`` (default) takes ``"direct"`` up
to ``direct_limit`` unknowns (default 10,000: ``N = Nt`` about 70; exact solves, the cleanest
quadratic convergence) and ``"gmres"`` above; in 2D it always takes ``"gmres"``, with ``back``
and ``fwd`` solving each level by a sparse LU of ``J^n`` factorised once per Newton step (a
space-time LU of a 2D grid is a 3D-like factorisation: on ``lq2d`` with ``F(m) = m``, ``Nt = N/2``,
"direct" takes 0.48 / 6.5 / 34 s at N = 16 / 24 / 32 against 0.03 / 0.07 / 0.14 s for "gmres",
the same Newton steps).

Globalisation
-------------
* **Line search** on the residual norm ``||F||_2``: backtracking (halving) from the largest
  admissible step until ``||F(z + a d)|| <= (1 - 1e-4 a) ||F(z)||``; ``line_search_step`` records
  ``a``. No decrease down to ``a = 2^-12`` is a failed step.
* **Positivity**: if ``M + d_M`` has negative entries, the step is damped to
  ``positivity_fraction`` times the largest step keeping ``M >= 0`` (``step_bound``); where that
  bound is below ``positivity_min_step`` (a push on densities that are nearly zero), the trial points
  of the line search are projected instead (negative densities set to 0, each time slice rescaled
  to mass 1: :func:`mfg_core.anderson.project_density`; ``projected``). ``M >= 0`` at every iterate.
* **Warm-up** (``warmup_iterations > 0``): damped Picard (``warmup_method="damping"``, weight
  ``thetaUM``) or safeguarded Anderson steps until the Picard residual is below
  ``warmup_tolerance`` or ``warmup_iterations`` are spent, at the first continuation value.
* **Continuation** (``continuation="sigma"`` or ``"coupling"``): a homotopy ``t in [0, 1]`` from an
  easy problem to the target -- ``sigma(t) = sigma_0^{1-t} sigma^t`` (from ``continuation_start``,
  default 5 sigma) or the coupling ``s(t) F`` with ``s(t) = s_0 + t (1 - s_0)`` (``s_0`` default 0).
  Stages start at ``t = 0`` and step by ``1/continuation_steps``; each is solved to
  ``stage_tolerance`` (the last to the target), doubling the step after a stage that took at most 3
  Newton steps. A stage whose line search fails or that has not converged in ``stage_iterations``
  Newton steps is abandoned: back-off to the last converged stage with half the step (history:
  ``newton_event`` = backoff, the step not accepted); below ``continuation_min_step`` the solve stops
  with status ``not_converged`` and a reason.

The loop and the history
------------------------
One loop iteration is one Newton step (or one warm-up Picard iteration). The rule sets
``stop_on_system``: the loop stops on the rule's verdict -- converged when ``max|F| <=
system_tolerance`` (default: the solve's ``tolerance``) at the target problem -- instead of on the
relative change, and has no blow-up test (the line search and back-off stand in for it). Per
iteration the history has the loop's keys (``change_*``; ``residual_U``/``residual_M``: for Newton
steps the relative Picard residual of the *new* iterate, the one judged, at the current
continuation value: ``picard_residual="every"`` step, only for the iterate that ends the solve as
converged (``"final"``, the default: one HJB and one FP solve per solve, so the result compares with
the Picard methods' in the study's tables), or never (``"none"``); NaN where not computed) and
``phase`` (0 warmup, 1 continuation,
2 newton), ``newton_event`` (0 step, 1 stage_converged, 2 backoff, 3 failed, 4 warmup_done),
``newton_residual``, ``linear_iterations``, ``linear_residual`` (``||J d + F|| / ||F||``),
``line_search_step``, ``step_bound``, ``projected``, ``continuation_value`` (NaN without
continuation) and ``accepted``; with an Anderson warm-up also Anderson's keys (neutral values in
Newton steps). The result's ``extra`` has the counts: ``newton_steps``, ``warmup_iterations``,
``continuation_stages``, ``backoffs``, ``linear_iterations``.

Where it stands (measured, Nx = Nt = 50 unless said): 5 Newton steps to ``max|F| <= 1e-10`` on
``congestion`` and ``congestion_strong`` from the terminal guess (quadratic: ``r_{k+1} / r_k^2 <=
0.2``), the Anderson solution to 1e-10; on every named problem and both boundaries 2-9 steps; on
``congestion`` at sigma down to 0.02 (where damping and Anderson fail) 8-12 steps, with or without
continuation; ``attractive_quickstart`` needs the warm-up (line search stalls from the terminal
guess; 10 damped steps, then 7 Newton steps, to damping's one-peak equilibrium). Only the FDM FP
method; the numpy backend, and numba in 1D (its compiled time sweeps; the registry refuses the
others). 2D (:mod:`mfg_core.newton2d`):
4 Newton steps with 4-6 GMRES iterations each on ``lq2d`` with ``F(m) = m`` at 32^2 and 64^2 (``Nt =
N/2``), 7 steps (11-14) on ``evacuation2d`` (an obstacle) at 20^2 -- from the heat guess there the line
search stalls (``U = 0`` puts every upwind coefficient on a kink) and 3 warm-up iterations are needed;
a 1D problem embedded in 2D takes the 1D Newton steps.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from . import anderson as _aa
from . import validation
from .backends.numpy import fdm as _fdm
from .backends.numpy.block_sweeps import TridiagonalStack, make_block_sweeps  # noqa: F401 (TridiagonalStack: API)
from .errors import ConvergenceError, DivergenceError
from .fixed_point import Step
from .grid import Scheme
from .rules import Anderson, Damping, UpdateRule, check_theta

PHASE_WARMUP, PHASE_CONTINUATION, PHASE_NEWTON = 0, 1, 2
PHASE_NAMES = {PHASE_WARMUP: "warmup", PHASE_CONTINUATION: "continuation", PHASE_NEWTON: "newton"}
EVENT_STEP, EVENT_STAGE_DONE, EVENT_BACKOFF, EVENT_FAILED, EVENT_WARMUP_DONE = range(5)
EVENT_NAMES = {EVENT_STEP: "step", EVENT_STAGE_DONE: "stage_converged", EVENT_BACKOFF: "backoff",
               EVENT_FAILED: "failed", EVENT_WARMUP_DONE: "warmup_done"}
LINEAR_SOLVERS = ("auto", "direct", "gmres")
CONTINUATIONS = ("none", "sigma", "coupling")
WARMUP_METHODS = ("damping", "anderson")
PICARD_RESIDUALS = ("final", "every", "none")
#: the smallest line-search step before a step counts as failed
MIN_STEP = 2.0**-12
ARMIJO = 1e-4
#: Anderson's history keys in the Newton steps of a run with an Anderson warm-up
_ANDERSON_NEUTRAL = {"anderson_residual": math.nan, "anderson_step": False, "anderson_status": -1,
                     "condition": math.nan, "anderson_columns": 0}


# =============================================================================================
# the system
@dataclass(frozen=True)
class SystemData:
    """What the system needs besides the scheme: the problem's data on the nodes and its coupling."""

    V: np.ndarray
    g: np.ndarray
    m_init: np.ndarray
    weights: np.ndarray
    F: Any  # callable: F(M) pointwise
    dF: Any  # callable: F'(M) pointwise

    @classmethod
    def of(cls, problem) -> "SystemData":
        return cls(np.asarray(problem.V), np.asarray(problem.g), np.asarray(problem.m_init),
                   np.asarray(problem.weights), problem.F, problem.dF)


def discrete_system(scheme: Scheme, data: SystemData, coupling_scale: float = 1.0, backend=None):
    """The discrete system of ``scheme``'s dimension: :class:`DiscreteSystem` (1D) or
    :class:`mfg_core.newton2d.DiscreteSystem2D` (2D); both have the interface the rule and the
    linear solvers use. ``backend`` (a :class:`~mfg_core.backends.base.Backend`; default numpy)
    supplies the 1D time sweeps of the linear solves (``make_block_sweeps``)."""
    dim = getattr(getattr(scheme, "grid", None), "dim", None)
    if dim == 1:
        return DiscreteSystem(scheme, data, coupling_scale,
                              sweeps=None if backend is None else backend.make_block_sweeps(scheme))
    if dim == 2:
        from .newton2d import DiscreteSystem2D

        return DiscreteSystem2D(scheme, data, coupling_scale)
    raise ValueError(f"the Newton system needs a 1D or 2D scheme, got {type(scheme).__name__}"
                     + (f" on a {dim}D grid" if dim is not None else ""))


class SparseEntries:
    """Entries ``(row, column, value)`` of a sparse matrix gathered block by block (broadcast
    together), then summed into one matrix (duplicates add, as COO does)."""

    def __init__(self, size: int):
        self.size = size
        self._rows, self._cols, self._vals = [], [], []

    def add(self, r, c, v) -> None:
        r, c, v = np.broadcast_arrays(r, c, v)
        self._rows.append(r.ravel())
        self._cols.append(c.ravel())
        self._vals.append(v.ravel())

    def matrix(self, fmt: str = "csc") -> sp.spmatrix:
        J = sp.coo_matrix((np.concatenate(self._vals), (np.concatenate(self._rows), np.concatenate(self._cols))),
                          shape=(self.size, self.size))
        return J.asformat(fmt)


class SystemOrdering:
    """What the 1D and 2D systems share: the ordering of unknowns and rows (time level ``n`` holds
    ``(U^n, M^{n+1})`` interleaved node by node, ``N`` nodes per level), the source ``V + s F(M)``,
    the residual as a vector and its maximum, and the assembled Jacobian. A subclass sets ``Nt``,
    ``N``, ``data``, ``scale`` and provides ``unpack``, ``residual`` and ``linearise``."""

    def interleave(self, XU: np.ndarray, XM: np.ndarray) -> np.ndarray:
        """One vector in the system's ordering from a U-part and an M-part of shape ``(Nt, N)``."""
        r = np.empty((self.Nt, self.N, 2))
        r[..., 0], r[..., 1] = XU, XM
        return r.ravel()

    def split(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The U-part and M-part (each ``(Nt, N)``) of a vector in the system's ordering."""
        v = v.reshape(self.Nt, self.N, 2)
        return v[..., 0], v[..., 1]

    def source(self, M: np.ndarray) -> np.ndarray:
        """``V + s F(M)`` (what the HJB sweep of this system is given)."""
        return self.data.V + self.scale * np.asarray(self.data.F(M), dtype=np.float64)

    def residual_vector(self, z: np.ndarray) -> np.ndarray:
        return self.interleave(*self.residual(*self.unpack(z)))

    def max_residual(self, U: np.ndarray, M: np.ndarray) -> float:
        """``max|F(U, M)|`` over both blocks (NaN if either has NaN)."""
        RU, RM = self.residual(U, M)
        return float(max(np.max(np.abs(RU)), np.max(np.abs(RM))))

    def jacobian(self, U: np.ndarray, M: np.ndarray, fmt: str = "csc") -> sp.spmatrix:
        """The exact Jacobian ``dF/dz`` at ``(U, M)`` as a scipy sparse matrix (``fmt``)."""
        return self.linearise(U, M).assemble(fmt)


class DiscreteSystem(SystemOrdering):
    """``F(z)`` and ``F'(z)`` of the 1D discrete MFG system on ``scheme`` (see the module docstring).

    ``coupling_scale`` multiplies ``F`` (continuation in the coupling strength).
    """

    dim = 1

    def __init__(self, scheme: Scheme, data: SystemData, coupling_scale: float = 1.0, sweeps=None):
        if scheme.grid.dim != 1:
            raise ValueError(f"DiscreteSystem is the 1D system, got a {scheme.grid.dim}D grid "
                             "(discrete_system picks the 2D one)")
        self.scheme = scheme
        self.data = data
        self.scale = float(coupling_scale)
        (axis,) = scheme.grid.axes
        self.N = axis.size
        self.Nt = scheme.Nt
        self.dt, self.dx, self.nu, self.lam = scheme.dt, axis.spacing, scheme.nu, scheme.lam
        self.periodic = axis.periodic
        self.size = 2 * self.Nt * self.N
        self.right, self.left = _fdm.neighbours(np.arange(self.N), self.periodic)
        # d(lower, diag, upper)/d a_plus and d/d a_minus: the bands are affine in (a_plus, a_minus)
        zero, one = np.zeros(self.N), np.ones(self.N)
        kw = dict(dt=self.dt, dx=self.dx, nu=self.nu, periodic=self.periodic)
        b0 = np.array(_fdm.jacobian_bands(zero.copy(), zero.copy(), **kw))
        self.dband_plus = np.array(_fdm.jacobian_bands(one.copy(), zero.copy(), **kw)) - b0
        self.dband_minus = np.array(_fdm.jacobian_bands(zero.copy(), one.copy(), **kw)) - b0
        self.w = np.asarray(data.weights, dtype=np.float64)
        #: ``factor(lower, diag, upper)`` -> the block time sweeps (``back``, ``forward``) of a linearisation
        self.factor = sweeps if sweeps is not None else make_block_sweeps(scheme)

    # --- packing --------------------------------------------------------------------------------
    def pack(self, U: np.ndarray, M: np.ndarray) -> np.ndarray:
        """The unknowns ``z`` of the full fields ``U, M`` of shape ``(Nt+1, N)``."""
        return self.interleave(U[:-1], M[1:])

    def unpack(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Full fields ``(U, M)`` (with ``U^{Nt} = g`` and ``M^0 = m0``) from the unknowns ``z``."""
        z = z.reshape(self.Nt, self.N, 2)
        U = np.empty((self.Nt + 1, self.N))
        M = np.empty((self.Nt + 1, self.N))
        U[:-1], U[-1] = z[..., 0], self.data.g
        M[0], M[1:] = self.data.m_init, z[..., 1]
        return U, M

    # --- residual -------------------------------------------------------------------------------
    def bands(self, U0: np.ndarray):
        """``((lower, diag, upper) of J^n, H_h, Lap_h)`` for ``U0 = U[:-1]``."""
        a_plus, a_minus, ham, lap = _fdm.upwind(U0, self.dx, self.lam, self.periodic)
        bands = _fdm.jacobian_bands(a_plus, a_minus, dt=self.dt, dx=self.dx, nu=self.nu, periodic=self.periodic)
        return bands, ham, lap

    def residual(self, U: np.ndarray, M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(R_U, R_M)``, each of shape ``(Nt, N)`` (row ``n`` of each)."""
        U0, M1 = U[:-1], M[1:]
        (lower, diag, upper), ham, lap = self.bands(U0)
        RU = U0 - U[1:] + self.dt * (-self.nu * lap + ham - self.source(M1))
        RM = _apply_adjoint(_fdm.transpose_bands(lower, diag, upper), self.w, M1) - M[:-1]
        return RU, RM

    # --- Jacobian -------------------------------------------------------------------------------
    def linearise(self, U: np.ndarray, M: np.ndarray) -> "Linearisation":
        return Linearisation(self, U, M)



def _apply_adjoint(tbands, w: np.ndarray, X: np.ndarray) -> np.ndarray:
    """``W^{-1} J^T W X`` per time level, from the bands of ``J^T`` (``transpose_bands``)."""
    lt, dg, ut = tbands
    mu = w * X
    return (dg * mu + lt * np.roll(mu, 1, axis=-1) + ut * np.roll(mu, -1, axis=-1)) / w


class Linearisation:
    """The Jacobian at ``(U, M)`` in block form: products, the two block-bidiagonal solves, and the
    assembled sparse matrix (see the module docstring for the blocks)."""

    def __init__(self, system: DiscreteSystem, U: np.ndarray, M: np.ndarray):
        s = self.system = system
        U0, M1 = U[:-1], M[1:]
        self.jbands, _, _ = s.bands(U0)
        self.tbands = _fdm.transpose_bands(*self.jbands)
        self.D = -s.dt * s.scale * np.asarray(s.data.dF(M1), dtype=np.float64)  # A_UM (diagonal)
        self.mu = s.w * M1
        right_u, left_u = _fdm.neighbours(U0, s.periodic)
        inv = 1.0 / (s.dx * s.lam)
        # one-sided derivatives of a_plus = min(u_r - u, 0)/(dx lam) and a_minus = max(u - u_l, 0)/(dx lam),
        # on the branch the residual evaluates
        self.dp = np.where(right_u - U0 < 0.0, inv, 0.0)
        self.dq = np.where(U0 - left_u > 0.0, inv, 0.0)
        self._jfac = self._tfac = None  # factorisations of J^n and J^{nT}, on first use
        self._amu = None  # the coefficients of dR_M/dU, on first use

    # --- products -------------------------------------------------------------------------------
    def _fp_u_entries(self):
        """``(rows, cols, values)`` of ``dR_M/dU`` with level-local indices ``n N + node``: row ``c`` of
        ``W^{-1} J^T W`` gets from row ``i`` of ``J`` the derivative through ``i``'s upwind coefficients,
        on ``U`` at ``i`` and ``r(i)`` (``a_plus``) and at ``i`` and ``l(i)`` (``a_minus``)."""
        s = self.system
        base = np.arange(s.Nt)[:, None] * s.N
        idx = np.arange(s.N)
        nodes = (s.left, idx, s.right)  # the column of band k in row i
        rows, cols, vals = [], [], []
        for k in range(3):
            c_node = nodes[k][None, :]
            gp = self.mu * s.dband_plus[k][None, :] / s.w[c_node] * self.dp
            gq = self.mu * s.dband_minus[k][None, :] / s.w[c_node] * self.dq
            r = np.broadcast_to(base + c_node, gp.shape)
            for col, v in ((base + s.right[None, :], gp), (base + idx[None, :], gq - gp), (base + s.left[None, :], -gq)):
                rows.append(r.ravel())
                cols.append(np.broadcast_to(col, gp.shape).ravel())
                vals.append(v.ravel())
        return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)

    def A_MU(self, dU: np.ndarray) -> np.ndarray:
        """``dR_M/dU`` applied to ``dU`` (shape ``(Nt, N)``).

        Row ``i`` of ``J`` changes by ``dJ_{i,.}/da^+ P_i + dJ_{i,.}/da^- Q_i`` (``P``, ``Q`` the changes
        of the upwind coefficients); its entries in bands 0, 1, 2 sit in columns ``l(i), i, r(i)``,
        which ``J^T`` turns into rows: band 1 stays, band 0 moves one row up, band 2 one row down
        (wrapping if periodic; a band the Neumann fold emptied is zero)."""
        if self._amu is None:
            s = self.system
            nodes = (s.left, np.arange(s.N), s.right)
            self._amu = [(self.mu * self.dp * s.dband_plus[k] / s.w[nodes[k]],
                          self.mu * self.dq * s.dband_minus[k] / s.w[nodes[k]]) for k in range(3)]
        right, left = _fdm.neighbours(dU, self.system.periodic)
        P = right - dU
        Q = dU - left
        (p0, q0), (p1, q1), (p2, q2) = self._amu
        out = p1 * P + q1 * Q
        g = p0 * P + q0 * Q
        out[:, :-1] += g[:, 1:]
        out[:, -1] += g[:, 0]
        g = p2 * P + q2 * Q
        out[:, 1:] += g[:, :-1]
        out[:, 0] += g[:, -1]
        return out

    def matvec(self, dU: np.ndarray, dM: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The Jacobian applied to ``(dU, dM)`` (the U-part ``dU^0..dU^{Nt-1}``, M-part ``dM^1..dM^{Nt}``)."""
        s = self.system
        lower, diag, upper = self.jbands
        right, left = _fdm.neighbours(dU, s.periodic)
        hjb = diag * dU + lower * left + upper * right + self.D * dM
        hjb[:-1] -= dU[1:]
        fp = _apply_adjoint(self.tbands, s.w, dM) + self.A_MU(dU)
        fp[1:] -= dM[:-1]
        return hjb, fp

    # --- block solves ---------------------------------------------------------------------------
    def back(self, rhs: np.ndarray) -> np.ndarray:
        """Solve ``A_UU x = rhs`` backward in time: ``J^n x^n = rhs^n + x^{n+1}``, ``x^{Nt} = 0``."""
        if self._jfac is None:
            self._jfac = self.system.factor(*self.jbands)
        return self._jfac.back(rhs)

    def fwd(self, rhs: np.ndarray) -> np.ndarray:
        """Solve ``A_MM x = rhs`` forward in time: ``W^{-1} J^{nT} W x^n = rhs^n + x^{n-1}``, ``x^0 = 0``."""
        if self._tfac is None:
            self._tfac = self.system.factor(*self.tbands)
        w = self.system.w
        # in mass variables: J^{nT} mu^n = W rhs^n + mu^{n-1}
        return self._tfac.forward(w * rhs) / w

    # --- the assembled matrix -------------------------------------------------------------------
    def assemble(self, fmt: str = "csc") -> sp.spmatrix:
        s = self.system
        N, Nt, w = s.N, s.Nt, s.w
        lower, diag, upper = self.jbands
        base = np.arange(Nt)[:, None] * N
        idx = np.arange(N)
        uU = 2 * (base + idx[None, :])  # column (and HJB row) of U^n_i
        uM = uU + 1  # column (and FP row) of M^{n+1}_i
        nodes = {0: s.left, 1: idx, 2: s.right}  # the column of band k in row i
        colU = {k: 2 * (base + nodes[k][None, :]) for k in nodes}
        entries = SparseEntries(s.size)
        add = entries.add

        # HJB rows: J^n on U^n, -I on U^{n+1}, -dt s F'(M^{n+1}) on M^{n+1}
        for k, band in enumerate((lower, diag, upper)):
            add(uU, colU[k], band)
        if Nt > 1:
            add(uU[:-1], uU[1:], -1.0)
        add(uU, uM, self.D)
        # FP rows: row c of W^{-1} J^T W gets J_{i,c} w_i / w_c on M^{n+1}_i from row i of J; and dR_M/dU
        for k, band in enumerate((lower, diag, upper)):
            c_node = nodes[k][None, :]
            add(2 * (base + c_node) + 1, uM, band * w[None, :] / w[c_node])
        r, c, v = self._fp_u_entries()
        add(2 * r + 1, 2 * c, v)
        if Nt > 1:
            add(uM[1:], uM[:-1], -1.0)
        return entries.matrix(fmt)


# =============================================================================================
# linear solves


def _relative_change(new: np.ndarray, old: np.ndarray, w: np.ndarray) -> float:
    """The loop's relative change ``||new - old|| / ||new||`` (space-time L2 with the quadrature weights;
    the ``dt`` cancels), in single-threaded einsum passes."""
    n = new.shape[0]
    new, w = new.reshape(n, -1), np.asarray(w).ravel()
    d = new - old.reshape(n, -1)
    num = float(np.einsum("ij,j,ij->", d, w, d))
    den = float(np.einsum("ij,j,ij->", new, w, new))
    return math.sqrt(num) / max(math.sqrt(den), 1e-300)


def _norm(v: np.ndarray) -> float:
    # one single-threaded pass (not a BLAS call: on a shared machine those cost far more than their flops)
    return math.sqrt(float(np.einsum("i,i->", v, v)))


def gmres(apply, b: np.ndarray, rtol: float, restart: int, maxiter: int) -> tuple[np.ndarray, int, bool, float]:
    """Restarted GMRES for ``A x = b`` from ``x = 0``: ``(x, iterations, converged, relative residual)``.

    Arnoldi by classical Gram-Schmidt with one re-orthogonalisation when the vector lost more than
    30 % of its norm ("twice is enough"), Givens rotations for the small least-squares problem;
    einsum rather than BLAS for the long vectors (see :func:`_norm`). The true residual is
    recomputed at each restart (the returned residual is the Arnoldi estimate).
    """
    n = b.size
    x = np.zeros(n)
    bnorm = _norm(b)
    if bnorm == 0.0:
        return x, 0, True, 0.0
    target = rtol * bnorm
    r = b.copy()
    beta = bnorm
    its = 0
    while its < maxiter and beta > target:
        m = min(restart, maxiter - its, n)
        V = np.empty((min(m, 7) + 1, n))  # grown by doubling: most solves need a few vectors
        H = np.zeros((m + 1, m))
        cs, sn = np.zeros(m), np.zeros(m)
        g = np.zeros(m + 1)
        g[0] = beta
        V[0] = r / beta
        k = 0
        for j in range(m):
            w = apply(V[j])
            its += 1
            wn0 = _norm(w)
            h = np.einsum("ij,j->i", V[: j + 1], w)
            w -= np.einsum("ij,i->j", V[: j + 1], h)
            wn = _norm(w)
            if wn < 0.7 * wn0:
                h2 = np.einsum("ij,j->i", V[: j + 1], w)
                w -= np.einsum("ij,i->j", V[: j + 1], h2)
                h += h2
                wn = _norm(w)
            H[: j + 1, j] = h
            H[j + 1, j] = wn
            for i in range(j):  # the previous rotations
                H[i, j], H[i + 1, j] = cs[i] * H[i, j] + sn[i] * H[i + 1, j], -sn[i] * H[i, j] + cs[i] * H[i + 1, j]
            rho = math.hypot(H[j, j], H[j + 1, j])
            cs[j], sn[j] = (1.0, 0.0) if rho == 0.0 else (H[j, j] / rho, H[j + 1, j] / rho)
            H[j, j], H[j + 1, j] = rho, 0.0
            g[j], g[j + 1] = cs[j] * g[j], -sn[j] * g[j]
            k = j + 1
            if abs(g[j + 1]) <= target or wn == 0.0:
                break
            if j + 1 == V.shape[0]:
                V = np.concatenate([V, np.empty((min(V.shape[0], m + 1 - V.shape[0]), n))])
            V[j + 1] = w / wn
        y = np.linalg.solve(np.triu(H[:k, :k]), g[:k]) if k else np.zeros(0)
        x += np.einsum("ij,i->j", V[:k], y)
        if abs(g[k]) <= target or its >= maxiter:
            return x, its, bool(abs(g[k]) <= target), abs(g[k]) / bnorm  # the estimate: no extra product
        r = b - apply(x)
        beta = _norm(r)
    return x, its, bool(beta <= target), beta / bnorm


class LinearSolve:
    """Outcome of one Newton linear solve: the step ``(dU, dM)`` and what it took."""

    __slots__ = ("dU", "dM", "iterations", "residual", "converged")

    def __init__(self, dU, dM, iterations, residual, converged=True):
        self.dU, self.dM, self.iterations, self.residual, self.converged = dU, dM, iterations, residual, converged


def _finish(lin: Linearisation, rU, rM, dM) -> tuple[np.ndarray, np.ndarray]:
    # U from the HJB rows given dM, then M from the FP rows given dU: the FP rows hold to round-off
    dU = lin.back(rU - lin.D * dM)
    return dU, lin.fwd(rM - lin.A_MU(dU))


def _linear_residual(lin, rU, rM, dU, dM) -> float:
    hjb, fp = lin.matvec(dU, dM)
    num = math.sqrt(float(np.sum((hjb - rU) ** 2) + np.sum((fp - rM) ** 2)))
    den = math.sqrt(float(np.sum(rU * rU) + np.sum(rM * rM)))
    return num / max(den, 1e-300)


def solve_direct(lin: Linearisation, rU: np.ndarray, rM: np.ndarray) -> LinearSolve:
    """``J d = r`` by SuperLU on the assembled sparse Jacobian."""
    s = lin.system
    try:
        d = spla.splu(lin.assemble("csc")).solve(s.interleave(rU, rM))
    except RuntimeError as exc:  # "Factor is exactly singular"
        raise ConvergenceError(f"the Newton Jacobian is singular: {exc}") from exc
    dU, dM = _finish(lin, rU, rM, s.split(d)[1].copy())
    return LinearSolve(dU, dM, 1, _linear_residual(lin, rU, rM, dU, dM))


def solve_gmres(lin: Linearisation, rU: np.ndarray, rM: np.ndarray, rtol: float, restart: int,
                maxiter: int) -> LinearSolve:
    """``J d = r`` by GMRES on the Schur complement in ``dM`` (see the module docstring)."""
    s = lin.system
    shape = (s.Nt, s.N)
    b = lin.fwd(rM - lin.A_MU(lin.back(rU))).ravel()

    def apply(x):
        return x - lin.fwd(lin.A_MU(lin.back(lin.D * x.reshape(shape)))).ravel()

    x, its, converged, _ = gmres(apply, b, rtol, restart, maxiter)
    if not np.all(np.isfinite(x)):
        raise ConvergenceError("GMRES on the Newton system returned NaN or inf")
    dU, dM = _finish(lin, rU, rM, x.reshape(shape))
    return LinearSolve(dU, dM, its, _linear_residual(lin, rU, rM, dU, dM), converged=converged)


# =============================================================================================
# the rule
class _Stage:
    """One value of the continuation parameter: its system and its Picard map (the loop's own
    solvers at the target, numpy reference sweeps elsewhere)."""

    def __init__(self, rule: "Newton", loop, t: float):
        self.t = t
        self.target = rule.continuation == "none" or t >= 1.0
        p = loop.problem
        scheme, scale, self.value = p.scheme, 1.0, math.nan
        if rule.continuation == "sigma":
            self.value = p.sigma if self.target else rule._start ** (1.0 - t) * p.sigma ** t
            scheme = dataclasses.replace(p.scheme, sigma=self.value)
        elif rule.continuation == "coupling":
            self.value = 1.0 if self.target else rule._start + t * (1.0 - rule._start)
            scale = self.value
        self.system = discrete_system(scheme, rule._data, scale, backend=loop.hjb_solver.backend)
        self._loop = loop
        if not self.target:
            hjb = loop.hjb_solver
            self._hjb_sweep = _fdm.make_hjb_sweep(scheme, newton_tol=getattr(hjb, "newton_tol", 1e-12),
                                                  newton_maxiter=getattr(hjb, "newton_maxiter", 50))
            self._fp_sweep = _fdm.make_fp_sweep(scheme)

    def _hjb(self, M):
        U, its = self._hjb_sweep(self.system.source(M), self.system.data.g)
        if np.any(its < 0):
            raise ConvergenceError(f"HJB Newton did not converge at continuation value {self.value:g}")
        return U

    def _fp(self, U):
        w = self.system.w
        return np.array(self._fp_sweep(U, w * self.system.data.m_init)) / w

    def hjb(self, k, M):
        return self._loop.hjb(k, M) if self.target else self._loop.evaluate(k, self._hjb, M)

    def fp(self, k, U):
        return self._loop.fp(k, U) if self.target else self._loop.evaluate(k, self._fp, U)


class _StageLoop:
    """What a warm-up rule sees of the loop: the stage's Picard map, the loop's norms and problem."""

    def __init__(self, loop, stage: _Stage):
        self.problem, self.fields, self.norms, self._stage = loop.problem, loop.fields, loop.norms, stage

    def hjb(self, k, M):
        return self._stage.hjb(k, M)

    def fp(self, k, U):
        return self._stage.fp(k, U)


class Newton(UpdateRule):
    """Newton's method on the whole discrete system, globalised (see the module docstring)."""

    name = "newton"
    stop_on_system = True

    def __init__(self, thetaUM: float = 0.5, system_tolerance: float | None = None,
                 linear_solver: str = "auto", direct_limit: int = 10_000, linear_rtol: float = 1e-4,
                 gmres_restart: int = 50, linear_maxiter: int = 500, line_search: bool = True,
                 positivity_fraction: float = 0.95, positivity_min_step: float = 0.1,
                 warmup_iterations: int = 0, warmup_method: str = "damping", warmup_tolerance: float = 1e-2,
                 continuation: str = "none", continuation_start: float | None = None,
                 continuation_steps: int = 4, continuation_min_step: float = 1.0 / 64,
                 stage_tolerance: float = 1e-6, stage_iterations: int = 15, picard_residual: str = "final"):
        v = validation
        self.thetaUM = check_theta(thetaUM)
        self.system_tolerance = None if system_tolerance is None else v.positive("system_tolerance", system_tolerance)
        self.linear_solver = _choice("linear_solver", linear_solver, LINEAR_SOLVERS)
        self.direct_limit = v.integer("direct_limit", direct_limit, 0)
        self.linear_rtol = v.in_range("linear_rtol", linear_rtol, 0.0, 1.0, closed_high=False)
        self.gmres_restart = v.integer("gmres_restart", gmres_restart, 1)
        self.linear_maxiter = v.integer("linear_maxiter", linear_maxiter, 1)
        self.line_search = v.flag("line_search", line_search)
        self.positivity_fraction = v.in_range("positivity_fraction", positivity_fraction, 0.0, 1.0)
        self.positivity_min_step = v.in_range("positivity_min_step", positivity_min_step, 0.0, 1.0, closed_low=True)
        self.warmup_iterations = v.integer("warmup_iterations", warmup_iterations, 0)
        self.warmup_method = _choice("warmup_method", warmup_method, WARMUP_METHODS)
        self.warmup_tolerance = v.positive("warmup_tolerance", warmup_tolerance)
        self.continuation = _choice("continuation", continuation, CONTINUATIONS)
        self.continuation_start = (None if continuation_start is None
                                   else v.number("continuation_start", continuation_start))
        if self.continuation == "sigma" and self.continuation_start is not None and not self.continuation_start > 0:
            raise ValueError(f"continuation_start must be > 0 for continuation='sigma', got {continuation_start!r}")
        self.continuation_steps = v.integer("continuation_steps", continuation_steps, 1)
        self.continuation_min_step = v.in_range("continuation_min_step", continuation_min_step, 0.0, 1.0)
        self.stage_tolerance = v.positive("stage_tolerance", stage_tolerance)
        self.stage_iterations = v.integer("stage_iterations", stage_iterations, 1)
        self.picard_residual = _choice("picard_residual", picard_residual, PICARD_RESIDUALS)

    # --- what the loop reads --------------------------------------------------------------------
    def warmup(self, loop) -> float:
        """Compile the backend's 1D block time sweeps (numba) on a two-level system, so that their
        first use is not timed as part of a Newton step; returns seconds."""
        p = loop.problem
        if p.dim != 1:
            return 0.0
        start = time.perf_counter()
        n = p.grid.size
        lower, diag, upper = np.full((2, n), -0.1), np.full((2, n), 1.5), np.full((2, n), -0.1)
        sweeps = loop.hjb_solver.backend.make_block_sweeps(p.scheme)(lower, diag, upper)
        sweeps.forward(sweeps.back(np.ones((2, n))))
        return time.perf_counter() - start

    def describe(self):
        return {"thetaUM": self.thetaUM, "newton": {
            k: getattr(self, k) for k in (
                "system_tolerance", "linear_solver", "direct_limit", "linear_rtol", "gmres_restart",
                "linear_maxiter", "line_search", "positivity_fraction", "positivity_min_step",
                "warmup_iterations", "warmup_method", "warmup_tolerance", "continuation",
                "continuation_start", "continuation_steps", "continuation_min_step", "stage_tolerance",
                "stage_iterations", "picard_residual")},
            "phase_codes": PHASE_NAMES, "newton_event_codes": EVENT_NAMES}

    def log_note(self, step):
        r = step.record
        return (f"{PHASE_NAMES[r['phase']]} {EVENT_NAMES[r['newton_event']]} max|F|={r['newton_residual']:.3e} "
                f"lin={r['linear_iterations']} a={r['line_search_step']:.3g}"
                + (f" value={r['continuation_value']:.4g}" if self.continuation != "none" else ""))

    def verdict(self, step, tolerance: float):
        """``(status, reason)`` to stop after this accepted step, or None to go on."""
        if self._failure:
            return "not_converged", self._failure
        target = self._target_tolerance(tolerance)
        res = step.record["newton_residual"]
        if self._last_on_target and res <= target:
            return "converged", (f"converged: max|F| {res:.3e} <= system tolerance {target:g} after "
                                 f"{self._counts['newton']} Newton steps ({self._counts['warmup']} warm-up "
                                 f"iterations, {self._counts['stages']} continuation stages, "
                                 f"{self._counts['backoffs']} back-offs)")
        return None

    def max_iterations_reason(self, hist, max_iterations: int, tolerance: float) -> str:
        target = self._target_tolerance(tolerance)
        res = np.asarray(hist["newton_residual"], dtype=float)
        where = (f" at continuation value {self._stage.value:.4g}" if not self._stage.target else "")
        return (f"max_iterations={max_iterations} reached with max|F| {res[-1]:.3e}{where} (system tolerance "
                f"{target:g}; min {np.nanmin(res):.3e}; {self._counts['newton']} Newton steps, "
                f"{self._counts['warmup']} warm-up iterations, {self._counts['backoffs']} back-offs)")

    def _target_tolerance(self, tolerance: float) -> float:
        return self.system_tolerance if self.system_tolerance is not None else float(tolerance)

    def summary(self, hist) -> dict[str, Any]:
        return {"newton_steps": self._counts["newton"], "warmup_iterations": self._counts["warmup"],
                "continuation_stages": self._counts["stages"], "backoffs": self._counts["backoffs"],
                "linear_iterations": int(np.sum(hist.get("linear_iterations", [0])))}

    # --- state ----------------------------------------------------------------------------------
    def reset(self, loop):
        p = loop.problem
        if p.dim not in (1, 2):
            raise ValueError(f"coupling method 'newton' solves 1D and 2D problems, got a {p.dim}D problem")
        from .solvers import FPFDMSolver

        if not isinstance(loop.fp_solver, FPFDMSolver):
            raise ValueError("coupling method 'newton' solves the finite-difference system: it needs an "
                             f"FPFDMSolver, got {type(loop.fp_solver).__name__}")
        self._data = SystemData.of(p)
        self._tol = self._target_tolerance(getattr(loop, "tolerance", 1e-6))
        if self.continuation == "sigma":
            self._start = self.continuation_start if self.continuation_start is not None else 5.0 * p.sigma
        elif self.continuation == "coupling":
            self._start = self.continuation_start if self.continuation_start is not None else 0.0
        self._h = 1.0 / self.continuation_steps
        self._stage = _Stage(self, loop, 0.0)
        self._good = None  # (t, z) of the last converged stage
        self._stage_steps = 0
        self._cache = None  # (U, M, z, R, norm R) of the current iterate
        self._failure = ""
        self._last_on_target = False
        self._counts = {"newton": 0, "warmup": 0, "stages": 0, "backoffs": 0}
        self._phase = PHASE_WARMUP if self.warmup_iterations > 0 else self._newton_phase()
        self._warm = None
        self._warm_keys: tuple[str, ...] = ()
        if self._phase == PHASE_WARMUP:
            self._warm = (Damping(self.thetaUM) if self.warmup_method == "damping" else Anderson(self.thetaUM))
            self._warm_loop = _StageLoop(loop, self._stage)
            self._warm.reset(self._warm_loop)
            if self.warmup_method == "anderson":
                self._warm_keys = tuple(_ANDERSON_NEUTRAL)

    def _newton_phase(self) -> int:
        return PHASE_NEWTON if self._stage.target else PHASE_CONTINUATION

    def _record(self, phase, event, residual, **kw):
        rec = {"phase": phase, "newton_event": event, "newton_residual": residual, "linear_iterations": 0,
               "linear_residual": math.nan, "line_search_step": math.nan, "step_bound": math.nan,
               "projected": False, "continuation_value": self._stage.value, "accepted": True}
        rec.update(kw)
        for key in self._warm_keys:
            rec.setdefault(key, _ANDERSON_NEUTRAL[key])
        return rec

    def step(self, loop, k, U, M):
        if self._phase == PHASE_WARMUP:
            return self._warmup_step(loop, k, U, M)
        return self._newton_step(loop, k, U, M)

    # --- warm-up --------------------------------------------------------------------------------
    def _warmup_step(self, loop, k, U, M):
        st = self._warm.step(self._warm_loop, k, U, M)
        self._counts["warmup"] += 1
        res = max(st.residual)
        done = (st.accepted and res < self.warmup_tolerance) or self._counts["warmup"] >= self.warmup_iterations
        S = self._stage.system
        system_res = S.max_residual(*S.unpack(S.pack(st.U, st.M)))  # with the data rows U[Nt] = g, M[0] = m0
        self._last_on_target = self._stage.target
        if done:
            self._phase = self._newton_phase()
        extra = {key: st.record[key] for key in self._warm_keys if key in st.record}
        record = self._record(PHASE_WARMUP, EVENT_WARMUP_DONE if done else EVENT_STEP, system_res,
                              accepted=bool(st.accepted), **extra)
        return Step(st.U, st.M, st.residual, change=st.change, accepted=st.accepted, record=record)

    # --- Newton ---------------------------------------------------------------------------------
    def _current(self, U, M):
        """``(U, M, z, R, ||R||)`` of the iterate the loop hands over; ``U[Nt] = g`` and ``M[0] = m0``
        are data, not unknowns (the heat initial guess has ``U = 0`` everywhere)."""
        c = self._cache
        if c is not None and c[0] is U and c[1] is M:
            return c
        S = self._stage.system
        z = S.pack(U, M)
        U, M = S.unpack(z)
        R = S.interleave(*S.residual(U, M))
        nR = _norm(R)
        if not math.isfinite(nR):
            raise DivergenceError("the residual of the discrete system is NaN or inf at the Newton iterate")
        return U, M, z, R, nR

    def _solve(self, lin, rU, rM, maxF) -> LinearSolve:
        S = lin.system
        kind = self.linear_solver
        if kind == "auto":  # 2D: always GMRES (a space-time LU of a 2D grid is a 3D-like factorisation)
            kind = "direct" if S.dim == 1 and S.size <= self.direct_limit else "gmres"
        if kind == "direct":
            return solve_direct(lin, rU, rM)
        # forcing: eta_k = max|F_k| keeps Newton quadratic; no need to solve beyond what takes the next
        # residual below a tenth of the target, nor (far from the solution) beyond linear_rtol
        rtol = min(self.linear_rtol, max(maxF, 0.1 * self._tol / max(maxF, 1e-300), 1e-12))
        return solve_gmres(lin, rU, rM, rtol, self.gmres_restart, self.linear_maxiter)

    def _newton_step(self, loop, k, U, M):
        stage = self._stage
        S = stage.system
        U, M, z, R, nR = self._current(U, M)
        maxF = float(np.max(np.abs(R)))
        RU, RM = S.split(R)
        lin = S.linearise(U, M)
        ls = self._solve(lin, -RU, -RM, maxF)
        d = S.interleave(ls.dU, ls.dM)
        # positivity: the largest step keeping M >= 0, damped by positivity_fraction
        zM, dM = S.split(z)[1], ls.dM
        neg = dM < 0
        bound = 1.0
        if np.any(neg):
            with np.errstate(divide="ignore"):
                bound = float(min(1.0, np.min(np.maximum(zM[neg], 0.0) / -dM[neg])))
        project = False
        a = 1.0
        if bound < 1.0:
            damped = self.positivity_fraction * bound
            if damped >= self.positivity_min_step:
                a = damped
            else:
                project = True
        # line search on ||F||_2
        while True:
            trial = z + a * d
            if project:
                Ut, Mt = S.unpack(trial)
                Mt[1:] = _aa.project_density(Mt[1:], S.w)
                trial = S.pack(Ut, Mt)
            Rt = S.residual_vector(trial)
            nt = _norm(Rt)
            if not self.line_search or (math.isfinite(nt) and nt <= (1.0 - ARMIJO * a) * nR):
                break
            a *= 0.5
            if a < MIN_STEP:
                return self._failed(loop, k, U, M, maxF, ls, bound, project,
                                    f"the line search found no decrease of ||F|| down to step {MIN_STEP:g}")
        if not math.isfinite(nt):
            raise DivergenceError(f"the Newton iterate became NaN or inf at iteration {k}", k)
        self._counts["newton"] += 1
        self._stage_steps += 1
        U1, M1 = S.unpack(trial)
        new_max = float(np.max(np.abs(Rt)))
        converged = stage.target and new_max <= self._tol
        residual = self._picard(loop, k, stage, U1, M1, converged)
        self._cache = (U1, M1, trial, Rt, nt)
        self._last_on_target = stage.target
        event = EVENT_STEP
        common = dict(linear_iterations=ls.iterations, linear_residual=ls.residual, line_search_step=a,
                      step_bound=bound, projected=project, continuation_value=stage.value)
        phase = self._newton_phase()
        if not stage.target and new_max <= self.stage_tolerance:
            event = EVENT_STAGE_DONE
            self._advance(loop, trial)
        elif self._good is not None and self._stage_steps >= self.stage_iterations and \
                not new_max <= self._tol:
            # a stage that does not converge is abandoned like one whose line search fails
            return self._failed(loop, k, U1, M1, maxF, ls, bound, project,
                                f"{self.stage_iterations} Newton steps without reaching the stage tolerance",
                                taken=(U1, M1, residual, common, new_max))
        change = (_relative_change(U1, U, S.w), _relative_change(M1, M, S.w))
        return Step(U1, M1, residual, change=change, record=self._record(phase, event, new_max, **common))

    def _picard(self, loop, k, stage, U, M, final):
        if not (self.picard_residual == "every" or (final and self.picard_residual == "final")):
            return (math.nan, math.nan)
        try:
            U_star = stage.hjb(k, M)
            M_star = stage.fp(k, U_star)
        except (ValueError, ConvergenceError):
            return (math.nan, math.nan)
        return (loop.norms.relative_change(U_star, U), loop.norms.relative_change(M_star, M))

    def _advance(self, loop, z):
        """The current stage converged at ``z``: on to the next continuation value."""
        t = self._stage.t
        self._counts["stages"] += 1
        if self._stage_steps <= 3:
            self._h *= 2.0
        self._good = (t, z)
        self._stage = _Stage(self, loop, min(1.0, t + self._h))
        self._stage_steps = 0
        self._cache = None

    def _failed(self, loop, k, U, M, maxF, ls, bound, project, why, taken=None):
        """A failed Newton step: back off to the last converged stage, or stop."""
        stage = self._stage
        common = dict(linear_iterations=ls.iterations, linear_residual=ls.residual, line_search_step=0.0,
                      step_bound=bound, projected=project, continuation_value=stage.value)
        phase = self._newton_phase()
        if taken is not None:  # the step was taken, the stage abandoned after it
            U, M, _, common, maxF = taken
        where = "" if self.continuation == "none" else f" at continuation value {stage.value:.4g}"
        if self.continuation != "none" and self._good is not None:
            self._h *= 0.5
            if self._h >= self.continuation_min_step:
                self._counts["backoffs"] += 1
                t0, z0 = self._good
                self._stage = _Stage(self, loop, min(1.0, t0 + self._h))
                self._stage_steps = 0
                self._cache = None
                Ug, Mg = self._stage.system.unpack(z0)
                return Step(Ug, Mg, (math.nan, math.nan), accepted=False,
                            record=self._record(phase, EVENT_BACKOFF, maxF,
                                                **{**common, "accepted": False}))
            why += f"; continuation step below continuation_min_step={self.continuation_min_step:g}"
        self._failure = (f"newton failed at iteration {k}{where}: {why} (max|F| {maxF:.3e}); try "
                         + ("a larger continuation_steps" if self.continuation != "none"
                            else "continuation='sigma' or 'coupling', or warmup_iterations"))
        self._last_on_target = False
        self._cache = None
        return Step(U, M, (math.nan, math.nan),
                    record=self._record(phase, EVENT_FAILED, maxF, **common))


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value
