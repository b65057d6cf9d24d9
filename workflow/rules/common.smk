# Shared helpers: config validation, the list of runs, output paths and wildcard constraints.
#
# Everything that can be checked without solving is checked here, at parse time, so that a bad
# config fails before any job starts and the message names the offending field.

import importlib.util
import os

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate


def _config_error(field, message):
    raise WorkflowError(f"Invalid config: {field}: {message}")


def _check_schema():
    """Every schema violation on one line naming its field (snakemake's own message would print the
    whole schema after the first violation); then validate() fills in the defaults."""
    import jsonschema
    import yaml

    with open(os.path.join(workflow.basedir, "workflow", "schemas", "config.schema.yaml")) as f:
        schema = yaml.safe_load(f)
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(config),
                    key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        lines = [f"  {'.'.join(str(p) for p in e.absolute_path) or '(top level)'}: {e.message}"
                 for e in errors]
        raise WorkflowError("Invalid config (schema workflow/schemas/config.schema.yaml):\n"
                            + "\n".join(lines))


_check_schema()
validate(config, "../schemas/config.schema.yaml")


STUDY = config["study"]
OUT = f"results/{STUDY}"
PROBLEMS = config["problems"]
FP_METHODS = list(config["fp_methods"])
COUPLINGS = list(config["couplings"])
BACKENDS = list(config["backends"])
REFERENCE = config["reference_backend"]
RESOURCES = config["resources"]

if REFERENCE not in BACKENDS:
    _config_error("reference_backend", f"{REFERENCE!r} is not one of the study's backends {BACKENDS}; "
                  "the comparison needs the reference run")
for _i, _entry in enumerate(config["exclude"]):
    if "problem" in _entry and _entry["problem"] not in PROBLEMS:
        _config_error(f"exclude[{_i}].problem", f"{_entry['problem']!r} is not a problem label of this "
                      f"study ({sorted(PROBLEMS)})")


def _check_problems():
    """Build every problem once (tiny, no solve) so unknown or bad parameters fail now, by name."""
    import mfg_core.problems as mp

    for label, spec in PROBLEMS.items():
        try:
            mp.load(spec["name"], **spec.get("grid", {}), **spec.get("params", {}))
        except ValueError as exc:
            _config_error(f"problems.{label}", str(exc))


_check_problems()


def _check_anderson():
    """Anderson options are checked by mfg_core.anderson itself (names and ranges)."""
    if not set(COUPLINGS) & {"anderson", "anderson_plain"}:
        return
    from mfg_core.anderson import make_options

    a = config["anderson"]
    for field, options in (("anderson.options", a["options"]),
                           ("anderson.plain_options", {**a["options"], **a["plain_options"]})):
        try:
            make_options(a["depth"], **options)
        except ValueError as exc:
            _config_error(field, str(exc))


# ---------------------------------------------------------------------------------------------
# which runs can run here: a backend whose library is missing is reported by name
def _module_missing(name):
    try:
        return importlib.util.find_spec(name) is None
    except ModuleNotFoundError:
        return True


def unavailable_reason(fp, coupling, backend):
    """``(config field, reason)`` if ``backend``'s library is not installed here, else None.

    Every FP method and coupling method ships with mfg_core; only a backend's library can be absent.
    """
    from mfg_core.backends import REGISTRY

    package, library, extra = REGISTRY[backend]
    if library is not None and _module_missing(library):
        return "backends", (f"backend {backend!r} needs the package {library!r}, which is not "
                            f"installed (pip install 'mfg-core[{extra}]')")
    return None


def _excluded(run):
    return any(all(run[k] == v for k, v in entry.items()) for entry in config["exclude"])


def _plan():
    runs, skipped = [], []
    for problem in PROBLEMS:
        for fp in FP_METHODS:
            for coupling in COUPLINGS:
                for backend in BACKENDS:
                    run = {"problem": problem, "fp": fp, "coupling": coupling, "backend": backend}
                    if _excluded(run):
                        continue
                    why = unavailable_reason(fp, coupling, backend)
                    if why is None:
                        runs.append(run)
                        continue
                    field, reason = why
                    if config["skip_unavailable"]:
                        skipped.append({**run, "reason": reason})
                    else:
                        _config_error(field, f"{reason}; remove it from the config, exclude the run, or "
                                      "set skip_unavailable: true")
    if not runs:
        _config_error("problems/fp_methods/couplings/backends", "no run is left after exclusions")
    return runs, skipped


_check_anderson()
RUNS, SKIPPED = _plan()
for _s in SKIPPED:
    logger.warning(f"mfg-study: not running {_s['problem']}/{_s['fp']}/{_s['coupling']}/{_s['backend']}: "
                   f"{_s['reason']}")


wildcard_constraints:
    problem="|".join(sorted(PROBLEMS)),
    fp="fdm|particle",
    coupling="damping|anderson_plain|anderson",
    backend="numpy|numba|jax|torch",


# ---------------------------------------------------------------------------------------------
# paths
def problem_store(problem):
    return f"{OUT}/problems/{problem}.zarr"


def run_store(problem, fp, coupling, backend):
    return f"{OUT}/runs/{problem}/{fp}/{coupling}/{backend}.zarr"


def run_stores(problem=None):
    """Stores of every planned run (of one problem if given)."""
    return [run_store(**r) for r in RUNS if problem is None or r["problem"] == problem]


def run_keys():
    """The planned runs as JSON-friendly dicts, in the same order as :func:`run_stores`."""
    return [dict(r) for r in RUNS]


def problem_settings(label):
    spec = PROBLEMS[label]
    return {"label": label, "name": spec["name"], "grid": dict(spec.get("grid", {})),
            "params": dict(spec.get("params", {}))}


def run_settings(wildcards):
    """Everything a solve depends on, and nothing else: passed as params so edits trigger re-runs."""
    solve = dict(config["solve"])
    particle = {}
    if wildcards.fp == "particle":
        particle = {k: config["particle"][k] for k in ("num_particles", "seed", "bandwidth",
                                                        "common_random_numbers")}
        solve["tolerance"] = config["particle"]["tolerance"]
        solve["max_iterations"] = config["particle"]["max_iterations"]
    anderson = {}
    if wildcards.coupling in ("anderson", "anderson_plain"):
        options = dict(config["anderson"]["options"])
        if wildcards.coupling == "anderson_plain":
            options.update(config["anderson"]["plain_options"])
        anderson = {"depth": config["anderson"]["depth"], "options": options}
    return {
        "problem": problem_settings(wildcards.problem),
        "fp": wildcards.fp,
        "coupling": wildcards.coupling,
        "backend": wildcards.backend,
        "solve": solve,
        "particle": particle,
        "anderson": anderson,
    }


def res(kind, key):
    return RESOURCES[kind][key]


TABLES = f"{OUT}/tables"
FIGURES = f"{OUT}/figures"
LOGS = f"{OUT}/logs"
BENCH = f"{OUT}/benchmarks"


def report_inputs():
    return [f"{OUT}/report.html"]
