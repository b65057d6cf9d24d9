r"""torch 2D finite-difference kernels: the discrete 2D HJB and FP of
:mod:`mfg_core.backends.numpy.fdm2d` (which derives them) on float64 tensors, with an iterative
linear solve that runs on any device.

    HJB step n: Newton on R(u) = u - u^{n+1} + dt (-nu Lap_h u + H_h(u) - S^{n+1}) = 0 (free nodes),
                J(u) delta = R(u), u <- u - delta,  J = I + dt A(u) the 5-point M-matrix (A 1 = 0);
                stop when max|R| <= newton_tol max(1, max|u|) or the update is <= 16 eps times that.
    FP step n:  (I + dt A(u^n))^T mu^{n+1} = mu^n,  mu = w m (mass variables).

Linear solve (the same algorithm on every backend of the project)
-----------------------------------------------------------------
BiCGStab, right-preconditioned by the alternating-direction product ``P = (I + dt A_y)(I + dt A_x)``:
``A = A_x + A_y`` split by direction (``A_x`` holds the E/W couplings of each row and their share of
the diagonal, ``A_y`` the N/S ones), so ``P^{-1} v`` is two batches of 1D tridiagonal solves, along
``y`` for every ``x``-line, then along ``x`` for every ``y``-line (FP: ``P^T``, the transposed line
systems in the opposite order). HJB: from 0 to ``||r|| <= 1e-13 ||b||``; FP: from ``mu^n`` to
``||r|| <= 1e-15 ||b||``; at most 60 iterations, a breakdown (``rho = 0`` or ``omega = 0``) restarts
the shadow residual, and an unconverged solve is used as it is (HJB: Newton then needs another step,
or reports a negative count; nothing falls back to numpy). The counts go to ``kernel.diagnostics``.

Mass (FP). The column sums of ``J^T`` are 1, so ``sum(mu^{n+1}) = sum(mu^n) - sum(r)``: after the
solve, negatives of round-off size (``>= -1e-15 max mu``) are set to 0 and ``mu^{n+1}`` is scaled by
``sum(mu^n) / sum(mu^{n+1})`` (the defect added in proportion to ``mu^{n+1}``), so the mass is exact to
round-off, blocked nodes stay exactly 0 (their rows and columns are ``e_p``, and every operation
below maps a zero there to a zero) and ``mu >= 0``.

Line solves. Parallel cyclic reduction (PCR, as in the 1D kernels: at these sizes a torch op costs
its dispatch), batched over all lines at once on the flat ``(y, x)`` array: along ``x`` an equation
is coupled to ``p -+ s``, along ``y`` to ``p -+ s nx``. No padding is needed between lines: the
coupling of a line's first (last) node to its predecessor (successor) is 0 -- a Neumann wall folds it
onto the inner neighbour, a cut link has none, a periodic corner is split off by Sherman-Morrison as
in 1D -- and PCR keeps such couplings exactly 0, so a line never sees its neighbour's numbers. The
line systems are strictly diagonally dominant M-matrices (multipliers in [0, 1): stable), their
multipliers are reduced once per Newton step (FP: per time step) and each preconditioner application
only applies them (two fused multiply-adds per level). A blocked node is an identity row.

Layout: vectors that are shifted (preconditioner inputs, matrix-vector inputs) live in flat buffers
with zero pads of the largest stride on both sides; views of them are made once in the factory.
A sweep's results are native on the kernel's device (numpy on the CPU); one host sync per Newton step
and one per BiCGStab iteration. The kernels leave torch's thread settings alone.
"""

from __future__ import annotations

import math
import threading
from typing import List

import numpy as np
import torch

from .. import checks
from ._common import F64, device_of, field, native
from .fdm import _scripted

_ROUNDOFF = 16 * float(np.finfo(np.float64).eps)
#: relative residual of the Newton systems and of the FP systems
HJB_RTOL = 1e-13
FP_RTOL = 1e-15
#: BiCGStab iterations per solve at most; an FP solve that has not converged restarts, FP_CYCLES times at most
MAXITER = 60
FP_CYCLES = 4
#: negatives above -NEG_ROUNDOFF * max(mu) after an FP solve are round-off, set to 0
NEG_ROUNDOFF = 1e-15


def _levels(n: int) -> int:
    return max(1, math.ceil(math.log2(n)))


