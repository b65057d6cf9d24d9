"""Invalid study files are refused by ``snakemake -n`` before any job, naming the offending field.

Each case is a study file written as raw YAML text (so that it can hold duplicate keys, ``.nan``,
syntax errors and the like), given to ``snakemake -s Snakefile -n --configfile <file>`` in a fresh
directory. For every case the test checks that Snakemake fails, that its output names the field
(or, for a file-level error, the file and the line) together with a distinctive part of the message,
and that no ``results/`` directory was created (nothing ran). A few valid files (numbers written
``1e-6``, ``1.0e30``, ...) must pass the same dry run, showing the accepted forms.

Classes covered: non-finite numbers; grids too large for the machine or for resources.solve.mem_mb;
duplicate YAML keys; files that are not a mapping or not valid YAML; over-long names; unknown keys;
wrong types; out-of-range values; unknown names; inconsistent settings (reference_backend,
exclude); path traversal in study names and problem labels.
"""

import pytest

# A small valid problem block, used by the cases that are about something else.
PROBLEM = "problems:\n  c: {name: congestion, grid: {Nx: 12, Nt: 10}}\n"
LONG = "a" * 300


def study(body: str, name: str = "bad") -> str:
    """A study file: ``study: <name>``, the small problem, then ``body``."""
    return f"study: {name}\n{PROBLEM}{body}"


