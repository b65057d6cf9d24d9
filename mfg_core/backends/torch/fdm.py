r"""torch finite-difference kernels: the scheme of :mod:`mfg_core.backends.numpy.fdm` on float64 tensors.

Same equations, same discretisation, same stopping rules as the numpy reference (read its docstring
for the derivation):

    HJB step (implicit Euler, Engquist-Osher upwinding), solved by Newton from ``u = u^{n+1}``:
        R(u)_i = u_i - u^{n+1}_i + dt * ( -nu (u_{i+1} - 2u_i + u_{i-1})/dx^2
                  + ( min(D^+u_i, 0)^2 + max(D^-u_i, 0)^2 ) / (2 lam) - S^{n+1}_i ) = 0,
        J = I + dt A(u) tridiagonal (an M-matrix), stop when max|R| <= newton_tol * max(1, max|u|)
        or when the Newton update is at round-off (16 eps * that scale).
    FP step (discrete adjoint): (I + dt A(u^n))^T mu^{n+1} = mu^n, mu = trapezoidal weights * m.

Tridiagonal solves: parallel cyclic reduction (PCR), no loop over ``x``: level ``s = 1, 2, 4, ..``
eliminates ``x_{i-s}`` and ``x_{i+s}`` from every equation ``i`` at once (see :class:`_Newton`);
after ``L = ceil(log2 N)`` levels ``x = d / b``. On strictly diagonally dominant matrices (ours are
M-matrices) the multipliers are below 1 and PCR is stable; it rounds differently from LAPACK
``gtsv`` (the reference) by a few ulps times the condition number of ``J`` (close to 1 here).
Periodic systems use the reference's Sherman-Morrison split (a second right-hand side).

Cost model: at these sizes (N in the thousands) each tensor op costs its dispatch, about 2.5 us
from Python whatever its length, so the kernels are written to issue few ops:

* HJB, per Newton step (Neumann): 5 ops for the residual (one ``index_select`` for the ghost
  neighbours, one ``sub`` for both one-sided differences, one ``clamp`` with per-row bounds, one
  square, one ``mv`` that sums all terms), 3 for the convergence tests (``max|R|``, the round-off
  test on the previous update and ``max|u|`` in one reduction and one host sync), 2 for the bands
  (one ``addcmul``, which also folds the Neumann ghost band in -- exact, as the ghost makes
  ``min(D^+u, 0) = -max(D^-u, 0)`` at a wall -- and one ``addmv`` for the diagonal), 4 per PCR level
  and 2 for the update: about 56 ops against about 140 before. Every buffer is a strided view of
  one flat tensor made once per sweep, so that several rows are read or written by one op.
* FP: the matrices of all steps are known from ``U`` and PCR's multipliers do not depend on the
  right-hand side, so the reduction of ``(a, b, c)`` runs batched over 16 time steps at a time
  (chunks of 16-32 were fastest: larger ones leave the cache) and the sequential loop over time
  only applies the stored multipliers to ``mu``: 2 ops per level, ``2 L + 2`` per step, against
  ``9 L + 8`` before. The batched reduction and the step loop then cost about the same.
* The Neumann HJB sweep (time loop, Newton loop and PCR) and the FP step loop run as TorchScript
  (``torch.jit.script`` of plain functions of tensors and lists of tensor views, compiled once per
  process in about 0.1 s, shape-independent): its interpreter dispatches an op in about 1.6 us
  against 2.7 us from Python. ``torch.jit.script`` is deprecated in torch 2.x (its warning is
  silenced here); if it fails, or with ``MFG_TORCH_SCRIPT=0``, the same functions run eagerly,
  with the same ops and results. The periodic HJB sweep runs eagerly (6 ops per PCR level and a
  few scalar ops for Sherman-Morrison).
* Both sweeps run on one intra-op thread (``torch.set_num_threads(1)``, restored afterwards):
  with the other core busy, the batched FP reduction took 4-5x longer on two OpenMP threads
  (1.1 s against 0.34 s for one FP sweep at N = 1600 under load average ~9); the per-step ops are
  below torch's parallel grain size anyway (measured: same time on 1 and 2 threads).

Measured (N = Nx = Nt = 1600, ``congestion``, one HJB sweep of 3209 Newton steps and one FP sweep,
2 cores shared, load average 1-3, medians of 3): HJB 1.17 s -> 0.33 s (0.46 s eagerly), i.e.
365 -> 104 us per Newton step; FP 0.60 s -> 0.20 s, i.e. 375 -> 125 us per step. Results agree
with the reference to a few 1e-14 relative, Newton counts identical. In ``benchmarks backends``
(FDM-FDM Picard iterations, load average ~1): N = 1600 kernels 1686 -> 530 ms per iteration, 21.6x
-> 6.8x the numba-Thomas floor (target 10x); N = 400 233 -> 68 ms, N = 100 63 -> 13 ms.

``torch.compile`` is not used: measured on one PCR solve of N = 1601 (torch 2.13 CPU, 2 cores), it
took 17-25 s to compile per shape and boundary type on a cold cache (about 2.4 s from inductor's
on-disk cache), then 0.14-0.15 ms per solve against 0.25 ms eager on an idle machine -- and 8.5 ms
when the other core was busy (OpenMP threads waiting on each other). That does not repay tens of
seconds of compilation per grid in the study's grid sweeps, nor the fragility under load.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings

from typing import List

import numpy as np

import torch

from .. import checks

_ROUNDOFF = 16 * float(np.finfo(np.float64).eps)
_F64 = torch.float64


@contextlib.contextmanager
def _one_thread():
    """Run torch ops on one intra-op thread, restoring the caller's setting afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _levels(n: int) -> int:
    """PCR levels for ``n`` unknowns: strides ``1, 2, .., 2^(L-1)`` decouple every equation."""
    return max(1, math.ceil(math.log2(n)))


