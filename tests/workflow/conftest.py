"""Helpers for the workflow tests: run Snakemake on the repository's Snakefile as a user would."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def _run_snakemake(*args, cwd=ROOT, timeout=600, check=False):
    """Run ``snakemake -s <repo>/Snakefile <args>`` in ``cwd``; returns the CompletedProcess."""
    if not SNAKEMAKE.exists():
        pytest.skip(f"snakemake not installed next to {sys.executable}")
    env = dict(os.environ)
    env.setdefault("MPLBACKEND", "Agg")
    proc = subprocess.run([str(SNAKEMAKE), "-s", str(ROOT / "Snakefile"), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(map(str, args))} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="session")
def run_snakemake():
    """The function ``run_snakemake(*args, cwd=..., timeout=...)`` (a fixture: test dirs are not packages)."""
    return _run_snakemake