class _Layout:
    """Sizes of the flat ``(y, x)`` layout and its padded buffers (pad = the largest PCR stride)."""

    def __init__(self, c: checks.FDM2DConstants, device: torch.device):
        st = c.stencil
        self.ny, self.nx, self.n = st.ny, st.nx, st.size
        self.Lx, self.Ly = _levels(st.nx), _levels(st.ny)
        self.pad = max((1 << (self.Ly - 1)) * st.nx, 1 << (self.Lx - 1), 2 * st.nx)
        self.W = self.n + 2 * self.pad
        self.f64 = dict(dtype=F64, device=device)

    def buffer(self, fill: float = 0.0) -> torch.Tensor:
        return torch.full((self.W,), fill, **self.f64)

    def mid(self, buf: torch.Tensor, shift: int = 0) -> torch.Tensor:
        return buf[self.pad + shift:self.pad + shift + self.n]


class _Bands:
    r"""The Jacobian's couplings, assembled once per Newton (FP: time) step from ``u``.

    With ``Q_d = min(u_{d(p)} - u_p, 0)`` per direction ``d`` (``d(p)`` the stencil's neighbour, with
    ghosts and cuts), the reference's entries are ``J_{p,d(p)} = -dt nu/h^2 + dt Q_d / (h^2 lam)``
    (free rows); ``band_d = F_d (dt nu/h^2 - dt Q_d/(h^2 lam)) >= 0`` is minus the coupling to the *true*
    neighbour of ``p`` in direction ``d`` (E/W: ``p -+ 1``, N/S: ``p -+ nx``, periodic: wrapped),
    where ``F_d`` is 2 on the inner side of a Neumann wall (the ghost's entry folds onto it), 0 on
    its outer side, on a cut link and on a blocked row, 1 elsewhere. Then ``J v = D v - sum_d band_d
    v_{d}``, ``D = 1 + sum_d band_d``, and ``b_x = 1 + band_W + band_E`` (``y`` alike) are the
    diagonals of ``I + dt A_x``, ``I + dt A_y``. On a periodic axis the wrap couplings (the line
    systems' corners) are copied out and zeroed in the bands. ``order`` is the row order of the four
    bands in ``flat`` (chosen by the operator that reads them, so that its pairs of rows are views).
    """

    def __init__(self, c: checks.FDM2DConstants, lay: _Layout, order: str, periodic: tuple[bool, bool],
                 device: torch.device):
        st = c.stencil
        ny, nx, n, pad, W = lay.ny, lay.nx, lay.n, lay.pad, lay.W
        f64 = lay.f64
        self.order = order
        nbr = {"E": st.east, "W": st.west, "N": st.north, "S": st.south}
        p = np.arange(n)
        j, i = np.divmod(p, nx)
        # the true neighbours (-1 where there is none: beyond a Neumann wall)
        py, px = periodic
        self.py, self.px = py, px
        true = {
            "E": np.where(i + 1 < nx, p + 1, (j * nx) if px else -1),
            "W": np.where(i - 1 >= 0, p - 1, (j * nx + nx - 1) if px else -1),
            "N": np.where(j + 1 < ny, p + nx, i if py else -1),
            "S": np.where(j - 1 >= 0, p - nx, ((ny - 1) * nx + i) if py else -1),
        }
        F = {d: np.zeros(n) for d in "EWNS"}
        for src in "EWNS":
            slot = nbr[src]
            landed = slot == p  # cut (or blocked row): the entry falls on the diagonal and cancels
            for tgt in "EWNS":
                hit = (slot == true[tgt]) & ~landed
                F[tgt] += hit
                if tgt != src and hit.any():
                    # a ghost folded onto the true neighbour: its Q is that neighbour's, bit for bit
                    assert np.all(nbr[tgt][hit] == slot[hit])
        h = {"E": c.hx, "W": c.hx, "N": c.hy, "S": c.hy}
        rows = list(order)
        Fm = np.stack([F[d] for d in rows])
        cdiff = np.array([c.dt * c.nu / h[d] ** 2 for d in rows])[:, None]
        kadv = np.array([c.dt / (h[d] ** 2 * c.lam) for d in rows])[:, None]
        self.Fc = torch.tensor(Fm * cdiff, **f64)
        self.Fk = torch.tensor(-Fm * kadv, **f64)
        self.gather = torch.tensor(np.concatenate([nbr[d] for d in rows]), dtype=torch.int64, device=device)
        # residual weights of [u_d - u (4 rows); Q_d^2 (4 rows)]: dt (-nu Lap u + H(u))
        self.wres = torch.tensor([-c.dt * c.nu / h[d] ** 2 for d in rows]
                                 + [c.dt / (2.0 * c.lam * h[d] ** 2) for d in rows], **f64)
        self.U4 = torch.empty(4 * n, **f64)
        self.DQ = torch.empty((8, n), **f64)  # [u_d - u; Q_d^2]
        self.Q = torch.empty((4, n), **f64)
        self.flat = torch.zeros(4 * W, **f64)  # the four bands, each in a zero-padded row of width W
        self.off = {d: k * W + pad for k, d in enumerate(rows)}
        self.B4 = self.flat.view(4, W)[:, pad:pad + n]
        self.band = {d: self.flat[self.off[d]:self.off[d] + n] for d in rows}
        self.D = torch.empty(n, **f64)
        self.bx, self.by = lay.buffer(1.0), lay.buffer(1.0)  # diagonals of I + dt A_x, I + dt A_y (pads 1)
        self.bx_mid, self.by_mid = lay.mid(self.bx), lay.mid(self.by)
        kx = [rows.index("E"), rows.index("W")]
        ky = [rows.index("N"), rows.index("S")]
        assert abs(kx[0] - kx[1]) == 1 and abs(ky[0] - ky[1]) == 1
        self.Bx = self.B4[min(kx):min(kx) + 2]
        self.By = self.B4[min(ky):min(ky) + 2]
        self.ones = torch.ones(n, **f64)
        self.ones2 = torch.ones(2, **f64)
        self.ones4 = torch.ones(4, **f64)
        # periodic corners: [W at i = 0, E at i = nx - 1] per y-line; [S at j = 0, N at j = ny - 1] per x-line
        b2 = {d: self.band[d].view(ny, nx) for d in rows}
        self.corner_views = []
        self.corner = {}
        if px:
            self.corner["W"], self.corner["E"] = torch.empty(ny, **f64), torch.empty(ny, **f64)
            self.corner_views += [(b2["W"][:, 0], self.corner["W"]), (b2["E"][:, nx - 1], self.corner["E"])]
        if py:
            self.corner["S"], self.corner["N"] = torch.empty(nx, **f64), torch.empty(nx, **f64)
            self.corner_views += [(b2["S"][0, :], self.corner["S"]), (b2["N"][ny - 1, :], self.corner["N"])]
        self.u4 = self.U4.view(4, n)

    def differences(self, u: torch.Tensor) -> None:
        """``DQ[:4] = u_d - u``, ``Q = min(., 0)``, ``DQ[4:] = Q^2`` at ``u`` (flat, contiguous)."""
        torch.index_select(u, 0, self.gather, out=self.U4)
        torch.sub(self.u4, u, out=self.DQ[:4])
        torch.clamp(self.DQ[:4], max=0.0, out=self.Q)

    def residual(self, u: torch.Tensor, base: torch.Tensor, res: torch.Tensor) -> None:
        """``res = u - base + dt (-nu Lap_h u + H_h(u))`` with ``base = u^{n+1} + dt free S``."""
        self.differences(u)
        torch.mul(self.Q, self.Q, out=self.DQ[4:])
        torch.sub(u, base, out=res)
        res.addmv_(self.DQ.T, self.wres)

    def assemble(self) -> None:
        """The bands, diagonals and (periodic) corners from the last :meth:`differences`."""
        torch.addcmul(self.Fc, self.Fk, self.Q, out=self.B4)
        torch.addmv(self.ones, self.Bx.T, self.ones2, out=self.bx_mid)
        torch.addmv(self.ones, self.By.T, self.ones2, out=self.by_mid)
        torch.addmv(self.ones, self.B4.T, self.ones4, out=self.D)
        for view, keep in self.corner_views:
            keep.copy_(view)
            view.zero_()


