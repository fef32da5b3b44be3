"""Rules for the local judge, MT-Bench and capability stages: planned only when configured, one job
per variant, and a new α adds exactly its own judge job (dry runs)."""

from __future__ import annotations

import re

import yaml
from test_workflow import ROOT, SMALL, make_workdir, planned_jobs, snakemake


def _judge_outputs(wd) -> set[str]:
    out = snakemake(wd, "-n").stdout
    return set(re.findall(r"rule local_judge:\n\s+input: .*\n\s+output: (\S+)", out))


def test_new_stages_only_when_configured(tmp_path):
    cfg = yaml.safe_load(SMALL.read_text())
    wd = make_workdir(tmp_path, cfg)
    jobs = planned_jobs(wd)
    assert not {"local_judge", "mtbench_answers", "mtbench_grade", "capability", "evaluation_report"} & set(jobs)

    cfg["evaluation"].update(
        local_judge={"model": "dpo", "prompt_sets": ["eval"]},
        mtbench={"judge": "dpo", "limit": 2, "max_new_tokens": 8},
        capability={"tasks": {"expo_world_mc": 0}, "world_task": True, "limit": 8},
    )
    (wd / "config.yaml").write_text(yaml.safe_dump(cfg))
    jobs = planned_jobs(wd)
    n_variants = 2 + len(cfg["extrapolation"]["alphas"]) + len(cfg["extrapolation"]["schemes"])  # sft, dpo, α, thirds
    assert jobs["local_judge"] == n_variants - 2  # extrapolations judged against the aligned model
    assert jobs["mtbench_answers"] == jobs["mtbench_grade"] == n_variants
    assert jobs["capability"] == n_variants
    assert jobs["evaluation_report"] == 1  # their tables, in a rule of their own


def test_adding_an_alpha_adds_only_its_judge_job(tmp_path):
    cfg = yaml.safe_load(SMALL.read_text())
    cfg["evaluation"]["local_judge"] = {"model": "dpo", "prompt_sets": ["eval"]}
    cfg["extrapolation"]["schemes"] = {}
    (tmp_path / "a").mkdir()
    before = _judge_outputs(make_workdir(tmp_path / "a", cfg))
    cfg["extrapolation"]["alphas"] = [*cfg["extrapolation"]["alphas"], 2]
    (tmp_path / "b").mkdir()
    after = _judge_outputs(make_workdir(tmp_path / "b", cfg))
    assert len(before) == 2 and after - before == {"results/small/local_judge/eval/dpo/alpha2.json"}


def test_experiments_plan_the_new_stages(tmp_path):
    root = ROOT / "experiments"
    cfg = yaml.safe_load((root / "zephyr_controlled.yaml").read_text())
    jobs = planned_jobs(make_workdir(tmp_path, cfg))
    assert jobs["capability"] >= 3  # sft, aligned and each extrapolation
    assert set(cfg["evaluation"]["capability"]["tasks"]) == {
        "arc_challenge",
        "hellaswag",
        "mmlu",
        "truthfulqa_mc2",
        "winogrande",
        "gsm8k",
    }
    (tmp_path / "s").mkdir()
    jobs = planned_jobs(make_workdir(tmp_path / "s", yaml.safe_load((root / "smollm2_offline.yaml").read_text())))
    assert jobs["mtbench_answers"] == jobs["mtbench_grade"] == jobs["capability"] == 7
    assert jobs["local_judge"] == 5