# (id, yaml text, substrings that must all appear in snakemake's output). "{file}" in a substring is
# replaced by the study file's full path, as given to --configfile.
CASES = [
    # --- 1. NaN and infinity ------------------------------------------------------------------
    ("nan-thetaUM", study("solve: {thetaUM: .nan}\n"),
     ["numbers must be finite", "solve.thetaUM: nan is not a finite number"]),
    ("inf-tolerance", study("solve: {tolerance: .inf}\n"),
     ["numbers must be finite", "solve.tolerance: inf is not a finite number"]),
    ("nan-particle-tolerance", study("particle: {tolerance: .nan}\n"),
     ["numbers must be finite", "particle.tolerance: nan is not a finite number"]),
    ("inf-bandwidth", study("particle: {bandwidth: .inf}\n"),
     ["numbers must be finite", "particle.bandwidth: inf is not a finite number"]),
    ("minus-inf-anderson-beta", study("couplings: [anderson]\nanderson:\n  options: {beta: -.inf}\n"),
     ["numbers must be finite", "anderson.options.beta: -inf is not a finite number"]),
    ("nan-problem-param", "study: bad\nproblems:\n  c:\n    name: congestion\n    params: {kappa: .nan}\n",
     ["numbers must be finite", "problems.c.params.kappa: nan is not a finite number"]),
    ("inf-grid-xmax", "study: bad\nproblems:\n  c:\n    name: congestion\n    grid: {Nx: 12, Nt: 10, xmax: .inf}\n",
     ["numbers must be finite", "problems.c.grid.xmax: inf is not a finite number"]),
    ("nan-in-anderson-plain-options",
     study("couplings: [anderson_plain]\nanderson:\n  plain_options: {regularization: .nan}\n"),
     ["numbers must be finite", "anderson.plain_options.regularization: nan is not a finite number"]),
    ("overflow-1e400-is-inf", study("solve: {tolerance: 1e400}\n"),
     ["numbers must be finite", "solve.tolerance: inf is not a finite number"]),
    ("nan-several-reported-together", study("solve: {thetaUM: .NaN, tolerance: .Inf}\n"),
     ["solve.thetaUM: nan is not a finite number", "solve.tolerance: inf is not a finite number"]),
    # --- 2. grids that cannot fit -------------------------------------------------------------
    ("grid-too-large-for-machine", "study: bad\nproblems:\n  huge:\n    name: congestion\n"
     "    grid: {Nx: 100000, Nt: 1000000}\n",
     ["problems.huge: Nx=100000, Nt=1000000 is too large for this machine", "GiB"]),
    ("grid-too-large-for-mem_mb", "study: bad\nproblems:\n  big:\n    name: congestion\n"
     "    grid: {Nx: 3000, Nt: 3000}\ncouplings: [anderson]\n",
     ["resources.solve.mem_mb: run big/fdm/anderson", "needs about", "MB, more than resources.solve.mem_mb = 2000"]),
    # --- 3. duplicate keys --------------------------------------------------------------------
    ("duplicate-problem-label", "study: bad\nproblems:\n  c: {name: congestion}\n  c: {name: lq}\n",
     ["{file}, line 4", "key 'c' is given twice (first on line 3)"]),
    ("duplicate-solve", "study: bad\nsolve: {tolerance: 1.0e-3}\nsolve: {thetaUM: 0.3}\n",
     ["{file}, line 3", "key 'solve' is given twice (first on line 2)"]),
    ("duplicate-key-inside-solve", "study: bad\nsolve:\n  tolerance: 1.0e-3\n  thetaUM: 0.4\n  tolerance: 1.0e-4\n",
     ["{file}, line 5", "key 'tolerance' is given twice (first on line 3)"]),
    ("duplicate-key-in-flow-mapping", "study: bad\nsolve: {tolerance: 1.0e-3, tolerance: 1.0e-4}\n",
     ["{file}, line 2", "key 'tolerance' is given twice (first on line 2)"]),
    # --- 4. file-level ------------------------------------------------------------------------
    ("file-is-a-list", "- study: bad\n- fp_methods: [fdm]\n",
     ["{file}: a study file must be a mapping", "got a list"]),
    ("file-is-a-scalar", "just some words\n",
     ["{file}: a study file must be a mapping", "got a str"]),
    ("file-is-empty", "",
     ["{file}: the study file is empty"]),
    ("file-is-only-comments", "# a study\n# to be written\n",
     ["{file}: the study file is empty (or holds only comments)"]),
    ("syntax-unclosed-bracket", "study: bad\nfp_methods: [fdm, particle\ncouplings: [damping]\n",
     ["{file}, line 3, column 10: not valid YAML", "expected ',' or ']'"]),
    ("syntax-bad-indentation", "study: bad\nsolve:\n    tolerance: 1.0e-3\n  thetaUM: 0.4\n",
     ["{file}, line 4, column 3: not valid YAML", "expected <block end>"]),
    ("syntax-tab", "study: bad\nsolve:\n\ttolerance: 1.0e-3\n",
     ["{file}, line 3, column 1: not valid YAML", "found character '\\t' that cannot start any token"]),
    ("syntax-two-documents", "study: a\n---\nstudy: b\n",
     ["{file}, line 2", "not valid YAML", "expected a single document in the stream"]),
    ("python-tag-refused", "study: !!python/object:os.system bad\n",
     ["{file}, line 1", "not valid YAML", "could not determine a constructor"]),
    # --- 5. over-long names -------------------------------------------------------------------
    ("study-name-300-chars", study("", name=LONG),
     ["study: ", "is too long"]),
    ("problem-label-300-chars", f"study: bad\nproblems:\n  {LONG}: {{name: congestion}}\n",
     ["problems: ", "is too long"]),
    # --- 6. unknown keys ----------------------------------------------------------------------
    ("unknown-top-level-key", study("solv: {tolerance: 1.0e-3}\n"),
     ["(top level): ", "'solv' was unexpected"]),
    ("unknown-key-in-solve", study("solve: {max_iteration: 5}\n"),
     ["solve: ", "'max_iteration' was unexpected"]),
    ("unknown-key-in-particle", study("particle: {num_particle: 100}\n"),
     ["particle: ", "'num_particle' was unexpected"]),
    ("unknown-key-in-anderson", study("anderson: {dept: 3}\n"),
     ["anderson: ", "'dept' was unexpected"]),
    ("unknown-key-in-resources", study("resources:\n  solve: {memory: 100}\n"),
     ["resources.solve: ", "'memory' was unexpected"]),
    # --- wrong types --------------------------------------------------------------------------
    ("string-for-number", study("solve: {tolerance: small}\n"),
     ["solve.tolerance: ", "'small' is not of type 'number'"]),
    ("number-for-list", study("backends: 3\n"),
     ["backends: ", "3 is not of type 'array'"]),
    ("quoted-number-is-a-string", study("solve: {tolerance: '1e-6'}\n"),
     ["solve.tolerance: ", "'1e-6' is not of type 'number'"]),
    ("bool-for-integer", study("solve: {max_iterations: true}\n"),
     ["solve.max_iterations: ", "True is not of type 'integer'"]),
    ("null-for-mapping", study("solve:\n"),
     ["solve: ", "None is not of type 'object'"]),
    ("list-for-mapping", study("solve: [1, 2]\n"),
     ["solve: ", "is not of type 'object'"]),
    # --- out of range -------------------------------------------------------------------------
    ("thetaUM-1.5", study("solve: {thetaUM: 1.5}\n"),
     ["solve.thetaUM: ", "greater than the maximum of 1"]),
    ("tolerance-0", study("solve: {tolerance: 0}\n"),
     ["solve.tolerance: ", "less than or equal to the minimum of 0"]),
    ("underflow-1e-400-is-0", study("solve: {tolerance: 1e-400}\n"),
     ["solve.tolerance: ", "0.0 is less than or equal to the minimum of 0"]),
    ("tolerance-1", study("solve: {tolerance: 1}\n"),
     ["solve.tolerance: ", "greater than or equal to the maximum of 1"]),
    ("Nx-2", "study: bad\nproblems:\n  c: {name: congestion, grid: {Nx: 2, Nt: 10}}\n",
     ["problems.c.grid.Nx: ", "less than the minimum of 3"]),
    ("Nt-0", "study: bad\nproblems:\n  c: {name: congestion, grid: {Nx: 12, Nt: 0}}\n",
     ["problems.c.grid.Nt: ", "less than the minimum of 1"]),
    ("sigma-negative", "study: bad\nproblems:\n  c: {name: congestion, grid: {Nx: 12, Nt: 10, sigma: -0.1}}\n",
     ["problems.c.grid.sigma: ", "less than or equal to the minimum of 0"]),
    ("num_particles-5", study("particle: {num_particles: 5}\n"),
     ["particle.num_particles: ", "less than the minimum of 10"]),
    ("max_iterations-0", study("solve: {max_iterations: 0}\n"),
     ["solve.max_iterations: ", "less than the minimum of 1"]),
    ("anderson-depth-0", study("anderson: {depth: 0}\n"),
     ["anderson.depth: ", "less than the minimum of 1"]),
    ("threads-0", study("resources:\n  solve: {threads: 0}\n"),
     ["resources.solve.threads: ", "less than the minimum of 1"]),
    ("mem_mb-10", study("resources:\n  solve: {mem_mb: 10}\n"),
     ["resources.solve.mem_mb: ", "less than the minimum of 100"]),
    ("xmax-below-xmin", "study: bad\nproblems:\n  c: {name: congestion, grid: {Nx: 12, Nt: 10, xmin: 1, xmax: 0}}\n",
     ["problems.c: ", "xmax must be > xmin"]),
    ("duplicate-fp-method", study("fp_methods: [fdm, fdm]\n"),
     ["fp_methods: ", "has non-unique elements"]),
    # --- unknown names ------------------------------------------------------------------------
    ("unknown-problem-name", "study: bad\nproblems:\n  c: {name: congestio}\n",
     ["problems.c.name: ", "'congestio' is not one of"]),
    ("unknown-backend-cuda", study("backends: [numpy, cuda]\n"),
     ["backends.1: ", "'cuda' is not one of"]),
    ("unknown-fp-method-mc", study("fp_methods: [mc]\n"),
     ["fp_methods.0: ", "'mc' is not one of"]),
    ("unknown-coupling-newtonn", study("couplings: [damping, newtonn]\n"),
     ["couplings.1: ", "'newtonn' is not one of"]),
    ("unknown-bandwidth-rule-scot", study("particle: {bandwidth: scot}\n"),
     ["particle.bandwidth: ", "'scot' is not valid under any of the given schemas"]),
    ("unknown-boundary-dirichlet", "study: bad\nproblems:\n  c: {name: congestion, grid: {boundary: dirichlet}}\n",
     ["problems.c.grid.boundary: ", "'dirichlet' is not one of"]),
    ("unknown-anderson-option", study("couplings: [anderson]\nanderson:\n  options: {betta: 0.5}\n"),
     ["anderson.options: ", "'betta' was unexpected"]),
    ("unknown-problem-parameter", "study: bad\nproblems:\n  c:\n    name: congestion\n    params: {kapa: 1.0}\n",
     ["problems.c: ", "'kapa'"]),
    # --- inconsistent settings ----------------------------------------------------------------
    ("reference-backend-not-in-backends", study("backends: [numba]\n"),
     ["reference_backend: ", "not one of the study's backends"]),
    ("exclude-unknown-problem-label", study("exclude:\n  - {problem: d}\n"),
     ["exclude[0].problem: ", "'d' is not a problem label of this study"]),
    ("exclude-unknown-key", study("exclude:\n  - {fpp: fdm}\n"),
     ["exclude.0: ", "'fpp' was unexpected"]),
    ("exclude-leaves-no-run", study("exclude:\n  - {fp: fdm}\n"),
     ["problems/fp_methods/couplings/backends: ", "no run is left after exclusions"]),
    # --- path traversal and unsafe names ------------------------------------------------------
    ("study-name-dotdot-evil", study("", name="../evil"),
     ["study: ", "'../evil' does not match"]),
    ("study-name-with-slash", study("", name="a/b"),
     ["study: ", "'a/b' does not match"]),
    ("problem-label-dotdot", "study: bad\nproblems:\n  ../x: {name: congestion}\n",
     ["problems: ", "'../x' does not match"]),
    ("problem-label-with-space", "study: bad\nproblems:\n  my crowd: {name: congestion}\n",
     ["problems: ", "'my crowd' does not match"]),
    ("problem-label-integer", "study: bad\nproblems:\n  1: {name: congestion, grid: {Nx: 12, Nt: 10}}\n",
     ["keys must be names", "problems: key 1 is a int"]),
    ("label-ending-in-20-repeats", "study: bad\nproblems:\n  run_00000000000000000000: "
     "{name: congestion, grid: {Nx: 12, Nt: 10}}\n",
     ["problems.run_00000000000000000000: ", "Snakemake refuses such a name"]),
]