# --- the hot loops, as TorchScript (see fdm._scripted): lists of views made once per kernel ---------
def _apply(v: List[torch.Tensor], invb: torch.Tensor, sm: List[torch.Tensor]) -> None:
    """One batch of line solves: ``v`` = 6 views per PCR level ``[d, d_{p-s}, d_{p+s}, out, n1, n2]``;
    ``sm`` = the Sherman-Morrison correction's views (empty unless periodic)."""
    L = len(v) // 6
    for level in range(L - 1):
        o = v[6 * level + 3]
        torch.addcmul(v[6 * level], v[6 * level + 4], v[6 * level + 1], out=o)
        o.addcmul_(v[6 * level + 5], v[6 * level + 2])
    k = 6 * (L - 1)
    o = v[k + 3]
    torch.mul(v[k], invb, out=o)
    o.addcmul_(v[k + 4], v[k + 1])
    o.addcmul_(v[k + 5], v[k + 2])
    if len(sm) > 0:  # x = y - (v^T y / (1 + v^T z)) z
        first, last, o2, f_b, r, coef, f, z2 = sm
        torch.addcmul(first, r, last, out=f)
        f.mul_(coef)
        o2.addcmul_(z2, f_b, value=-1.0)


def _matvec(m: List[torch.Tensor]) -> None:
    """``out = D v - sum_d band_d v_d`` (+ wrap terms): ``m = [D, v, out, (band, shifted v) x 4,
    (out part, corner, v part) per wrap]``."""
    out = m[2]
    torch.mul(m[0], m[1], out=out)
    for k in range(4):
        out.addcmul_(m[3 + 2 * k], m[4 + 2 * k], value=-1.0)
    for k in range(11, len(m), 3):
        m[k].addcmul_(m[k + 1], m[k + 2], value=-1.0)


