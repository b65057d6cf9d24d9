# Shared helpers: config validation, the list of runs, output paths and wildcard constraints.
#
# Everything that can be checked without solving is checked here, at parse time, so that a bad
# config fails before any job starts and the message names the offending field.

import importlib.util
import os

import mfg_core.backends
import mfg_core.methods

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate


def _config_error(field, message):
    raise WorkflowError(f"Invalid config: {field}: {message}")


def _read_config_strictly():
    """Re-read the study files with mfg_study.config (duplicate keys refused naming both lines,
    1e-6 read as a number, a non-mapping refused naming the file), then the --config overrides;
    refuse every NaN or infinite number naming its path. (With the hook that make installs,
    Snakemake's own first reading already went through the same loader.)"""
    from snakemake.utils import update_config

    from mfg_study.config import StudyConfigError, load_study, non_finite, non_string_keys

    files = [str(f) for f in workflow.configfiles]
    if all(f.endswith((".yaml", ".yml")) for f in files):
        strict = {}
        for f in files:
            try:
                update_config(strict, load_study(f))
            except StudyConfigError as exc:
                raise WorkflowError(f"Invalid config: {exc}") from None
        update_config(strict, dict(workflow.config_settings.config))
        config.clear()
        config.update(strict)
    keys = list(non_string_keys(config))
    if keys:
        raise WorkflowError("Invalid config: keys must be names (text):\n" + "\n".join(
            f"  {path}: key {key!r} is a {type(key).__name__}; write a name starting with a letter"
            for path, key in keys))
    bad = list(non_finite(config))
    if bad:
        raise WorkflowError("Invalid config: numbers must be finite:\n"
                            + "\n".join(f"  {path}: {value} is not a finite number" for path, value in bad))


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


_read_config_strictly()
_check_schema()
validate(config, "../schemas/config.schema.yaml")


def _check_names():
    """Names become path parts and Snakemake wildcards: Snakemake refuses a wildcard value ending in a
    block repeated 20 times (it suspects a cyclic rule), so refuse those names now, by field."""
    from snakemake.io import PeriodicityDetector

    detector = PeriodicityDetector()
    for field, name in [("study", config["study"])] + [(f"problems.{k}", k) for k in config["problems"]]:
        block = detector.is_periodic(name)
        if block is not None:
            _config_error(field, f"{name!r} ends in {block!r} repeated; Snakemake refuses such a name")


_check_names()
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


def _build_problems():
    """Build every problem once (no solve; MFGProblem refuses a grid no machine could hold before it
    allocates) so unknown or bad parameters fail now, by name."""
    import mfg_core.problems as mp

    built = {}
    for label, spec in PROBLEMS.items():
        try:
            built[label] = mp.load(spec["name"], **spec.get("grid", {}), **spec.get("params", {}))
        except ValueError as exc:
            _config_error(f"problems.{label}", str(exc))
    return built


BUILT_PROBLEMS = _build_problems()


def _check_methods():
    """Every run's options are resolved by mfg_core's method registry now, so that a bad Anderson
    option or an FP method that does not run on a backend fails before any job, naming the field."""
    import mfg_core.methods as mm

    for fp in FP_METHODS:
        for coupling in COUPLINGS:
            try:
                mm.resolve_options(fp, coupling, _method_options(fp, coupling))
            except ValueError as exc:
                field = "anderson.options" if "anderson_depth" in mm.get("coupling", coupling).options else "solve"
                _config_error(field, str(exc))


# ---------------------------------------------------------------------------------------------
# which runs can run here: a backend whose library is missing is reported by name
def _module_missing(name):
    try:
        return importlib.util.find_spec(name) is None
    except ModuleNotFoundError:
        return True


def unavailable_reason(fp, coupling, backend):
    """``(config field, reason)`` if the run cannot run here, else None: a backend whose library is
    not installed, or a method the registry says does not run on that backend."""
    from mfg_core.backends import REGISTRY

    package, library, extra = REGISTRY[backend]
    if library is not None and _module_missing(library):
        return "backends", (f"backend {backend!r} needs the package {library!r}, which is not "
                            f"installed (pip install 'mfg-core[{extra}]')")
    for kind, name, field in (("fp", fp, "fp_methods"), ("coupling", coupling, "couplings")):
        runs_on = mfg_core.methods.get(kind, name).runs_on()
        if backend not in runs_on:
            return field, f"{kind} method {name!r} does not run on backend {backend!r} (it runs on {list(runs_on)})"
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