class _Store:
    """Rows of width ``w`` carved from one flat tensor, so that rows at a constant distance can be
    read or written as one strided ``(k, length)`` view: one tensor op serves ``k`` rows."""

    def __init__(self, rows: int, w: int):
        self.w = w
        self.flat = torch.zeros(rows * w, dtype=_F64)

    def rows(self, first, k, col, length, row_step=1, col_shift=0):
        """Rows ``first, first + row_step, ..`` (``k`` of them) from column ``col``, row ``j``
        shifted right by ``j * col_shift`` columns (``row_step = 0``: one row read twice)."""
        return self.flat.as_strided((k, length), (row_step * self.w + col_shift, 1), first * self.w + col)

    def row(self, r, col, length):
        return self.flat.as_strided((length,), (1,), r * self.w + col)


class _Newton:
    """Buffers, views and constants of the HJB Newton step on one grid, made once per sweep: at
    these sizes torch's per-op dispatch, not arithmetic, is the cost, and making a view is an op.

    PCR buffers (two, ping-pong), rows ``[a, c, b, d_1..d_k]`` = lower band, upper band, diagonal,
    right-hand sides (reference signs), padded on both sides by the largest stride with ``x = 0``
    equations (``a = c = d = 0``, ``b = 1``) that are never written, so that ``i -+ s`` never leaves
    the row. Level ``s`` eliminates ``x_{i-s}``, ``x_{i+s}`` from equation ``i`` with equations
    ``i -+ s``, multipliers ``k1 = a_i / b_{i-s}``, ``k2 = c_i / b_{i+s}``:

        a' = -k1 a_{i-s},   c' = -k2 c_{i+s},
        b' = b - k1 c_{i-s} - k2 a_{i+s},   d' = d - k1 d_{i-s} - k2 d_{i+s};

    with one right-hand side that is 4 ops: ``[k1; k2] = [a; c] / [b_{i-s}; b_{i+s}]``,
    ``[a'; c'] = -[k1; k2] [a_{i-s}; c_{i+s}]`` and two ``addcmul`` on the stacked ``[b; d]``
    (``[c_{i-s}; d_{i-s}]``, ``[a_{i+s}; d_{i+s}]`` are single strided views of the buffer); with
    two (periodic, Sherman-Morrison) 6 ops. After ``L`` levels ``x = d / b``.
    """

    def __init__(self, n, dt, dx, nu, lam, periodic):
        self.n, self.periodic = n, periodic
        self.L = L = _levels(n)
        P = 1 << (L - 1)  # pad = largest stride
        k = 2 if periodic else 1
        R = 3 + k  # rows per PCR buffer
        t = 2 * R  # distance of the rows [res, delta, u] checked together
        r_res, r_delta, r_u = 3, 3 + t, 3 + 2 * t
        st = _Store(r_u + 6, n + 2 * P)
        for b0 in (0, R):
            st.row(b0 + 2, 0, n + 2 * P).fill_(1.0)
        # residual operands [u, base, G0, G1, Q0^2, Q1^2] on consecutive rows from u, where
        # base = u^{n+1} + dt S, G = [u_i - u_{i-1}, u_{i+1} - u_i], Q = [max(G0, 0), min(G1, 0)]
        self.u = st.row(r_u, P, n)
        self.base = st.row(r_u + 1, P, n)
        self.G = st.rows(r_u + 2, 2, P, n)
        self.Qsq = st.rows(r_u + 4, 2, P, n)
        self.operands_T = st.rows(r_u, 6, P, n).T
        self.res = st.row(r_res, P, n)
        self.delta = st.row(r_delta, P, n)
        self.checked = st.rows(r_res, 3, P, n, row_step=t)
        self.absbuf = torch.empty((3, n), dtype=_F64)
        self.Q = torch.empty((2, n), dtype=_F64)
        self.ext = torch.empty(n + 2, dtype=_F64)  # u with its ghost (or periodic) neighbours
        idx = torch.arange(-1, n + 1)
        if periodic:
            idx = idx % n
        else:
            idx[0], idx[-1] = 1, n - 2
        self.idx = idx
        self.ext_hi = self.ext.as_strided((2, n), (1, 1), 1)  # [u_i, u_{i+1}]
        self.ext_lo = self.ext.as_strided((2, n), (1, 1), 0)  # [u_{i-1}, u_i]
        self.clamp_lo = torch.tensor([[0.0], [-math.inf]], dtype=_F64)
        self.clamp_hi = torch.tensor([[math.inf], [0.0]], dtype=_F64)
        # dt * (-nu Lap u + H_h(u)) = c_l (G0 - G1) + c_h (Q0^2 + Q1^2)
        c_l = dt * nu / (dx * dx)
        c_h = dt / (2.0 * lam * dx * dx)
        self.dt = dt
        self.weights = torch.tensor([1.0, -1.0, c_l, -c_l, c_h, c_h], dtype=_F64)
        # [lower; upper] = base2 + K2 * Q. The Neumann fold of the ghost band into the inner one is
        # exact in this form: at a wall the ghost makes Q1 = -Q0.
        kq = dt / (dx * dx * lam)
        base2 = torch.full((2, n), -c_l, dtype=_F64)
        K2 = torch.tensor([[-kq], [kq]], dtype=_F64).repeat(1, n)
        if not periodic:
            base2[0, 0], K2[0, 0], base2[1, 0], K2[1, 0] = 0.0, 0.0, -2.0 * c_l, 2.0 * kq
            base2[1, -1], K2[1, -1], base2[0, -1], K2[0, -1] = 0.0, 0.0, -2.0 * c_l, -2.0 * kq
        self.base2, self.K2 = base2, K2
        self.ones = torch.ones(n, dtype=_F64)
        self.minus_ones2 = torch.tensor([-1.0, -1.0], dtype=_F64)
        self.ac0 = st.rows(0, 2, P, n)
        self.b0 = st.row(2, P, n)
        self.mult = torch.empty((2, n), dtype=_F64)
        self.m1, self.m2 = self.mult[0], self.mult[1]
        self.zero = torch.zeros((), dtype=_F64)
        self.steps = []
        s = 1
        for level in range(L):
            src, dst = (0, R) if level % 2 == 0 else (R, 0)
            self.steps.append((
                st.rows(src, 2, P, n),  # [a; c]
                st.rows(src + 2, 2, P - s, n, row_step=0, col_shift=2 * s),  # [b_{i-s}; b_{i+s}]
                st.rows(src, 2, P - s, n, col_shift=2 * s),  # [a_{i-s}; c_{i+s}]
                st.rows(dst, 2, P, n),  # -> [a'; c']
                st.rows(src + 2, 2, P, n),  # [b; d]
                st.rows(src + 1, 2, P - s, n, row_step=2),  # [c_{i-s}; d_{i-s}]
                st.rows(src, 2, P + s, n, row_step=3),  # [a_{i+s}; d_{i+s}]
                st.rows(dst + 2, 2, P, n),  # -> [b'; d']
                # periodic (two right-hand sides): b and [d1; d2] apart
                st.row(src + 2, P, n), st.row(src + 1, P - s, n), st.row(src, P + s, n),
                st.row(dst + 2, P, n),
                st.rows(src + 3, k, P, n), st.rows(src + 3, k, P - s, n), st.rows(src + 3, k, P + s, n),
                st.rows(dst + 3, k, P, n),
            ))
            s *= 2
        fin = 0 if L % 2 == 0 else R
        self.b_fin = st.row(fin + 2, P, n)
        self.d_fin = st.rows(fin + 3, k, P, n)
        self.d_fin0 = st.row(fin + 3, P, n)
        if periodic:
            self.d2 = st.row(4, P, n)
            self.corners = st.rows(0, 2, P, 1, col_shift=n - 1)  # [lower[0]; upper[-1]]
            self.b_ends = st.rows(2, 2, P, 1, row_step=0, col_shift=n - 1)  # [diag[0]; diag[-1]]
            self.d2_ends = st.rows(4, 2, P, 1, row_step=0, col_shift=n - 1)
            self.yz = torch.empty((2, n), dtype=_F64)
            self.yz_ends = self.yz.as_strided((2, 2), (n, n - 1), 0)  # [[y0, y-1], [z0, z-1]]
            self.sm = torch.empty(2, dtype=_F64)

    def script_buffers(self) -> list:
        return [self.u, self.base, self.ext, self.idx, self.ext_hi, self.ext_lo, self.G, self.clamp_lo,
                self.clamp_hi, self.Q, self.Qsq, self.operands_T, self.weights, self.res, self.checked,
                self.absbuf, self.base2, self.K2, self.ac0, self.ones, self.minus_ones2, self.b0,
                self.mult, self.m1, self.m2, self.zero, self.d_fin0, self.b_fin, self.delta]

    def script_steps(self) -> list:
        return [v for step in self.steps for v in step[:8]]

    def residual(self):
        """``R(u)`` into the ``res`` row; ``Q`` (clamped differences) kept for the bands."""
        torch.index_select(self.u, 0, self.idx, out=self.ext)
        torch.sub(self.ext_hi, self.ext_lo, out=self.G)
        torch.clamp(self.G, self.clamp_lo, self.clamp_hi, out=self.Q)
        torch.mul(self.Q, self.Q, out=self.Qsq)
        torch.mv(self.operands_T, self.weights, out=self.res)

    def maxes(self) -> list[float]:
        """``[max|res|, max|delta|, max|u|]``, one host sync."""
        return torch.amax(torch.abs(self.checked, out=self.absbuf), 1).tolist()

    def update(self):
        """Bands at ``u``, ``J x = R(u)`` by PCR, ``delta = -x``, ``u += delta``."""
        torch.addcmul(self.base2, self.K2, self.Q, out=self.ac0)
        torch.addmv(self.ones, self.ac0.T, self.minus_ones2, out=self.b0)
        mult, m1, m2, zero = self.mult, self.m1, self.m2, self.zero
        if not self.periodic:
            for ac, b_lr, ac_lr, ac_out, bd, cd_l, ad_r, bd_out, *_ in self.steps:
                torch.div(ac, b_lr, out=mult)
                torch.addcmul(zero, mult, ac_lr, value=-1.0, out=ac_out)
                torch.addcmul(bd, m1, cd_l, value=-1.0, out=bd_out)
                bd_out.addcmul_(m2, ad_r, value=-1.0)
            torch.div(self.d_fin0, self.b_fin, out=self.delta)
        else:
            # Sherman-Morrison exactly as the reference: A = B + u v^T, u = (gamma, 0.., alpha),
            # v = (1, 0.., beta/gamma), gamma = -diag[0]; B has no corners.
            beta, alpha = self.corners.flatten().tolist()
            d0 = self.b_ends[0, 0].item()
            gamma = -d0
            self.corners.zero_()
            self.b_ends.add_(torch.tensor([[-gamma], [-alpha * beta / gamma]], dtype=_F64))
            self.d2.zero_()
            self.d2_ends.copy_(torch.tensor([[gamma], [alpha]], dtype=_F64))
            for ac, b_lr, ac_lr, ac_out, _, _, _, _, b, c_l, a_r, b_out, d, d_l, d_r, d_out in self.steps:
                torch.div(ac, b_lr, out=mult)
                torch.addcmul(zero, mult, ac_lr, value=-1.0, out=ac_out)
                torch.addcmul(b, m1, c_l, value=-1.0, out=b_out)
                b_out.addcmul_(m2, a_r, value=-1.0)
                torch.addcmul(d, m1, d_l, value=-1.0, out=d_out)
                d_out.addcmul_(m2, d_r, value=-1.0)
            yz = torch.div(self.d_fin, self.b_fin, out=self.yz)
            (y0, y1), (z0, z1) = self.yz_ends.tolist()
            factor = (y0 + beta * y1 / gamma) / (1.0 + z0 + beta * z1 / gamma)
            torch.sub(yz[0], yz[1], alpha=factor, out=self.delta)
        self.u.sub_(self.delta)


