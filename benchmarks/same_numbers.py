"""Do two runs of a study hold the same numbers? (``python -m benchmarks.same_numbers OLD NEW``)

Compares every run store under ``OLD/runs`` with the one at the same path under ``NEW/runs``: the
relative difference ``max|u_new - u_old| / max|u_old|`` (and of ``m``), the iteration counts and the
status. Used to check a refactoring that must keep every number (the architecture issue: 1e-12
relative in u and m, identical iteration counts). Older stores (``format_version`` 1) are read in the
current layout. Prints a table and exits 1 if any run differs beyond ``--rtol`` (default 1e-12).
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from mfg_study.io import open_store
from mfg_study.tables import max_relative_difference


def compare(old: pathlib.Path, new: pathlib.Path) -> list[dict]:
    rows = []
    for path in sorted((old / "runs").glob("*/*/*/*.zarr")):
        rel = path.relative_to(old)
        a, b = open_store(path), open_store(new / rel) if (new / rel).exists() else None
        if b is None:
            rows.append({"run": str(rel), "missing": True})
            continue
        rows.append({"run": str(rel.relative_to("runs")).removesuffix(".zarr"), "missing": False,
                     "du": max_relative_difference(b["u"].values, a["u"].values),
                     "dm": max_relative_difference(b["m"].values, a["m"].values),
                     "it_old": int(a.attrs["iterations"]) if "iterations" in a.attrs else -1,
                     "it_new": int(b.attrs["iterations"]) if "iterations" in b.attrs else -1,
                     "status_old": a.attrs.get("status"), "status_new": b.attrs.get("status")})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", type=pathlib.Path, help="results/<study> of the reference run")
    ap.add_argument("new", type=pathlib.Path, help="results/<study> of the run to check")
    ap.add_argument("--rtol", type=float, default=1e-12)
    args = ap.parse_args(argv)
    rows = compare(args.old, args.new)
    bad = 0
    for r in rows:
        if r["missing"]:
            print(f"MISSING {r['run']}")
            bad += 1
            continue
        ok = ((r["du"] <= args.rtol or (r["du"] != r["du"] and r["status_old"] == "diverged"))
              and (r["dm"] <= args.rtol or (r["dm"] != r["dm"] and r["status_old"] == "diverged"))
              and r["it_old"] == r["it_new"] and r["status_old"] == r["status_new"])
        bad += not ok
        print(f"{'ok  ' if ok else 'DIFF'} {r['run']:45s} du={r['du']:.1e} dm={r['dm']:.1e} "
              f"iterations {r['it_old']}/{r['it_new']} {r['status_old']}/{r['status_new']}")
    print(f"{len(rows)} runs compared, {bad} differ (rtol {args.rtol:g})")
    return 1 if bad or not rows else 0


if __name__ == "__main__":
    sys.exit(main())