def _bicgstab(b: torch.Tensor, x: torch.Tensor, x0: bool, rtol: float, maxiter: int, vec: List[torch.Tensor],
              pre: List[List[torch.Tensor]], invb: List[torch.Tensor], sm: List[List[torch.Tensor]],
              mv: List[List[torch.Tensor]]) -> List[int]:
    """Right-preconditioned BiCGStab for ``op x = b`` from ``x`` (``x0``) or 0; returns
    ``[iterations, converged]``. One host sync per iteration (``[rho, r.r, omega, alpha]``)."""
    (r, rhat, p, s, v, t, phat, shat, RR, ST, state, rv, tst, rho_t, rr_t, omega, alpha, ts, tt,
     head) = vec
    if x0:
        _matvec(mv[2])
        torch.sub(b, v, out=r)
    else:
        x.zero_()
        r.copy_(b)
    rhat.copy_(r)
    torch.mv(RR, r, out=head)
    torch.dot(b, b, out=omega)
    m: List[float] = state.tolist()
    rho, rr = m[0], m[1]
    target = rtol * rtol * m[2]
    if rr <= target:
        return [0, 1]
    if rr != rr or rr == float("inf"):
        return [0, 0]
    p.copy_(r)
    for it in range(1, maxiter + 1):
        _apply(pre[0], invb[0], sm[0])
        _apply(pre[1], invb[1], sm[1])
        _matvec(mv[0])
        torch.dot(rhat, v, out=rv)
        torch.div(rho_t, rv, out=alpha)
        alpha.nan_to_num_(0.0, 0.0, 0.0)  # r_hat . v = 0: a minimal-residual step, then a restart
        torch.addcmul(r, v, alpha, value=-1.0, out=s)
        _apply(pre[2], invb[0], sm[2])
        _apply(pre[3], invb[1], sm[3])
        _matvec(mv[1])
        torch.mv(ST, t, out=tst)  # [s.t, t.t]
        torch.div(ts, tt, out=omega)
        omega.nan_to_num_(0.0, 0.0, 0.0)
        x.addcmul_(phat, alpha)
        x.addcmul_(shat, omega)
        torch.addcmul(s, t, omega, value=-1.0, out=r)
        torch.mv(RR, r, out=head)  # [rho_new, r.r]
        m = state.tolist()
        rr = m[1]
        if rr <= target:
            return [it, 1]
        if rr != rr or rr == float("inf"):
            return [it, 0]
        if m[0] == 0.0 or m[2] == 0.0 or m[3] == 0.0:  # breakdown: restart the shadow residual
            rhat.copy_(r)
            p.copy_(r)
            rho_t.copy_(rr_t)
            rho = rr
        else:
            beta = (m[0] / rho) * (m[3] / m[2])
            rho = m[0]
            p.addcmul_(v, omega, value=-1.0)
            torch.add(r, p, alpha=beta, out=p)
    return [maxiter, 0]


_APPLY = _scripted(_apply)
_MATVEC = _scripted(_matvec)
_BICGSTAB = _scripted(_bicgstab)


