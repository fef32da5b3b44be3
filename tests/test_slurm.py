"""profiles/slurm as users run it: job routing (fast, no cluster) and the small world on a real
one-node SLURM cluster (Debian slurm-wlm + munge, started here as root; skipped without them).

The cluster has no slurmdbd, so the run also covers the plugin's `squeue` status path and
`slurm-no-account`, the settings profiles/slurm documents for clusters without accounting.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from slurm_cluster import Cluster, missing_reason  # noqa: E402
from test_workflow import SMALL, make_workdir  # noqa: E402

from workflow_scripts.slurm_check import Partition, Request, check_requests, parse_sinfo, profile_trap  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PLACEHOLDERS = {"<cpu-partition>": "cpu", "<gpu-partition>": "gpu"}
ONE_THREAD = ["train_model=1", "generate=1", "score=1", "extrapolate_alpha=1", "extrapolate_scheme=1"]
ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def fill_profile(workdir: Path, *, accounting: bool = False) -> Path:
    """profiles/slurm of a workdir copy with its placeholders filled for the test cluster.

    Without accounting (the test cluster) the profile's own instructions are followed: no
    account, `slurm-no-account: true`, `slurm-status-command: squeue`.
    """
    prof = workdir / "profiles" / "slurm"
    parts = (prof / "partitions.yaml").read_text()
    for k, v in PLACEHOLDERS.items():
        parts = parts.replace(k, v)
    (prof / "partitions.yaml").write_text(parts)
    text = (prof / "config.yaml").read_text()
    assert '  slurm_account: "<your-account>"\n' in text and "slurm-status-command: sacct\n" in text
    if accounting:
        text = text.replace("<your-account>", "expo")
    else:
        text = text.replace('  slurm_account: "<your-account>"\n', "")
        text = text.replace("slurm-status-command: sacct\n", "slurm-status-command: squeue\nslurm-no-account: true\n")
    assert "<" not in yaml.safe_dump(yaml.safe_load(text)) and "<" not in parts
    (prof / "config.yaml").write_text(text)
    return prof


def dry_run_jobs(workdir: Path, *args: str) -> list[dict]:
    """(rule, resources) of every job a dry run with profiles/slurm plans."""
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--workflow-profile", "profiles/slurm", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        env={**os.environ, **ENV},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", proc.stdout + proc.stderr):
        m = re.match(r"(?:local)?rule (\w+):", block)
        res = re.search(r"^\s+resources: (.*)$", block, re.M)
        wc = re.search(r"^\s+wildcards: (.*)$", block, re.M)
        if m and m.group(1) != "all":
            resources = dict(kv.split("=", 1) for kv in res.group(1).split(", ")) if res else {}
            jobs.append({"rule": m.group(1), "wildcards": wc.group(1) if wc else "", "resources": resources})
    return jobs


# ------------------------------------------------------------------------------ routing (no cluster)


def test_cpu_only_jobs_are_never_routed_to_the_gpu_partition(tmp_path):
    """Every planned job through the plugin's own partition choice (partitions.yaml)."""
    plugin = pytest.importorskip("snakemake_executor_plugin_slurm.partitions")
    wd = make_workdir(tmp_path, yaml.safe_load(SMALL.read_text()))
    prof = fill_profile(wd, accounting=True)
    partitions = plugin.read_partition_file(prof / "partitions.yaml")
    jobs = dry_run_jobs(wd)
    assert {j["rule"] for j in jobs} >= {"train_model", "extrapolate_alpha", "generate", "score"}
    routed = {}
    for j in jobs:
        res = {k: int(v) if v.isdigit() else v for k, v in j["resources"].items()}
        fake = SimpleNamespace(name=j["rule"], threads=1, resources=SimpleNamespace(get=res.get, **res))
        part = plugin.get_best_partition(partitions, fake, logging.getLogger("test"))
        gpu = int(res.get("gpu", 0))
        routed[(j["rule"], j["wildcards"])] = (part, gpu, res["mem_mb"])
        assert part == ("gpu" if gpu else "cpu"), (j, part)
    gold = [v for (rule, wc), v in routed.items() if rule == "score" and "rm=gold" in wc]
    learned = [v for (rule, wc), v in routed.items() if rule == "score" and "rm=rm" in wc]
    assert gold and all(v == ("cpu", 0, 2000) for v in gold)
    assert learned and all(v == ("gpu", 1, 32000) for v in learned)
    assert all(v[0] == "gpu" for (rule, _), v in routed.items() if rule in ("train_model", "generate"))
    assert all(v[:2] == ("cpu", 0) for (rule, _), v in routed.items() if rule.startswith("extrapolate"))
    assert all(v[2] <= 2000 for (rule, _), v in routed.items() if rule.startswith("extrapolate"))


