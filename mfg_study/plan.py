"""What a study runs, decided from its config before any job: the runs, their batches, the settings
each depends on, and the plans of the study kinds (convergence, sweep, scaling).

Pure functions of the validated config (``workflow/rules/common.smk`` validates it against the
schema, then calls these and turns a :class:`ConfigError` into Snakemake's one-line error naming
the field). Nothing here solves or writes.

Runs and batches. The comparison is the cross product problems x FP methods x couplings x backends,
less ``exclude`` and what cannot run here. Runs are solved in batches of one (problem, FP method,
backend): one process per batch pays the Python, jax and torch start-up once for its couplings, and
its stores go to ``runs/<problem>/<fp>/<backend>/<coupling>.zarr``. A batch re-runs as a whole when
one of its runs' settings changes; the runs whose settings did not change are then taken from the
solve cache (:mod:`mfg_study.solve_cache`) instead of being solved again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mfg_core.methods as mm
import mfg_core.problems as mp

RUN_KEYS = ("problem", "fp", "coupling", "backend")


class ConfigError(ValueError):
    """A config that cannot run, with the field to blame."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# ---------------------------------------------------------------------------------------------
# problems and method options
def problem_settings(label: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    return {"label": label, "name": spec["name"], "grid": dict(spec.get("grid", {})),
            "params": dict(spec.get("params", {}))}


def build_problem(settings: Mapping[str, Any], field: str, **overrides):
    """The named problem of ``settings`` (with ``overrides``), or a ConfigError naming ``field``."""
    try:
        return mp.load(settings["name"], **{**settings["grid"], **settings["params"], **overrides})
    except ValueError as exc:
        raise ConfigError(field, str(exc)) from None


def method_options(config: Mapping[str, Any], fp: str, coupling: str) -> dict[str, Any]:
    """The study's settings for one (fp, coupling) pair, in the method registry's option names.

    ``solve.thetaUM``; the particle block for a particle FP method; ``anderson.depth`` and
    ``anderson.options`` (plus ``plain_options`` for anderson_plain) for an Anderson coupling, whose
    block may set the particle solver's common random numbers (otherwise a coupling that needs a
    deterministic map imposes its registered default over the particle block's); the ``newton``
    block for a coupling that has those options.
    """
    options: dict[str, Any] = {}
    coupling_method = mm.get("coupling", coupling)
    if "thetaUM" in coupling_method.options:
        options["thetaUM"] = config["solve"]["thetaUM"]
    fp_options = mm.get("fp", fp).options
    options.update({k: config["particle"][k] for k in fp_options if k in config.get("particle", {})})
    if "anderson_depth" in coupling_method.options:
        block = dict(config["anderson"]["options"])
        if coupling == "anderson_plain":
            block.update(config["anderson"]["plain_options"])
        crn = block.pop("common_random_numbers", coupling_method.fp_defaults.get("common_random_numbers"))
        options.update(anderson_depth=config["anderson"]["depth"], **block)
        if crn is not None and "common_random_numbers" in fp_options:
            options["common_random_numbers"] = crn
    for key, value in config.get(coupling, {}).items() if isinstance(config.get(coupling), dict) else ():
        if key in coupling_method.options:
            options[key] = value
    return options


def resolved_options(config, fp: str, coupling: str, extra: Mapping[str, Any] | None = None,
                     field: str = "solve") -> dict[str, Any]:
    """Every option of the HJB, FP and coupling methods (registry defaults filled in), flat."""
    try:
        resolved = mm.resolve_options(fp, coupling, {**method_options(config, fp, coupling), **(extra or {})})
    except ValueError as exc:
        raise ConfigError(field, str(exc)) from None
    return {k: v for kind in ("hjb", "fp", "coupling") for k, v in resolved[kind].items()}


def solve_settings(config, fp: str) -> dict[str, Any]:
    """Stopping and recording settings of a run (particle runs have their own tolerance and cap)."""
    solve = {k: config["solve"][k] for k in ("max_iterations", "tolerance", "on_divergence", "initial_guess")}
    if fp == "particle":
        solve["tolerance"] = config["particle"]["tolerance"]
        solve["max_iterations"] = config["particle"]["max_iterations"]
    return solve


def device_options(config, backend: str) -> dict[str, Any]:
    """``{"device": ...}`` for a backend that runs on a device (jax, torch), else nothing."""
    from mfg_core.backends import DEVICE_BACKENDS

    return {"device": config.get("device", "cpu")} if backend in DEVICE_BACKENDS else {}


def check_device(config, backends) -> None:
    """The study's device must exist for every device backend it runs (refused before any job)."""
    from mfg_core.backends import DEVICE_BACKENDS, get_backend

    for b in backends:
        if b in DEVICE_BACKENDS and library_missing(b) is None:
            try:
                get_backend(b, config.get("device", "cpu"))
            except ValueError as exc:
                raise ConfigError("device", str(exc)) from None


def run_settings(config, run: Mapping[str, str]) -> dict[str, Any]:
    """Everything one comparison run depends on, and nothing else (Snakemake ``params``: an edit
    re-runs exactly the batches it touches)."""
    return {
        "problem": problem_settings(run["problem"], config["problems"][run["problem"]]),
        **{k: run[k] for k in ("fp", "coupling", "backend")},
        "solve": solve_settings(config, run["fp"]),
        "options": {**resolved_options(config, run["fp"], run["coupling"]),
                    **device_options(config, run["backend"])},
    }


# ---------------------------------------------------------------------------------------------
# the comparison's runs
def library_missing(backend: str) -> str | None:
    """Why ``backend`` cannot run here (its library is not installed), or None."""
    import importlib.util

    from mfg_core.backends import REGISTRY

    _, library, extra = REGISTRY[backend]
    if library is None:
        return None
    try:
        found = importlib.util.find_spec(library) is not None
    except (ImportError, ValueError):
        found = False
    if found:
        return None
    return f"backend {backend!r} needs the package {library!r}, which is not installed (pip install 'mfg-core[{extra}]')"


def not_applicable(fp: str, coupling: str, backend: str, dim: int, obstacle: bool = False) -> tuple[str, str] | None:
    """``(config field, reason)`` if the registry says the combination does not exist: a method that
    does not run on that backend, dimension or obstacle, or a coupling that does not work with that
    FP method (e.g. newton: fdm only, numpy and numba)."""
    for kind, name, field in (("fp", fp, "fp_methods"), ("coupling", coupling, "couplings")):
        try:
            mm.get(kind, name).check(backend, dim, fp=fp if kind == "coupling" else None, obstacle=obstacle)
        except ValueError as exc:
            return field, str(exc)
    return None


def plan_runs(config, problems: Mapping[str, Any]) -> tuple[list[dict], list[dict]]:
    """``(runs, skipped)`` of the comparison; ``problems`` are the built problems by label.

    The cross product leaves out what ``exclude`` names and the combinations the registry says do
    not exist (recorded in ``skipped`` as not applicable). A backend whose library is missing here
    stops the study, unless ``skip_unavailable`` (then it is skipped, with the reason).
    """
    runs, skipped = [], []
    for i, entry in enumerate(config["exclude"]):
        if "problem" in entry and entry["problem"] not in config["problems"]:
            raise ConfigError(f"exclude[{i}].problem", f"{entry['problem']!r} is not a problem label of this "
                              f"study ({sorted(config['problems'])})")
    for problem in config["problems"]:
        built = problems[problem]
        for fp in config["fp_methods"]:
            for coupling in config["couplings"]:
                for backend in config["backends"]:
                    run = {"problem": problem, "fp": fp, "coupling": coupling, "backend": backend}
                    if any(all(run[k] == v for k, v in entry.items()) for entry in config["exclude"]):
                        continue
                    why = not_applicable(fp, coupling, backend, built.dim, built.grid.obstacle is not None)
                    if why is not None:
                        skipped.append({**run, "reason": f"not applicable: {why[1]}"})
                        continue
                    missing = library_missing(backend)
                    if missing is None:
                        runs.append(run)
                    elif config["skip_unavailable"]:
                        skipped.append({**run, "reason": missing})
                    else:
                        raise ConfigError("backends", f"{missing}; remove it from the config, exclude the run, or "
                                          "set skip_unavailable: true")
    if not runs:
        detail = f" ({skipped[0]['reason']})" if skipped else ""
        raise ConfigError("problems/fp_methods/couplings/backends", f"no run is left after exclusions{detail}")
    return runs, skipped


def batches(runs) -> dict[tuple[str, str, str], list[str]]:
    """``(problem, fp, backend) -> couplings`` (in the config's order)."""
    out: dict[tuple[str, str, str], list[str]] = {}
    for r in runs:
        out.setdefault((r["problem"], r["fp"], r["backend"]), []).append(r["coupling"])
    return out


def check_memory(config, runs, problems: Mapping[str, Any], machine: int | None) -> None:
    """Each run's memory, estimated from its grid, particles and coupling method, must fit the solve
    job's ``resources.solve.mem_mb`` (and the machine)."""
    limit_mb = config["resources"]["solve"]["mem_mb"]
    for run in runs:
        problem = problems[run["problem"]]
        need = mm.memory_estimate(problem, run["fp"], run["coupling"], method_options(config, run["fp"], run["coupling"]))
        _check_need(need, limit_mb, machine, f"problems.{run['problem']}.grid",
                    f"run {run['problem']}/{run['fp']}/{run['coupling']}", problem)


def _check_need(need: int, limit_mb: int, machine: int | None, grid_field: str, name: str, problem) -> None:
    if machine is not None and need > machine:
        raise ConfigError(grid_field, f"{name} needs about {need / 2**30:.1f} GiB, more than this machine has "
                          f"({machine / 2**30:.1f} GiB); use a coarser grid")
    if need > limit_mb * 2**20:
        raise ConfigError("resources.solve.mem_mb", f"{name} (grid {problem.grid.shape} x {problem.Nt + 1} times) "
                          f"needs about {need / 2**20:.0f} MB, more than resources.solve.mem_mb = {limit_mb}; "
                          "raise it or use a coarser grid")


# ---------------------------------------------------------------------------------------------
# study kinds
def _kind_problem(label: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    return problem_settings(label, spec["problem"])


def _check_method(kind_field: str, spec, dim: int, obstacle: bool = False) -> None:
    for kind, key in (("fp", "fp"), ("coupling", "coupling")):
        if key in spec:
            try:
                mm.get(kind, spec[key]).check(spec["backend"], dim, fp=spec.get("fp") if kind == "coupling" else None,
                                              obstacle=obstacle)
            except ValueError as exc:
                raise ConfigError(f"{kind_field}.{key}", str(exc)) from None
    why = library_missing(spec["backend"]) if "backend" in spec else None
    if why:
        raise ConfigError(f"{kind_field}.backend", why)


def convergence_plan(config, machine: int | None = None) -> dict[str, dict[str, Any]]:
    """Per convergence study: its problem settings, the grids (``levels``: ``{Nx, Nt}`` per level,
    coarse to fine), methods and whether the problem has a closed form (else: the finest grid is the
    reference)."""
    out = {}
    for label, spec in config.get("convergence", {}).items():
        field = f"convergence.{label}"
        settings = _kind_problem(label, spec)
        base = build_problem(settings, f"{field}.problem")
        if sorted(spec["levels"]) != list(spec["levels"]):
            raise ConfigError(f"{field}.levels", f"levels must be increasing, got {spec['levels']}")
        fixed = spec.get("fixed")
        levels = []
        for N in spec["levels"]:
            grid = {"together": {"Nx": N, "Nt": N}, "space": {"Nx": N, "Nt": fixed or base.Nt},
                    "time": {"Nx": fixed or base.Nx, "Nt": N}}[spec["refine"]]
            if base.dim == 2:
                grid["Ny"] = grid["Nx"]
            problem = build_problem(settings, f"{field}.levels", **grid)
            need = mm.memory_estimate(problem, spec["fp"], spec["coupling"], method_options(config, spec["fp"], spec["coupling"]))
            _check_need(need, config["resources"]["solve"]["mem_mb"], machine, f"{field}.levels",
                        f"convergence level {N}", problem)
            levels.append(grid)
        _check_method(field, spec, base.dim, base.grid.obstacle is not None)
        out[label] = {
            "label": label, "problem": settings, "levels": levels, "level_names": [f"N{N}" for N in spec["levels"]],
            "refine": spec["refine"], "fp": spec["fp"], "coupling": spec["coupling"], "backend": spec["backend"],
            "interior": spec["interior"], "exact": bool(getattr(base, "has_exact_solution", False)),
            "solve": {**solve_settings(config, spec["fp"]), "tolerance": spec["tolerance"],
                      "max_iterations": spec["max_iterations"]},
            "options": resolved_options(config, spec["fp"], spec["coupling"], field=field),
        }
    return out


#: sweep parameters that are grid settings (numbers that leave the grid's shape alone)
GRID_PARAMETERS = ("sigma", "lam", "T", "xmin", "xmax")


def sweep_plan(config) -> dict[str, dict[str, Any]]:
    """Per sweep: its problem, the parameter and where it goes (``problem`` parameter, ``grid``
    setting or method ``option``), the values, and per coupling the resolved options."""
    out = {}
    for label, spec in config.get("sweep", {}).items():
        field = f"sweep.{label}"
        settings = _kind_problem(label, spec)
        base = build_problem(settings, f"{field}.problem")
        name = spec["parameter"]
        couplings = spec.get("couplings") or list(config["couplings"])
        if name in base.params:
            where = "problem"
        elif name in GRID_PARAMETERS:
            where = "grid"
        elif all(name in {**mm.get("coupling", c).options, **mm.get("fp", spec["fp"]).options} for c in couplings):
            where = "option"
        else:
            raise ConfigError(f"{field}.parameter", f"{name!r} is neither a parameter of problem {base.name!r} "
                              f"({sorted(base.params)}), a grid setting ({list(GRID_PARAMETERS)}) nor an option "
                              f"of every coupling {couplings}")
        for i, value in enumerate(spec["values"]):
            if where != "option":
                build_problem(settings, f"{field}.values.{i}", **{name: value})
        per_coupling = {}
        for c in couplings:
            _check_method(field, {**spec, "coupling": c}, base.dim, base.grid.obstacle is not None)
            extra = {name: spec["values"][0]} if where == "option" else {}
            per_coupling[c] = resolved_options(config, spec["fp"], c, extra, field=field)
        out[label] = {
            "label": label, "problem": settings, "parameter": name, "where": where,
            "values": list(spec["values"]), "couplings": couplings, "fp": spec["fp"],
            "backend": spec["backend"], "continuation": spec["continuation"],
            "solve": solve_settings(config, spec["fp"]), "options": per_coupling,
        }
    return out


def scaling_plan(config) -> dict[str, dict[str, Any]]:
    """Per scaling study: its problem, the sizes (``Nx = Nt = N``, or particle counts for a particle
    FP method on the problem's own grid), the backends and the timing settings."""
    out = {}
    for label, spec in config.get("scaling", {}).items():
        field = f"scaling.{label}"
        settings = _kind_problem(label, spec)
        base = build_problem(settings, f"{field}.problem")
        backends = spec.get("backends") or list(config["backends"])
        particle = "num_particles" in mm.get("fp", spec["fp"]).options
        if particle and not spec.get("num_particles"):
            raise ConfigError(f"{field}.num_particles", f"a particle scaling study needs the particle counts "
                              f"to time (fp is {spec['fp']!r})")
        if not particle and not spec.get("sizes"):
            raise ConfigError(f"{field}.sizes", "a finite-difference scaling study needs the grid sizes N to time")
        for b in backends:
            why = library_missing(b)
            if why:
                raise ConfigError(f"{field}.backends", why)
            _check_method(field, {"fp": spec["fp"], "coupling": spec["coupling"], "backend": b}, base.dim,
                          base.grid.obstacle is not None)
        sizes = list(spec["num_particles"] if particle else spec["sizes"])
        for N in ([] if particle else sizes):
            build_problem(settings, f"{field}.sizes", Nx=N, Nt=N, **({"Ny": N} if base.dim == 2 else {}))
        check_device(config, backends)
        out[label] = {
            "label": label, "problem": settings, "fp": spec["fp"], "coupling": spec["coupling"],
            "backends": backends, "axis": "num_particles" if particle else "N", "sizes": sizes,
            "device": config.get("device", "cpu"),
            "iterations": spec["iterations"], "repeats": spec["repeats"],
            "options": resolved_options(config, spec["fp"], spec["coupling"], field=field),
        }
    return out
