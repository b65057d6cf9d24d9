r"""torch 2D finite-difference kernels: the discrete 2D HJB and FP of
:mod:`mfg_core.backends.numpy.fdm2d` (which derives them) on float64 tensors, with an iterative
linear solve that runs on any device.

    HJB step n: Newton on R(u) = u - u^{n+1} + dt (-nu Lap_h u + H_h(u) - S^{n+1}) = 0 (free nodes),
                J(u) delta = R(u), u <- u - delta,  J = I + dt A(u) the 5-point M-matrix (A 1 = 0);
                stop when max|R| <= newton_tol max(1, max|u|) or the update is <= 16 eps times that.
    FP step n:  (I + dt A(u^n))^T mu^{n+1} = mu^n,  mu = w m (mass variables).

Linear solve (the rule of :mod:`mfg_core.backends.krylov2d`, common to the 2D Krylov backends)
---------------------------------------------------------------------------------------------------
BiCGStab, right-preconditioned by the shifted alternating-direction product ``P_alpha = (alpha I +
dt A_y)(alpha I + dt A_x)``: ``A = A_x + A_y`` split by direction (``A_x`` holds the E/W couplings of
each row and their share of the diagonal, ``A_y`` the N/S ones), so ``P_alpha^{-1} v`` is two batches
of 1D tridiagonal solves, along ``y`` for every ``x``-line, then along ``x`` for every ``y``-line (FP:
``P_alpha^T``, the transposed line systems in the opposite order). Each sweep starts at ``alpha = 1``
and uses ``krylov2d.adi_shift`` for the rest of the sweep once a solve has taken more than
``krylov2d.SWITCH`` iterations (both read when the sweep is made). HJB: inexact Newton, from 0 to
``||r|| <= max(HJB_FORCING ||b||, HJB_FLOOR newton_tol max(1, max|u|))``; FP: from ``mu^n`` to
``||r|| <= FP_RTOL ||b||``. The rule's caps too: a cycle of at most ``krylov2d.CYCLE`` iterations
ends at a breakdown (``rho``, ``omega`` or ``alpha`` = 0) or its cap and the next restarts from the
current iterate (true residual, new shadow), ``CYCLE * CYCLES`` iterations in all. A solve still
short is used as it is (HJB: Newton takes another step from the true residual, or reports a
negative count). Nothing falls back to numpy. ``kernel.diagnostics``: ``newton_steps``,
``krylov_iterations`` (totals over the sweep) and ``krylov_unconverged`` (solves that stopped short).

Mass (FP). The column sums of ``J^T`` are 1, so ``sum(mu^{n+1}) = sum(mu^n) - sum(r)``: after the
solve, negatives of the solve's error (``>= -FP_CLIP max mu``, :mod:`..krylov2d`) are set to 0 and
``mu^{n+1}`` is scaled by ``sum(mu^n) / sum(mu^{n+1})`` (the defect added in proportion to
``mu^{n+1}``), so the mass is exact to round-off, blocked nodes stay exactly 0 (their rows and
columns are ``e_p``, and every operation below maps a zero there to a zero) and ``mu >= 0``.

Line solves (:class:`_Lines`). Every batch is stored with the line index slow -- the y-lines in the
natural ``(y, x)`` array, the x-lines in its transpose (a copy each way per application) -- so every
operation works on whole contiguous rows. Cyclic reduction halves the equations per level down to at
most 16 per line, PCR solves those, back substitution recovers the rest: about ``5 n`` stored
multipliers per batch instead of PCR's ``2 n log2(m)``, which is what a preconditioner application
streams from memory (measured at 129^2: 0.8 against 1.0 ms per BiCGStab iteration with PCR on every
level; see ``benchmarks/README.md``). The line systems are strictly diagonally dominant M-matrices
(multipliers in [0, 1): stable); their multipliers are reduced once per Newton step (FP: per time
step), an application only applies them. A blocked node is an identity row; a cut link, a Neumann
wall (folded onto the inner neighbour) and a periodic corner (split off by Sherman-Morrison as in
1D) leave no coupling beyond a line's end.

Layout: the matrix-vector inputs live in flat buffers with zero pads of ``2 nx`` on both sides; all
views are made once in the factory, and the hot loops (BiCGStab, line solves, matrix-vector product)
run as TorchScript over lists of them. A sweep's results are native on the kernel's device (numpy on
the CPU); one host sync per Newton step and one per BiCGStab iteration. The kernels leave torch's
thread settings alone.
"""

