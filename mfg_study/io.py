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
import errno
import glob
import json
import math
import os
import shutil
import socket
import time
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
_HOST = socket.gethostname().replace("-", "_") or "host"
#: a temporary of another host is removed once it is this old (its writer cannot be asked)
STALE_SECONDS = 24 * 3600


def _sibling(target: Path, kind: str) -> Path:
    # hidden, unique, same directory (the final rename never crosses filesystems), and saying which
    # process on which host made it, so that a later writer can tell a dead writer's leftovers
    return target.with_name(f".{target.name}.{kind}-{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(target: str | os.PathLike) -> list[Path]:
    """Remove the temporaries (``.<name>.tmp-*``, ``.<name>.old-*``) that writers of ``target`` which
    no longer run left behind (killed mid-write); returns what was removed. A temporary of this host
    is stale when its process is gone; one of another host when it is older than a day."""
    target = Path(target)
    removed = []
    for kind in ("tmp", "old"):
        prefix = f".{target.name}.{kind}-"
        for path in target.parent.glob(f"{glob.escape(prefix)}*"):
            host, _, rest = path.name[len(prefix):].rpartition("-")[0].rpartition("-")
            try:
                pid = int(rest)
            except ValueError:
                continue
            stale = (not _alive(pid)) if host == _HOST else \
                (time.time() - path.lstat().st_mtime > STALE_SECONDS)
            if stale:
                _remove(path)
                removed.append(path)
    return removed


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success move it to ``target``.

    Works for files and directories (zarr stores). On an exception the temporary is removed and
    ``target`` is left as it was, so a half-written output never carries the final name. A
    directory already at ``target`` is first renamed aside, the new one renamed in, and only then
    the old one deleted: with several writers of one target (possible after ``kill -9`` of Snakemake,
    whose jobs keep running), a reader finds at the final name a complete store or, for an instant,
    none -- never one being deleted or written. Stale temporaries of dead writers are cleaned first.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(target)
    tmp = _sibling(target, "tmp")
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to the temporary {tmp} for {target}")
        if not tmp.is_dir():
            os.replace(tmp, target)  # a file replaces a file atomically
            return
        aside = []
        for _ in range(100):
            if target.exists() or target.is_symlink():
                old = _sibling(target, "old")
                try:
                    os.rename(target, old)
                    aside.append(old)
                except FileNotFoundError:
                    pass  # another writer moved it first
            try:
                os.rename(tmp, target)
                break
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.EISDIR):
                    raise
                # another writer renamed its store in between: move that one aside too
        else:  # pragma: no cover - a hundred writers racing for one name
            raise OSError(f"could not move {tmp} to {target}: other writers keep replacing it")
        for old in aside:
            _remove(old)
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


def open_runs(keys, *, load: bool = True) -> list[tuple[dict, Any]]:
    """``(run key, dataset)`` of each run key that carries its ``store`` path (the workflow's
    ``params.runs``); the key without the path."""
    return [({k: v for k, v in key.items() if k != "store"}, open_store(key["store"], load=load))
            for key in keys]


def update_attrs(store: str | os.PathLike, attrs: Mapping[str, Any]) -> None:
    """Set attributes of a store in place (JSON-clean; the metadata file is rewritten whole)."""
    import zarr

    group = zarr.open_group(str(store), mode="r+", zarr_format=3)
    group.attrs.update(json_clean(dict(attrs), name="attrs"))


def _identity(path: Path):
    """Which store sits at ``path`` now (inodes are reused, so also the metadata's write time)."""
    try:
        st = (path / "zarr.json").stat()
    except FileNotFoundError:
        return None
    return path.stat().st_ino, st.st_ino, st.st_mtime_ns


