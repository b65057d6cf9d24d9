"""The linear solve of one Newton step of the 2D HJB (numpy reference): ``python -m benchmarks linear2d``.

The system is ``J x = b`` with ``J = I + dt A(u)`` the 5-point Engquist-Osher Jacobian
(:mod:`mfg_core.backends.numpy.fdm2d`), assembled at a smooth value function with O(1) gradients
(``u = 2 |z - (0.75, 0.6)|^2 + 0.3 sin(3 pi x) cos(2 pi y)`` on the unit square, Neumann) with
``sigma = 0.3`` and ``dt = 1 / N`` (``Nt = N``, as the convergence tests refine) and ``dt = 1/50``.
Candidates, each timed for what one Newton step pays (factorisation + solve, or preconditioner +
Krylov iterations to a relative residual of 1e-12):

* SuperLU (``splu``) with the COLAMD (scipy's default) and the MMD_AT_PLUS_A column orderings;
* LAPACK banded LU (``scipy.linalg.solve_banded``, bandwidth ``Nx + 1``);
* BiCGStab and GMRES preconditioned by SuperLU's ILU (``spilu``, drop_tol 1e-4) built per step;
* BiCGStab preconditioned by the exact LU of the *previous time step's* Jacobian (``u`` moved by
  O(dt)), reused: only the Krylov iterations are paid per step (the refactorisations it still needs
  now and then are not counted: a lower bound for that strategy);
* BiCGStab with a Jacobi (diagonal) preconditioner.

Median of ``REPEATS`` runs. Then whole sweeps (``evacuation2d`` at ``Nx = Ny = Nt = N``, the
obstacle included, ``M = m0``): the HJB sweep with a direct LU per Newton step against the
kernel's :class:`~mfg_core.backends.numpy.fdm2d.NewtonSolve` (BiCGStab preconditioned by a reused
LU, refactorised when it stops paying), per Newton step and with the largest difference of the two
``U``; and the FP sweep (one direct LU per time step). Writes ``linear2d.md`` and ``linear2d.csv``
to ``outdir``.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from mfg_core.backends import checks
from mfg_core.backends.numpy import fdm2d
from mfg_core.grid import Scheme, rectangle

REPEATS = 5
SIZES = (64, 128)
RTOL = 1e-12


def _jacobian(N: int, Nt: int, shift: float = 0.0):
    """Assembly and upwind coefficients at ``u`` (``shift``: u moved by ``shift`` dt, a previous step)."""
    scheme = Scheme(rectangle(0.0, 1.0, N, 0.0, 1.0, N), 1.0, Nt, 0.3)
    c = checks.fdm2d_constants(scheme, "numpy", "bench")
    y, x = scheme.grid.mesh()
    u = 2.0 * ((x - 0.75) ** 2 + (y - 0.6) ** 2) + 0.3 * np.sin(3 * np.pi * x) * np.cos(2 * np.pi * y)
    u = u * (1.0 + shift * scheme.dt) + shift * scheme.dt * np.cos(4.0 * x)
    asm = fdm2d.Assembly(c)
    a, _, _ = fdm2d.upwind2d(u.ravel(), c)
    return asm, a, scheme.grid.size


def _time(fn) -> float:
    ts = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def _banded(J: sp.csc_matrix, bw: int):
    Jd = J.todia()
    ab = np.zeros((2 * bw + 1, J.shape[0]))
    for off, row in zip(Jd.offsets, Jd.data):
        if abs(off) <= bw:
            ab[bw - off] = row
    return ab


def cases(N: int, Nt: int):
    asm, a, n = _jacobian(N, Nt)
    J = asm.matrix(a)
    b = np.random.default_rng(0).standard_normal(n)
    bw = N + 1
    asm_prev, a_prev, _ = _jacobian(N, Nt, shift=1.0)
    lu_prev = spla.splu(asm_prev.matrix(a_prev), permc_spec="MMD_AT_PLUS_A")
    diag = J.diagonal()
    its = {}

    def krylov(method, M, key):
        count = [0]

        def cb(_):
            count[0] += 1

        kw = {"callback_type": "pr_norm"} if method is spla.gmres else {}
        x, info = method(J, b, rtol=RTOL, atol=0.0, M=M, callback=cb, maxiter=1000, **kw)
        its[key] = count[0]
        return x

    def ilu_op(ilu):
        return spla.LinearOperator(J.shape, ilu.solve)

    out = {
        "assembly": lambda: asm.matrix(a),
        "splu COLAMD": lambda: spla.splu(asm.matrix(a)).solve(b),
        "splu MMD_AT_PLUS_A": lambda: spla.splu(asm.matrix(a), permc_spec="MMD_AT_PLUS_A").solve(b),
        "splu MMD_AT_PLUS_A, no pivoting (fdm2d.factor)": lambda: fdm2d.factor(asm.matrix(a)).solve(b),
        "banded LU (gbsv)": lambda: sla.solve_banded((bw, bw), _banded(asm.matrix(a), bw), b),
        "ILU + BiCGStab": lambda: krylov(spla.bicgstab, ilu_op(spla.spilu(asm.matrix(a), drop_tol=1e-4,
                                                                         fill_factor=10)), "ILU + BiCGStab"),
        "ILU + GMRES": lambda: krylov(spla.gmres, ilu_op(spla.spilu(asm.matrix(a), drop_tol=1e-4,
                                                                   fill_factor=10)), "ILU + GMRES"),
        "previous step's LU + BiCGStab": lambda: krylov(spla.bicgstab, ilu_op(lu_prev),
                                                        "previous step's LU + BiCGStab"),
        "Jacobi + BiCGStab": lambda: krylov(spla.bicgstab, sp.diags(1.0 / diag), "Jacobi + BiCGStab"),
    }
    rows = []
    for name, fn in out.items():
        t = _time(fn)
        x = fn()
        res = float(np.abs(J @ x - b).max() / np.abs(b).max()) if isinstance(x, np.ndarray) else float("nan")
        rows.append({"N": N, "unknowns": n, "Nt": Nt, "method": name, "ms": 1e3 * t,
                     "iterations": its.get(name, ""), "residual": res})
    return rows


def sweeps(N: int):
    """Per-Newton-step cost of whole HJB sweeps (direct LU vs NewtonSolve) and the FP sweep per step."""
    import mfg_core as mc

    p = mc.problems.load("evacuation2d", Nx=N, Ny=N, Nt=N)
    M = np.broadcast_to(p.m_init, p.shape).copy()
    S = (p.V + p.F(M)).reshape(p.Nt + 1, -1)
    c = checks.fdm2d_constants(p.scheme, "numpy", "bench")
    asm = fdm2d.Assembly(c)
    rows = []
    U = {}
    for name in ("direct LU per Newton step", "NewtonSolve (reused LU + BiCGStab)"):
        t0 = time.perf_counter()
        u = p.g.ravel()
        Us, its = [u], 0
        solve = fdm2d.NewtonSolve() if name.startswith("NewtonSolve") else None
        for k in range(p.Nt - 1, -1, -1):
            u, n = fdm2d.hjb_step(u, S[k + 1], c, asm, solve)
            its += n
            Us.append(u)
        t = time.perf_counter() - t0
        U[name] = np.array(Us)
        extra = (f"{solve.factorisations} LU, {solve.krylov} Krylov ({solve.iterations} its)"
                 if solve is not None else f"{its} LU")
        rows.append({"N": N, "unknowns": p.grid.size, "Nt": p.Nt, "method": f"HJB sweep: {name}",
                     "ms": 1e3 * t / its, "iterations": extra, "residual": float("nan")})
    diff = float(np.abs(U["direct LU per Newton step"] - U["NewtonSolve (reused LU + BiCGStab)"]).max())
    rows[-1]["residual"] = diff
    fp = mc.get_backend("numpy").make_fp_sweep(p.scheme)
    Uf = U["NewtonSolve (reused LU + BiCGStab)"][::-1].reshape(p.shape)
    t0 = time.perf_counter()
    mu = fp(Uf, (p.weights * p.m_init))
    t = time.perf_counter() - t0
    mass = float(np.abs(mu.reshape(p.Nt + 1, -1).sum(axis=1) - 1.0).max())
    rows.append({"N": N, "unknowns": p.grid.size, "Nt": p.Nt, "method": "FP sweep: direct LU per time step",
                 "ms": 1e3 * t / p.Nt, "iterations": f"{p.Nt} LU", "residual": mass})
    return rows


def main(outdir):
    from ._table import write_table

    rows = []
    for N in SIZES:
        for Nt in (N, 50):
            rows += cases(N, Nt)
    for N in SIZES:
        rows += sweeps(N)
    write_table(outdir, "linear2d", rows, title="2D HJB Jacobian: one linear solve per Newton step",
                notes=[f"median of {REPEATS}; Krylov to relative residual {RTOL:g}; residual = "
                       "max|J x - b| / max|b|; for the sweeps: ms per Newton step (FP: per time step), "
                       "residual = max |U_direct - U_NewtonSolve| (FP: max |mass - 1| over the steps)"],
                columns=["N", "unknowns", "Nt", "method", "ms", "iterations", "residual"])


if __name__ == "__main__":  # pragma: no cover
    import pathlib

    main(pathlib.Path("results/bench"))
