"""The result of a fixed-point solve, and its xarray form.

``FORMAT_VERSION`` is the layout of the dataset :meth:`FixedPointResult.to_xarray` writes (its
``format_version`` attribute). Version 2 names the history ``change_U/change_M`` (relative change
between iterates) and ``residual_U/residual_M`` (relative fixed-point residual); version 1 (stores
without the attribute) called them ``res_U/res_M`` and ``fp_res_U/fp_res_M``:
:func:`upgrade_dataset` renames them, so readers of either get one vocabulary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FORMAT_VERSION = 2
STATUSES = ("converged", "not_converged", "diverged")

#: version-1 history names -> version 2
RENAMED_V1 = {"res_U": "change_U", "res_M": "change_M", "fp_res_U": "residual_U", "fp_res_M": "residual_M",
              "residual": "anderson_residual"}


@dataclass
class FixedPointResult:
    """Outcome of a fixed-point solve (:func:`mfg_core.solve`, :class:`mfg_core.FixedPointIterator`).

    ``U``, ``M`` have shape ``(len(t), *grid shape)``. ``status`` is ``"converged"``,
    ``"not_converged"`` (``max_iterations`` reached) or ``"diverged"`` (residual blow-up); ``reason``
    says why in words. ``history`` maps a per-iteration quantity (``change_U``, ``change_M``,
    ``residual_U``, ``residual_M``, ``mass_error``, ``min_M``, ``seconds``, and the coupling method's
    own) to an array of length ``iterations``. ``coords`` holds the node coordinates (``t``, ``x``,
    and ``y`` in 2D).
    """

    U: np.ndarray
    M: np.ndarray
    status: str
    iterations: int
    reason: str
    history: dict[str, np.ndarray]
    coords: dict[str, np.ndarray]
    problem: dict[str, Any]
    solver: dict[str, Any]
    converged: bool = False
    wall_time: float = 0.0
    compile_time: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    #: per-time-step diagnostics of the last FP solve (e.g. particles' ``reflected_fraction``), each of
    #: length ``len(t) - 1`` (step n goes from t_n to t_{n+1})
    step_diagnostics: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        self.converged = self.status == "converged"

    @property
    def t(self) -> np.ndarray:
        return self.coords["t"]

    @property
    def x(self) -> np.ndarray:
        return self.coords["x"]

    @property
    def space_dims(self) -> tuple[str, ...]:
        return ("y", "x") if "y" in self.coords else ("x",)

    @property
    def mass(self) -> np.ndarray:
        """Discrete mass of ``M`` at every time (the solver's quadrature weights)."""
        w = np.asarray(self.problem["weights"])
        return self.M.reshape(self.M.shape[0], -1) @ w.ravel()

    def to_xarray(self):
        """``xarray.Dataset`` with ``u``, ``m`` on ``(t, [y,] x)``, the history on ``iteration``, attrs.

        Attributes are plain JSON values: scalars and strings; nested parameters (the problem's own
        parameters, solver settings) are stored as JSON strings.
        """
        import xarray as xr

        dims = ("t", *self.space_dims)
        data_vars = {
            "u": (dims, self.U, {"long_name": "value function u"}),
            "m": (dims, self.M, {"long_name": "density m"}),
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
            elif values.shape == (self.t.size - 1, len(self.space_dims)) and len(self.space_dims) > 1:
                # one value per axis (2D particle bandwidths): on (t, axis), axis = ("y", "x")
                pad = np.full((1, values.shape[1]), np.nan)
                data_vars[key] = (("t", "axis"), np.concatenate([pad, values]),
                                  {"long_name": f"{key} per axis of the step ending at t (last FP solve)"})
        if "weights" in self.problem:
            data_vars["mass"] = (("t",), self.mass, {"long_name": "discrete mass"})
        attrs: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "status": self.status,
            "converged": int(self.converged),
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
        coords = {"iteration": it, **self.coords}
        if any("axis" in v[0] for v in data_vars.values()):
            coords["axis"] = list(self.space_dims)
        return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def upgrade_dataset(ds):
    """A dataset of any supported ``format_version`` in the current layout (renamed variables, the
    attribute set); raises ``ValueError`` for a version newer than this code knows."""
    version = int(ds.attrs.get("format_version", 1))
    if version > FORMAT_VERSION:
        raise ValueError(f"store format_version {version} is newer than this mfg_core reads "
                         f"({FORMAT_VERSION}): upgrade mfg-core")
    if version == 1:
        ds = ds.rename({old: new for old, new in RENAMED_V1.items() if old in ds.variables})
        ds.attrs["format_version"] = FORMAT_VERSION
    return ds


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