class _Lines:
    r"""Batched PCR on every line of one direction (``unit`` = 1 along ``x``, ``nx`` along ``y``).

    The line system is ``-A_p x_{p-s} + b_p x_p - C_p x_{p+s} = d_p`` (``A, C >= 0`` read from
    ``src`` at storage offsets ``offA``, ``offC``; ``b`` from the padded ``b0``). Level ``s``
    eliminates ``x_{p -+ s}``: ``n1 = A_p / b_{p-s}``, ``n2 = C_p / b_{p+s}``, ``A' = n1 A_{p-s}``,
    ``C' = n2 C_{p+s}``, ``b' = b - n1 C_{p-s} - n2 A_{p+s}``, ``d' = d + n1 d_{p-s} + n2 d_{p+s}``;
    :meth:`reduce` stores ``n1, n2`` per level (the last level's times ``1 / b``), :meth:`apply` only
    runs the ``d`` recursion. Periodic: Sherman-Morrison as the 1D reference, ``J = B + u v^T``,
    ``u = (gamma, 0.., alpha)``, ``v = (1, 0.., beta/gamma)``, ``gamma = -b_0``, from the corners
    ``alpha = -C_corner`` (``J[n-1, 0]``), ``beta = -A_corner`` (``J[0, n-1]``).
    """

    def __init__(self, lay: _Layout, axis: str, periodic: bool, src: torch.Tensor, offA: int, offC: int,
                 b0: torch.Tensor, corners, work):
        n, pad, W, ny, nx = lay.n, lay.pad, lay.W, lay.ny, lay.nx
        f64 = lay.f64
        self.lay, self.axis, self.periodic = lay, axis, periodic
        self.unit = 1 if axis == "x" else nx
        self.L = L = lay.Lx if axis == "x" else lay.Ly
        assert offC > offA and src.storage_offset() == 0 and b0.storage_offset() == 0
        self.K = torch.empty((L, 2, n), **f64)
        self.invb = torch.empty(n, **f64)
        AC = [torch.zeros((2, W), **f64) for _ in range(2)]
        Bb = [lay.buffer(1.0) for _ in range(2)]
        self.work = work
        self.red = []
        for level in range(L):
            s = self.unit << level
            if level == 0:
                a_src, oA, oC, b_src = src, offA, offC, b0
            else:
                a_src, oA, oC, b_src = AC[(level - 1) % 2], pad, W + pad, Bb[(level - 1) % 2]
            last = level == L - 1
            self.red.append((
                a_src.as_strided((2, n), (oC - oA, 1), oA),  # [A_p; C_p]
                b_src.as_strided((2, n), (2 * s, 1), pad - s),  # [b_{p-s}; b_{p+s}]
                self.K[level],
                a_src.as_strided((2, n), (oC - oA + 2 * s, 1), oA - s),  # [A_{p-s}; C_{p+s}]
                None if last else AC[level % 2][:, pad:pad + n],
                b_src[pad:pad + n],
                self.K[level, 0], a_src.as_strided((n,), (1,), oC - s),  # n1, C_{p-s}
                self.K[level, 1], a_src.as_strided((n,), (1,), oA + s),  # n2, A_{p+s}
                Bb[level % 2][pad:pad + n],
            ))
        self.bfin = Bb[(L - 1) % 2][pad:pad + n]
        self.sm = None
        if periodic:
            A_c, C_c = corners  # -J[0, n-1], -J[n-1, 0] of each line (kept before the bands were zeroed)
            lines = ny if axis == "x" else nx
            b2 = lay.mid(b0).view(ny, nx)
            self.first_last = (b2[:, 0], b2[:, nx - 1]) if axis == "x" else (b2[0, :], b2[ny - 1, :])
            self.A_c, self.C_c = A_c, C_c
            self.b_first = torch.empty(lines, **f64)
            self.r = torch.empty(lines, **f64)  # beta / gamma
            self.coef = torch.empty(lines, **f64)
            self.f = torch.empty(lines, **f64)
            self.usm = lay.buffer()
            u2 = lay.mid(self.usm).view(ny, nx)
            self.u_first_last = (u2[:, 0], u2[:, nx - 1]) if axis == "x" else (u2[0, :], u2[ny - 1, :])
            self.z = torch.empty(n, **f64)
            z2 = self.z.view(ny, nx)
            self.z_first_last = (z2[:, 0], z2[:, nx - 1]) if axis == "x" else (z2[0, :], z2[ny - 1, :])
            self.z_b = z2
            self.zviews = self.bind(self.usm, self.z, correct=False)

    # --- per Newton (FP: time) step ------------------------------------------------------------
    def reduce(self) -> None:
        if self.periodic:
            bf, bl = self.first_last
            self.b_first.copy_(bf)
            torch.div(self.A_c, self.b_first, out=self.r)  # beta / gamma = A_c / b_0
            bf.add_(self.b_first)  # B[0, 0] = b_0 - gamma = 2 b_0
            bl.addcmul_(self.C_c, self.r)  # B[n-1, n-1] = b_{n-1} - alpha beta / gamma
            uf, ul = self.u_first_last
            torch.neg(self.b_first, out=uf)  # u = (gamma, 0.., alpha)
            torch.neg(self.C_c, out=ul)
        for ac, b_pair, K, ac_sh, ac_out, b_mid, n1, c_m, n2, a_p, b_out in self.red:
            torch.div(ac, b_pair, out=K)
            if ac_out is not None:
                torch.mul(K, ac_sh, out=ac_out)
            torch.addcmul(b_mid, n1, c_m, value=-1.0, out=b_out)
            b_out.addcmul_(n2, a_p, value=-1.0)
        torch.reciprocal(self.bfin, out=self.invb)
        self.K[-1].mul_(self.invb)
        if self.periodic:
            self.apply(self.zviews)
            zf, zl = self.z_first_last
            torch.addcmul(zf, self.r, zl, out=self.coef)
            self.coef.add_(1.0).reciprocal_()  # 1 / (1 + v^T z)

    # --- per preconditioner application -----------------------------------------------------------
    def bind(self, src_buf: torch.Tensor, out: torch.Tensor, correct: bool = True):
        """Views of one application ``out = (line systems)^{-1} src`` (``src_buf`` padded, ``out``
        (n,)): ``(levels, sm)`` for :func:`_apply`."""
        lay, L = self.lay, self.L
        pad, n = lay.pad, lay.n
        views = []
        for level in range(L):
            s = self.unit << level
            buf = src_buf if level == 0 else self.work[(level - 1) % 2]
            o = out if level == L - 1 else lay.mid(self.work[level % 2])
            views += [buf[pad:pad + n], buf[pad - s:pad - s + n], buf[pad + s:pad + s + n], o,
                      self.K[level, 0], self.K[level, 1]]
        sm = []
        if self.periodic and correct:
            o2 = out.view(lay.ny, lay.nx)
            of, ol = (o2[:, 0], o2[:, lay.nx - 1]) if self.axis == "x" else (o2[0, :], o2[lay.ny - 1, :])
            fb = self.f[:, None] if self.axis == "x" else self.f[None, :]
            sm = [of, ol, o2, fb, self.r, self.coef, self.f, self.z_b]
        return views, sm

    def apply(self, bound) -> None:
        _APPLY(bound[0], self.invb, bound[1])


