"""Provenance of every store: the resolved config, the run's settings, versions, git revision, host."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from .io import json_clean, json_string

#: Packages whose versions go into every store's provenance (absent ones are recorded as "").
PROVENANCE_PACKAGES = ("mfg_core", "numpy", "scipy", "numba", "jax", "jaxlib", "torch", "xarray",
                       "zarr", "pandas", "matplotlib", "snakemake")


def package_versions(packages: tuple[str, ...] = PROVENANCE_PACKAGES) -> dict[str, str]:
    """Installed version of each package, ``""`` if it is not installed (never imports heavy ones)."""
    from importlib import metadata

    dist_names = {"mfg_core": "mfg-core"}
    out = {"python": platform.python_version()}
    for pkg in packages:
        try:
            out[pkg] = metadata.version(dist_names.get(pkg, pkg))
        except metadata.PackageNotFoundError:
            out[pkg] = ""
    return out


def git_revision(path: str | os.PathLike = ".") -> dict[str, Any]:
    """``{"revision": sha, "dirty": bool}`` of the git work tree containing ``path``.

    Outside a git repository (e.g. an exported copy) both are recorded as unknown rather than
    failing: a study is still worth running there.
    """
    def git(*args):
        return subprocess.run(["git", *args], cwd=path, capture_output=True, text=True, timeout=30)

    try:
        rev = git("rev-parse", "HEAD")
        if rev.returncode != 0:
            return {"revision": "unknown", "dirty": None}
        status = git("status", "--porcelain", "--untracked-files=no")
        return {"revision": rev.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"revision": "unknown", "dirty": None}


def provenance_attrs(*, config: Mapping[str, Any], run: Mapping[str, Any] | None = None,
                     backend: str = "", backend_version: str = "", wall_time: float | None = None,
                     compile_time: float | None = None, repo: str | os.PathLike = ".",
                     extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The provenance attributes every store carries (all plain JSON).

    ``config`` is the full resolved study config (stored as a JSON string so that nested keys
    survive any reader); ``run`` the settings of this particular job. Wall time and compile time
    are kept apart because jit compilation (numba, jax) is a one-off cost per shape.
    """
    git = git_revision(repo)
    attrs: dict[str, Any] = {
        "provenance_config": json_string(config, name="config"),
        "provenance_run": json_string(run or {}, name="run"),
        "provenance_package_versions": json_string(package_versions(), name="package_versions"),
        "provenance_git_revision": git["revision"],
        "provenance_git_dirty": "unknown" if git["dirty"] is None else str(git["dirty"]).lower(),
        "provenance_created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "provenance_host": platform.node(),
        "provenance_python": sys.version.split()[0],
    }
    if backend:
        attrs["backend"] = backend
        attrs["backend_version"] = backend_version
    if wall_time is not None:
        attrs["wall_time"] = float(wall_time)
    if compile_time is not None:
        attrs["compile_time"] = float(compile_time)
    for key, value in (extra or {}).items():
        attrs[key] = value if isinstance(value, (str, int, float, bool)) else json_string(value, name=key)
    return json_clean(attrs)


def restamp(*, config: Mapping[str, Any], run: Mapping[str, Any], repo: str | os.PathLike = ".",
            extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The provenance attributes a store copied from the solve cache gets in this study: the current
    config, run, git revision and host (the numbers, their wall and compile time and the package
    versions are the original solve's, whose time ``provenance_created_utc`` keeps)."""
    attrs = provenance_attrs(config=config, run=run, repo=repo, extra=extra)
    attrs["provenance_reused_utc"] = attrs.pop("provenance_created_utc")
    attrs.pop("provenance_package_versions")
    return attrs


def provenance_summary(stores: Iterable[Any]) -> dict[str, Any]:
    """Package versions, git revisions and backends recorded in a study's stores (for the report)."""
    versions: dict[str, set[str]] = {}
    revisions, backends = set(), {}
    for ds in stores:
        for pkg, v in json.loads(ds.attrs.get("provenance_package_versions", "{}")).items():
            versions.setdefault(pkg, set()).add(v or "not installed")
        rev = ds.attrs.get("provenance_git_revision")
        if rev:
            dirty = ds.attrs.get("provenance_git_dirty", "unknown")
            revisions.add(rev + (" (uncommitted changes)" if dirty == "true" else ""))
        if ds.attrs.get("backend"):
            backends[ds.attrs["backend"]] = ds.attrs.get("backend_version", "")
    return {"package_versions": {k: ", ".join(sorted(v)) for k, v in sorted(versions.items())},
            "git_revisions": sorted(revisions), "backends": dict(sorted(backends.items()))}
