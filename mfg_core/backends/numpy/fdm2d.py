r"""Reference 2D finite-difference kernels (numpy + scipy.sparse): the backward HJB sweep and the
forward FP sweep on a rectangle, optionally with an obstacle.

    HJB:  -u_t - nu (u_xx + u_yy) + |grad u|^2 / (2 lam) = V(x, y) + F(m),   u(T) = g
    FP:    m_t - nu (m_xx + m_yy) - div(m grad u / lam) = 0,                  m(0) = m0

Grid, walls and obstacle
------------------------
Nodes in array order ``(y, x)``, flattened ``p = j nx + i``; spacings ``hx``, ``hy``. Each axis is
treated exactly as the 1D scheme treats its one axis (:mod:`mfg_core.backends.numpy.fdm`):
Neumann is vertex-centred with the wall on the end node and a ghost reflected about it
(``u_{-1} = u_1``), trapezoidal weights; periodic wraps. The weights are the tensor product, and
with them the stencil is self-adjoint. A *blocked* node (``grid.obstacle``) is kept in the arrays
but not in the equations: its row of ``A`` is zero (``u`` there keeps its terminal value ``g``,
``m`` there stays 0), and every link between a free and a blocked node is cut -- the ghost across
it is the node itself, a zero normal gradient, so no diffusive or advective flux crosses it. The
wall of an obstacle therefore sits at the link midpoints (the obstacle is the union of the blocked
nodes' control volumes), and the free nodes next to it keep their full weight ``hx hy``.
The neighbour indices with the ghosts, wraps and cuts are built once (:func:`checks.stencil2d`).

HJB (implicit Euler, Engquist-Osher in each direction, Newton)
--------------------------------------------------------------
With ``D^\pm_x u_p = \pm(u_{E/W(p)} - u_p)/hx`` (and ``y`` alike), the monotone Hamiltonian is the
sum over the two directions of the 1D one,

    H_h(u)_p = ( min(D^+_x u,0)^2 + max(D^-_x u,0)^2 + min(D^+_y u,0)^2 + max(D^-_y u,0)^2 ) / (2 lam),

and ``u^n`` solves the dt-scaled residual ``R(u) = u - u^{n+1} + dt (-nu Lap_h u + H_h(u) - S^{n+1})
= 0`` on the free nodes (``R_p = u_p - u^{n+1}_p`` on blocked ones). Its Jacobian ``J = I + dt A(u)``
is the 5-point matrix with, for ``a^+_x = min(D^+_x u, 0)/lam <= 0``, ``a^-_x = max(D^-_x u, 0)/lam >= 0``,

    J_{p,E} = dt(-nu/hx^2 + a^+_x/hx),  J_{p,W} = dt(-nu/hx^2 - a^-_x/hx),  (N, S alike with hy)
    J_{p,p} = 1 - J_{p,E} - J_{p,W} - J_{p,N} - J_{p,S}                     (A 1 = 0)

(at a Neumann wall E = W and the two entries add up, as the 1D bands fold; at a cut link the
entry falls on the diagonal and cancels). So ``J`` is an M-matrix with unit row sums, and Newton
converges from ``u^{n+1}``; it stops as in 1D (``max|R| <= newton_tol max(1, max|u|)`` or a
round-off update). Assembly is vectorised: the COO pattern (slots ``p, E, W, N, S`` of every row)
and its map onto the CSC arrays are built once in the factory; a Newton step only computes the
``5 n`` values and sums them into place with one ``bincount``.

FP (the discrete adjoint, mass variables ``mu = w m``)
------------------------------------------------------
``(I + dt A(u^n))^T mu^{n+1} = mu^n``. Column sums of ``J^T`` are the row sums of ``J``, 1, so
``sum(mu)`` is conserved to round-off; ``J^T`` is an M-matrix, so ``mu >= 0``; a blocked node's
column of ``J`` is ``e_p``, so its ``mu`` stays 0.

Linear solve (chosen by measurement: benchmarks/README.md, "2D numpy reference")
--------------------------------------------------------------------------------
Every factorisation is SuperLU (``splu``) with the MMD_AT_PLUS_A ordering (the 5-point pattern is
symmetric; it fills about half of the default COLAMD) and no pivoting (:func:`factor`): 5 ms at 64^2,
40-65 ms at 128^2 per LU, against 0.2-2.7 s published for a direct LU at 100^2-200^2 and slower ILU
(ILUTP costs as much as the LU here) or Jacobi Krylov solves. FP: one direct LU per time step, so the
mass is exact to round-off with no iteration tolerance. HJB: Newton's systems change little from one
step to the next, so :class:`NewtonSolve` runs BiCGStab on the exact Jacobian preconditioned by a
reused LU (relative residual 1e-12, refactorised when it takes over 3 iterations or fails): 1.7x
(64^2) to 2.9x (128^2) faster per Newton step than a fresh LU, the same U to 2e-16.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, bicgstab, splu

from .. import checks

_ROUNDOFF = 16 * np.finfo(np.float64).eps
#: SuperLU column ordering (see the module docstring)
PERMC_SPEC = "MMD_AT_PLUS_A"


def upwind2d(u: np.ndarray, c: checks.FDM2DConstants):
    """``((a^+_x, a^-_x, a^+_y, a^-_y), H_h(u), Lap_h(u))`` of flattened ``u`` (last axis the nodes)."""
    st, hx, hy, lam = c.stencil, c.hx, c.hy, c.lam
    uE, uW, uN, uS = u[..., st.east], u[..., st.west], u[..., st.north], u[..., st.south]
    axp = np.minimum(uE - u, 0.0) / (hx * lam)
    axm = np.maximum(u - uW, 0.0) / (hx * lam)
    ayp = np.minimum(uN - u, 0.0) / (hy * lam)
    aym = np.maximum(u - uS, 0.0) / (hy * lam)
    # grouped per direction so that a field constant in y gives the 1D numbers exactly
    ham = 0.5 * lam * ((axp * axp + axm * axm) + (ayp * ayp + aym * aym))
    lap = (uE - 2.0 * u + uW) / (hx * hx) + (uN - 2.0 * u + uS) / (hy * hy)
    return (axp, axm, ayp, aym), ham, lap


class Assembly:
    """The CSC pattern of ``J = I + dt A`` on the stencil, built once; :meth:`matrix` fills it."""

    def __init__(self, c: checks.FDM2DConstants):
        st = c.stencil
        n = st.size
        p = np.arange(n, dtype=np.int64)
        rows = np.concatenate([p] * 5)
        cols = np.concatenate([p, st.east, st.west, st.north, st.south])
        keys, self.slot = np.unique(cols * n + rows, return_inverse=True)  # CSC order: by column, then row
        self.indices = (keys % n).astype(np.int32)
        self.indptr = np.searchsorted(keys // n, np.arange(n + 1)).astype(np.int32)
        self.nnz = keys.size
        self.n = n
        self.free = st.free.astype(np.float64)
        self.cx = c.dt * c.nu / (c.hx * c.hx)
        self.cy = c.dt * c.nu / (c.hy * c.hy)
        self.dx, self.dy = c.dt / c.hx, c.dt / c.hy

    def values(self, a):
        """The ``(5, n)`` COO values ``[diag, E, W, N, S]`` for the upwind coefficients ``a`` (each of
        shape ``(n,)``; or ``(..., n)``: the values of several matrices at once, ``(5, ..., n)``)."""
        axp, axm, ayp, aym = a
        v = np.empty((5,) + np.shape(axp))
        np.multiply(self.free, -self.cx + self.dx * axp, out=v[1])
        np.multiply(self.free, -self.cx - self.dx * axm, out=v[2])
        np.multiply(self.free, -self.cy + self.dy * ayp, out=v[3])
        np.multiply(self.free, -self.cy - self.dy * aym, out=v[4])
        v[0] = 1.0 - (v[1] + v[2] + v[3] + v[4])
        return v

    def matrix(self, a) -> sp.csc_matrix:
        """``J`` in CSC form (duplicates of the Neumann fold and the cut links summed in place)."""
        data = np.bincount(self.slot, weights=self.values(a).ravel(), minlength=self.nnz)
        return sp.csc_matrix((data, self.indices, self.indptr), shape=(self.n, self.n))


def factor(J: sp.csc_matrix):
    """Sparse LU of ``J`` (see the module docstring for the choice).

    No pivoting (``diag_pivot_thresh=0`` with ``SymmetricMode``: rows permuted like the columns):
    ``J`` is an M-matrix with unit row sums, a symmetric permutation keeps it one, and Gaussian
    elimination on a row diagonally dominant M-matrix is stable without pivoting (every Schur
    complement is again one); the pivot search only costs time.
    """
    return splu(J, permc_spec=PERMC_SPEC, diag_pivot_thresh=0.0, relax=1, panel_size=1,
                options={"SymmetricMode": True})


class NewtonSolve:
    """``J delta = b`` for the Newton steps of one HJB sweep (see "Linear solve" above): BiCGStab on
    the exact ``J``, preconditioned by the LU of an earlier Jacobian of the same sweep, to a relative
    residual ``RTOL``; when it does not get there in ``MAXITER`` iterations (the Jacobian has moved
    too far from the factorised one) ``J`` itself is factorised, solved directly, and becomes the
    preconditioner. ``factorisations`` and ``krylov`` count what happened (for the benchmarks)."""

    RTOL = 1e-12
    MAXITER = 8
    #: a solve that needed more iterations than this refactorises for the next one
    REFRESH = 3

    def __init__(self):
        self.lu = None
        self.M = None
        self.factorisations = 0
        self.krylov = 0
        self.iterations = 0

    def _factor(self, J):
        self.lu = factor(J)
        self.M = LinearOperator(J.shape, self.lu.solve, dtype=np.float64)
        self.factorisations += 1

    def __call__(self, J: sp.csc_matrix, b: np.ndarray) -> np.ndarray:
        if self.lu is not None:
            count = [0]

            def tick(_):
                count[0] += 1

            x, info = bicgstab(J, b, rtol=self.RTOL, atol=0.0, maxiter=self.MAXITER, M=self.M, callback=tick)
            self.iterations += count[0]
            if info == 0 and np.all(np.isfinite(x)):
                self.krylov += 1
                if count[0] > self.REFRESH:
                    self._factor(J)  # a fresher preconditioner for the steps to come
                return x
        self._factor(J)
        return self.lu.solve(b)


def hjb_step(unext, source, c: checks.FDM2DConstants, asm: Assembly, solve=None):
    """One implicit 2D HJB time step by Newton on flattened arrays; returns ``(u, newton_iterations)``
    (negative count if the tolerance was not reached). ``solve(J, b)`` is the linear solve
    (:class:`NewtonSolve` of the sweep; a direct LU if not given)."""
    dt, nu = c.dt, c.nu
    free = asm.free
    if solve is None:
        solve = lambda J, b: factor(J).solve(b)  # noqa: E731
    u = unext.copy()
    for it in range(1, c.newton_maxiter + 1):
        a, ham, lap = upwind2d(u, c)
        res = u - unext + dt * free * (-nu * lap + ham - source)
        scale = max(1.0, float(np.max(np.abs(u))))
        if np.max(np.abs(res)) <= c.newton_tol * scale:
            return u, it - 1
        delta = solve(asm.matrix(a), -res)
        u = u + delta
        if np.max(np.abs(delta)) <= _ROUNDOFF * scale:
            return u, it
    a, ham, lap = upwind2d(u, c)
    res = u - unext + dt * free * (-nu * lap + ham - source)
    if np.max(np.abs(res)) <= c.newton_tol * max(1.0, float(np.max(np.abs(u)))):
        return u, c.newton_maxiter
    return u, -c.newton_maxiter


def make_hjb_sweep(scheme, *, newton_tol=1e-12, newton_maxiter=50):
    """The backward 2D HJB sweep: ``sweep(source, terminal) -> (U, newton_its)``.

    ``source`` has shape ``(Nt+1, Ny', Nx')`` (``source[n] = V + F(m^n)``; step ``n`` uses
    ``source[n+1]``), ``terminal`` ``(Ny', Nx')``; ``U`` like ``source``.
    """
    c = checks.fdm2d_constants(scheme, "numpy", "HJB sweep", newton_tol, newton_maxiter)
    asm = Assembly(c)

    def sweep(source, terminal):
        source = checks.field("source", source, c.shape)
        terminal = checks.field("terminal", terminal, c.shape[1:])
        nt1 = c.shape[0]
        S = source.reshape(nt1, -1)
        U = np.empty((nt1, asm.n))
        its = np.zeros(nt1 - 1, dtype=np.int64)
        U[-1] = terminal.ravel()
        solve = NewtonSolve()  # its preconditioner lives for one sweep
        for k in range(nt1 - 2, -1, -1):
            U[k], its[k] = hjb_step(U[k + 1], S[k + 1], c, asm, solve)
        sweep.last_solve = solve
        sweep.diagnostics = {"newton_steps": int(np.abs(its).sum()), "krylov_iterations": solve.iterations,
                             "factorisations": solve.factorisations}
        return U.reshape(c.shape), its

    sweep.assembly = asm
    return sweep


def make_fp_sweep(scheme):
    """The forward 2D FP sweep (adjoint scheme, mass variables ``mu = w m``): ``sweep(U, mu0) -> mu``,
    shapes ``(Nt+1, Ny', Nx')``; ``sum(mu[n])`` equals ``sum(mu0)`` to round-off."""
    c = checks.fdm2d_constants(scheme, "numpy", "FP sweep")
    asm = Assembly(c)

    def sweep(U, mu0):
        U = checks.field("U", U, c.shape)
        mu0 = checks.field("mu0", mu0, c.shape[1:])
        nt1 = c.shape[0]
        Uf = U.reshape(nt1, -1)
        mu = np.empty((nt1, asm.n))
        mu[0] = mu0.ravel()
        for k in range(nt1 - 1):
            a, _, _ = upwind2d(Uf[k], c)
            # J^T mu^{k+1} = mu^k: one LU of J, solved transposed
            mu[k + 1] = factor(asm.matrix(a)).solve(mu[k], trans="T")
        sweep.diagnostics = {"krylov_iterations": 0, "factorisations": nt1 - 1}
        return mu.reshape(c.shape)

    sweep.assembly = asm
    return sweep