def _hjb_step(nw: _Newton, newton_tol: float, newton_maxiter: int) -> int:
    """Newton from ``u = u^{n+1}`` (already in ``nw.u``); returns the reference's count.

    The round-off test on an update is made together with the residual test of the next iterate
    (one host sync per Newton step); it uses the scale before that update, as the reference does.
    """
    scale = 0.0
    for it in range(newton_maxiter + 1):
        nw.residual()
        rmax, dmax, umax = nw.maxes()
        if it and dmax <= _ROUNDOFF * scale:
            return it  # the last update was at round-off: the residual cannot fall further
        scale = max(1.0, umax)
        if rmax <= newton_tol * scale:
            return it
        if it == newton_maxiter:
            return -newton_maxiter
        nw.update()
    raise AssertionError("unreachable")


def _neumann_sweep(U: torch.Tensor, src: torch.Tensor, dt: float, newton_tol: float, newton_maxiter: int,
                   roundoff: float, b: List[torch.Tensor], steps: List[torch.Tensor]) -> List[int]:
    """The whole backward sweep (Neumann), :meth:`_Newton.residual`, :meth:`_Newton.maxes`,
    :meth:`_Newton.update` and :func:`_hjb_step` inlined over the buffers ``b`` (see
    :meth:`_Newton.script_args`), so that it can run as TorchScript."""
    (u, base, ext, idx, ext_hi, ext_lo, G, clamp_lo, clamp_hi, Q, Qsq, operands_T, weights, res,
     checked, absbuf, base2, K2, ac0, ones, minus_ones2, b0, mult, m1, m2, zero, d_fin0, b_fin,
     delta) = b
    nt1 = U.shape[0]
    levels = len(steps) // 8
    its: List[int] = [0] * (nt1 - 1)
    for k in range(nt1 - 2, -1, -1):
        u.copy_(U[k + 1])
        torch.add(U[k + 1], src[k + 1], alpha=dt, out=base)
        scale = 0.0
        count = -newton_maxiter
        for it in range(newton_maxiter + 1):
            torch.index_select(u, 0, idx, out=ext)
            torch.sub(ext_hi, ext_lo, out=G)
            torch.clamp(G, clamp_lo, clamp_hi, out=Q)
            torch.mul(Q, Q, out=Qsq)
            torch.mv(operands_T, weights, out=res)
            m = torch.amax(torch.abs(checked, out=absbuf), 1)
            rmax, dmax, umax = float(m[0]), float(m[1]), float(m[2])
            if it > 0 and dmax <= roundoff * scale:
                count = it
                break
            scale = max(1.0, umax)
            if rmax <= newton_tol * scale:
                count = it
                break
            if it == newton_maxiter:
                break
            torch.addcmul(base2, K2, Q, out=ac0)
            torch.addmv(ones, ac0.t(), minus_ones2, out=b0)
            for j in range(levels):
                torch.div(steps[8 * j], steps[8 * j + 1], out=mult)
                torch.addcmul(zero, mult, steps[8 * j + 2], value=-1.0, out=steps[8 * j + 3])
                torch.addcmul(steps[8 * j + 4], m1, steps[8 * j + 5], value=-1.0, out=steps[8 * j + 7])
                steps[8 * j + 7].addcmul_(m2, steps[8 * j + 6], value=-1.0)
            torch.div(d_fin0, b_fin, out=delta)
            u.sub_(delta)
        its[k] = count
        U[k].copy_(u)
    return its


