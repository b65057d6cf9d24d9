"""The result of a fixed-point (Picard) solve, and its xarray form."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class FixedPointResult:
    """Outcome of :meth:`mfg_core.FixedPointIterator.solve`.

    ``U``, ``M`` have shape ``(len(t), len(x))``. ``history`` maps a per-iteration quantity
    (``res_U``, ``res_M``, ``mass_error``, ``min_M``, ``seconds``, ...) to an array of length
    ``iterations``. ``reason`` says why the iteration stopped.
    """

    U: np.ndarray
    M: np.ndarray
    converged: bool
    iterations: int
    reason: str
    history: dict[str, np.ndarray]
    x: np.ndarray
    t: np.ndarray
    problem: dict[str, Any]
    solver: dict[str, Any]
    wall_time: float = 0.0
    compile_time: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    #: per-time-step diagnostics of the last FP solve (e.g. particles' ``reflected_fraction``), each of
    #: length ``len(t) - 1`` (step n goes from t_n to t_{n+1})
    step_diagnostics: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def mass(self) -> np.ndarray:
        """Discrete mass of ``M`` at every time (trapezoidal / periodic weights)."""
        w = np.asarray(self.problem["weights"]) if "weights" in self.problem else None
        if w is None:
            raise KeyError("problem weights not recorded")
        return self.M @ w

    def to_xarray(self):
        """``xarray.Dataset`` with ``u(t, x)``, ``m(t, x)``, the history on ``iteration`` and attrs.

        Attributes are plain JSON values: scalars and strings; nested parameters (the problem's own
        parameters, solver settings) are stored as JSON strings.
        """
        import xarray as xr

        data_vars = {
            "u": (("t", "x"), self.U, {"long_name": "value function u(t, x)"}),
            "m": (("t", "x"), self.M, {"long_name": "density m(t, x)"}),
        }
        it = np.arange(1, self.iterations + 1)
        for key, values in self.history.items():
            values = np.asarray(values)
            if values.shape == (self.iterations,):
                if values.dtype == bool:
                    values = values.astype(np.int8)
                data_vars[key] = (("iteration",), values)
        for key, values in self.step_diagnostics.items():
            values = np.asarray(values, dtype=np.float64)
            if values.shape == (self.t.size - 1,):
                # stored on t: the value of the step that ends at t_n (NaN at t_0)
                data_vars[key] = (("t",), np.concatenate([[np.nan], values]),
                                  {"long_name": f"{key} of the step ending at t (last FP solve)"})
        weights = self.problem.get("weights")
        if weights is not None:
            data_vars["mass"] = (("t",), self.M @ np.asarray(weights), {"long_name": "discrete mass"})
        attrs: dict[str, Any] = {
            "converged": int(bool(self.converged)),
            "iterations": int(self.iterations),
            "reason": self.reason,
            "wall_time": float(self.wall_time),
            "compile_time": float(self.compile_time),
        }
        for key, value in self.problem.items():
            if key == "weights":
                continue
            attrs[f"problem_{key}"] = _json_attr(value)
        for key, value in self.solver.items():
            attrs[f"solver_{key}"] = _json_attr(value)
        for key, value in self.extra.items():
            attrs[key] = _json_attr(value)
        return xr.Dataset(data_vars, coords={"t": self.t, "x": self.x, "iteration": it}, attrs=attrs)


def _json_attr(value: Any):
    """Scalars and strings stay as they are; anything else becomes a JSON string."""
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, str) or value is None:
        return "" if value is None else value
    return json.dumps(value, default=lambda o: o.tolist() if hasattr(o, "tolist") else repr(o))
