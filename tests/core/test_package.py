"""The package surface: lazy attributes work from a fresh interpreter, backends load only on demand."""

import subprocess
import sys


def run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_lazy_attributes_resolve_in_a_fresh_interpreter():
    out = run("import mfg_core as mc; print(mc.kde.kde_on_grid.__name__, mc.FPParticleSolver.__name__, "
              "mc.comparison.compare_coupling.__name__, mc.anderson.__name__)")
    assert out.split() == ["kde_on_grid", "FPParticleSolver", "compare_coupling", "mfg_core.anderson"]


def test_import_does_not_import_optional_backends():
    out = run("import sys, mfg_core; print(sorted(m for m in ('numba', 'jax', 'torch') if m in sys.modules))")
    assert out.strip() == "[]"


def test_unknown_attribute_is_an_attribute_error():
    out = run("import mfg_core as mc\ntry:\n    mc.nosuch\nexcept AttributeError as e:\n    print('ok', e)")
    assert out.startswith("ok")
