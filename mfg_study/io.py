"""Reading and writing study outputs: xarray <-> zarr stores, JSON-clean attributes, atomic writes.

Part of the study runner, not of the solver core (``mfg_core`` never imports ``mfg_study``): what the
workflow scripts and the report use to turn results into files that survive interruptions.

* Stores are zarr format 3, unconsolidated (Snakemake's ``directory()`` outputs receive a
  ``.snakemake_timestamp`` file after the job; a consolidated index would not know it, and zarr 3
  warns about the foreign file on open -- :func:`open_store` silences exactly that warning).
* Every output is written next to its target under a temporary name and renamed into place, so an
  interrupted job never leaves a file or store that looks complete.
* Attributes are checked to be plain JSON (no NaN, no numpy objects) before anything is written.
* Stores carry ``format_version`` (:data:`mfg_core.result.FORMAT_VERSION`); :func:`open_store` reads
  older versions in the current layout, or refuses a newer one naming the version it needs.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import uuid
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mfg_core.result import FORMAT_VERSION, upgrade_dataset

#: The file Snakemake drops inside ``directory()`` outputs.
SNAKEMAKE_TIMESTAMP = ".snakemake_timestamp"



# ---------------------------------------------------------------------------------------------
# JSON-clean attributes
def json_clean(value: Any, *, name: str = "attrs") -> Any:
    """Return ``value`` as plain JSON types (dict/list/str/int/float/bool/None).

    numpy scalars and arrays are converted; a NaN or infinite float raises ``ValueError`` naming
    where it sits, because zarr would otherwise write invalid JSON (or a reader would get
    ``NaN`` back as a string).
    """
    if isinstance(value, Mapping):
        return {str(k): json_clean(v, name=f"{name}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_clean(v, name=f"{name}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        return json_clean(value.tolist(), name=name)
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not math.isfinite(v):
            raise ValueError(f"{name} is {v}: attributes must be finite JSON numbers")
        return v
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Path):
        return str(value)
    raise ValueError(f"{name} has type {type(value).__name__}, which is not plain JSON")


def json_string(value: Any, *, name: str = "value") -> str:
    """``value`` as a compact, key-sorted JSON string (sorted so that equal configs compare equal)."""
    return json.dumps(json_clean(value, name=name), sort_keys=True, allow_nan=False)


# ---------------------------------------------------------------------------------------------
# atomic writes
def _temp_sibling(target: Path) -> Path:
    # hidden, unique, and in the same directory so that the final rename never crosses filesystems
    return target.with_name(f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success rename it to ``target``.

    Works for files and directories (zarr stores). On an exception the temporary is removed and
    ``target`` is left as it was, so a half-written output never carries the final name.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(target)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to the temporary {tmp} for {target}")
        if target.is_dir() and not target.is_symlink():
            # os.replace cannot replace a non-empty directory: remove the old store first (the
            # new one is complete at this point, so the window without a target is harmless)
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists() or tmp.is_symlink():
            _remove(tmp)


def write_text(target: str | os.PathLike, text: str) -> Path:
    """Write a text file atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def write_csv(df, target: str | os.PathLike, **kwargs) -> Path:
    """Write a pandas DataFrame as CSV atomically (no index unless asked for)."""
    kwargs.setdefault("index", False)
    with atomic_path(target) as tmp:
        df.to_csv(tmp, **kwargs)
    return Path(target)


