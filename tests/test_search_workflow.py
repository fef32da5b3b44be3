"""The α search as Snakemake runs it: one checkpoint per round, the budget, the report hooks.

The walk over the rounds is tested on plans given by hand; the Snakemake tests run a tiny pair of
random local models on a few world dev prompts, then replace the dev rewards by a known unimodal
curve (peak at α = 1), so which candidates each round asks for is known exactly.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from workflow_scripts.experiment import ConfigError, Experiment
from workflow_scripts.search.planning import UNBOUNDED

ROOT = Path(__file__).resolve().parents[1]
COPY = ["Snakefile", "rules", "schemas", "envs", "workflow_scripts", "resources", "report", "profiles"]


def demo_config(**search) -> dict:
    from workflow_scripts.config_schema import validate_config

    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["extrapolation"]["search"] = search
    validate_config(cfg)
    return cfg


def plans(*rounds: tuple[list[float], bool]):
    """A plan loader over hand-written rounds: (pending α, done)."""

    def load(r: int) -> dict:
        pending, done = rounds[r]
        return {"pending": [{"variant": f"alpha{a:g}"} for a in pending], "done": done}

    return load


# ------------------------------------------------------------------ the walk over the rounds


def test_trail_applies_the_budget_to_budget_free_plans():
    s = Experiment(demo_config(budget=5)).search
    load = plans(([0.25, 1, 4, 16], False), ([0.5, 2], False), ([0.7], False))
    assert s.trail(load) == (["alpha0.25", "alpha1", "alpha4", "alpha16", "alpha0.5"], 1)
    s6 = Experiment(demo_config(budget=6)).search
    assert s6.trail(load) == (["alpha0.25", "alpha1", "alpha4", "alpha16", "alpha0.5", "alpha2"], 1)
    s7 = Experiment(demo_config(budget=7)).search
    assert s7.trail(load)[1] == 2  # more budget: the next round is asked for
    done = plans(([0.25, 1], False), ([], True))
    assert s7.trail(done) == (["alpha0.25", "alpha1"], 1)


def test_plan_inputs_are_the_earlier_rounds_scores_and_plan():
    exp = Experiment(demo_config(budget=5))
    load = plans(([1, 4], False), ([2], False))
    r = "results/demo"
    assert exp.search.plan_inputs("dpo", 0, load) == [f"{r}/scores/dev/gold/base/dpo_0.05.json"]
    assert exp.search.plan_inputs("dpo", 2, load) == [
        f"{r}/scores/dev/gold/base/dpo_0.05.json",
        f"{r}/scores/dev/gold/dpo/alpha1.json",
        f"{r}/scores/dev/gold/dpo/alpha4.json",
        f"{r}/scores/dev/gold/dpo/alpha2.json",
        f"{r}/search/dpo/plan/round1.json",
    ]
    assert exp.search.plan_spec()["budget"] == UNBOUNDED  # plans never depend on the budget
    assert exp.search.result_spec()["budget"] == 5


def test_objective_defaults_to_the_primary_reward_and_lengths_need_answers():
    exp = Experiment(demo_config(objective={"kind": "ensemble_mean", "rms": ["rm", "gold"], "length_penalty": 0.1}))
    files = exp.search.candidate_files("dpo", "alpha2")
    assert files[-1] == "results/demo/generations/dev/dpo/alpha2.json"
    assert Experiment(demo_config()).search.objective() == {"rms": ["gold"], "kind": "reward"}


@pytest.mark.parametrize(
    "search, message",
    [
        ({"pairs": ["nope"]}, "extrapolation.search.pairs: unknown pair 'nope'"),
        ({"objective": {"rms": ["judge"]}}, "'judge' is not a reward model"),
        ({"grid": [4, 1]}, "strictly increasing"),
    ],
)
def test_search_config_errors_name_the_key(search, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        Experiment(demo_config(**search))


def test_summary_hooks_add_and_mark_the_searched_alpha(tmp_path):
    from workflow_scripts.search.report import SEARCHED_SUFFIX, mark_searched, with_searched

    res = tmp_path / "search" / "dpo" / "result.json"
    res.parent.mkdir(parents=True)
    res.write_text(json.dumps({"best_uniform_alpha": 1.41}))
    params = with_searched({"variants": [["dpo", "alpha1"]], "variants_by_prompt_set": {"eval": []}}, [str(res)])
    assert params["variants"] == [["dpo", "alpha1"], ["dpo", "alpha1.41"]]
    assert params["variants_by_prompt_set"]["eval"] == [["dpo", "alpha1.41"]]
    df = pd.DataFrame({"pair": ["dpo", "dpo"], "kind": ["alpha", "alpha"], "alpha": [1.0, 1.41], "variant": ["a", "b"]})
    out = mark_searched(df, [str(res)])
    assert out.searched.tolist() == [False, True] and out.variant.iloc[1] == "b" + SEARCHED_SUFFIX


# ------------------------------------------------------------------ Snakemake


def curve(alpha: float) -> float:
    """Dev reward of the fake pair: peak 0.8 at α = 1, falling with log2(α)²; aligned 0.5."""
    return 0.5 if alpha == 0 else 0.8 - 0.3 * math.log2(alpha) ** 2


def fake_scores(path: Path, alpha: float) -> None:
    rows = json.loads(path.read_text())
    for i, r in enumerate(rows):
        r["reward"] = curve(alpha) + 0.01 * ((i * 7) % 5 - 2)
    path.write_text(json.dumps(rows))


def smk(wd: Path, *args: str) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", "--resources", "gpu=1", *args]
    proc = subprocess.run(cmd, cwd=wd, capture_output=True, text=True, env=env, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


def planned(wd: Path, *targets: str) -> dict[str, int]:
    out = smk(wd, "-n", "--", *targets)
    if "Job stats:" not in out:
        return {}
    counts = {}
    for line in out.split("Job stats:", 1)[1].splitlines()[3:]:
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not m:
            break
        if m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts


def set_budget(wd: Path, budget: int) -> None:
    cfg = yaml.safe_load((wd / "config.yaml").read_text())
    cfg["extrapolation"]["search"]["budget"] = budget
    (wd / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


GRID = [0.5, 1, 2, 4]
R = "results/s"
RESULT = f"{R}/search/dpo/result.json"


@pytest.fixture(scope="module")
def searched(tmp_path_factory, tiny_tokenizer_dir):
    """A workdir whose grid candidates are scored (with the fake curve) and plans 0 and 1 exist."""
    from tests.conftest import make_tiny_llama

    wd = tmp_path_factory.mktemp("search_wd")
    for name in COPY:
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, wd / name)
    models = {k: make_tiny_llama(wd / "m" / k, tiny_tokenizer_dir, seed=s) for k, s in (("sft", 0), ("dpo", 1))}
    cfg = {
        "experiment": "s",
        "world": {"seed": 1, "n_sft": 10, "n_pref": 10, "n_eval": 2, "n_dev": 6},
        "models": {k: {"source": "local", "path": str(p)} for k, p in models.items()},
        "pairs": {"dpo": {"sft": "sft", "aligned": "dpo"}},
        "extrapolation": {"alphas": [1], "search": {"grid": GRID, "budget": 5}},
        "prompt_sets": {"dev": {"source": "world", "split": "dev"}},
        "reward_models": {"gold": {"type": "gold"}},
        "decoding": {"preset": "greedy", "max_new_tokens": 4},
        "evaluation": {"primary_reward": "gold", "dev_prompt_set": "dev", "bootstrap": 200},
    }
    (wd / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    scores = {
        a: wd / R / "scores/dev/gold" / ("base/dpo.json" if a == 0 else f"dpo/alpha{a:g}.json") for a in [0, *GRID]
    }
    smk(wd, "--", *(str(p.relative_to(wd)) for p in scores.values()))
    for a, p in scores.items():
        fake_scores(p, a)
    log = smk(wd, "--", f"{R}/search/dpo/plan/round1.json")
    assert "rule generate" not in log and "rule extrapolate_alpha" not in log  # plans only read scores
    return wd


def test_dry_run_shows_exactly_the_next_rounds_jobs(searched):
    plan1 = json.loads((searched / R / "search/dpo/plan/round1.json").read_text())
    assert [c["variant"] for c in plan1["pending"]] == ["alpha0.707", "alpha1.41"]  # log-midpoints around 1
    set_budget(searched, 6)
    try:
        out = smk(searched, "-n", "--", RESULT)
        jobs = planned(searched, RESULT)
    finally:
        set_budget(searched, 5)
    # the budget (6) is used by this round: no further plan is needed, and nothing else runs
    assert jobs == {"extrapolate_alpha": 2, "generate": 2, "score": 2, "search_result": 1}
    planned_alphas = set(re.findall(r"generations/dev/dpo/alpha([\d.]+)\.json", out))
    assert planned_alphas == {"0.707", "1.41"}


def test_more_budget_resumes_without_redoing_finished_candidates(searched):
    smk(searched, "--", RESULT)  # budget 5: the grid and the first refinement
    result = json.loads((searched / RESULT).read_text())
    assert result["n_evals"] == 5 and result["stop_reason"] == "budget of 5 evaluations used"
    done = {p: p.stat().st_mtime for p in (searched / R / "scores").rglob("*.json")}
    set_budget(searched, 6)
    try:
        out = smk(searched, "-n", "--", RESULT)
        assert planned(searched, RESULT) == {"extrapolate_alpha": 1, "generate": 1, "score": 1, "search_result": 1}
        assert set(re.findall(r"generations/dev/dpo/alpha([\d.]+)\.json", out)) == {"1.41"}
        smk(searched, "--", RESULT)
    finally:
        set_budget(searched, 5)
    assert {p: p.stat().st_mtime for p in done} == done  # no finished candidate was scored again
    result6 = json.loads((searched / RESULT).read_text())
    assert result6["n_evals"] == 6


def test_search_is_deterministic_given_scores(searched, tmp_path):
    from workflow_scripts.search.plan import plan_round

    plan1 = searched / R / "search/dpo/plan/round1.json"
    inputs = [
        str(searched / R / "scores/dev/gold" / (f"dpo/alpha{a:g}.json" if a else "base/dpo.json")) for a in [0, *GRID]
    ]
    spec = copy.deepcopy(
        Experiment(yaml.safe_load((searched / "config.yaml").read_text()), check=False).search.plan_spec()
    )
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    plan_round(inputs, "dpo", spec, str(a))
    plan_round(list(reversed(inputs)), "dpo", spec, str(b))
    assert a.read_text() == b.read_text() == plan1.read_text()
