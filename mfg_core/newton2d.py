r"""The discrete MFG system of the 2D finite-difference scheme and its exact Jacobian (Newton, numpy).

The 2D counterpart of :class:`mfg_core.newton.DiscreteSystem`: the same unknowns, rows, ordering and
interface, so the ``Newton`` rule and the linear solvers of :mod:`mfg_core.newton` run on it
unchanged. It is built from the 2D kernels' own pieces (:mod:`mfg_core.backends.numpy.fdm2d`:
``upwind2d``, ``Assembly``, ``factor``; the stencil of :func:`~mfg_core.backends.checks.stencil2d`
with its Neumann ghosts, periodic wraps and cut obstacle links), so its solution is the fixed point
the 2D Picard solvers converge to.

Rows
----
Nodes flattened ``p = j nx + i`` (``N = ny nx``), ``J^n = I + dt A(U^n)`` the 5-point HJB Newton
matrix of the kernels (rows of blocked nodes are ``e_p``), ``f`` the indicator of the free nodes:

    HJB row n:  R_U^n = U^n - U^{n+1} + dt f ( -nu Lap_h U^n + H_h(U^n) - V - s F(M^{n+1}) )
    FP row n:   R_M^n = W^{-1} (J^n)^T W M^{n+1} - M^n

-- the HJB step the sweep's Newton solves and the FP step ``(J^n)^T mu^{n+1} = mu^n`` the FP sweep
solves by one LU, in mass variables. On a blocked node both rows are identities in time (``U = g``,
``M = m0 = 0`` there), as in the kernels.

Jacobian
--------
Row ``p`` of ``J`` has the values ``v_0 = 1 - sum_k v_k`` on ``p`` and, for the directions
``k = E, W, N, S`` with neighbour ``q_k(p)`` (the stencil's, ``p`` itself across a cut link),

    v_E = f (-dt nu/hx^2 + dt a^+_x/hx),   v_W = f (-dt nu/hx^2 - dt a^-_x/hx)    (N, S alike, hy).

* ``A_UU = J^n`` (``H_h`` is C^1, so ``J`` is its exact derivative); ``A_UM = -dt s f F'(M^{n+1})``;
  ``A_MM = W^{-1} (J^n)^T W``.
* ``A_MU``: each ``v_k(p)`` depends on ``U`` through one upwind coefficient, and for all four
  directions ``d v_k(p) = f_p dt / (h_k^2 lam) chi_k(p) (dU_{q_k(p)} - dU_p)``, where ``chi_k`` is the
  one-sided derivative of the branch the residual evaluates (as in 1D): ``chi_E = [u_E - u < 0]``,
  ``chi_W = [u - u_W > 0]``, ``chi_N = [u_N - u < 0]``, ``chi_S = [u - u_S > 0]``. Since ``v_0`` moves
  by ``-sum_k d v_k``, with ``c_k = mu_p f_p dt chi_k / (h_k^2 lam)`` (``mu = W M^{n+1}``)

      (A_MU dU)_r = w_r^{-1} sum_{p,k} c_k(p) (dU_{q_k(p)} - dU_p) ([r = q_k(p)] - [r = p]).

  A cut link has ``q_k(p) = p``: no term, as in the kernels (no flux across it).

Linear solves
-------------
What :func:`mfg_core.newton.solve_gmres` needs: ``back`` (``J^n x^n = rhs^n + x^{n+1}``, backward)
and ``fwd`` (``(J^n)^T y^n = W rhs^n + y^{n-1}``, forward), each level by the sparse LU of ``J^n``
(:func:`~mfg_core.backends.numpy.fdm2d.factor`: SuperLU, MMD ordering, no pivoting -- the kernels'
choice for these M-matrices), factorised once per Newton step on first use and used for both
(``trans="T"`` forward). One GMRES iteration is ``2 Nt`` sparse triangular solve pairs; no dense
matrix and no space-time factorisation (what a level and a Newton step cost: ``benchmarks/README.md``,
the Newton section). ``assemble`` gives the
whole sparse Jacobian (for tests and ``linear_solver="direct"`` on small grids).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .backends import checks
from .backends.numpy import fdm2d as _fdm2d
from .errors import ConvergenceError
from .grid import Scheme
from .newton import SparseEntries, SystemOrdering


class DiscreteSystem2D(SystemOrdering):
    """``F(z)`` and ``F'(z)`` of the 2D discrete MFG system on ``scheme`` (see the module docstring).

    Fields ``U, M`` have the problem's shape ``(Nt+1, ny, nx)``; the blocks of the linear algebra
    (``split``, ``interleave``, the residual rows) are flattened per time level, ``(Nt, N)``.
    ``coupling_scale`` multiplies ``F``. ``w`` is the weight array of the grid's shape.
    """

    dim = 2

    def __init__(self, scheme: Scheme, data, coupling_scale: float = 1.0):
        if not isinstance(scheme, Scheme) or scheme.grid.dim != 2:
            raise ValueError("DiscreteSystem2D needs a 2D scheme, got "
                             f"{getattr(getattr(scheme, 'grid', None), 'dim', type(scheme).__name__)}")
        self.scheme = scheme
        self.data = data
        self.scale = float(coupling_scale)
        self.c = c = checks.fdm2d_constants(scheme, "numpy", "Newton system")
        self.asm = _fdm2d.Assembly(c)
        st = c.stencil
        self.grid_shape = scheme.grid.shape
        self.N = st.size
        self.Nt = scheme.Nt
        self.dt, self.nu, self.lam = scheme.dt, scheme.nu, scheme.lam
        self.size = 2 * self.Nt * self.N
        self.free = st.free.astype(np.float64)
        self.w = np.asarray(data.weights, dtype=np.float64)
        if self.w.shape != self.grid_shape:
            raise ValueError(f"weights must have the grid's shape {self.grid_shape}, got {self.w.shape}")
        self.wf = self.w.ravel()
        self.nbrs = (st.east, st.west, st.north, st.south)
        self.h2 = (c.hx * c.hx, c.hx * c.hx, c.hy * c.hy, c.hy * c.hy)
        # the neighbour of every (level, node) as a flat index, for the scatters of J^T
        base = np.arange(self.Nt)[:, None] * self.N
        self._flat_nb = tuple((base + nb[None, :]).ravel() for nb in self.nbrs)
        self._V = np.asarray(data.V, dtype=np.float64).ravel()

    # --- packing --------------------------------------------------------------------------------
    def pack(self, U: np.ndarray, M: np.ndarray) -> np.ndarray:
        """The unknowns ``z`` of the full fields ``U, M`` of shape ``(Nt+1, ny, nx)``."""
        return self.interleave(self._flat(U[:-1]), self._flat(M[1:]))

    def unpack(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Full fields ``(U, M)`` of shape ``(Nt+1, ny, nx)`` (with ``U^{Nt} = g``, ``M^0 = m0``)."""
        z = z.reshape(self.Nt, self.N, 2)
        shape = (self.Nt + 1, *self.grid_shape)
        U, M = np.empty(shape), np.empty(shape)
        U[:-1], U[-1] = z[..., 0].reshape(self.Nt, *self.grid_shape), self.data.g
        M[0], M[1:] = self.data.m_init, z[..., 1].reshape(self.Nt, *self.grid_shape)
        return U, M

    def _flat(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, dtype=np.float64).reshape(X.shape[0], self.N)

    # --- the operators --------------------------------------------------------------------------
    def values(self, a) -> np.ndarray:
        """``(5, Nt, N)``: the values ``[v_0, v_E, v_W, v_N, v_S]`` of the rows of every ``J^n``
        (the kernels' :meth:`Assembly.values <mfg_core.backends.numpy.fdm2d.Assembly.values>`, for all
        levels at once)."""
        return self.asm.values(a)

    def apply_J(self, v: np.ndarray, X: np.ndarray) -> np.ndarray:
        """``J^n X^n`` for every level (``X`` of shape ``(Nt, N)``)."""
        out = v[0] * X
        for k, nb in enumerate(self.nbrs):
            out += v[k + 1] * X[:, nb]
        return out

    def scatter(self, k: int, G: np.ndarray) -> np.ndarray:
        """``out[n, q_k(p)] += G[n, p]`` (the transpose of the gather ``X[:, q_k]``)."""
        return np.bincount(self._flat_nb[k], weights=G.ravel(), minlength=G.size).reshape(G.shape)

    def apply_adjoint(self, v: np.ndarray, X: np.ndarray) -> np.ndarray:
        """``W^{-1} (J^n)^T W X^n`` for every level."""
        mu = self.wf * X
        out = v[0] * mu
        for k in range(4):
            out += self.scatter(k, v[k + 1] * mu)
        return out / self.wf

    # --- residual -------------------------------------------------------------------------------
    def residual(self, U: np.ndarray, M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(R_U, R_M)``, each of shape ``(Nt, N)`` (row ``n`` of each)."""
        U0, U1 = self._flat(U[:-1]), self._flat(U[1:])
        M0, M1 = self._flat(M[:-1]), self._flat(M[1:])
        a, ham, lap = _fdm2d.upwind2d(U0, self.c)
        S = self._V + self.scale * self._flat(np.asarray(self.data.F(M[1:]), dtype=np.float64))
        RU = U0 - U1 + self.dt * self.free * (-self.nu * lap + ham - S)
        RM = self.apply_adjoint(self.values(a), M1) - M0
        return RU, RM

    # --- Jacobian -------------------------------------------------------------------------------
    def linearise(self, U: np.ndarray, M: np.ndarray) -> "Linearisation2D":
        return Linearisation2D(self, U, M)



class Linearisation2D:
    """The 2D Jacobian at ``(U, M)`` in block form (the interface of
    :class:`mfg_core.newton.Linearisation`): products, the block-bidiagonal solves by per-level
    sparse LUs, and the assembled sparse matrix (see the module docstring)."""

    def __init__(self, system: DiscreteSystem2D, U: np.ndarray, M: np.ndarray):
        s = self.system = system
        U0 = s._flat(U[:-1])
        M1 = s._flat(M[1:])
        self.a, _, _ = _fdm2d.upwind2d(U0, s.c)
        self.v = s.values(self.a)
        dF = s._flat(np.asarray(s.data.dF(M[1:]), dtype=np.float64))
        self.D = -s.dt * s.scale * s.free * dF  # A_UM (diagonal)
        mu = s.wf * M1
        # c_k = mu f dt chi_k / (h_k^2 lam), chi_k the one-sided derivative of the residual's branch
        du = [U0[:, nb] - U0 for nb in s.nbrs]  # u_q - u for E, W, N, S
        chi = (du[0] < 0.0, du[1] < 0.0, du[2] < 0.0, du[3] < 0.0)  # u - u_W > 0 is u_W - u < 0
        base = mu * s.free * s.dt / s.lam
        self.coef = [np.where(chi[k], base / s.h2[k], 0.0) for k in range(4)]
        self._lu = None

    # --- products -------------------------------------------------------------------------------
    def A_MU(self, dU: np.ndarray) -> np.ndarray:
        """``dR_M/dU`` applied to ``dU`` (shape ``(Nt, N)``)."""
        s = self.system
        out = np.zeros_like(dU)
        for k, nb in enumerate(s.nbrs):
            g = self.coef[k] * (dU[:, nb] - dU)
            out += s.scatter(k, g) - g
        return out / s.wf

    def matvec(self, dU: np.ndarray, dM: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The Jacobian applied to ``(dU, dM)`` (the U-part ``dU^0..dU^{Nt-1}``, M-part ``dM^1..dM^{Nt}``)."""
        s = self.system
        hjb = s.apply_J(self.v, dU) + self.D * dM
        hjb[:-1] -= dU[1:]
        fp = s.apply_adjoint(self.v, dM) + self.A_MU(dU)
        fp[1:] -= dM[:-1]
        return hjb, fp

    # --- block solves ---------------------------------------------------------------------------
    def _factors(self):
        if self._lu is None:
            s = self.system
            lu = []
            for n in range(s.Nt):
                J = s.asm.matrix(tuple(ak[n] for ak in self.a))
                try:
                    lu.append(_fdm2d.factor(J))
                except RuntimeError as exc:  # "Factor is exactly singular"
                    raise ConvergenceError(f"the HJB Newton matrix of time level {n} is singular: {exc}") from exc
            self._lu = lu
        return self._lu

    def back(self, rhs: np.ndarray) -> np.ndarray:
        """Solve ``A_UU x = rhs`` backward in time: ``J^n x^n = rhs^n + x^{n+1}``, ``x^{Nt} = 0``."""
        lu = self._factors()
        x = np.empty_like(rhs)
        nxt = 0.0
        for n in range(self.system.Nt - 1, -1, -1):
            nxt = x[n] = lu[n].solve(rhs[n] + nxt)
        return x

    def fwd(self, rhs: np.ndarray) -> np.ndarray:
        """Solve ``A_MM x = rhs`` forward in time: ``(J^n)^T y^n = W rhs^n + y^{n-1}``, ``x = W^{-1} y``."""
        lu = self._factors()
        w = self.system.wf
        y = w * rhs
        prev = 0.0
        for n in range(self.system.Nt):
            prev = y[n] = lu[n].solve(y[n] + prev, trans="T")
        return y / w

    # --- the assembled matrix -------------------------------------------------------------------
    def assemble(self, fmt: str = "csc") -> sp.spmatrix:
        s = self.system
        N, Nt, w = s.N, s.Nt, s.wf
        base = np.arange(Nt)[:, None] * N
        p = base + np.arange(N)[None, :]  # level-local flat index of (n, p)
        nbs = [base + nb[None, :] for nb in s.nbrs]
        wq = [w[nb][None, :] for nb in s.nbrs]
        uU, uM = 2 * p, 2 * p + 1  # column (and HJB / FP row) of U^n_p and M^{n+1}_p
        entries = SparseEntries(s.size)
        add = entries.add

        v = self.v
        # HJB rows: J^n on U^n, -I on U^{n+1}, A_UM on M^{n+1}
        add(uU, uU, v[0])
        for k in range(4):
            add(uU, 2 * nbs[k], v[k + 1])
        if Nt > 1:
            add(uU[:-1], uU[1:], -1.0)
        add(uU, uM, self.D)
        # FP rows: (W^{-1} J^T W)_{r,p} = J_{p,r} w_p / w_r on M^{n+1}_p
        add(uM, uM, v[0])
        for k in range(4):
            add(2 * nbs[k] + 1, uM, v[k + 1] * w[None, :] / wq[k])
        # dR_M/dU: c_k (dU_q - dU_p) into row q (+) and row p (-)
        for k in range(4):
            ck, q = self.coef[k], nbs[k]
            add(2 * q + 1, 2 * q, ck / wq[k])
            add(2 * q + 1, 2 * p, -ck / wq[k])
            add(uM, 2 * q, -ck / w[None, :])
            add(uM, 2 * p, ck / w[None, :])
        if Nt > 1:
            add(uM[1:], uM[:-1], -1.0)
        return entries.matrix(fmt)