def test_sinfo_is_read_per_partition_and_oversized_jobs_name_their_rule():
    parts = parse_sinfo("cpu*|64|256000|(null)\ncpu*|32|128000|(null)\ngpu|16|512000+|gpu:a100:4(S:0-1),gpu:h100:2\n")
    assert parts == [Partition("cpu", 64, 256000, 0, True), Partition("gpu", 16, 512000, 6)]
    check_requests([Request("generate", 4, 32000, 1), Request("score", 1, 2000, 0)], parts)
    with pytest.raises(
        ValueError, match=r"rule train_model asks SLURM for 8 CPUs, 999999 MB, 1 GPU\(s\).*PartitionConfig"
    ):
        check_requests([Request("train_model", 8, 999999, 1)], parts)
    with pytest.raises(ValueError, match=r"rule generate asks SLURM for 32 CPUs"):
        check_requests([Request("generate", 32, 1000, 1)], parts)  # GPU node too small, CPU node has no GPU
    with pytest.raises(ValueError, match=r"rule score: SLURM partition 'big' does not exist"):
        check_requests([Request("score", 1, 1, 0, partition="big")], parts)


def test_profile_trap_needs_workflow_profile():
    assert "--workflow-profile profiles/slurm" in profile_trap(["--profile", "profiles/slurm"], ROOT)
    assert profile_trap(["--workflow-profile", "profiles/slurm"], ROOT) is None
    assert profile_trap(["--profile", "x", "--workflow-profile=none"], ROOT) is None


# ------------------------------------------------------------------------------ a real cluster


def _snakemake(wd: Path, env: dict, *args: str, timeout: int = 1500) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args], cwd=wd, capture_output=True, text=True, env=env, timeout=timeout
    )


def _jobs_seen_by_slurm(env: dict) -> list[dict]:
    out = subprocess.run(["scontrol", "show", "job", "-o"], capture_output=True, text=True, env=env).stdout
    jobs = []
    for line in out.splitlines():
        f = dict(kv.split("=", 1) for kv in re.findall(r"(\w+=\S*)", line))
        if not f.get("Comment", "").startswith("rule_"):
            continue
        rule, _, wildcards = f["Comment"][len("rule_") :].partition("_wildcards_")
        gpus = re.search(r"gpu[:=](\d+)", f.get("TresPerJob", "") + f.get("TresPerNode", ""))
        jobs.append(
            {
                "rule": rule,
                "wildcards": wildcards,
                "partition": f["Partition"],
                "cpus": int(f["NumCPUs"]),
                "mem": f.get("MinMemoryNode", ""),
                "gpus": int(gpus.group(1)) if gpus else 0,
                "state": f["JobState"],
                "elapsed": f.get("RunTime", ""),
            }
        )
    return jobs