_SCRIPTED = {}


def _scripted(name, fn):
    """``fn`` as TorchScript (compiled once per process, ~0.1 s; no shapes involved), or ``fn``
    itself -- the same ops, eagerly -- if scripting is unavailable or ``MFG_TORCH_SCRIPT=0``."""
    if name not in _SCRIPTED:
        _SCRIPTED[name] = fn
        if os.environ.get("MFG_TORCH_SCRIPT", "1") != "0":
            try:
                with warnings.catch_warnings():  # deprecated in favour of torch.compile (see above)
                    warnings.simplefilter("ignore", DeprecationWarning)
                    _SCRIPTED[name] = torch.jit.script(fn)
            except Exception:  # pragma: no cover - TorchScript removed or broken
                pass
    return _SCRIPTED[name]


def hjb_sweep(source, terminal, *, dt, dx, nu, lam, periodic, newton_tol=1e-12, newton_maxiter=50):
    """Backward HJB sweep on torch tensors; same contract as
    :func:`mfg_core.backends.numpy.fdm.hjb_sweep` (numpy float64 in and out)."""
    source, terminal, dt, dx, nu, lam, newton_tol, newton_maxiter = checks.hjb_args(
        source, terminal, dt, dx, nu, lam, newton_tol, newton_maxiter)
    nt1, n = source.shape
    with torch.inference_mode(), _one_thread():
        nw = _Newton(n, dt, dx, nu, lam, bool(periodic))
        src = torch.from_numpy(source).unbind(0)
        U = torch.empty((nt1, n), dtype=_F64)
        U[-1] = torch.from_numpy(terminal)
        rows = U.unbind(0)
        its = [0] * (nt1 - 1)
        if not nw.periodic:
            sweep = _scripted("hjb", _neumann_sweep)
            its = sweep(U, torch.from_numpy(source), dt, newton_tol, newton_maxiter, _ROUNDOFF,
                        nw.script_buffers(), nw.script_steps())
            return U.numpy(), np.asarray(its, dtype=np.int64)
        u, base = nw.u, nw.base
        for k in range(nt1 - 2, -1, -1):
            u.copy_(rows[k + 1])
            torch.add(rows[k + 1], src[k + 1], alpha=dt, out=base)
            its[k] = _hjb_step(nw, newton_tol, newton_maxiter)
            rows[k].copy_(u)
        return U.numpy(), np.asarray(its, dtype=np.int64)