class _Operator:
    r"""``J`` (HJB) or ``J^T`` (FP) on the bands of a :class:`_Bands`, its preconditioner and BiCGStab.

    ``J``: x-lines ``(A, C) = (band_W, band_E)``, y-lines ``(band_S, band_N)``, ``P^{-1} =`` y-solve then
    x-solve. ``J^T``: the transposed line systems have ``A_p = band_E[p - 1]``, ``C_p = band_W[p + 1]``
    (``y``: ``band_N[p - nx]``, ``band_S[p + nx]``), the corners swap, and ``P^{-T} =`` x-solve then
    y-solve. Either way ``op v = D v - A_x v_{p-1} - C_x v_{p+1} - A_y v_{p-nx} - C_y v_{p+nx}``
    (plus the wrap terms on a periodic axis), with the level-0 bands of the line systems.
    """

    def __init__(self, lay: _Layout, bands: _Bands, transpose: bool):
        n, pad, nx, ny = lay.n, lay.pad, lay.nx, lay.ny
        f64 = lay.f64
        self.lay = lay
        off, flat = bands.off, bands.flat
        if not transpose:
            x_off, y_off = (off["W"], off["E"]), (off["S"], off["N"])
            x_c = (bands.corner.get("W"), bands.corner.get("E"))
            y_c = (bands.corner.get("S"), bands.corner.get("N"))
        else:
            x_off, y_off = (off["E"] - 1, off["W"] + 1), (off["N"] - nx, off["S"] + nx)
            x_c = (bands.corner.get("E"), bands.corner.get("W"))
            y_c = (bands.corner.get("N"), bands.corner.get("S"))
        self.work = [lay.buffer(), lay.buffer()]
        self.xl = _Lines(lay, "x", bands.px, flat, *x_off, bands.bx, x_c, self.work)
        self.yl = _Lines(lay, "y", bands.py, flat, *y_off, bands.by, y_c, self.work)
        self.order = [self.xl, self.yl] if transpose else [self.yl, self.xl]
        self.D = bands.D
        coef = [flat.as_strided((n,), (1,), o) for o in (*x_off, *y_off)]  # A_x, C_x, A_y, C_y
        self.coef = list(zip(coef, (-1, 1, -nx, nx)))
        self.wraps = []
        if bands.px:
            self.wraps += [(0, nx - 1, x_c[0], "x"), (nx - 1, 0, x_c[1], "x")]
        if bands.py:
            self.wraps += [(0, ny - 1, y_c[0], "y"), (ny - 1, 0, y_c[1], "y")]
        # Krylov vectors
        self.RR = torch.empty((2, n), **f64)  # [r_hat; r]
        self.rhat, self.r = self.RR[0], self.RR[1]
        self.pbuf = lay.buffer()
        self.p = lay.mid(self.pbuf)
        self.ST = torch.zeros((2, lay.W), **f64)  # [s; t], s padded
        self.s, self.t = lay.mid(self.ST[0]), lay.mid(self.ST[1])
        self.ST_mid = self.ST[:, pad:pad + n]
        self.phat_buf, self.shat_buf = lay.buffer(), lay.buffer()
        self.phat, self.shat = lay.mid(self.phat_buf), lay.mid(self.shat_buf)
        self.v = torch.empty(n, **f64)
        self.xbuf = lay.buffer()  # an initial guess that is multiplied (FP)
        self.x = lay.mid(self.xbuf)
        self.state = torch.zeros(4, **f64)  # [rho, r.r, omega, alpha]
        self.rv = torch.zeros((), **f64)
        self.tst = torch.empty(2, **f64)
        self.midbuf = lay.buffer()
        mid = lay.mid(self.midbuf)
        first, second = self.order
        self.pre_p = (first.bind(self.pbuf, mid), second.bind(self.midbuf, self.phat))
        self.pre_s = (first.bind(self.ST[0], mid), second.bind(self.midbuf, self.shat))
        self.mv_phat = self._bind_matvec(self.phat_buf, self.v)
        self.mv_shat = self._bind_matvec(self.shat_buf, self.t)
        self.mv_x = self._bind_matvec(self.xbuf, self.v)
        # the lists :func:`_bicgstab` unpacks
        st = self.state
        self.vec = [self.r, self.rhat, self.p, self.s, self.v, self.t, self.phat, self.shat, self.RR, self.ST_mid,
                    st, self.rv, self.tst, st[0], st[1], st[2], st[3], self.tst[0], self.tst[1], st[:2]]
        self.pre = [self.pre_p[0][0], self.pre_p[1][0], self.pre_s[0][0], self.pre_s[1][0]]
        self.sm = [self.pre_p[0][1], self.pre_p[1][1], self.pre_s[0][1], self.pre_s[1][1]]
        self.invb = [first.invb, second.invb]
        self.mv = [self.mv_phat, self.mv_shat, self.mv_x]

    def _bind_matvec(self, buf: torch.Tensor, out: torch.Tensor) -> list:
        """The views of ``out = op v`` for :func:`_matvec` (``buf`` padded, holding ``v``)."""
        lay = self.lay
        v = lay.mid(buf)
        m = [self.D, v, out]
        for c, shift in self.coef:
            m += [c, lay.mid(buf, shift)]
        o2, v2 = out.view(lay.ny, lay.nx), v.view(lay.ny, lay.nx)
        for at, frm, corner, axis in self.wraps:
            m += [o2[:, at], corner, v2[:, frm]] if axis == "x" else [o2[at, :], corner, v2[frm, :]]
        return m

    def reduce(self) -> None:
        for lines in self.order:
            lines.reduce()

    def matvec(self, bound) -> None:
        _MATVEC(bound)

    def precondition(self, bound) -> None:
        first, second = self.order
        first.apply(bound[0])
        second.apply(bound[1])

    def bicgstab(self, b: torch.Tensor, x: torch.Tensor, x0: bool, rtol: float, maxiter: int) -> tuple[int, bool]:
        """Solve ``op x = b`` (right-preconditioned BiCGStab, :func:`_bicgstab`); ``x0``: start from
        ``x`` (then ``x`` must be :attr:`x`, the padded one), else from 0. Returns ``(iterations,
        converged)``."""
        it, ok = _BICGSTAB(b, x, x0, rtol, maxiter, self.vec, self.pre, self.invb, self.sm, self.mv)
        return it, bool(ok)