# Valid files: the accepted forms of numbers and names.
VALID = [
    ("exponent-without-dot", study("solve: {tolerance: 1e-6, thetaUM: 5e-1}\nparticle: {tolerance: 1E-3}\n")),
    ("exponent-with-dot", study("couplings: [anderson]\nanderson:\n"
                                "  options: {restart_condition: 1.0e30, regularization: 1.0e-12}\n")),
    ("integral-float-for-integer",
     "study: bad\nproblems:\n  c: {name: congestion, grid: {Nx: 1.2e1, Nt: 10.0}}\n"),
    ("names-with-dot-dash-underscore", "study: My_study.v2-1\nproblems:\n  Crowd_2: {name: congestion, "
                                       "grid: {Nx: 12, Nt: 10, T: 1, sigma: 2e-1}}\n"),
    ("byte-order-mark", "\ufeffstudy: bad\n" + PROBLEM),
    ("yaml-merge-key", "study: bad\nproblems:\n  a: &p {name: congestion, grid: {Nx: 12, Nt: 10}}\n"
     "  b:\n    <<: *p\n    name: lq\n"),
]


def _params(cases):
    """pytest.param(*rest, id=first) for each (id, *rest) tuple; pytest.param entries pass through
    (their first value, the id again, is dropped)."""
    out = []
    for case in cases:
        if hasattr(case, "marks"):  # a pytest.param (itself a tuple)
            out.append(pytest.param(*case.values[1:], id=case.id, marks=case.marks))
        else:
            out.append(pytest.param(*case[1:], id=case[0]))
    return out


def _dry_run(run_snakemake, tmp_path, text):
    cfg = tmp_path / "study.yaml"
    cfg.write_text(text, encoding="utf-8")
    proc = run_snakemake("-n", "--cores", "1", "--configfile", cfg, "--directory", tmp_path, timeout=120)
    return cfg, proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize("text, expected", _params(CASES))
def test_invalid_study_is_refused_before_any_job(run_snakemake, tmp_path, text, expected):
    cfg, rc, out = _dry_run(run_snakemake, tmp_path, text)
    assert rc != 0, out[-3000:]
    for part in expected:
        part = part.replace("{file}", str(cfg))
        assert part in out, f"{part!r} not in the output:\n{out[-3000:]}"
    assert not (tmp_path / "results").exists()  # nothing ran


@pytest.mark.parametrize("text", _params(VALID))
def test_valid_study_passes_the_dry_run(run_snakemake, tmp_path, text):
    _, rc, out = _dry_run(run_snakemake, tmp_path, text)
    assert rc == 0, out[-3000:]
    assert "This was a dry-run" in out
    assert not (tmp_path / "results").exists()