def _fp_bands(U, dt, dx, nu, lam, periodic):
    """Bands ``(lower, diag, upper)`` of ``J^T`` for every row of ``U`` (batched)."""
    n = U.shape[-1]
    idx = torch.arange(-1, n + 1)
    if periodic:
        idx = idx % n
    else:
        idx[0], idx[-1] = 1, n - 2
    ext = torch.cat((U[:, int(idx[0]):int(idx[0]) + 1], U, U[:, int(idx[-1]):int(idx[-1]) + 1]), dim=1)
    a_plus = torch.clamp(ext[:, 2:] - U, max=0.0).mul_(1.0 / (dx * lam))
    a_minus = torch.clamp(U - ext[:, :-2], min=0.0).mul_(1.0 / (dx * lam))
    lower = torch.mul(a_minus, -dt / dx).add_(-dt * nu / (dx * dx))
    upper = torch.mul(a_plus, dt / dx).add_(-dt * nu / (dx * dx))
    if not periodic:
        upper[:, 0] += lower[:, 0]
        lower[:, 0] = 0.0
        lower[:, -1] += upper[:, -1]
        upper[:, -1] = 0.0
    diag = 1.0 - lower - upper
    # bands of J^T (the periodic corners move with the roll)
    return torch.roll(upper, 1, dims=-1), diag, torch.roll(lower, -1, dims=-1)


