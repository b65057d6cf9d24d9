"""The study on a real SLURM through ``profiles/slurm`` (``make test-cluster``).

Skipped unless ``MFG_CLUSTER=1``: it starts a single-node SLURM on loopback (tests/cluster/slurm_up.sh;
root, installs slurm-wlm and munge with apt-get if missing) and stops it again (slurm_down.sh).

What it runs, in two throw-away work directories that link the repository's Snakefile, workflow/,
config/ and profiles/ (so Snakemake sees exactly the repository's layout, profiles/default included):

1. the tiny study (tests/cluster/tiny_study.yaml) locally, ``snakemake --cores 2``;
2. the same study with ``snakemake --profile profiles/slurm``, with compare_backends given 100 MB
   (``--set-resources``): SLURM kills it for exceeding its memory, as a real cluster would;
3. the same command again without the override: it finishes the study, recomputing only the jobs
   that had not completed.

and checks that every job went through SLURM with the resources of the study config, that the failed
job is reported with its SLURM log (which says why), that the re-run recomputes only what is missing,
and that the stores equal the local run's (u, m and every other result, provenance and timings aside).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    os.environ.get("MFG_CLUSTER") != "1",
    reason="starts a real SLURM: run with MFG_CLUSTER=1 as root (make test-cluster)",
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
TINY = HERE / "tiny_study.yaml"
STUDY = "cluster_tiny"
# Each snakemake call is bounded (Snakemake ignores SIGTERM while it waits on cluster jobs: -k KILL).
TIMEOUT = int(os.environ.get("MFG_CLUSTER_TIMEOUT", "240"))

# Flags this test machine needs and a real cluster does not: no slurmdbd here, so job status comes
# from squeue (with MinJobAge=300 in slurm.conf) instead of sacct, polled early because the jobs take
# seconds; no accounts; the partition of slurm_up.sh; successful jobs' SLURM logs kept for the checks.
TEST_CLUSTER_FLAGS = [
    "--slurm-status-command", "squeue",
    "--slurm-init-seconds-before-status-checks", "4",
    "--slurm-no-account",
    "--slurm-keep-successful-logs",
    "--default-resources", "slurm_partition=debug",
]
# The injected failure: a compare_backends job uses well over 100 MB (two Python processes), so
# SLURM kills it for exceeding a 100 MB request, as it would an undersized job on a real cluster.
FAILING_RULE = "compare_backends"
FAILURE_OVERRIDE = ["--set-resources", f"{FAILING_RULE}:mem_mb=100"]

SUBMITTED = re.compile(r"^Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.$", re.M)
JOB_BLOCK = re.compile(r"^(localrule|rule) (\w+):\n((?:    .*\n)+)", re.M)
ERROR_BLOCK = re.compile(r"^Error in rule (\w+):\n((?:    .*\n)+)", re.M)


# ------------------------------------------------------------------------------------------------
@dataclass
class Run:
    label: str
    workdir: Path
    returncode: int
    log: str

    def jobs(self) -> dict[str, tuple[str, str]]:
        """Snakemake job id -> (kind, rule) of every job the run scheduled (retries counted once)."""
        out = {}
        for kind, rule, body in JOB_BLOCK.findall(self.log):
            m = re.search(r"^    jobid: (\d+)$", body, re.M)
            assert m, f"{self.label}: no jobid in the block of rule {rule}"
            out[m.group(1)] = (kind, rule)
        return out

    def submissions(self) -> list[tuple[str, str, str]]:
        """(rule, SLURM job id, SLURM log) of every sbatch submission, in order."""
        jobs = self.jobs()
        return [(jobs[sm_id][1], slurm_id, path) for sm_id, slurm_id, path in SUBMITTED.findall(self.log)]

    def submitted_job_ids(self) -> set[str]:
        """Snakemake job ids that were submitted to SLURM."""
        return {sm_id for sm_id, _, _ in SUBMITTED.findall(self.log)}

    def submitted_rules(self) -> list[str]:
        return sorted(rule for rule, _, _ in self.submissions())


def run_snakemake(label: str, workdir: Path, args: list[str]) -> Run:
    cmd = ["timeout", "-k", "10", str(TIMEOUT), SNAKEMAKE, *args]
    proc = subprocess.run(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    (workdir / f"snakemake-{label}.log").write_text(proc.stdout)
    assert proc.returncode not in (124, 137), (
        f"{label}: snakemake timed out after {TIMEOUT} s; log:\n{proc.stdout[-6000:]}")
    return Run(label, workdir, proc.returncode, proc.stdout)


def workspace(root: Path) -> Path:
    """A work directory that sees the repository's workflow, config and profiles (not its results/)."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "workflow", "config", "profiles"):
        (root / name).symlink_to(REPO / name)
    return root


