"""Fault test: a Snakemake run of a tiny world killed (SIGKILL of everything, SIGTERM as a scheduler
sends it) at seeded random moments, then resumed: nothing finished-looking is corrupt after any kill,
no temporary folder survives the final run, and the results are bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_workflow import SMALL, make_workdir, snakemake

from workflow_scripts.extrapolate.header import validate_safetensors
from workflow_scripts.outputs import OUTPUT_MARKER

RESULT_GLOBS = (
    "prompts/*.jsonl",
    "generations/**/*.json",
    "scores/**/*.json",
    "**/*.safetensors",
    "report/summary.csv",
)
KILLS = (signal.SIGKILL, signal.SIGTERM, signal.SIGKILL)


def tiny_config() -> dict:
    cfg = yaml.safe_load(SMALL.read_text())
    cfg["experiment"] = "faults"
    cfg["world"].update(n_sft=200, n_pref=64, n_eval=4, n_dev=4)
    cfg["extrapolation"] = {"alphas": [2], "schemes": {}, "keep_extrapolated": True}
    cfg["training"]["sft"]["epochs"] = 1
    cfg["evaluation"].update(bootstrap=100, dev_prompt_set=None)
    del cfg["models"]["world_rm"]
    cfg["reward_models"] = {"gold": {"type": "gold"}}
    cfg["prompt_sets"] = {"eval": cfg["prompt_sets"]["eval"]}
    return cfg


PROVENANCE = ".provenance.json"
"""Generation sidecars name the run's own folder (an absolute path), so two runs' sidecars differ;
what they vouch for — the generation file's hash — is compared instead."""


def result_hashes(results: Path) -> dict[str, str]:
    files = sorted(
        {p for g in RESULT_GLOBS for p in results.glob(g) if p.is_file() and not p.name.endswith(PROVENANCE)}
    )
    hashes = {str(p.relative_to(results)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    for p in results.glob(f"generations/**/*{PROVENANCE}"):
        gens = p.with_name(p.name[: -len(PROVENANCE)])
        assert json.loads(p.read_text())["generations_sha256"] == hashlib.sha256(gens.read_bytes()).hexdigest(), p
    return hashes


def leftovers(results: Path) -> list[str]:
    return sorted(str(p.relative_to(results)) for p in results.rglob("*") if p.name.startswith((".tmp-", ".old-")))


def check_nothing_corrupt_looks_finished(results: Path) -> None:
    """What exists at a final path after a kill is complete: JSON parses, weights validate."""
    for g in ("prompts/*.jsonl", "generations/**/*.json", "scores/**/*.json"):
        for p in results.glob(g):
            text = p.read_text()
            assert text.strip(), p
            [json.loads(line) for line in text.splitlines()] if p.suffix == ".jsonl" else json.loads(text)
    for p in results.glob("**/*.safetensors"):
        if not any(part.startswith(".tmp-") for part in p.relative_to(results).parts):
            validate_safetensors(p)
            assert (p.parent / OUTPUT_MARKER).is_file(), p.parent


def run_and_kill(wd: Path, after_s: float, sig: int) -> bool:
    """Start the workflow, send ``sig`` after ``after_s`` seconds; True if it finished first."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", "--resources", "gpu=1"]
    proc = subprocess.Popen(
        cmd, cwd=wd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True
    )
    try:
        proc.wait(timeout=after_s)
        return True
    except subprocess.TimeoutExpired:
        pass
    os.killpg(proc.pid, sig)  # the whole group: snakemake and its running job, as a scheduler does
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return False


@pytest.mark.slow
def test_killed_runs_resume_to_identical_results(tmp_path):
    cfg = tiny_config()
    (tmp_path / "clean").mkdir()
    clean = make_workdir(tmp_path / "clean", cfg)
    start = time.time()
    snakemake(clean)
    duration = time.time() - start
    reference = result_hashes(clean / "results" / "faults")
    assert any(k.startswith("scores/") for k in reference) and "report/summary.csv" in reference

    (tmp_path / "faulty").mkdir()
    wd = make_workdir(tmp_path / "faulty", cfg)
    results = wd / "results" / "faults"
    rng = random.Random(12)
    for sig in KILLS:
        finished = run_and_kill(wd, rng.uniform(0.15, 0.7) * duration, sig)
        if results.exists():
            check_nothing_corrupt_looks_finished(results)
        snakemake(wd, "--unlock")
        if finished:
            break
    snakemake(wd)  # rerun-incomplete (default profile) redoes what the kills interrupted
    assert leftovers(results) == []
    assert result_hashes(results) == reference