def _fp_steps(mu_rows: List[torch.Tensor], T1: int, L: int, first: torch.Tensor, inner: List[torch.Tensor],
              last: List[torch.Tensor], K: List[torch.Tensor], inv_b: List[torch.Tensor], periodic: bool,
              z_rows: List[torch.Tensor], ends: List[torch.Tensor], coef_rows: List[torch.Tensor]) -> None:
    """``T1`` FP steps ``mu_rows[j] -> mu_rows[j + 1]`` with the precomputed multipliers ``K``
    (row ``2 L j + 2 level + 0/1``); ``inner`` = 4 views per level below the last (``d``,
    ``d_{i-s}``, ``d_{i+s}``, output), ``last`` = the last level's 3. TorchScript-compatible."""
    for j in range(T1):
        first.copy_(mu_rows[j])
        row = 2 * L * j
        for level in range(L - 1):
            out = inner[4 * level + 3]
            torch.addcmul(inner[4 * level], K[row + 2 * level], inner[4 * level + 1], out=out)
            out.addcmul_(K[row + 2 * level + 1], inner[4 * level + 2])
        out = mu_rows[j + 1]
        torch.mul(last[0], inv_b[j], out=out)
        out.addcmul_(K[row + 2 * L - 2], last[1])
        out.addcmul_(K[row + 2 * L - 1], last[2])
        if periodic:
            out.addcmul_(z_rows[j], torch.dot(ends[j + 1], coef_rows[j]), value=-1.0)


