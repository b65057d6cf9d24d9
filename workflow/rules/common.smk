# Shared helpers: config validation, the list of runs, output paths and wildcard constraints.
#
# Everything that can be checked without solving is checked here, at parse time, so that a bad
# config fails before any job starts and the message names the offending field.

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
    def message(e):
        # "not valid under any of the given schemas" alone does not say what would be valid
        if e.validator in ("oneOf", "anyOf") and e.context:
            return f"{e.message} ({'; '.join(sorted({sub.message for sub in e.context}))})"
        return e.message

    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(config),
                    key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        lines = [f"  {'.'.join(str(p) for p in e.absolute_path) or '(top level)'}: {message(e)}"
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
CACHE_DIR = config["cache_dir"]

if REFERENCE not in BACKENDS:
    _config_error("reference_backend", f"{REFERENCE!r} is not one of the study's backends {BACKENDS}; "
                  "the comparison needs the reference run")


def _planned():
    """Everything decided from the config before any job (mfg_study.plan); a ConfigError names its field."""
    from mfg_core.problem import physical_memory

    from mfg_study import plan

    try:
        problems = {label: plan.build_problem(plan.problem_settings(label, spec), f"problems.{label}")
                    for label, spec in PROBLEMS.items()}
        for fp in FP_METHODS:
            for coupling in COUPLINGS:
                plan.resolved_options(config, fp, coupling,
                                      field="anderson.options" if "anderson" in coupling else "solve")
        runs, skipped = plan.plan_runs(config, problems)
        plan.check_device(config, {r["backend"] for r in runs})
        machine = physical_memory()
        plan.check_memory(config, runs, problems, machine)
        kinds = (plan.convergence_plan(config, machine), plan.sweep_plan(config), plan.scaling_plan(config))
    except plan.ConfigError as exc:
        _config_error(exc.field, exc.message)
    return runs, skipped, plan.batches(runs), kinds


RUNS, SKIPPED, BATCHES, (CONVERGENCE, SWEEPS, SCALING) = _planned()
for _s in SKIPPED:
    if not _s["reason"].startswith("not applicable"):
        logger.warning(f"mfg-study: not running {_s['problem']}/{_s['fp']}/{_s['coupling']}/{_s['backend']}: "
                       f"{_s['reason']}")


def _alternatives(names):
    return "|".join(sorted(names, key=len, reverse=True))  # longest first: anderson_plain before anderson


wildcard_constraints:
    problem=_alternatives(PROBLEMS),
    fp=_alternatives(mfg_core.methods.names("fp")),
    coupling=_alternatives(mfg_core.methods.names("coupling")),
    backend=_alternatives(mfg_core.backends.names()),
    label="[A-Za-z][A-Za-z0-9_]*",


# ---------------------------------------------------------------------------------------------
# paths
TABLES = f"{OUT}/tables"
FIGURES = f"{OUT}/figures"
LOGS = f"{OUT}/logs"
BENCH = f"{OUT}/benchmarks"


def problem_store(problem):
    return f"{OUT}/problems/{problem}.zarr"


def batch_dir(problem, fp, backend):
    """The directory a solve batch writes: one store per coupling, <coupling>.zarr."""
    return f"{OUT}/runs/{problem}/{fp}/{backend}"


def run_store(problem, fp, coupling, backend):
    return f"{batch_dir(problem, fp, backend)}/{coupling}.zarr"


def batch_dirs(problem=None):
    """The solve batches' directories (of one problem if given): the inputs of the summary stages."""
    return [batch_dir(*key) for key in BATCHES if problem is None or key[0] == problem]


def run_keys(problem=None):
    """The planned runs as JSON-friendly dicts with their store paths."""
    return [{**r, "store": run_store(**r)} for r in RUNS if problem is None or r["problem"] == problem]


def problem_settings(label):
    from mfg_study.plan import problem_settings as settings

    return settings(label, PROBLEMS[label])


def batch_settings(wildcards):
    """Every run of one batch with all it depends on (params: an edit re-runs the batches it touches)."""
    from mfg_study.plan import run_settings

    return [run_settings(config, {"problem": wildcards.problem, "fp": wildcards.fp, "coupling": c,
                                  "backend": wildcards.backend})
            for c in BATCHES[(wildcards.problem, wildcards.fp, wildcards.backend)]]


def res(kind, key):
    return RESOURCES[kind][key]


def report_inputs():
    return [f"{OUT}/report.html"]