def _buffers(c, scheme, device, order):
    lay = _Layout(c, device)
    bands = _Bands(c, lay, order, tuple(scheme.grid.periodic), device)  # periodic: (y, x)
    return lay, bands


def make_hjb_sweep(scheme, *, newton_tol=1e-12, newton_maxiter=50, device="cpu"):
    """The backward 2D HJB sweep: ``sweep(source, terminal) -> (U, newton_its)``; the contract of
    :func:`mfg_core.backends.numpy.fdm2d.make_hjb_sweep` (``U`` native on ``device``). After a call
    ``sweep.diagnostics = {"newton_steps", "krylov_iterations"}``."""
    c = checks.fdm2d_constants(scheme, "torch", "HJB sweep", newton_tol, newton_maxiter)
    dev = device_of(device)
    with torch.inference_mode():
        lay, bands = _buffers(c, scheme, dev, "WESN")
        op = _Operator(lay, bands, transpose=False)
        n = lay.n
        block = torch.zeros((3, n), **lay.f64)  # [res, delta, u]: one reduction gives the three maxima
        res, delta, u = block[0], block[1], block[2]
        absbuf = torch.empty((3, n), **lay.f64)
        base = torch.empty(n, **lay.f64)
        freedt = torch.tensor(c.dt * c.stencil.free.astype(np.float64), **lay.f64)
    lock = threading.Lock()
    tol, maxit = c.newton_tol, c.newton_maxiter

    def sweep(source, terminal):
        with lock, torch.inference_mode():
            S = field("source", source, c.shape, dev, checks.field).reshape(c.shape[0], n)
            g = field("terminal", terminal, c.shape[1:], dev, checks.field).reshape(n)
            nt1 = c.shape[0]
            U = torch.empty((nt1, n), **lay.f64)
            U[-1] = g
            its = np.zeros(nt1 - 1, dtype=np.int64)
            krylov = unconverged = 0
            for k in range(nt1 - 2, -1, -1):
                u.copy_(U[k + 1])
                torch.addcmul(U[k + 1], freedt, S[k + 1], out=base)
                scale = 0.0
                count = -maxit
                for it in range(maxit + 1):
                    bands.residual(u, base, res)
                    m = torch.amax(torch.abs(block, out=absbuf), 1).tolist()  # res, delta, u
                    if not all(map(math.isfinite, m)):
                        break
                    if it > 0 and m[1] <= _ROUNDOFF * scale:
                        count = it  # the last update was at round-off: the residual cannot fall further
                        break
                    scale = max(1.0, m[2])
                    if m[0] <= tol * scale:
                        count = it
                        break
                    if it == maxit:
                        break
                    bands.assemble()
                    op.reduce()
                    kit, ok = op.bicgstab(res, delta, False, HJB_RTOL, MAXITER)
                    krylov += kit
                    unconverged += not ok  # Newton takes another step from the inexact update
                    u.sub_(delta)
                its[k] = count
                U[k].copy_(u)
        sweep.diagnostics = {"newton_steps": int(np.abs(its).sum()), "krylov_iterations": int(krylov),
                             "krylov_unconverged": int(unconverged)}
        return native(U.view(c.shape)), its

    sweep.diagnostics = {}
    return sweep