def fp_sweep(U, mu0, *, dt, dx, nu, lam, periodic, chunk=16):
    """Forward FP sweep (adjoint scheme, mass variables) on torch tensors; same contract as
    :func:`mfg_core.backends.numpy.fdm.fp_sweep`.

    The matrices of all time steps are known from ``U`` and PCR's multipliers do not depend on the
    right-hand side, so they are computed batched over ``chunk`` time steps at once; the sequential
    loop over time only applies them to ``mu`` (2 ops per level, 3 on the last, which also divides
    by the final diagonal). Periodic: the Sherman-Morrison correction vector ``z`` of every step is
    reduced in the same batched pass, which leaves 2 ops per step for the correction.
    """
    U, mu0, dt, dx, nu, lam = checks.fp_args(U, mu0, dt, dx, nu, lam)
    nt1, n = U.shape
    nt = nt1 - 1
    periodic = bool(periodic)
    L = _levels(n)  # >= 2 since n >= 3
    P = 1 << (L - 1)
    w = n + 2 * P
    mid = slice(P, P + n)
    with torch.inference_mode(), _one_thread():
        Ut = torch.from_numpy(U)
        mu = torch.empty((nt1, n), dtype=_F64)
        mu[0] = torch.from_numpy(mu0)
        mu_rows = mu.unbind(0)
        # padded rows: 0 holds mu[t] (level 0's input), 1 and 2 ping-pong between levels
        scratch = torch.zeros((3, w), dtype=_F64)
        rows = [0] + [1 + l % 2 for l in range(L - 1)]  # the row each level reads
        views = [(scratch[r, mid], scratch[r, P - (1 << l):P - (1 << l) + n],
                  scratch[r, P + (1 << l):P + (1 << l) + n], scratch[1 + l % 2, mid])
                 for l, r in enumerate(rows)]
        inner, last = views[:-1], views[-1][:3]
        first = scratch[0, mid]
        T = min(chunk, nt)
        # batched reduction, signs flipped (A = -lower, C = -upper >= 0): multipliers
        # n1 = A_i / b_{i-s}, n2 = C_i / b_{i+s}, A' = n1 A_{i-s}, C' = n2 C_{i+s},
        # b' = b - n1 C_{i-s} - n2 A_{i+s}, d' = d + n1 d_{i-s} + n2 d_{i+s}: no negations
        A, C, B = (torch.zeros((2, T, w), dtype=_F64) for _ in range(3))
        B.fill_(1.0)
        K = torch.empty((T, L, 2, n), dtype=_F64)  # multipliers n1, n2 of every step and level
        K_rows = K.view(T * L * 2, n).unbind(0)  # row (j, level, 0/1) at (2 L j + 2 level + 0/1)
        flat_views = [v for level_views in inner for v in level_views]
        step_fn = _scripted("fp", _fp_steps)
        if periodic:
            Z = torch.zeros((2, T, w), dtype=_F64)
            ends = mu.as_strided((nt1, 2), (n, n - 1), 0).unbind(0)  # [mu_0, mu_{-1}] per step
            sm_coef = torch.empty((T, 2), dtype=_F64)
            zfin = torch.empty((T, n), dtype=_F64)
            coef_rows, z_rows = sm_coef.unbind(0), zfin.unbind(0)
        for t0 in range(0, nt, T):
            T1 = min(T, nt - t0)
            lower, diag, upper = _fp_bands(Ut[t0:t0 + T1], dt, dx, nu, lam, periodic)
            torch.neg(lower, out=A[0, :T1, mid])
            torch.neg(upper, out=C[0, :T1, mid])
            B[0, :T1, mid] = diag
            if periodic:  # Sherman-Morrison split as the reference
                alpha, beta, gamma = upper[:, -1], lower[:, 0], -diag[:, 0]
                B[0, :T1, P] -= gamma
                B[0, :T1, P + n - 1] -= alpha * beta / gamma
                A[0, :T1, P] = 0.0
                C[0, :T1, P + n - 1] = 0.0
                Z[0, :T1].zero_()
                Z[0, :T1, P], Z[0, :T1, P + n - 1] = gamma, alpha
            for level in range(L):
                s = 1 << level
                i, o = level % 2, (level + 1) % 2
                a, c, b = A[i, :T1], C[i, :T1], B[i, :T1]
                k1, k2 = K[:T1, level, 0], K[:T1, level, 1]
                lo, hi = slice(P - s, P - s + n), slice(P + s, P + s + n)
                torch.div(a[:, mid], b[:, lo], out=k1)
                torch.div(c[:, mid], b[:, hi], out=k2)
                if level < L - 1:  # the last level's A', C' are not needed
                    torch.mul(k1, a[:, lo], out=A[o, :T1, mid])
                    torch.mul(k2, c[:, hi], out=C[o, :T1, mid])
                torch.addcmul(b[:, mid], k1, c[:, lo], value=-1.0, out=B[o, :T1, mid])
                B[o, :T1, mid].addcmul_(k2, a[:, hi], value=-1.0)
                if periodic:
                    z = Z[i, :T1]
                    torch.addcmul(z[:, mid], k1, z[:, lo], out=Z[o, :T1, mid])
                    Z[o, :T1, mid].addcmul_(k2, z[:, hi])
            inv_b = torch.reciprocal(B[L % 2, :T1, mid])
            K[:T1, L - 1].mul_(inv_b[:, None])
            if periodic:
                torch.mul(Z[L % 2, :T1, mid], inv_b, out=zfin[:T1])
                r1 = beta / gamma
                sm_coef[:T1, 0] = 1.0 / (1.0 + zfin[:T1, 0] + r1 * zfin[:T1, -1])
                sm_coef[:T1, 1] = sm_coef[:T1, 0] * r1
            step_fn(mu_rows[t0:t0 + T1 + 1], T1, L, first, flat_views, list(last), K_rows, inv_b.unbind(0),
                    periodic, z_rows if periodic else [], ends[t0:t0 + T1 + 1] if periodic else [],
                    coef_rows if periodic else [])
        return mu.numpy()  # the array keeps the tensor alive
