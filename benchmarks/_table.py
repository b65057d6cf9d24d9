"""Writing a benchmark's table: CSV (every column) and Markdown (the same rows), both atomically."""

from __future__ import annotations

import csv
import pathlib
from collections.abc import Sequence

from mfg_study.io import atomic_path, write_text


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def write_table(outdir: pathlib.Path, name: str, rows: Sequence[dict], *, title: str,
                notes: Sequence[str] = (), columns: Sequence[str] | None = None) -> None:
    """``outdir/name.csv`` with every key of ``rows``; ``outdir/name.md`` with ``columns`` (default all)."""
    outdir = pathlib.Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    fields = list(rows[0])
    with atomic_path(outdir / f"{name}.csv") as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    cols = list(columns or fields)
    lines = [f"# {title}", ""] + [line for note in notes for line in (note, "")]
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(r.get(c, "")) for c in cols) + " |" for r in rows]
    write_text(outdir / f"{name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines[-len(rows) - 2:]))