def open_store(path: str | os.PathLike, *, load: bool = True):
    """Open a store written by :func:`write_store` (``load=True`` reads it into memory and closes).

    With ``load=True`` the data is one store's: if another writer moved a new store in while this
    one was being read (the directory at ``path`` is another one afterwards), it is read again (an
    ``OSError`` if that keeps happening, never a mix of two stores).
    Raises ``FileNotFoundError`` naming the path if it is not a zarr store.
    """
    import xarray as xr

    path = Path(path)
    for _ in range(10):
        if not (path / "zarr.json").is_file():
            raise FileNotFoundError(f"{path} is not a zarr store (no zarr.json): was its job completed?")
        stamp = _identity(path)
        with _quiet_timestamp():
            ds = xr.open_zarr(path, consolidated=False, zarr_format=3)
            if load:
                ds = ds.load()
                ds.close()
        if not load or _identity(path) == stamp:
            break
    else:
        raise OSError(f"{path} was replaced by other writers ten times while being read; try again")
    try:
        return upgrade_dataset(ds)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


# ---------------------------------------------------------------------------------------------
# problem stores
def problem_to_xarray(problem):
    """The materialised inputs of a problem: ``m0``, ``V``, ``g``, ``weights`` (and in 2D the
    ``obstacle`` mask) on the space axes (``x``, or ``y, x``), and ``t``.

    The callables cannot be stored; their qualified names and every parameter are kept in the
    ``problem_parameters`` attribute (JSON) so the store says what it is.
    """
    import xarray as xr

    dims = problem.grid.names
    data = {
        "m0": (dims, problem.m_init, {"long_name": "initial density (discrete mass 1)"}),
        "V": (dims, problem.V, {"long_name": "potential V"}),
        "g": (dims, problem.g, {"long_name": "terminal cost g"}),
        "weights": (dims, problem.weights, {"long_name": "quadrature weights"}),
    }
    if problem.grid.obstacle is not None:
        data["obstacle"] = (dims, problem.grid.obstacle.astype(np.int8), {"long_name": "1 where agents cannot be"})
    return xr.Dataset(data, coords=problem.coords(),
                      attrs={"problem_parameters": json_string(problem.parameters(), name="problem_parameters")})


def check_problem_matches(problem, ds, *, source: str = "problem store") -> None:
    """Raise ``ValueError`` naming the field if ``problem`` differs from its set-up store ``ds``."""
    pairs = {name: (coord, ds[name].values) for name, coord in problem.coords().items()}
    pairs.update({"m0": (problem.m_init, ds["m0"].values), "V": (problem.V, ds["V"].values),
                  "g": (problem.g, ds["g"].values), "weights": (problem.weights, ds["weights"].values)})
    if problem.grid.obstacle is not None or "obstacle" in ds:
        pairs["obstacle"] = ((~problem.grid.free).astype(float),
                             ds["obstacle"].values.astype(float) if "obstacle" in ds else np.zeros(problem.grid.shape))
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


def failed_dataset(problem, status: str, reason: str, iteration: int | None = None):
    """The store of a run that did not produce a solution -- ``status`` ``"diverged"`` (a non-finite
    iterate) or ``"failed"`` (an inner solve did not converge) -- with NaN fields, the iteration at
    which it happened and the error text.

    Written (instead of failing the job, unless ``solve.on_divergence: fail``) so that the outcome
    is a measured result the report can show, never mistaken for a solution (``converged`` is 0).
    """
    import xarray as xr

    if status not in ("diverged", "failed"):
        raise ValueError(f"status must be 'diverged' or 'failed', got {status!r}")
    dims = ("t", *problem.grid.names)
    nan = np.full(problem.shape, np.nan)
    return xr.Dataset(
        {"u": (dims, nan, {"long_name": f"value function u (NaN: {status})"}),
         "m": (dims, nan.copy(), {"long_name": f"density m (NaN: {status})"}),
         "mass": (("t",), np.full(problem.t.shape, np.nan), {"long_name": "discrete mass"})},
        coords={**problem.coords(), "iteration": np.arange(1, 1)},
        attrs={"format_version": FORMAT_VERSION, "status": status, "converged": 0, "reason": reason,
               "iterations": int(iteration or 0), "failed_at_iteration": int(iteration or 0),
               "problem_parameters": json_string(problem.parameters(), name="problem_parameters")},
    )