from __future__ import annotations

import math
import threading
from typing import List

import numpy as np
import torch

from .. import checks, krylov2d
from ._common import F64, device_of, field, native
from .fdm import _scripted

_ROUNDOFF = 16 * float(np.finfo(np.float64).eps)


def _levels(n: int) -> int:
    return max(1, math.ceil(math.log2(n)))


class _Layout:
    """Sizes of the flat ``(y, x)`` layout; vectors that are shifted (matrix-vector inputs) live in
    flat buffers with zero pads of ``2 nx`` on both sides."""

    def __init__(self, c: checks.FDM2DConstants, device: torch.device):
        st = c.stencil
        self.ny, self.nx, self.n = st.ny, st.nx, st.size
        self.pad = 2 * st.nx
        self.W = self.n + 2 * self.pad
        self.f64 = dict(dtype=F64, device=device)

    def buffer(self) -> torch.Tensor:
        return torch.zeros((self.W,), **self.f64)

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
    v_{d}``, ``D = 1 + sum_d band_d``, and ``b_x = alpha + band_W + band_E`` (``y`` alike) are the
    diagonals of the preconditioner's line systems ``alpha I + dt A_x``, ``alpha I + dt A_y``. On a
    periodic axis the wrap couplings (the line systems' corners) are copied out and zeroed in the
    bands. ``order`` is the row order of the four bands in ``flat`` (E/W and N/S adjacent, so that
    each diagonal is one product).
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
        self.bx, self.by = torch.empty(n, **f64), torch.empty(n, **f64)  # diagonals of I + dt A_x, I + dt A_y
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

    def assemble(self, alpha: float = 1.0) -> None:
        """The bands, diagonals and (periodic) corners from the last :meth:`differences`; the line
        diagonals ``b_x``, ``b_y`` get ``alpha`` in place of 1 (the shifted preconditioner of
        :mod:`..krylov2d`; ``D`` keeps 1)."""
        torch.addcmul(self.Fc, self.Fk, self.Q, out=self.B4)
        torch.mv(self.Bx.T, self.ones2, out=self.bx)
        self.bx.add_(alpha)
        torch.mv(self.By.T, self.ones2, out=self.by)
        self.by.add_(alpha)
        torch.addmv(self.ones, self.B4.T, self.ones4, out=self.D)
        for view, keep in self.corner_views:
            keep.copy_(view)
            view.zero_()


def _copy(out: torch.Tensor, src: torch.Tensor) -> None:
    """``out = src`` for 2D arrays; a transposing copy is made by writing with strides rather than
    reading with them (2x faster on the CPU: the copy loops in the order of ``out``'s memory)."""
    if src.is_contiguous() or not src.t().is_contiguous():
        out.copy_(src)
    else:
        out.t().copy_(src.t())


# --- the hot loops, as TorchScript (see fdm._scripted): lists of views made once per kernel ---------
def _cr(src: torch.Tensor, mid: torch.Tensor, fw: List[torch.Tensor], pcr: List[torch.Tensor],
        bw: List[torch.Tensor], sm: List[torch.Tensor]) -> None:
    """One batch of line solves in place in ``mid`` (a padded ``(m, w)`` buffer's rows) from ``src``:
    ``fw`` = 5 views per reduction level ``[d_K, d_{K-s}, d_{K+s}, n1, n2]``; ``pcr`` = 6 views per
    PCR level of the reduced system ``[d, d_{-s}, d_{+s}, out, n1, n2]`` and ``1/b``; ``bw`` = 6 views
    per level (coarse to fine) ``[x_E, x_{E-s}, x_{E+s}, 1/b, A/b, C/b]``; ``sm`` = the
    Sherman-Morrison correction (empty unless periodic)."""
    _copy(mid, src)
    for k in range(0, len(fw), 5):
        d = fw[k]
        d.addcmul_(fw[k + 3], fw[k + 1])
        d.addcmul_(fw[k + 4], fw[k + 2])
    L = (len(pcr) - 1) // 6
    for level in range(L - 1):
        o = pcr[6 * level + 3]
        torch.addcmul(pcr[6 * level], pcr[6 * level + 4], pcr[6 * level + 1], out=o)
        o.addcmul_(pcr[6 * level + 5], pcr[6 * level + 2])
    k = 6 * (L - 1)
    o = pcr[k + 3]
    torch.mul(pcr[k], pcr[-1], out=o)
    o.addcmul_(pcr[k + 4], pcr[k + 1])
    o.addcmul_(pcr[k + 5], pcr[k + 2])
    for k in range(0, len(bw), 6):
        x = bw[k]
        x.mul_(bw[k + 3])
        x.addcmul_(bw[k + 4], bw[k + 1])
        x.addcmul_(bw[k + 5], bw[k + 2])
    if len(sm) > 0:  # x = y - (v^T y / (1 + v^T z)) z
        first, last, z, r, coef, f, f_b = sm
        torch.addcmul(first, r, last, out=f)
        f.mul_(coef)
        mid.addcmul_(z, f_b, value=-1.0)


def _precondition(io: List[torch.Tensor], lines: List[List[torch.Tensor]]) -> None:
    """``out = (second line batch)^{-1} (first line batch)^{-1} src``: ``io = [src, mid_1, src_2,
    mid_2, out, result]`` (``src_2`` is ``mid_1`` transposed, ``result`` is ``mid_2`` in the natural
    layout); ``lines`` = the two batches' ``[fw, pcr, bw, sm]``."""
    _cr(io[0], io[1], lines[0], lines[1], lines[2], lines[3])
    _cr(io[2], io[3], lines[4], lines[5], lines[6], lines[7])
    _copy(io[4], io[5])


def _matvec(m: List[torch.Tensor]) -> None:
    """``out = D v - sum_d band_d v_d`` (+ wrap terms): ``m = [D, v, out, (band, shifted v) x 4,
    (out part, corner, v part) per wrap]``."""
    out = m[2]
    torch.mul(m[0], m[1], out=out)
    for k in range(4):
        out.addcmul_(m[3 + 2 * k], m[4 + 2 * k], value=-1.0)
    for k in range(11, len(m), 3):
        m[k].addcmul_(m[k + 1], m[k + 2], value=-1.0)


def _bicgstab(b: torch.Tensor, x: torch.Tensor, x0: bool, rtol: float, atol: float, maxiter: int,
              vec: List[torch.Tensor],
              pre: List[List[torch.Tensor]], lines: List[List[torch.Tensor]],
              mv: List[List[torch.Tensor]]) -> List[int]:
    """One cycle of right-preconditioned BiCGStab for ``op x = b`` from ``x`` (``x0``) or 0 to ``||r||
    <= max(rtol ||b||, atol)``, at most ``maxiter`` iterations, ending at a breakdown; returns
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
    target = max(rtol * rtol * m[2], atol * atol)
    if rr <= target:
        return [0, 1]
    if rr != rr or rr == float("inf"):
        return [0, 0]
    p.copy_(r)
    for it in range(1, maxiter + 1):
        _precondition(pre[0], lines)
        _matvec(mv[0])
        torch.dot(rhat, v, out=rv)
        torch.div(rho_t, rv, out=alpha)
        alpha.nan_to_num_(0.0, 0.0, 0.0)  # r_hat . v = 0: a minimal-residual step, then a restart
        torch.addcmul(r, v, alpha, value=-1.0, out=s)
        _precondition(pre[1], lines)
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
        if m[0] == 0.0 or m[2] == 0.0 or m[3] == 0.0:  # breakdown: the caller restarts
            return [it, 0]
        beta = (m[0] / rho) * (m[3] / m[2])
        rho = m[0]
        p.addcmul_(v, omega, value=-1.0)
        torch.add(r, p, alpha=beta, out=p)
    return [maxiter, 0]


_CR = _scripted(_cr)
_PRECONDITION = _scripted(_precondition)
_MATVEC = _scripted(_matvec)
_BICGSTAB = _scripted(_bicgstab)


class _Lines:
    r"""Batched line solves on ``w`` lines of ``m`` unknowns, stored as the columns of an ``(m, w)``
    array (the line index is the slow one, so every operation is on whole rows): cyclic reduction
    down to at most 16 equations per line, parallel cyclic reduction on those, back substitution.

    The line system is ``-A_i x_{i-1} + b_i x_i - C_i x_{i+1} = d_i`` (``A, C >= 0``; the level-0
    values are copied from the views ``A0, C0, b0`` once per Newton step). Cyclic reduction level
    ``l`` (``s = 2^l``) keeps the rows ``K = {i = 0 mod 2s}`` and eliminates ``E = {i = s mod 2s}``:
    for ``i`` in ``K``, ``n1 = A_i / b_{i-s}``, ``n2 = C_i / b_{i+s}``, ``A_i <- n1 A_{i-s}``,
    ``C_i <- n2 C_{i+s}``, ``b_i <- b_i - n1 C_{i-s} - n2 A_{i+s}``, ``d_i <- d_i + n1 d_{i-s} +
    n2 d_{i+s}``. The equations left (rows ``0 mod 2^lc``) are solved by PCR (the same formulas on
    every row, ping-pong buffers, as in the 1D kernels: few rows, so few and cheap operations), then
    back substitution gives ``x_i = (d_i + A_i x_{i-s} + C_i x_{i+s}) / b_i`` on ``E`` from the
    coarsest level to the finest. :meth:`reduce` stores the multipliers (``n1, n2`` on ``K``,
    ``1/b, A/b, C/b`` on ``E``: about ``5 m w`` numbers). Couplings beyond a line's ends are 0 and
    stay 0, so the padding rows (read, never written) only need to be finite. Periodic:
    Sherman-Morrison as the 1D reference, ``J = B + u v^T``, ``u = (gamma, 0.., alpha)``,
    ``v = (1, 0.., beta/gamma)``, ``gamma = -b_0``, ``alpha = -C_corner`` (``J[m-1, 0]``),
    ``beta = -A_corner`` (``J[0, m-1]``).
    """

    #: cyclic reduction stops at this many equations per line (at most); PCR solves them
    REDUCED = 16

    def __init__(self, lay: _Layout, m: int, w: int, periodic: bool, A0: torch.Tensor, C0: torch.Tensor,
                 b0: torch.Tensor, corners):
        f64 = lay.f64
        self.m, self.w, self.periodic = m, w, periodic
        L = _levels(m)
        lc = max(0, L - _levels(self.REDUCED))  # cyclic reduction levels
        step = 1 << lc
        mr = (m - 1) // step + 1  # equations left per line
        Lp = _levels(mr)
        assert mr >= 3 and Lp >= 2
        P = 1 << (L - 1)  # padding rows: the largest stride
        Pp = 1 << (Lp - 1)
        self.A0, self.C0, self.b0 = A0, C0, b0
        Aw, Cw = torch.zeros((m + 2 * P, w), **f64), torch.zeros((m + 2 * P, w), **f64)
        Bw = torch.ones((m + 2 * P, w), **f64)
        self.W = torch.zeros((m + 2 * P, w), **f64)  # the solve's work rows

        def rows(T, start, step, count, pad=P):
            return T.as_strided((count, w), (step * w, 1), (pad + start) * w)

        self.mids = [rows(T, 0, 1, m) for T in (Aw, Cw, Bw)]
        self.mid = rows(self.W, 0, 1, m)
        self.red, fw, bw = [], [], []
        for level in range(lc):
            s = 1 << level
            nK = (m - 1) // (2 * s) + 1
            nE = (m - 1) // s + 1 - nK
            n1, n2 = torch.empty((nK, w), **f64), torch.empty((nK, w), **f64)
            g, h1, h2 = (torch.empty((nE, w), **f64) for _ in range(3))
            self.red.append((
                rows(Aw, 0, 2 * s, nK), rows(Bw, -s, 2 * s, nK), n1,  # n1 = A_K / b_{K-s}
                rows(Cw, 0, 2 * s, nK), rows(Bw, s, 2 * s, nK), n2,  # n2 = C_K / b_{K+s}
                rows(Bw, s, 2 * s, nE), g, rows(Aw, s, 2 * s, nE), h1, rows(Cw, s, 2 * s, nE), h2,  # E rows
                rows(Bw, 0, 2 * s, nK), rows(Cw, -s, 2 * s, nK), rows(Aw, s, 2 * s, nK),  # b_K, C_{K-s}, A_{K+s}
                rows(Aw, -s, 2 * s, nK), rows(Cw, s, 2 * s, nK),  # A_{K-s}, C_{K+s}
            ))
            fw += [rows(self.W, 0, 2 * s, nK), rows(self.W, -s, 2 * s, nK), rows(self.W, s, 2 * s, nK), n1, n2]
            bw = [rows(self.W, s, 2 * s, nE), rows(self.W, 0, 2 * s, nE), rows(self.W, 2 * s, 2 * s, nE),
                  g, h1, h2] + bw
        # PCR on the rows 0 mod step: level 0 reads the work rows, then compact ping-pong buffers
        self.K = torch.empty((Lp, 2, mr, w), **f64)
        self.invb = torch.empty((mr, w), **f64)
        cA = [torch.zeros((mr + 2 * Pp, w), **f64) for _ in range(2)]
        cC = [torch.zeros((mr + 2 * Pp, w), **f64) for _ in range(2)]
        cB = [torch.ones((mr + 2 * Pp, w), **f64) for _ in range(2)]
        cD = [torch.zeros((mr + 2 * Pp, w), **f64) for _ in range(2)]
        self.pred, pcr = [], []
        for level in range(Lp):
            s = 1 << level
            if level == 0:
                A, C, B, D, st, pd = Aw, Cw, Bw, self.W, step, P
            else:
                k = (level - 1) % 2
                A, C, B, D, st, pd = cA[k], cC[k], cB[k], cD[k], 1, Pp
            last = level == Lp - 1
            o = level % 2
            self.pred.append((
                rows(A, 0, st, mr, pd), rows(B, -s * st, st, mr, pd), self.K[level, 0],  # A_i, b_{i-s}, n1
                rows(C, 0, st, mr, pd), rows(B, s * st, st, mr, pd), self.K[level, 1],  # C_i, b_{i+s}, n2
                None if last else rows(cA[o], 0, 1, mr, Pp), rows(A, -s * st, st, mr, pd),  # A', A_{i-s}
                None if last else rows(cC[o], 0, 1, mr, Pp), rows(C, s * st, st, mr, pd),  # C', C_{i+s}
                rows(B, 0, st, mr, pd),  # b
                rows(C, -s * st, st, mr, pd), rows(A, s * st, st, mr, pd),  # C_{i-s}, A_{i+s}
                rows(cB[o], 0, 1, mr, Pp),  # b'
            ))
            out = rows(self.W, 0, step, mr) if last else rows(cD[o], 0, 1, mr, Pp)
            pcr += [rows(D, 0, st, mr, pd), rows(D, -s * st, st, mr, pd), rows(D, s * st, st, mr, pd), out,
                    self.K[level, 0], self.K[level, 1]]
        self.bfin = rows(cB[(Lp - 1) % 2], 0, 1, mr, Pp)
        self.fw, self.pcr, self.bw = fw, pcr + [self.invb], bw
        self.sm: list = []
        if periodic:
            self.A_c, self.C_c = corners  # -J[0, m-1], -J[m-1, 0] of each line (before the bands were zeroed)
            Bmid = self.mids[2]
            self.b_ends = (Bmid[0], Bmid[m - 1])
            self.b_first = torch.empty(w, **f64)
            self.r = torch.empty(w, **f64)  # beta / gamma
            self.coef = torch.empty(w, **f64)
            self.f = torch.empty(w, **f64)
            self.usm = torch.zeros((m, w), **f64)
            self.z = torch.empty((m, w), **f64)
            self.sm = [self.mid[0], self.mid[m - 1], self.z, self.r, self.coef, self.f, self.f[None, :]]

    def lists(self) -> list:
        """``[fw, pcr, bw, sm]`` for :func:`_cr`."""
        return [self.fw, self.pcr, self.bw, self.sm]

    def reduce(self) -> None:
        """The multipliers of every level from the level-0 bands (once per Newton / time step)."""
        Amid, Cmid, Bmid = self.mids
        _copy(Amid, self.A0)  # the x-lines' bands are transposed views
        _copy(Cmid, self.C0)
        _copy(Bmid, self.b0)
        if self.periodic:
            bf, bl = self.b_ends
            self.b_first.copy_(bf)
            torch.div(self.A_c, self.b_first, out=self.r)  # beta / gamma = A_c / b_0
            bf.add_(self.b_first)  # B[0, 0] = b_0 - gamma = 2 b_0
            bl.addcmul_(self.C_c, self.r)  # B[m-1, m-1] = b_{m-1} - alpha beta / gamma
            torch.neg(self.b_first, out=self.usm[0])  # u = (gamma, 0.., alpha)
            torch.neg(self.C_c, out=self.usm[self.m - 1])
        for (AK, Bm, n1, CK, Bp, n2, BE, g, AE, h1, CE, h2, BK, Cm, Ap, Am, Cp) in self.red:
            torch.div(AK, Bm, out=n1)
            torch.div(CK, Bp, out=n2)
            torch.reciprocal(BE, out=g)
            torch.mul(AE, g, out=h1)
            torch.mul(CE, g, out=h2)
            BK.addcmul_(n1, Cm, value=-1.0)
            BK.addcmul_(n2, Ap, value=-1.0)
            torch.mul(n1, Am, out=AK)
            torch.mul(n2, Cp, out=CK)
        for (A, Bm, n1, C, Bp, n2, A_out, Am, C_out, Cp, B, Cm, Ap, B_out) in self.pred:
            torch.div(A, Bm, out=n1)
            torch.div(C, Bp, out=n2)
            if A_out is not None:
                torch.mul(n1, Am, out=A_out)
                torch.mul(n2, Cp, out=C_out)
            torch.addcmul(B, n1, Cm, value=-1.0, out=B_out)
            B_out.addcmul_(n2, Ap, value=-1.0)
        torch.reciprocal(self.bfin, out=self.invb)
        self.K[-1].mul_(self.invb)
        if self.periodic:
            _CR(self.usm, self.mid, self.fw, self.pcr, self.bw, [])
            self.z.copy_(self.mid)
            torch.addcmul(self.z[0], self.r, self.z[self.m - 1], out=self.coef)
            self.coef.add_(1.0).reciprocal_()  # 1 / (1 + v^T z)


class _Operator:
    r"""``J`` (HJB) or ``J^T`` (FP) on the bands of a :class:`_Bands`, its preconditioner and BiCGStab.

    The y-lines are solved in the natural ``(y, x)`` layout (lines = columns), the x-lines in the
    transposed one (a copy each way), so that both batches run on whole rows. ``J``: x-lines
    ``(A, C) = (band_W, band_E)``, y-lines ``(band_S, band_N)``, ``P^{-1} =`` y-solve then x-solve.
    ``J^T``: the transposed line systems have ``A_p = band_E[p - 1]``, ``C_p = band_W[p + 1]``
    (``y``: ``band_N[p - nx]``, ``band_S[p + nx]``), the corners swap, and ``P^{-T} =`` x-solve then
    y-solve. Either way ``op v = D v - A_x v_{p-1} - C_x v_{p+1} - A_y v_{p-nx} - C_y v_{p+nx}``
    (plus the wrap terms on a periodic axis) with those level-0 bands.
    """

    def __init__(self, lay: _Layout, bands: _Bands, transpose: bool):
        n, nx, ny = lay.n, lay.nx, lay.ny
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
        natural = lambda o: flat.as_strided((ny, nx), (nx, 1), o)  # noqa: E731
        transposed = lambda o: flat.as_strided((nx, ny), (1, nx), o)  # noqa: E731
        self.xl = _Lines(lay, nx, ny, bands.px, *(transposed(o) for o in x_off), bands.bx.view(ny, nx).T, x_c)
        self.yl = _Lines(lay, ny, nx, bands.py, *(natural(o) for o in y_off), bands.by.view(ny, nx), y_c)
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
        self.p = torch.empty(n, **f64)
        self.ST = torch.empty((2, n), **f64)  # [s; t]
        self.s, self.t = self.ST[0], self.ST[1]
        self.phat_buf, self.shat_buf = lay.buffer(), lay.buffer()  # padded: the matrix-vector inputs
        self.phat, self.shat = lay.mid(self.phat_buf), lay.mid(self.shat_buf)
        self.v = torch.empty(n, **f64)
        self.xbuf = lay.buffer()  # an initial guess that is multiplied (FP)
        self.x = lay.mid(self.xbuf)
        self.state = torch.zeros(4, **f64)  # [rho, r.r, omega, alpha]
        self.rv = torch.zeros((), **f64)
        self.tst = torch.empty(2, **f64)
        first, second = self.order

        def io(src: torch.Tensor, out: torch.Tensor) -> list:
            s2, o2 = src.view(ny, nx), out.view(ny, nx)
            if transpose:  # x-lines (transposed layout) first
                return [s2.T, first.mid, first.mid.T, second.mid, o2, second.mid]
            return [s2, first.mid, first.mid.T, second.mid, o2, second.mid.T]

        self.pre = [io(self.p, self.phat), io(self.s, self.shat)]
        self.lines = first.lists() + second.lists()
        self.mv_phat = self._bind_matvec(self.phat_buf, self.v)
        self.mv_shat = self._bind_matvec(self.shat_buf, self.t)
        self.mv_x = self._bind_matvec(self.xbuf, self.v)
        st = self.state
        self.vec = [self.r, self.rhat, self.p, self.s, self.v, self.t, self.phat, self.shat, self.RR, self.ST,
                    st, self.rv, self.tst, st[0], st[1], st[2], st[3], self.tst[0], self.tst[1], st[:2]]
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

    def precondition(self, which: int) -> None:
        """``phat = P^{-1} p`` (``which = 0``) or ``shat = P^{-1} s`` (1)."""
        _PRECONDITION(self.pre[which], self.lines)

    def bicgstab(self, b: torch.Tensor, x: torch.Tensor, x0: bool, rtol: float, atol: float,
                 cycle: int, total: int) -> tuple[int, bool]:
        """Solve ``op x = b`` to ``||r|| <= max(rtol ||b||, atol)`` (right-preconditioned BiCGStab,
        :func:`_bicgstab`) in cycles of at most ``cycle`` iterations, ``total`` in all, each restarted
        from the current iterate; ``x0``: start from ``x`` (then ``x`` must be :attr:`x`, the padded
        one), else from 0. Returns ``(iterations, converged)``."""
        into, its = x, 0
        while True:
            it, ok = _BICGSTAB(b, x, x0, rtol, atol, min(cycle, total - its), self.vec, self.pre, self.lines,
                               self.mv)
            its += it
            if ok or it == 0 or its >= total:  # it == 0: a non-finite start, nothing to restart from
                break
            if x is not self.x:  # a restart multiplies the iterate: it moves to the padded buffer
                self.x.copy_(x)
                x = self.x
            x0 = True
        if x is not into:
            into.copy_(x)
        return its, bool(ok)


def _buffers(c, scheme, device, order):
    lay = _Layout(c, device)
    bands = _Bands(c, lay, order, tuple(scheme.grid.periodic), device)  # periodic: (y, x)
    return lay, bands


def make_hjb_sweep(scheme, *, newton_tol=1e-12, newton_maxiter=50, device="cpu"):
    """The backward 2D HJB sweep: ``sweep(source, terminal) -> (U, newton_its)``; the contract of
    :func:`mfg_core.backends.numpy.fdm2d.make_hjb_sweep` (``U`` native on ``device``). After a call
    ``sweep.diagnostics = {"newton_steps", "krylov_iterations", "krylov_unconverged"}``."""
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
    forcing, floor = float(krylov2d.HJB_FORCING), float(krylov2d.HJB_FLOOR)
    shift, switch = float(krylov2d.adi_shift(c)), int(krylov2d.SWITCH)
    cycle, total = krylov2d.caps()

    def sweep(source, terminal):
        with lock, torch.inference_mode():
            S = field("source", source, c.shape, dev, checks.field).reshape(c.shape[0], n)
            g = field("terminal", terminal, c.shape[1:], dev, checks.field).reshape(n)
            nt1 = c.shape[0]
            U = torch.empty((nt1, n), **lay.f64)
            U[-1] = g
            its = np.zeros(nt1 - 1, dtype=np.int64)
            krylov = unconverged = 0
            alpha = 1.0  # the line shift: krylov2d.adi_shift(c) after a slow solve, for the rest of the sweep
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
                    bands.assemble(alpha)
                    op.reduce()
                    kit, ok = op.bicgstab(res, delta, False, forcing, floor * tol * scale, cycle, total)
                    krylov += kit
                    if kit > switch:
                        alpha = shift
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
    After a call ``sweep.diagnostics = {"krylov_iterations", "krylov_unconverged"}``."""
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
    rtol, clip = float(krylov2d.FP_RTOL), float(krylov2d.FP_CLIP)
    shift, switch = float(krylov2d.adi_shift(c)), int(krylov2d.SWITCH)
    cycle, total = krylov2d.caps()

    def sweep(U, mu0):
        with lock, torch.inference_mode():
            Uf = field("U", U, c.shape, dev, checks.field).reshape(c.shape[0], n)
            m0 = field("mu0", mu0, c.shape[1:], dev, checks.field).reshape(n)
            nt1 = c.shape[0]
            mu = torch.empty((nt1, n), **lay.f64)
            mu[0] = m0
            krylov = unconverged = 0
            torch.sum(mu[0], dim=0, out=mass[0])
            alpha = 1.0  # the line shift, as in the HJB sweep
            for k in range(nt1 - 1):
                bands.differences(Uf[k])
                bands.assemble(alpha)
                op.reduce()
                x.copy_(mu[k])
                kit, ok = op.bicgstab(mu[k], x, True, rtol, 0.0, cycle, total)
                krylov += kit
                if kit > switch:
                    alpha = shift
                unconverged += not ok
                # round-off negatives to 0, then the mass of mu^k restored in proportion to mu^{k+1}
                torch.amax(x, 0, out=floor)
                floor.mul_(-clip)
                x.masked_fill_((x < 0.0) & (x >= floor), 0.0)
                torch.sum(x, dim=0, out=mass[1])
                torch.div(mass[0], mass[1], out=ratio)
                torch.mul(x, ratio, out=mu[k + 1])
                torch.sum(mu[k + 1], dim=0, out=mass[0])
        sweep.diagnostics = {"krylov_iterations": int(krylov), "krylov_unconverged": int(unconverged)}
        return native(mu.view(c.shape))

    sweep.diagnostics = {}
    return sweep
