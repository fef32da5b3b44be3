"""Sampling seeds (``decoding.seeds``): one answers and score file per seed, the report's numbers
as means over seeds with CIs over prompts and seeds, and nothing changed for configs without seeds."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from workflow_scripts.config_schema import validate_config
from workflow_scripts.experiment import ConfigError, Experiment
from workflow_scripts.layout import Layout, split_seed
from workflow_scripts.metrics import bootstrap_ci, bootstrap_ci_over_seeds

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [ROOT / "config.yaml", ROOT / "tests" / "data" / "small_world.yaml"]


def experiment(path: Path, mutate=None) -> Experiment:
    cfg = yaml.safe_load(path.read_text())
    if mutate:
        mutate(cfg)
    cfg = copy.deepcopy(cfg)
    validate_config(cfg)
    return Experiment(cfg)


def with_seeds(*seeds: int):
    return lambda c: c["decoding"].update(seeds=list(seeds))


# ------------------------------------------------------------------ planning


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_without_seeds_the_plan_and_params_are_unchanged(path):
    exp = experiment(path)
    L = exp.layout
    assert exp.generation_files() == [L.generation(ps, v.group, v.name) for ps, v in exp.answered()]
    assert exp.score_files() == [L.score(ps, rm, v.group, v.name) for ps, rm, v in exp.scored()]
    assert exp.decoding() == exp.config["decoding"]  # the generate rule's params, as configured
    assert exp.sampling_seeds() == []


def test_seeds_plan_one_file_per_seed_and_keep_each_seeds_params():
    plain = experiment(CONFIGS[1])
    exp = experiment(CONFIGS[1], with_seeds(1, 2))
    answered = list(plain.answered())
    files = exp.generation_files()
    assert len(files) == 2 * len(answered)
    assert files[:2] == [
        f"results/small/generations/{answered[0][0]}/{answered[0][1].group}/{answered[0][1].name}/seed{s}.json"
        for s in (1, 2)
    ]
    assert len(exp.score_files()) == 2 * len(list(plain.scored()))
    # a seed's job is the same whatever other seeds are configured: adding seed 3 reruns nothing else
    more = experiment(CONFIGS[1], with_seeds(1, 2, 3))
    assert more.seeded_decoding(1) == exp.seeded_decoding("1") == {"preset": "demo", "max_new_tokens": 16, "seed": 1}
    assert set(files) < set(more.generation_files())
    assert "seeds" not in exp.decoding()


def test_reference_outputs_are_not_repeated_per_seed(tmp_path):
    ref = tmp_path / "ref.jsonl"
    ref.write_text("")
    exp = experiment(
        CONFIGS[1], lambda c: (c["prompt_sets"]["eval"].update(reference={"path": str(ref)}), with_seeds(0, 5)(c))
    )
    refs = [f for f in exp.generation_files() if "/reference/" in f]
    assert refs == ["results/small/generations/eval/reference/reference.json"]


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda c: c.update(decoding={"preset": "greedy", "seeds": [0, 1]}), r"greedy decoding .* same answers"),
        (lambda c: c["decoding"].update(seed=3, seeds=[0, 1]), r"either `seed` or `seeds`"),
        (
            lambda c: (c["extrapolation"].update(logit_alphas=[1]), with_seeds(0, 1)(c)),
            r"decoding.seeds: extrapolation.logit_alphas .* does not support seeds",
        ),
        (lambda c: c["decoding"].update(seeds=[1, 1]), r"non-unique|has non-unique elements"),
        (lambda c: c["decoding"].update(seeds=[-1]), r"less than the minimum of 0"),
    ],
)
def test_bad_seed_configs_fail_with_one_line_naming_the_key(mutate, message):
    with pytest.raises(ConfigError, match=message) as info:
        experiment(CONFIGS[1], mutate)
    assert "\n" not in str(info.value)


def test_seeded_paths_parse_back_to_their_variant_and_seed():
    L = Layout("x")
    assert split_seed(L.generation("eval", "dpo", "alpha0.5", 3), "generations") == (
        L.generation("eval", "dpo", "alpha0.5"),
        3,
    )
    assert split_seed(L.score("eval", "rm", "base", "sft", 12), "scores") == (L.score("eval", "rm", "base", "sft"), 12)
    # a base model called seed1 is a variant, not a seed
    assert split_seed(L.generation("eval", "base", "seed1"), "generations") == (
        L.generation("eval", "base", "seed1"),
        None,
    )
    assert split_seed(L.score("eval", "rm", "base", "seed1"), "scores")[1] is None


# ------------------------------------------------------------------ the two-stage bootstrap


def test_two_stage_bootstrap_equals_the_prompt_bootstrap_when_seeds_agree():
    rng = np.random.default_rng(0)
    col = rng.normal(size=30)
    agree = np.repeat(col[:, None], 3, axis=1)
    assert bootstrap_ci_over_seeds(agree, n_boot=500) == pytest.approx(bootstrap_ci(col, n_boot=500), rel=1e-12)
    assert bootstrap_ci_over_seeds(col[:, None], n_boot=500) == bootstrap_ci(col, n_boot=500)


def test_two_stage_bootstrap_is_wider_when_seeds_disagree():
    rng = np.random.default_rng(1)
    prompt = rng.normal(size=(40, 1))
    noisy = prompt + rng.normal(scale=2.0, size=(40, 4))  # seeds disagree a lot within each prompt
    est, lo, hi = bootstrap_ci_over_seeds(noisy, n_boot=1000)
    assert est == pytest.approx(noisy.mean())
    _, plo, phi = bootstrap_ci(noisy.mean(axis=1), n_boot=1000)  # prompts only, over seed means
    assert hi - lo > 1.15 * (phi - plo)
    assert lo < est < hi
    est, lo, hi = bootstrap_ci_over_seeds([[1.0, 3.0]])  # one prompt: no spread over prompts to resample
    assert est == 2.0 and np.isnan(lo) and np.isnan(hi)
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci_over_seeds([[1.0, np.nan], [2.0, 2.0]])


# ------------------------------------------------------------------ the report over seeds


def _write(path: Path, data) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return str(path)


def _report_params() -> dict:
    return {
        "evaluation": {"primary_reward": "rm", "baseline": "aligned", "dev_prompt_set": "dev", "bootstrap": 300},
        "variants": [["p", "alpha1"], ["p", "alpha2"]],
        "variants_by_prompt_set": {
            "eval": [["base", "sft"], ["base", "al"], ["p", "alpha1"], ["p", "alpha2"]],
            "dev": [["base", "al"], ["p", "alpha1"], ["p", "alpha2"]],
        },
        "pairs": {"p": {"sft": "sft", "aligned": "al"}},
        "prompt_sets": ["eval", "dev"],
        "prompt_set_sources": {"eval": "file", "dev": "file"},
        "reward_models": {"rm": {"label": "rm", "type": "model"}},
        "max_new_tokens": 8,
        "pair_meta": {},
    }


REWARD = {"sft": 0.0, "al": 1.0, "alpha1": 2.0, "alpha2": 1.5}
"""Seed-averaged reward per prompt of each variant; alpha2 is the best single seed (seed 7) on dev."""


def _seeded_results(root: Path, seeds=(3, 7)) -> tuple[list[str], list[str]]:
    L, gens, scores = Layout("t", str(root)), [], []
    for ps, variants in _report_params()["variants_by_prompt_set"].items():
        for group, name in variants:
            for j, seed in enumerate(seeds):
                # seeds disagree by ±spread around the per-prompt mean; alpha2's seed 7 looks best alone
                spread = 2.0 if name == "alpha2" else 0.1
                recs, sc = [], []
                for i in range(10):
                    out = "red blue" if (i + j) % 2 else "red blue green"
                    recs.append(
                        {
                            "id": f"{ps}{i}",
                            "instruction": f"Name colours {i}.",
                            "output": out,
                            "n_tokens": 2 + (i + j) % 2,
                            "finish_reason": "stop",
                        }
                    )
                    sc.append({"id": f"{ps}{i}", "reward": REWARD[name] + 0.01 * i + (spread if j else -spread)})
                gens.append(_write(Path(L.generation(ps, group, name, seed)), recs))
                scores.append(_write(Path(L.score(ps, "rm", group, name, seed)), sc))
    return gens, scores


def test_report_numbers_are_means_over_seeds_with_cis_over_prompts_and_seeds(tmp_path):
    from workflow_scripts.report.answers import first_seed_answers, seeded_answer_table
    from workflow_scripts.report.seeds import pool
    from workflow_scripts.report.summary import build_summary
    from workflow_scripts.report.tidy import per_prompt_long

    gens, scores = _seeded_results(tmp_path)
    pooled = pool(gens, scores)
    assert pooled.n_seeds[("eval", "p", "alpha1")] == 2
    assert pooled.matrices[("eval", "rm", "p", "alpha2")].shape == (10, 2)
    df = build_summary(
        pooled.generations, pooled.scores, _report_params(), matrices=pooled.matrices, n_seeds=pooled.n_seeds
    )
    ev = df[df.prompt_set == "eval"].set_index("variant_id")
    assert (ev.n == 10).all() and (ev.n_seeds == 2).all()
    assert ev.loc["p/alpha1", "rm_mean"] == pytest.approx(2.0 + 0.045)  # ±0.1 of the two seeds cancel
    assert ev.loc["p/alpha1", "rm_win_rate"] == 100.0  # seed-averaged per-prompt rewards vs aligned
    # the paired difference from the aligned model is over seed-averaged per-prompt rewards: exactly 1
    assert ev.loc[
        "p/alpha1", ["rm_diff_vs_aligned", "rm_diff_vs_aligned_ci_low", "rm_diff_vs_aligned_ci_high"]
    ].tolist() == pytest.approx([1.0] * 3)
    assert ev.loc["p/alpha1", "mean_tokens"] == pytest.approx(2.5)  # over both seeds' answers
    wide = ev.loc["p/alpha2", "rm_ci_high"] - ev.loc["p/alpha2", "rm_ci_low"]
    narrow = ev.loc["p/alpha1", "rm_ci_high"] - ev.loc["p/alpha1", "rm_ci_low"]
    assert wide > 5 * narrow  # seeds that disagree widen the CI
    # dev chooses on seed-averaged rewards: α = 1 (2.0), not α = 2 whose seed 7 alone scores 3.5
    dev = df[df.prompt_set == "dev"]
    assert dev[dev.chosen_on_dev].variant_id.tolist() == ["p/alpha1"]
    from workflow_scripts.report.markdown import summary_markdown

    assert "each variant answered 2 times; rewards are averaged per prompt" in summary_markdown(df, _report_params())
    answers = seeded_answer_table(pooled, _report_params())
    assert len(answers) == 2 * 10 * (4 + 3) and {a["seed"] for a in answers} == {3, 7}
    assert {a["seed"] for a in first_seed_answers(answers)} == {3}
    pp = per_prompt_long(answers)
    assert pp.columns[8:10].tolist() == ["prompt_id", "seed"]
    row = pp[(pp.variant_id == "p/alpha2") & (pp.prompt_id == "eval0") & (pp.metric == "reward")]
    assert sorted(zip(row.seed, row.value)) == [(3, pytest.approx(-0.5)), (7, pytest.approx(3.5))]


def test_report_refuses_seeds_that_answered_other_prompts(tmp_path):
    from workflow_scripts.report.seeds import pool

    gens, scores = _seeded_results(tmp_path)
    bad = json.loads(Path(gens[1]).read_text())[:-1]
    Path(gens[1]).write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"seed 7 answered other prompts"):
        pool(gens, scores)