def save_figure(fig, target: str | os.PathLike, *, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    try:
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return Path(target)


def write_store(ds, target: str | os.PathLike) -> Path:
    """Write an ``xarray.Dataset`` as a zarr-3, unconsolidated store, atomically.

    The attributes (dataset's and every variable's) are checked to be plain JSON first, so a bad
    attribute fails before anything is written.
    """
    ds = ds.copy()
    ds.attrs = json_clean(dict(ds.attrs), name="attrs")
    for name, var in ds.variables.items():
        var.attrs = json_clean(dict(var.attrs), name=f"{name}.attrs")
    with atomic_path(target) as tmp:
        ds.to_zarr(tmp, mode="w", zarr_format=3, consolidated=False)
    return Path(target)


# ---------------------------------------------------------------------------------------------
# reading
@contextlib.contextmanager
def _quiet_timestamp() -> Iterator[None]:
    with warnings.catch_warnings():
        # Snakemake's marker inside directory() outputs is not part of the zarr hierarchy; zarr 3
        # warns once per open. Only that message is silenced: other zarr warnings still show.
        warnings.filterwarnings("ignore", message=rf".*{SNAKEMAKE_TIMESTAMP}.*")
        yield


def open_store(path: str | os.PathLike, *, load: bool = True):
    """Open a store written by :func:`write_store` (``load=True`` reads it into memory and closes).

    Raises ``FileNotFoundError`` naming the path if it is not a zarr store.
    """
    import xarray as xr

    path = Path(path)
    if not (path / "zarr.json").is_file():
        raise FileNotFoundError(f"{path} is not a zarr store (no zarr.json): was its job completed?")
    with _quiet_timestamp():
        ds = xr.open_zarr(path, consolidated=False, zarr_format=3)
        if load:
            ds = ds.load()
            ds.close()
    try:
        return upgrade_dataset(ds)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


# ---------------------------------------------------------------------------------------------
# problem stores
def problem_to_xarray(problem):
    """The materialised inputs of a problem: ``m0``, ``V``, ``g``, ``weights`` on ``x``, and ``t``.

    The callables cannot be stored; their qualified names and every parameter are kept in the
    ``problem_parameters`` attribute (JSON) so the store says what it is.
    """
    import xarray as xr

    return xr.Dataset(
        {
            "m0": (("x",), problem.m_init, {"long_name": "initial density (discrete mass 1)"}),
            "V": (("x",), problem.V, {"long_name": "potential V(x)"}),
            "g": (("x",), problem.g, {"long_name": "terminal cost g(x)"}),
            "weights": (("x",), problem.weights, {"long_name": "quadrature weights"}),
        },
        coords={"x": problem.x, "t": problem.t},
        attrs={"problem_parameters": json_string(problem.parameters(), name="problem_parameters")},
    )


def check_problem_matches(problem, ds, *, source: str = "problem store") -> None:
    """Raise ``ValueError`` naming the field if ``problem`` differs from its set-up store ``ds``."""
    pairs = {"x": (problem.x, ds["x"].values), "t": (problem.t, ds["t"].values),
             "m0": (problem.m_init, ds["m0"].values), "V": (problem.V, ds["V"].values),
             "g": (problem.g, ds["g"].values), "weights": (problem.weights, ds["weights"].values)}
    for name, (built, stored) in pairs.items():
        if built.shape != stored.shape or not np.allclose(built, stored, rtol=1e-12, atol=1e-14):
            raise ValueError(f"{source}: {name} differs from the problem built from the run's settings "
                             "(the set-up store is stale: re-run its setup job)")
    stored = json.loads(ds.attrs.get("problem_parameters", "{}"))
    built = json.loads(json_string(problem.parameters(), name="problem_parameters"))
    for key in sorted(set(stored) | set(built)):
        if stored.get(key) != built.get(key):
            raise ValueError(f"{source}: parameter {key} is {stored.get(key)!r} in the store but "
                             f"{built.get(key)!r} in the run's settings (the set-up store is stale)")


def diverged_dataset(problem, reason: str):
    """The store of a run whose iterate became non-finite: NaN fields, no history, the error text.

    Written (instead of failing the job) so that a divergence is a measured outcome the report can
    show, never mistaken for a solution: ``status`` is ``"diverged"`` and ``converged`` is 0.
    """
    import xarray as xr

    nan = np.full(problem.shape, np.nan)
    return xr.Dataset(
        {"u": (("t", "x"), nan, {"long_name": "value function u(t, x) (NaN: diverged)"}),
         "m": (("t", "x"), nan.copy(), {"long_name": "density m(t, x) (NaN: diverged)"}),
         "mass": (("t",), np.full(problem.t.shape, np.nan), {"long_name": "discrete mass"})},
        coords={"t": problem.t, "x": problem.x, "iteration": np.arange(1, 1)},
        attrs={"format_version": FORMAT_VERSION, "status": "diverged", "converged": 0, "reason": reason,
               "problem_parameters": json_string(problem.parameters(), name="problem_parameters")},
    )