RESULT_GLOBS = ("scores/**/*.json", "generations/**/*.json", "prompts/*.jsonl", "report/*.csv")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="snakemake-executor-plugin-slurm not installed")
    c = Cluster(tmp_path_factory.mktemp("slurm"), cpus=min(2, os.cpu_count() or 1))
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    """The small world run locally and through the SLURM plugin with profiles/slurm."""
    cfg = yaml.safe_load(SMALL.read_text())
    env = {**cluster.env, **ENV}
    local = make_workdir(tmp_path_factory.mktemp("local"), cfg)
    t0 = time.time()
    proc = _snakemake(local, env, "--cores", "1", "--resources", "gpu=1")
    assert proc.returncode == 0, proc.stderr[-4000:]
    local_wall = time.time() - t0

    wd = make_workdir(tmp_path_factory.mktemp("cluster"), cfg)
    fill_profile(wd)
    t0 = time.time()
    proc = _snakemake(
        wd, env, "--workflow-profile", "profiles/slurm",
        "--set-threads", *ONE_THREAD,                      # 2 shared cores; local results use 1 thread
        "--slurm-init-seconds-before-status-checks", "2",  # the default 40 s only slows a tiny world
        "--slurm-keep-successful-logs",
    )  # fmt: skip
    wall = time.time() - t0
    jobs = _jobs_seen_by_slurm(env)
    print(f"\nsmall world: local {local_wall:.0f} s, SLURM {wall:.0f} s, {len(jobs)} SLURM jobs")
    for j in sorted(jobs, key=lambda j: (j["rule"], j["wildcards"])):
        print(
            f"  {j['rule']:<20} {j['wildcards']:<28} {j['partition']:<4} "
            f"cpus={j['cpus']} mem={j['mem']} gpus={j['gpus']}"
        )
    assert proc.returncode == 0, proc.stderr[-6000:] + "\n" + cluster.logs()
    return SimpleNamespace(local=local, wd=wd, jobs=jobs, stderr=proc.stderr, wall=wall)


def test_small_world_on_slurm_equals_a_local_run(slurm_run):
    a, b = slurm_run.local / "results" / "small", slurm_run.wd / "results" / "small"
    # generation provenance sidecars name the run's own folder: compared through the files they vouch for
    files = sorted(p.relative_to(a) for g in RESULT_GLOBS for p in a.glob(g) if not p.name.endswith(".provenance.json"))
    assert sum(f.parts[0] == "generations" for f in files) == 8 and sum(f.parts[0] == "scores" for f in files) == 16
    assert files == sorted(
        p.relative_to(b) for g in RESULT_GLOBS for p in b.glob(g) if not p.name.endswith(".provenance.json")
    )
    differ = [str(f) for f in files if (a / f).read_bytes() != (b / f).read_bytes()]
    assert not differ, differ
    gens = json.loads((b / "generations" / "eval" / "dpo" / "alpha1.json").read_text())
    assert gens and {"instruction", "output"} <= set(gens[0])


def test_gpu_rules_requested_a_gpu_and_cpu_rules_did_not(slurm_run):
    jobs = slurm_run.jobs
    assert jobs and all(j["state"] == "COMPLETED" for j in jobs), jobs
    rules = {j["rule"] for j in jobs}
    assert rules == {"train_model", "extrapolate_alpha", "extrapolate_scheme", "generate", "score"}  # rest: localrules
    for j in jobs:
        gpu = j["rule"] in ("train_model", "generate") or (j["rule"] == "score" and "_rm_" in f"_{j['wildcards']}_")
        assert (j["partition"], j["gpus"]) == (("gpu", 1) if gpu else ("cpu", 0)), j
    gold = [j for j in jobs if j["rule"] == "score" and "_gold_" in f"_{j['wildcards']}_"]
    assert gold and all(j["mem"] == "2000M" for j in gold)
    assert all(j["mem"] == "2000M" for j in jobs if j["rule"].startswith("extrapolate"))


def test_oversized_job_and_profile_trap_fail_at_start_up(slurm_run, cluster):
    env = {**cluster.env, **ENV}
    before = len(_jobs_seen_by_slurm(env))
    wd = slurm_run.wd
    proc = _snakemake(
        wd, env, "--workflow-profile", "profiles/slurm", "--forcerun", "train_model", "--set-threads", *ONE_THREAD,
        "--set-resources", "train_model:mem_mb=999999", timeout=300,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "rule train_model asks SLURM for 1 CPUs, 999999 MB, 1 GPU(s), more than any node has" in proc.stderr
    proc = _snakemake(wd, env, "--profile", "profiles/slurm", "--forcerun", "report", timeout=300)
    assert proc.returncode != 0 and "run with --workflow-profile profiles/slurm" in proc.stderr
    assert len(_jobs_seen_by_slurm(env)) == before  # nothing was submitted