def slurm_jobs(ids) -> dict[str, dict[str, str]]:
    """SLURM's record of each job (still there: MinJobAge=300 in slurm_up.sh's slurm.conf)."""
    out = {}
    for job_id in ids:
        text = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True,
                              check=True).stdout
        out[job_id] = dict(kv.split("=", 1) for kv in text.split() if "=" in kv)
    return out


# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def slurm():
    if os.geteuid() != 0:
        pytest.fail("the cluster test starts slurmctld/slurmd/munged and writes /etc/slurm/slurm.conf: run as root")
    up = subprocess.run([str(HERE / "slurm_up.sh")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if up.returncode != 0:
        pytest.fail(f"slurm_up.sh failed:\n{up.stderr[-6000:]}")
    root = up.stdout.strip().splitlines()[-1]
    try:
        yield root
    finally:
        subprocess.run([str(HERE / "slurm_down.sh"), root], check=False)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    work = workspace(tmp_path_factory.mktemp("local"))
    run = run_snakemake("local", work, ["--cores", "2", "--configfile", str(TINY)])
    assert run.returncode == 0, f"local run failed:\n{run.log[-6000:]}"
    return run


@pytest.fixture(scope="module")
def cluster_runs(slurm, tmp_path_factory):
    work = workspace(tmp_path_factory.mktemp("slurm"))
    common = ["--profile", "profiles/slurm", "--configfile", str(TINY), *TEST_CLUSTER_FLAGS]
    failed = run_snakemake("slurm-failing", work, [*common, *FAILURE_OVERRIDE])
    fixed = run_snakemake("slurm-rerun", work, common)
    return failed, fixed


# ------------------------------------------------------------------------------------------------
def test_failed_job_is_reported_with_its_slurm_log(cluster_runs):
    failed, _ = cluster_runs
    assert failed.returncode != 0, "a job was killed by SLURM, yet snakemake exited with status 0"
    errors = ERROR_BLOCK.findall(failed.log)
    assert errors, f"no 'Error in rule' in the log:\n{failed.log[-6000:]}"
    assert {rule for rule, _ in errors} == {FAILING_RULE}, errors
    attempts = [s for s in failed.submissions() if s[0] == FAILING_RULE]
    # profiles/slurm has retries: 1, so the job is submitted twice before it counts as failed
    assert len(attempts) == 2, attempts
    for (_, body), (_, slurm_id, slurm_log) in zip(errors, attempts, strict=True):
        assert f"SLURM-job '{slurm_id}' failed" in body, body
        assert slurm_log in body, f"the error does not name the SLURM log {slurm_log}:\n{body}"
        text = Path(slurm_log).read_text()
        assert "exceeded memory limit" in text, f"{slurm_log} does not say why the job died:\n{text[-3000:]}"
        assert slurm_jobs([slurm_id])[slurm_id]["JobState"] in ("FAILED", "OUT_OF_MEMORY", "CANCELLED")


def test_jobs_independent_of_the_failure_still_run(cluster_runs):
    """keep-going: compare_coupling (after runs_table) and plot_fields run although compare_backends
    failed; only report, which needs every table, waits."""
    failed, _ = cluster_runs
    done = sorted(rule for rule, _, _ in failed.submissions() if rule != FAILING_RULE)
    # one solve batch: congestion/fdm/numpy with its two couplings
    assert done == ["compare_coupling", "mass_conservation", "plot_fields", "runs_table", "setup_problem",
                    "solve"], done


def test_profile_settings_take_effect(monkeypatch):
    """The settings of profiles/slurm are the ones Snakemake uses for ``--profile profiles/slurm``.

    Snakemake also loads the workflow profile profiles/default/ (it always does, unless
    --workflow-profile is given) and its keys win over --profile's, key by key: a key set in both
    must not undo the cluster settings.  Checked with Snakemake's own argument parsing.
    """
    from snakemake.cli import parse_args

    monkeypatch.chdir(REPO)
    _, args = parse_args(["--profile", "profiles/slurm"])
    effective = {"executor": args.executor, "jobs": args.jobs, "retries": args.retries,
                 "latency_wait": args.latency_wait, "keep_going": args.keep_going,
                 "rerun_incomplete": args.rerun_incomplete}
    assert effective == {"executor": "slurm", "jobs": 100, "retries": 1, "latency_wait": 60,
                         "keep_going": True, "rerun_incomplete": True}, (
        f"{effective}: a key of profiles/default/ overrides profiles/slurm/")


def test_rerun_recomputes_only_what_is_missing(cluster_runs):
    failed, fixed = cluster_runs
    assert fixed.returncode == 0, f"re-run failed:\n{fixed.log[-6000:]}"
    assert fixed.submitted_rules() == sorted([FAILING_RULE, "report"]), fixed.submitted_rules()
    assert (fixed.workdir / "results" / STUDY / "report.html").is_file()


def test_every_job_ran_as_a_slurm_job_with_the_configured_resources(cluster_runs):
    resources = {"solve": ("1000M", "00:05:00")}  # tiny_study.yaml: resources.solve / resources.light
    for run in cluster_runs:
        scheduled = {sm_id: rule for sm_id, (kind, rule) in run.jobs().items() if kind == "rule"}
        local = sorted(rule for kind, rule in run.jobs().values() if kind == "localrule")
        assert local in ([], ["all"]), f"{run.label}: jobs ran outside SLURM: {local}"
        submitted = run.submissions()
        # every scheduled job was submitted with sbatch (a failed one twice: retries: 1)
        assert set(scheduled) == run.submitted_job_ids(), (scheduled, submitted)
        records = slurm_jobs([slurm_id for _, slurm_id, _ in submitted])
        for rule, slurm_id, slurm_log in submitted:
            rec = records[slurm_id]
            assert rec["Comment"].startswith(f"rule_{rule}"), rec["Comment"]
            mem, limit = resources.get(rule, ("800M", "00:04:00"))
            if rule == FAILING_RULE and run.label == "slurm-failing":
                mem = "100M"
            assert (rec["MinMemoryNode"], rec["TimeLimit"], rec["NumCPUs"]) == (mem, limit, "1"), (rule, rec)
            if rec["JobState"] == "COMPLETED":
                assert Path(slurm_log).is_file(), slurm_log
            else:
                assert rule == FAILING_RULE and run.label == "slurm-failing", (rule, rec["JobState"])


def _open(path: Path):
    import xarray as xr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return xr.open_zarr(path, consolidated=False).load()


def _is_timing(name: str) -> bool:
    """Run times differ between any two runs: per-iteration seconds, wall_time, compile_time."""
    return any(word in name for word in ("seconds", "wall", "compile"))


def test_cluster_outputs_equal_local_outputs(cluster_runs, local_run):
    _, fixed = cluster_runs
    assert fixed.returncode == 0
    local_root = local_run.workdir / "results" / STUDY
    slurm_root = fixed.workdir / "results" / STUDY
    stores = sorted(p.relative_to(local_root) for p in local_root.rglob("*.zarr"))
    assert len(stores) == 3, stores  # one problem store, two run stores
    assert sorted(p.relative_to(slurm_root) for p in slurm_root.rglob("*.zarr")) == stores
    for rel in stores:
        a, b = _open(local_root / rel), _open(slurm_root / rel)
        if "runs" in rel.parts:
            assert {"u", "m"} <= set(a.data_vars), rel
        assert set(a.data_vars) == set(b.data_vars), rel
        for name in sorted(n for n in a.data_vars if not _is_timing(n)):
            assert np.array_equal(a[name].values, b[name].values, equal_nan=True), f"{rel}: {name} differs"
        for name in a.coords:
            assert np.array_equal(a[name].values, b[name].values), f"{rel}: coordinate {name} differs"
        results_attrs = {k for k in a.attrs if not k.startswith("provenance_") and not _is_timing(k)}
        for key in sorted(results_attrs):
            assert a.attrs[key] == b.attrs.get(key), f"{rel}: attribute {key}: {a.attrs[key]!r} != {b.attrs.get(key)!r}"
