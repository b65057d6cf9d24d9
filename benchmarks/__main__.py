"""Run every ``benchmarks/bench_*.py`` module's ``main(outdir)`` in turn (``make bench``).

``python -m benchmarks [name ...]`` runs only the named ones (e.g. ``backends``, ``kde``).
"""

from __future__ import annotations

import importlib
import pathlib
import sys
import time


def main(argv: list[str]) -> int:
    here = pathlib.Path(__file__).parent
    outdir = here.parent / "results" / "bench"
    outdir.mkdir(parents=True, exist_ok=True)
    names = sorted(p.stem[len("bench_"):] for p in here.glob("bench_*.py"))
    wanted = argv or names
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        print(f"unknown benchmark(s) {unknown}; available: {names}", file=sys.stderr)
        return 2
    for name in wanted:
        start = time.perf_counter()
        print(f"== benchmark {name}", flush=True)
        importlib.import_module(f"benchmarks.bench_{name}").main(outdir)
        print(f"== {name} done in {time.perf_counter() - start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
