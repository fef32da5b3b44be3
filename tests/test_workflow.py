"""The workflow as users run it: config validation, incremental reruns, and an end-to-end run.

The end-to-end run uses a small demo world (tests/data/small_world.yaml) in a temporary copy of the
repository, so nothing is written into the checkout.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "schemas" / "config.schema.yaml"
SMALL = ROOT / "tests" / "data" / "small_world.yaml"
COPY = ["Snakefile", "rules", "schemas", "envs", "workflow_scripts", "resources", "report", "profiles"]


def load_default() -> dict:
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def validate(cfg: dict) -> None:
    from workflow_scripts.config_schema import validate_config

    validate_config(copy.deepcopy(cfg))


# ------------------------------------------------------------------------------ schema


def test_default_and_small_configs_are_valid():
    validate(load_default())
    validate(yaml.safe_load(SMALL.read_text()))


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda c: c["extrapolation"].update(alphas=["0.5"]), r"'0\.5' is not of type 'number'"),
        (lambda c: c["extrapolation"].update(alphas=[]), r"\[\] should be non-empty|too short"),
        (
            lambda c: c["extrapolation"]["schemes"].update(bad={"preset": "quarters", "alphas": [1, 2, 3]}),
            r"'quarters' is not one of \['thirds', 'thirds_5_10_15'\]",
        ),
        (lambda c: c["models"]["dpo_0.05"].update(fraction=1.5), r"1\.5 is greater than the maximum of 1"),
        (lambda c: c["models"]["dpo_0.05"].update(method="ppo"), r"'ppo' is not one of"),
        (lambda c: c["pairs"].update(base={"sft": "sft", "aligned": "dpo_0.05"}), r"base"),
        (lambda c: c["decoding"].update(temperature="hot"), r"'hot' is not of type 'number'"),
        (lambda c: c.update(pairs={"-bad": {"sft": "sft", "aligned": "dpo_0.05"}}), r"-bad"),
    ],
)
def test_schema_rejects_bad_configs_with_a_clear_message(mutate, message):
    from workflow_scripts.experiment import ConfigError

    cfg = load_default()
    mutate(cfg)
    with pytest.raises(ConfigError, match=message) as info:
        validate(cfg)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------ helpers


def make_workdir(tmp: Path, config: dict) -> Path:
    """A copy of the workflow with `config` as its config.yaml (results stay in `tmp`)."""
    for name in COPY:
        src = ROOT / name
        dst = tmp / name
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    (tmp / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return tmp


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "1", "--resources", "gpu=1", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def planned_jobs(workdir: Path, *args: str) -> dict[str, int]:
    """Job counts per rule of a dry run (empty when there is nothing to do)."""
    proc = snakemake(workdir, "-n", *args)
    out = proc.stdout + proc.stderr
    counts: dict[str, int] = {}
    if "Job stats:" not in out:
        assert "Nothing to be done" in out, out[-3000:]
        return counts
    table = out.split("Job stats:", 1)[1]
    for line in table.splitlines()[3:]:
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not m:
            break
        if m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts


def test_semantic_errors_name_the_culprit(tmp_path):
    cfg = yaml.safe_load(SMALL.read_text())
    cfg["extrapolation"]["schemes"]["deep"] = {"groups": [{"layers": [4, 12], "by": "index", "alpha": 1}], "default": 0}
    wd = make_workdir(tmp_path, cfg)
    proc = snakemake(wd, "-n", check=False)
    assert proc.returncode != 0
    assert "outside a model with 6 layers" in proc.stdout + proc.stderr
    assert "extrapolation.schemes.deep" in proc.stdout + proc.stderr

    cfg = yaml.safe_load(SMALL.read_text())
    cfg["pairs"]["dpo"]["aligned"] = "nope"
    (wd / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake(wd, "-n", check=False)
    assert proc.returncode != 0
    assert "aligned model 'nope' is not defined" in proc.stdout + proc.stderr


def test_dry_run_plans_one_job_per_alpha_and_scheme(tmp_path):
    cfg = yaml.safe_load(SMALL.read_text())
    wd = make_workdir(tmp_path, cfg)
    jobs = planned_jobs(wd)
    n_alpha = len(cfg["extrapolation"]["alphas"])
    n_scheme = len(cfg["extrapolation"]["schemes"])
    assert jobs["extrapolate_alpha"] == n_alpha
    assert jobs["extrapolate_scheme"] == n_scheme
    n_eval = 2 + n_alpha + n_scheme  # sft + aligned + extrapolations
    n_dev = 1 + n_alpha  # dev answers only what choosing α needs
    assert jobs["generate"] == n_eval + n_dev
    assert jobs["score"] == 2 * (n_eval + n_dev)  # learned RM + gold
    assert jobs["train_model"] == 3  # SFT, DPO, reward model
    assert jobs["report"] == 1
    assert jobs["model_card"] == n_alpha + n_scheme


# ------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """The small world run end to end once; also checks that a killed job leaves nothing finished."""
    cfg = yaml.safe_load(SMALL.read_text())
    wd = make_workdir(tmp_path_factory.mktemp("e2e"), cfg)
    results = wd / "results" / "small"
    # Reference outputs for the eval prompts (perfect answers), scored like a variant.
    import random

    from workflow_scripts.world.tasks import build_world, correct_answer

    w = cfg["world"]
    world = build_world(w["seed"], w["n_sft"], w["n_pref"], w["n_eval"], w["n_dev"])
    rng = random.Random(0)
    refs = [
        {
            "id": r["id"],
            "instruction": r["instruction"],
            "task": r["task"],
            "output": correct_answer(r["task"], rng),
            "generator": "oracle",
        }
        for r in world["eval"]
    ]
    (wd / "ref.jsonl").write_text("".join(json.dumps(r) + "\n" for r in refs))
    cfg["prompt_sets"]["eval"]["reference"] = {"path": "ref.jsonl"}
    (wd / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))

    # Interrupt the run while the SFT model trains: no finished-looking checkpoint may remain.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--cores", "1", "--resources", "gpu=1"],
        cwd=wd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    sft_log = results / "logs" / "train" / "sft.log"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not (sft_log.exists() and "it/s]" in sft_log.read_text()):
        time.sleep(0.2)  # tqdm progress of the SFT trainer: the job is mid-training
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    interrupted = {
        "sft_exists": (results / "trained" / "sft").exists(),
        "leftovers": [p.name for p in (results / "trained").glob("*")],
    }

    snakemake(wd, "--unlock")  # a SIGKILL leaves Snakemake's lock, as for any user
    snakemake(wd)  # the profile's rerun-incomplete resumes
    return wd, results, interrupted


def test_killed_job_leaves_no_finished_output(finished_run):
    _, _, interrupted = finished_run
    assert not interrupted["sft_exists"]
    assert "sft" not in interrupted["leftovers"]  # at most a hidden .tmp-sft-* folder


def test_end_to_end_report(finished_run):
    wd, results, _ = finished_run
    report = results / "report"
    for name in (
        "summary.csv",
        "summary.md",
        "reward_vs_alpha.png",
        "diagnostics_vs_alpha.png",
        "layer_delta.csv",
        "layer_delta.png",
        "training_curves.png",
        "published_comparison.csv",
    ):
        assert (report / name).stat().st_size > 0, name
    df = pd.read_csv(report / "summary.csv")
    ev = df[df.prompt_set == "eval"]
    assert list(ev.variant) == ["sft (sft)", "aligned (dpo)", "α=1", "α=4", "thirds", "reference outputs"]
    assert list(ev.kind) == ["sft", "aligned", "alpha", "alpha", "scheme", "reference"]
    ref = ev[ev.kind == "reference"].iloc[0]
    assert ref.gold_mean == pytest.approx(1.0)  # the oracle answers are perfect
    assert ref.gold_win_rate >= 50.0
    assert ev.alpha.tolist()[:4] == [-1.0, 0.0, 1.0, 4.0]
    aligned = ev[ev.kind == "aligned"].iloc[0]
    assert aligned.gold_win_rate == pytest.approx(50.0)  # the baseline against itself
    for col in ("rm_mean", "gold_mean", "gold_win_rate", "restating_rate", "restating_only_rate", "repetitive_rate"):
        assert ev[col].notna().all(), col
    assert ev[ev.kind != "reference"].mean_tokens.notna().all()  # references carry no token counts
    assert (ev.gold_ci_low <= ev.gold_mean).all() and (ev.gold_mean <= ev.gold_ci_high).all()
    dev = df[df.prompt_set == "dev"]
    assert set(dev.kind) == {"aligned", "alpha"}
    assert dev.chosen_on_dev.sum() == 1 and ev.chosen_on_dev.sum() == 1
    # the aligned model (α = 0) and every uniform α compete on dev (workflow_scripts.dev_choice)
    best = dev.loc[dev[dev.kind.isin(["aligned", "alpha"])].gold_mean.idxmax()]
    assert best.chosen_on_dev
    # generations are alpaca_eval model_outputs and never contain the prompt
    gens = json.loads((results / "generations" / "eval" / "dpo" / "alpha1.json").read_text())
    assert {"instruction", "output", "generator", "dataset"} <= set(gens[0])
    # the per-layer table comes from the extrapolation manifest: 6 decoder layers
    delta = pd.read_csv(report / "layer_delta.csv")
    assert (delta.part == "layer").sum() == 6
    assert "| α=1" in (report / "summary.md").read_text()
    # each extrapolation's model card carries the report's numbers
    from huggingface_hub import ModelCard

    card = ModelCard.load(results / "cards" / "dpo" / "alpha1" / "README.md")
    assert card.data.base_model == ["sft", "dpo"] and card.data.base_model_relation == "merge"
    row = ev[ev.variant == "α=1"].iloc[0]
    got = {(e.dataset_name, e.metric_type): e.metric_value for e in card.data.eval_results}
    assert got[("eval", "gold/mean_reward")] == pytest.approx(row.gold_mean)
    assert not (results / "extrapolated" / "dpo" / "alpha1" / "training_manifest.json").exists()


def test_snakemake_report_opens_on_the_description_and_holds_summary_and_answers(finished_run, tmp_path):
    """`snakemake --report`: the front page says which α was chosen; summary.html (the table) and
    answers.html (every answer) are in it, embedded as data URIs."""
    wd, results, _ = finished_run
    out = tmp_path / "report.html"
    snakemake(wd, "--report", str(out))
    page = out.read_text()
    assert "has the highest mean gold reward on the dev prompts" in page  # overview.rst on the front page
    embedded = {}
    for blob in re.findall(r"data:text/html[^,]*;base64,([A-Za-z0-9+/=]+)", page):
        text = base64.b64decode(blob).decode("utf-8", "replace")
        if "<title>ExPO summary" in text:
            embedded["summary"] = text
        elif "<title>ExPO answers" in text:
            embedded["answers"] = text
    assert {"summary", "answers"} <= set(embedded), sorted(embedded)
    df = pd.read_csv(results / "report" / "summary.csv")
    for label in df[df.prompt_set == "eval"].variant:
        assert f"<td>{label}" in embedded["summary"]
    gens = json.loads((results / "generations" / "eval" / "dpo" / "alpha1.json").read_text())
    data = json.loads(re.search(r'id="data">(.*?)</script>', embedded["answers"], re.S).group(1))
    outputs = {(p["id"], vid): a["o"] for p in data["prompts"] for vid, a in p["answers"].items()}
    assert all(outputs[(g["id"], "dpo/alpha1")] == g["output"] for g in gens)


def test_nothing_to_do_after_a_finished_run(finished_run):
    wd, _, _ = finished_run
    assert planned_jobs(wd) == {}


def _with_config(wd: Path, mutate) -> None:
    cfg = yaml.safe_load((wd / "config.yaml").read_text())
    mutate(cfg)
    (wd / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def test_adding_an_alpha_reruns_only_that_alpha(finished_run):
    wd, _, _ = finished_run
    original = (wd / "config.yaml").read_text()
    try:
        _with_config(wd, lambda c: c["extrapolation"]["alphas"].append(2.0))
        jobs = planned_jobs(wd)
        # a new report updates every card's results (3 variants and the new α)
        assert jobs == {"extrapolate_alpha": 1, "generate": 2, "score": 4, "report": 1, "model_card": 4, "all": 1}
        # the same α written another way is the same α: no new jobs beyond the report
        _with_config(wd, lambda c: c["extrapolation"].update(alphas=[1.0, 4.00]))
        assert planned_jobs(wd) == {}
    finally:
        (wd / "config.yaml").write_text(original)


def test_changing_decoding_reruns_generation_not_extrapolation_or_training(finished_run):
    wd, _, _ = finished_run
    original = (wd / "config.yaml").read_text()
    try:
        _with_config(wd, lambda c: c["decoding"].update(temperature=0.9))
        jobs = planned_jobs(wd)
        assert "extrapolate_alpha" not in jobs and "extrapolate_scheme" not in jobs
        assert "train_model" not in jobs and "world_data" not in jobs
        assert jobs["generate"] == 5 + 3
        assert jobs["score"] == 2 * (5 + 3)
        assert jobs["report"] == 1
    finally:
        (wd / "config.yaml").write_text(original)


def test_prompt_set_subset_of_alphas_and_schemes(finished_run, tmp_path):
    """A prompt set's own `alphas:`/`schemes:` narrow what answers it, without rebuilding it."""
    wd, _, _ = finished_run
    original = (wd / "config.yaml").read_text()
    try:
        # narrowing an existing set: its prompts and remaining answers stay valid, only the report reruns
        _with_config(wd, lambda c: c["prompt_sets"]["eval"].update(alphas=[4], schemes=[]))
        assert planned_jobs(wd) == {"report": 1, "model_card": 3, "all": 1}

        # a full sweep on the cheap set and a subset on another: new α only where asked for
        def sweep(c):
            c["extrapolation"]["alphas"] = [1, 2, 4]
            c["prompt_sets"]["eval"].update(alphas=[1, 4])

        _with_config(wd, sweep)
        jobs = planned_jobs(wd)
        assert jobs == {"extrapolate_alpha": 1, "generate": 1, "score": 2, "report": 1, "model_card": 4, "all": 1}
        # α=2 is answered on dev only
    finally:
        (wd / "config.yaml").write_text(original)
    cfg = yaml.safe_load(SMALL.read_text())
    cfg["prompt_sets"]["eval"]["alphas"] = [3]
    proc = snakemake(make_workdir(tmp_path, cfg), "-n", check=False)
    assert proc.returncode != 0 and "prompt set 'eval': α 3 is not in any pair's α list" in proc.stdout + proc.stderr
    cfg["prompt_sets"]["eval"].update(alphas=[1], schemes=["nope"])
    (tmp_path / "scheme").mkdir()
    proc = snakemake(make_workdir(tmp_path / "scheme", cfg), "-n", check=False)
    assert proc.returncode != 0 and "prompt set 'eval': unknown scheme 'nope'" in proc.stdout + proc.stderr


def test_alpaca_eval_judge_jobs_only_when_configured(tmp_path):
    cfg = yaml.safe_load((ROOT / "experiments" / "openchat_starling.yaml").read_text())
    wd = make_workdir(tmp_path, cfg)
    assert "alpaca_eval_judge" not in planned_jobs(wd)
    cfg["evaluation"]["alpaca_eval_judge"] = "weighted_alpaca_eval_gpt4_turbo"
    (wd / "config.yaml").write_text(yaml.safe_dump(cfg))
    # sft + aligned + 4 α on the AlpacaEval prompt set (not on MT-Bench or the dev set)
    assert planned_jobs(wd)["alpaca_eval_judge"] == 6