def _alternatives(names):
    return "|".join(sorted(names, key=len, reverse=True))  # longest first: anderson_plain before anderson


wildcard_constraints:
    problem=_alternatives(PROBLEMS),
    fp=_alternatives(mfg_core.methods.names("fp")),
    coupling=_alternatives(mfg_core.methods.names("coupling")),
    backend=_alternatives(mfg_core.backends.names()),


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


def _method_options(fp, coupling):
    """The study's settings for one (fp, coupling) pair, in the method registry's option names.

    The coupling's block may set the particle solver's common_random_numbers (anderson.options);
    otherwise a coupling that needs a deterministic map (anderson) imposes its own default over the
    particle block's.
    """
    import mfg_core.methods as mm

    options = {"thetaUM": config["solve"]["thetaUM"]}
    fp_options = mm.get("fp", fp).options
    if fp_options:
        options.update({k: config["particle"][k] for k in fp_options if k in config["particle"]})
    method = mm.get("coupling", coupling)
    if "anderson_depth" in method.options:
        block = dict(config["anderson"]["options"])
        if coupling == "anderson_plain":
            block.update(config["anderson"]["plain_options"])
        crn = block.pop("common_random_numbers", method.fp_defaults.get("common_random_numbers"))
        options.update(anderson_depth=config["anderson"]["depth"], **block)
        if crn is not None and "common_random_numbers" in fp_options:
            options["common_random_numbers"] = crn
    return options


def run_settings(wildcards):
    """Everything a solve depends on, and nothing else: passed as params so edits trigger re-runs.

    ``options`` are the run's method options resolved by mfg_core's registry (every option of the
    HJB, FP and coupling methods, defaults filled in), so the store records exactly what ran.
    """
    import mfg_core.methods as mm

    solve = {k: config["solve"][k] for k in ("max_iterations", "tolerance", "on_divergence", "initial_guess")}
    if wildcards.fp == "particle":
        solve["tolerance"] = config["particle"]["tolerance"]
        solve["max_iterations"] = config["particle"]["max_iterations"]
    resolved = mm.resolve_options(wildcards.fp, wildcards.coupling, _method_options(wildcards.fp, wildcards.coupling))
    return {
        "problem": problem_settings(wildcards.problem),
        "fp": wildcards.fp,
        "coupling": wildcards.coupling,
        "backend": wildcards.backend,
        "solve": solve,
        "options": {k: v for kind in ("hjb", "fp", "coupling") for k, v in resolved[kind].items()},
    }


def res(kind, key):
    return RESOURCES[kind][key]


def _check_memory():
    """Each run's memory, estimated from its grid, particles and coupling method, must fit the solve
    job's resources.solve.mem_mb (and the machine): refused now, not by the kernel in the job."""
    import mfg_core.methods as mm
    from mfg_core.problem import physical_memory

    limit_mb = RESOURCES["solve"]["mem_mb"]
    machine = physical_memory()
    for run in RUNS:
        problem = BUILT_PROBLEMS[run["problem"]]
        need = mm.memory_estimate(problem, run["fp"], run["coupling"], _method_options(run["fp"], run["coupling"]))
        name = f"{run['problem']}/{run['fp']}/{run['coupling']}"
        if machine is not None and need > machine:
            _config_error(f"problems.{run['problem']}.grid", f"run {name} needs about {need / 2**30:.1f} GiB, "
                          f"more than this machine has ({machine / 2**30:.1f} GiB); use a coarser grid")
        if need > limit_mb * 2**20:
            _config_error("resources.solve.mem_mb", f"run {name} (grid {problem.grid.shape} x {problem.Nt + 1} "
                          f"times) needs about {need / 2**20:.0f} MB, more than resources.solve.mem_mb = "
                          f"{limit_mb}; raise it or use a coarser grid")


_check_methods()
RUNS, SKIPPED = _plan()
_check_memory()
for _s in SKIPPED:
    logger.warning(f"mfg-study: not running {_s['problem']}/{_s['fp']}/{_s['coupling']}/{_s['backend']}: "
                   f"{_s['reason']}")


TABLES = f"{OUT}/tables"
FIGURES = f"{OUT}/figures"
LOGS = f"{OUT}/logs"
BENCH = f"{OUT}/benchmarks"


def report_inputs():
    return [f"{OUT}/report.html"]
