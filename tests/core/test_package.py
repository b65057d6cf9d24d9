"""The package surface: lazy attributes work from a fresh interpreter, backends load only on demand."""

import subprocess
import sys


def run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_lazy_attributes_resolve_in_a_fresh_interpreter():
    out = run("import mfg_core as mc; print(mc.kde.kde_on_grid.__name__, mc.FPParticleSolver.__name__, "
              "mc.rules.Damping.__name__, mc.anderson.__name__, mc.methods.names('fp'))")
    assert out.split()[:4] == ["kde_on_grid", "FPParticleSolver", "Damping", "mfg_core.anderson"]


def test_import_does_not_import_optional_backends():
    out = run("import sys, mfg_core; print(sorted(m for m in ('numba', 'jax', 'torch') if m in sys.modules))")
    assert out.strip() == "[]"


def test_unknown_attribute_is_an_attribute_error():
    out = run("import mfg_core as mc\ntry:\n    mc.nosuch\nexcept AttributeError as e:\n    print('ok', e)")
    assert out.startswith("ok")


def test_the_core_never_imports_the_study_runner_or_snakemake():
    """Imports point one way: solving (core) pulls in neither the study runner (its I/O, tables,
    report), nor snakemake, matplotlib or zarr."""
    code = (
        "import sys\n"
        "before = set(sys.modules)  # the site hooks of the venv (mfg_study's snakemake hook) are not the core's\n"
        "import mfg_core as mc\n"
        "p = mc.problems.load('congestion', Nx=10, Nt=5)\n"
        "mc.FixedPointIterator(p, mc.HJBFDMSolver(p), mc.FPParticleSolver(p, num_particles=50),\n"
        "                      use_anderson=True).solve(3, 1e-3)\n"
        "mc.kde, mc.anderson\n"
        "mc.solve(p, fp='particle', coupling='damping_gs', num_particles=50, max_iterations=2)\n"
        "print(sorted(m for m in set(sys.modules) - before if m.split('.')[0] in ('mfg_study', 'snakemake', 'matplotlib',\n"
        "                                                          'zarr', 'xarray')))\n"
    )
    assert run(code).strip() == "[]"
