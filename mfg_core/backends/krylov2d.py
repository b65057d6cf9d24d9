r"""The one linear-solve rule of the 2D Krylov backends (numba, jax, torch): when a solve stops and
which line preconditioner it uses. Each backend implements BiCGStab and the line solves itself;
the numbers and the rule live here, so that the three solve the same way.

Preconditioner. ``J = I + dt (A_x + A_y)`` (the 5-point Jacobian of :mod:`.numpy.fdm2d`, split by
direction) is right-preconditioned by the alternating-direction product

    P_alpha = (alpha I + dt A_y)(alpha I + dt A_x)        (scale irrelevant to the Krylov iterates)

whose two factors are batches of 1D tridiagonal solves. ``alpha = 1`` gives ``P = J + dt^2 A_y A_x``,
exact where one direction drops out and nearly so on separable problems (lq2d); but where ``dt nu /
h^2`` is large and the field is not separable (a pillar in the room) its error ``dt^2 A_y A_x``
dominates and the iterations grow with ``dt nu / h^2``. The shift that balances the two is
Peaceman-Rachford's single parameter: with ``J = H + V``, ``H = I/2 + dt A_x`` and ``V = I/2 + dt
A_y`` of spectra in ``[1/2, 1/2 + 4 c]``, ``c = dt nu max(hx^-2, hy^-2)``, the optimal ``r = sqrt(1/2
(1/2 + 4 c))`` and ``alpha = r + 1/2`` (:func:`adi_shift`). It cuts the iterations where ``dt nu /
h^2`` is large but costs lq2d its near-exactness, so every sweep starts at ``alpha = 1`` and
switches to the shift for the rest of the sweep once one solve takes more than ``SWITCH``
iterations. Advection is left out of ``c`` (the factory fixes the shift before it sees ``u``); the
formula's ``alpha`` is at or next to the best of the measured values on the three named 2D problems
(``benchmarks/README.md``, "The 2D Krylov rule", for this and every choice below).

Tolerances. HJB: inexact Newton with a constant forcing term, ``||r|| <= max(HJB_FORCING ||b||,
HJB_FLOOR newton_tol max(1, max|u|))`` from 0 (``b = -R(u)``): a linear residual ``eta ||R||``
costs Newton at most a factor ``eta`` per step, and the floor (2-norm, so also a bound on max|r|)
stops where Newton's own test (max|R| <= newton_tol max(1, max|u|)) can no longer see the
difference; Newton takes about the reference's steps to the same U within its tolerance. FP:
``||r|| <= FP_RTOL ||b||`` from ``mu^n``; the mass is restored exactly after the solve, so the
tolerance only sets M's accuracy. The scheme's density is nonnegative (``J^T`` is an M-matrix);
the solve's error can leave negatives of its own size where the density is 0 (around the pillar of
evacuation2d), so negatives down to ``-FP_CLIP max(mu)`` are set to 0 before the mass is restored,
and ``m >= 0`` holds exactly.

Caps. A solve runs at most ``CYCLE * CYCLES`` BiCGStab iterations in all, in cycles of at most
``CYCLE``: a cycle ends at a breakdown (``rho``, ``(r_hat, v)``, ``(t, t)`` or ``omega`` zero, or a
non-finite value) or at its cap, and the next starts from the current iterate with its true residual
and a fresh shadow residual (the recursive residual drifts from the true one over long runs, and a
restart also clears a near-breakdown). A solve still short of its tolerance after the last cycle is
counted (``krylov_unconverged`` in the sweep's diagnostics) and used as it is: the HJB's Newton
takes another step from the true residual (and reports the step failed if its tolerance is never
met), the FP keeps the iterate (mass restored as above).
"""

from __future__ import annotations

import math

#: HJB Newton solves: relative forcing term and absolute floor (a fraction of Newton's tolerance)
HJB_FORCING = 1e-4
HJB_FLOOR = 0.5
#: FP solves: relative residual
FP_RTOL = 1e-12
#: after an FP solve, negatives down to -FP_CLIP max(mu) are the solve's error and set to 0
FP_CLIP = 1e-12
#: a sweep switches from alpha = 1 to :func:`adi_shift` after a solve of more iterations than this
SWITCH = 8
#: BiCGStab iterations of one cycle at most (then a restart from the current iterate)
CYCLE = 60
#: cycles of one solve at most: a solve runs at most CYCLE * CYCLES iterations in all
CYCLES = 4


def adi_shift(c) -> float:
    """Peaceman-Rachford's ``alpha = 1/2 + sqrt(1/2 (1/2 + 4 dt nu max(hx^-2, hy^-2)))`` for the
    constants ``c`` (:class:`mfg_core.backends.checks.FDM2DConstants`)."""
    cc = c.dt * c.nu * max(1.0 / (c.hx * c.hx), 1.0 / (c.hy * c.hy))
    return 0.5 + math.sqrt(0.5 * (0.5 + 4.0 * cc))


def caps() -> tuple[int, int]:
    """``(cycle, total)``: the most iterations of one cycle and of one solve (``CYCLE * CYCLES``)."""
    return int(CYCLE), int(CYCLE) * int(CYCLES)
