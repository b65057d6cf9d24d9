"""The solve cache: a run's store kept under the hash of everything that determines its numbers.

A solve batch (:mod:`mfg_study.plan`) re-runs as a whole when the settings of one of its runs
change; its other runs would come out the same. Before solving a run, the batch looks up the run's
key -- a hash of its settings (problem, methods, resolved options, stopping rules, backend) and of
the code that computes it (the source of ``mfg_core`` and ``mfg_study`` and the versions of the
numerical libraries) -- and, if a store with that key exists, copies it instead of solving. Any
change of the code or of a setting changes the key, so a cached store is exactly what solving again
would give (the solvers are deterministic; particle runs draw from their explicit seed); only its
wall time is that of the original solve, and the store says so (``solve_cache_reused``).

The cache lives under the workflow's ``cache_dir`` (``make clean-cache`` empties it). Entries are
written atomically (:func:`mfg_study.io.atomic_path`), so parallel jobs may share it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from functools import lru_cache
from pathlib import Path
from typing import Any

from .io import atomic_path

#: libraries whose version can change a run's numbers
NUMERIC_PACKAGES = ("numpy", "scipy", "numba", "jax", "jaxlib", "torch")


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """Hash of the source of mfg_core and mfg_study and of the numerical libraries' versions."""
    from importlib import metadata

    import mfg_core

    import mfg_study

    h = hashlib.sha256()
    for package in (mfg_core, mfg_study):
        root = Path(package.__file__).parent
        for path in sorted(root.rglob("*.py")):
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    for name in NUMERIC_PACKAGES:
        try:
            h.update(f"{name}={metadata.version(name)}".encode())
        except metadata.PackageNotFoundError:
            h.update(f"{name}=absent".encode())
    return h.hexdigest()


def key(settings: dict[str, Any]) -> str:
    """The cache key of a run with these settings (JSON-clean), under the current code."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256((text + code_fingerprint()).encode()).hexdigest()[:32]


def path(cache_dir: str | Path, run_key: str) -> Path:
    return Path(cache_dir) / "solves" / f"{run_key}.zarr"


def lookup(cache_dir: str | Path, run_key: str) -> Path | None:
    """The cached store of ``run_key``, if one is complete."""
    p = path(cache_dir, run_key)
    return p if (p / "zarr.json").is_file() else None


def put(cache_dir: str | Path, run_key: str, store: str | Path) -> None:
    """Keep a copy of ``store`` under ``run_key`` (atomically)."""
    with atomic_path(path(cache_dir, run_key)) as tmp:
        shutil.copytree(store, tmp)