def make_fp_sweep(scheme, *, device="cpu"):
    """The forward 2D FP sweep (adjoint scheme, mass variables): ``sweep(U, mu0) -> mu``; the
    contract of :func:`mfg_core.backends.numpy.fdm2d.make_fp_sweep` (``mu`` native on ``device``).
    After a call ``sweep.diagnostics = {"krylov_iterations"}``."""
    c = checks.fdm2d_constants(scheme, "torch", "FP sweep")
    dev = device_of(device)
    with torch.inference_mode():
        lay, bands = _buffers(c, scheme, dev, "EWNS")
        op = _Operator(lay, bands, transpose=True)
        n = lay.n
        x = op.x
        mass = torch.zeros(2, **lay.f64)  # [sum mu^k, sum mu^{k+1}]
        floor = torch.zeros((), **lay.f64)
        ratio = torch.zeros((), **lay.f64)
    lock = threading.Lock()

    def sweep(U, mu0):
        with lock, torch.inference_mode():
            Uf = field("U", U, c.shape, dev, checks.field).reshape(c.shape[0], n)
            m0 = field("mu0", mu0, c.shape[1:], dev, checks.field).reshape(n)
            nt1 = c.shape[0]
            mu = torch.empty((nt1, n), **lay.f64)
            mu[0] = m0
            krylov = unconverged = 0
            torch.sum(mu[0], dim=0, out=mass[0])
            for k in range(nt1 - 1):
                bands.differences(Uf[k])
                bands.assemble()
                op.reduce()
                x.copy_(mu[k])
                for _ in range(FP_CYCLES):  # restarted from the last iterate (true residual, new shadow)
                    kit, ok = op.bicgstab(mu[k], x, True, FP_RTOL, MAXITER)
                    krylov += kit
                    if ok:
                        break
                unconverged += not ok
                # round-off negatives to 0, then the mass of mu^k restored in proportion to mu^{k+1}
                torch.amax(x, 0, out=floor)
                floor.mul_(-NEG_ROUNDOFF)
                x.masked_fill_((x < 0.0) & (x >= floor), 0.0)
                torch.sum(x, dim=0, out=mass[1])
                torch.div(mass[0], mass[1], out=ratio)
                torch.mul(x, ratio, out=mu[k + 1])
                torch.sum(mu[k + 1], dim=0, out=mass[0])
        sweep.diagnostics = {"krylov_iterations": int(krylov), "krylov_unconverged": int(unconverged)}
        return native(mu.view(c.shape))

    sweep.diagnostics = {}
    return sweep
