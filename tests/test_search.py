"""The adaptive α search and the layer-group search on synthetic dev scores (no models needed)."""

from __future__ import annotations

import csv
import json
import math
import zlib

import numpy as np
import pytest

from workflow_scripts.schemes import Scheme
from workflow_scripts.search import (
    Candidate,
    Evaluation,
    LayerConfig,
    Objective,
    Scorer,
    UniformConfig,
    layer_search,
    scheme_spec,
    search,
    uniform_search,
    write_log,
)
from workflow_scripts.search.core import round_sig
from workflow_scripts.search.layers import partition_groups

N_PROMPTS = 60
PROMPT_EFFECT = np.random.default_rng(123).normal(0, 1, N_PROMPTS)


def _noise(key: str, sigma: float) -> np.ndarray:
    return np.random.default_rng(zlib.crc32(key.encode())).normal(0, sigma, N_PROMPTS)


def peaked(alpha: float, best: float, height: float = 1.0) -> float:
    """A unimodal curve in log(1 + α) with its maximum at ``best``."""
    return height * (1 - 0.5 * (math.log1p(alpha) - math.log1p(best)) ** 2)


def evaluation(values: dict[str, float], key: str, sigma: float = 0.3, n_tokens: float | None = None) -> Evaluation:
    """Per-prompt rewards = shared prompt effect + the curve's value + candidate-specific noise."""
    rewards = {
        rm: {f"p{i}": float(v) for i, v in enumerate(PROMPT_EFFECT + mean + _noise(f"{rm}/{key}", sigma))}
        for rm, mean in values.items()
    }
    lengths = None if n_tokens is None else {f"p{i}": n_tokens for i in range(N_PROMPTS)}
    return Evaluation(rewards=rewards, n_tokens=lengths)


def drive(curves, spec_or_cfg, *, max_rounds: int = 40, evals=None, objective=None, sigma=0.3):
    """Run the uniform search to completion, evaluating whatever it asks for; count every job."""
    evals = {} if evals is None else evals
    jobs: list[str] = []

    def ev(alpha: float) -> Evaluation:
        return evaluation({rm: f(alpha) for rm, f in curves.items()}, f"a{alpha}", sigma)

    evals.setdefault("alpha0", ev(0.0))
    scorer = Scorer(objective or Objective(rms=(next(iter(curves)),)), evals["alpha0"])
    for _ in range(max_rounds):
        res = uniform_search(evals, scorer, spec_or_cfg)
        if res.done:
            return res, evals, jobs
        for c in res.pending:
            assert c.name not in evals, f"{c.name} proposed again"
            jobs.append(c.name)
            evals[c.name] = ev(c.alpha)
    raise AssertionError("search did not finish")


# ------------------------------------------------------------------ uniform search


def test_search_is_deterministic_given_scores():
    curves = {"gold": lambda a: peaked(a, 2.5)}
    a, evals, _ = drive(curves, UniformConfig(budget=8))
    shuffled = dict(reversed(list(evals.items())))  # same scores, other order
    b = uniform_search(shuffled, Scorer(Objective(), shuffled["alpha0"]), UniformConfig(budget=8))
    assert a.rows == b.rows and a.best == b.best and b.done
    assert a.best is not None and a.stop_reason == b.stop_reason


def test_first_round_is_the_coarse_grid():
    ev0 = evaluation({"gold": 0.0}, "zero")
    res = uniform_search({"alpha0": ev0}, Scorer(Objective(), ev0), UniformConfig(grid=(0.5, 2, 8), budget=8))
    assert [c.name for c in res.pending] == ["alpha0.5", "alpha2", "alpha8"]
    res = uniform_search({"alpha0": ev0}, Scorer(Objective(), ev0), UniformConfig(grid=(0.5, 2, 8), budget=2))
    assert [c.name for c in res.pending] == ["alpha0.5", "alpha2"]  # the budget cuts the round's tail


def test_more_budget_resumes_without_redoing_candidates():
    curves = {"gold": lambda a: peaked(a, 2.5)}
    small, evals, jobs_small = drive(curves, UniformConfig(budget=5))
    assert small.n_evals == 5 and small.stop_reason.startswith("budget")
    big, evals, jobs_more = drive(curves, UniformConfig(budget=9), evals=evals)
    assert not set(jobs_small) & set(jobs_more)  # drive() also asserts nothing is proposed twice
    assert len(jobs_small) + len(jobs_more) == big.n_evals <= 9
    fresh, _, jobs_fresh = drive(curves, UniformConfig(budget=9))
    assert fresh.rows == big.rows and sorted(jobs_fresh) == sorted(jobs_small + jobs_more)


@pytest.mark.parametrize("best", [0.3, 2.5, 25.0])
def test_search_reaches_the_optimum_of_a_noisy_unimodal_curve(best):
    curve = lambda a: peaked(a, best)  # noqa: E731
    res, evals, jobs = drive({"gold": curve}, UniformConfig(budget=10))
    assert res.n_evals <= 10 and len(jobs) == res.n_evals
    assert curve(res.best.alpha) >= curve(best) - 0.05, res.rows  # within noise of the true peak
    # As good on dev as the best point of the paper-style fixed grid, at no more evaluations than it + a bracket.
    grid = [0.5, 1, 2, 4, 8, 16, 32]
    assert curve(res.best.alpha) >= max(curve(a) for a in grid) - 0.02


def test_search_stops_when_the_dev_noise_hides_the_differences():
    flat = {"gold": lambda a: 0.01 * peaked(a, 1.0)}
    res, _, jobs = drive(flat, UniformConfig(budget=20), sigma=1.0)
    assert res.stop_reason == "dev CIs cannot separate the best α from its neighbours"
    assert len(jobs) == 4  # the coarse grid only


def test_search_log_rows_and_csv(tmp_path):
    res, _, _ = drive({"gold": lambda a: peaked(a, 1.0)}, UniformConfig(budget=6))
    kept = [r for r in res.rows if r["status"] == "kept"]
    assert kept[-1]["variant"] == res.best.name
    assert all(r["ci_low"] <= r["score"] <= r["ci_high"] for r in res.rows)
    ev0 = evaluation({"gold": 0.0}, "zero")
    uni, lay = search({"alpha0": ev0}, {"budget": 0, "layers": {"partitions": ["thirds"]}}, num_layers=L)
    assert uni.done and uni.best == Candidate.uniform(0) and uni.budget_cut and lay is None  # not converged
    out = tmp_path / "alpha_search.csv"
    write_log([{"stage": "uniform", **r} for r in res.rows], out)
    with open(out) as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == len(res.rows) and {"round", "candidate", "score", "ci_low", "status"} <= set(table[0])


def test_objective_errors_name_the_culprit():
    ev0 = evaluation({"gold": 0.0}, "zero")
    with pytest.raises(ValueError, match="objective kind 'best' unknown"):
        Objective(kind="best")
    with pytest.raises(ValueError, match="exactly one reward model"):
        Objective(kind="reward", rms=("a", "b"))
    sc = Scorer(Objective(), ev0)
    short = Evaluation(rewards={"gold": {"p0": 1.0}})
    with pytest.raises(ValueError, match="candidate 'alpha1'.*lacks 59 dev prompt"):
        sc.score(short, "alpha1")
    with pytest.raises(ValueError, match="no scores of reward model 'gold'"):
        sc.score(Evaluation(rewards={"rm": {}}), "alpha2")
    with pytest.raises(ValueError, match="unknown extrapolation.search key"):
        search({"alpha0": ev0}, {"budgt": 3})


def test_length_penalty_prefers_the_shorter_answer():
    ev0 = evaluation({"gold": 0.0}, "zero", n_tokens=10)
    long = evaluation({"gold": 0.2}, "long", n_tokens=30)
    sc = Scorer(Objective(length_penalty=0.5), ev0)
    assert sc.score(long)[0] == pytest.approx(Scorer(Objective(), ev0).score(long)[0] - 1.5)


# ------------------------------------------------------------------ robust selection


def hacking_curves():
    """Gold peaks at α = 1; one RM is hacked (keeps rising); two others roughly track gold."""
    return {
        "gold": lambda a: peaked(a, 1.0),
        "rm_hacked": lambda a: 0.4 * math.log1p(a),
        "rm_b": lambda a: peaked(a, 1.5),
        "rm_c": lambda a: peaked(a, 0.8),
    }


@pytest.mark.parametrize("kind", ["ensemble_mean", "ensemble_min"])
def test_ensemble_selection_lands_closer_to_the_gold_optimum_than_the_hacked_rm(kind):
    curves = hacking_curves()
    cfg = UniformConfig(budget=10)
    single, _, _ = drive(curves, cfg, objective=Objective(rms=("rm_hacked",)))
    ens, _, _ = drive(curves, cfg, objective=Objective(kind=kind, rms=("rm_hacked", "rm_b", "rm_c")))
    gold, _, _ = drive(curves, cfg, objective=Objective(rms=("gold",)))
    dist = lambda r: abs(math.log1p(r.best.alpha) - math.log1p(gold.best.alpha))  # noqa: E731
    assert single.best.alpha >= 16  # the hacked RM over-extrapolates
    assert dist(ens) < dist(single)
    assert curves["gold"](ens.best.alpha) > curves["gold"](single.best.alpha) + 0.3


# ------------------------------------------------------------------ layer-group search

L = 6


def layer_eval(c: Candidate, target: list[float], sigma: float, scale: float = 1.0) -> Evaluation:
    """Dev reward of a group-α candidate: closeness of its per-layer α (the engine's mapping) to ``target``."""
    per_layer = Scheme.from_config(scheme_spec(c, L, LayerConfig())).layer_alphas(L)
    value = scale * -sum((math.log1p(a) - math.log1p(t)) ** 2 for a, t in zip(per_layer, target))
    return evaluation({"gold": value}, c.name, sigma)


def drive_layers(target, cfg, start=1.0, sigma=0.3, scale=1.0):
    evals = {"alpha0": evaluation({"gold": -99.0}, "zero")}
    evals[Candidate.uniform(start).name] = layer_eval(Candidate.uniform(start), target, sigma, scale)
    scorer = Scorer(Objective(), evals["alpha0"])
    for _ in range(60):
        res = layer_search(evals, scorer, cfg, start, L)
        if res.done:
            return res, evals, scorer
        for c in res.pending:
            assert c.name not in evals
            evals[c.name] = layer_eval(c, target, sigma, scale)
    raise AssertionError("layer search did not finish")


def test_layer_search_finds_a_late_layer_boost():
    target = [1, 1, 1, 1, 4, 4]
    res, _, _ = drive_layers(target, LayerConfig(partitions=("thirds", "sixths"), budget=40))
    per_layer = Scheme.from_config(scheme_spec(res.best, L, LayerConfig())).layer_alphas(L)
    assert per_layer == [1, 1, 1, 1, 4, 4]
    assert res.stop_reason == "no step beats the incumbent beyond noise at the finest partition"


@pytest.mark.parametrize("scale,sigma", [(1.0, 0.3), (0.02, 1.0), (0.2, 0.5), (0.0, 0.5)])
def test_layer_search_never_keeps_a_step_that_does_not_beat_the_incumbent(scale, sigma):
    target = [0.5, 2, 1, 3, 1, 8]
    res, evals, scorer = drive_layers(target, LayerConfig(budget=60), sigma=sigma, scale=scale)
    incumbent = Candidate.uniform(1.0)
    for r in res.rows[1:]:
        if r["status"] != "kept":
            continue
        lo = scorer.diff(evals[r["variant"]], evals[incumbent.name], level=r["diff_level"])[1]
        assert lo > 0 and r["diff_ci_low"] == pytest.approx(lo)
        incumbent = next(c for c in _all_candidates(res) if c.name == r["variant"])
    assert res.best == incumbent


def test_layer_step_better_on_average_but_within_noise_is_rejected():
    """Every move scores exactly as the start except one, better by 0.05 on average amid noise 1."""
    start = Candidate.uniform(1.0)
    base = evaluation({"gold": 0.0}, "start")
    lucky = Candidate((2.0, 1.0, 1.0), "thirds")
    noisy = {"gold": {k: v + 0.05 + float(n) for (k, v), n in zip(base.rewards["gold"].items(), _noise("lucky", 1.0))}}
    evals = {"alpha0": base, start.name: base}
    scorer = Scorer(Objective(), base)
    for _ in range(20):
        res = layer_search(evals, scorer, LayerConfig(partitions=("thirds",)), 1.0, L)
        if res.done:
            break
        for c in res.pending:
            evals[c.name] = Evaluation(rewards=noisy) if c == lucky else base
    row = next(r for r in res.rows if r["variant"] == lucky.name)
    assert row["diff_vs_incumbent"] > 0 and row["diff_ci_low"] <= 0 and row["status"] == "rejected"
    assert res.best == start and all(r["status"] == "rejected" for r in res.rows[1:])


def _all_candidates(res):
    from workflow_scripts.search.layers import _canonical

    out = []
    for r in res.rows:
        if r["partition"] == "uniform":
            out.append(Candidate.uniform(r["alpha"]))
        else:
            inner = r["candidate"].split("[", 1)[1].rstrip("]")
            out.append(_canonical([float(x) for x in inner.split(", ")], r["partition"]))
    return out


def test_layer_candidates_are_engine_schemes():
    cfg = LayerConfig(split_attn_mlp=True)
    c = Candidate(tuple(float(i + 1) for i in range(2 * L)), "layers+attn_mlp")
    s = Scheme.from_config(scheme_spec(c, L, cfg))
    assert s.alpha_for("model.layers.2.self_attn.q_proj.weight", L)[0] == 5.0
    assert s.alpha_for("model.layers.2.mlp.up_proj.weight", L)[0] == 6.0
    assert s.alpha_for("model.layers.2.post_attention_layernorm.weight", L)[0] == 6.0
    assert s.alpha_for("lm_head.weight", L)[0] == 12.0 and s.alpha_for("model.embed_tokens.weight", L)[0] == 1.0
    assert Candidate((2.0, 2.0, 2.0), "thirds").name != Candidate.uniform(2.0).name
    assert round_sig(math.sqrt(2)) == 1.41
    per_layer = Candidate((1.0, 2.0), "layers")  # its vector says the depth: 2 layers
    assert scheme_spec(per_layer, None, cfg) == scheme_spec(per_layer, 2, cfg)
    with pytest.raises(ValueError, match="needs the model's num_hidden_layers"):
        partition_groups("layers", None, cfg)


def test_layer_search_without_extrapolation_stops_at_once():
    ev0 = evaluation({"gold": 0.0}, "zero")
    res = layer_search({"alpha0": ev0}, Scorer(Objective(), ev0), LayerConfig(), 0.0, L)
    assert res.done and "no extrapolation" in res.stop_reason


# ------------------------------------------------------------------ the planning step, as files


def test_plan_files_round_trip(tmp_path):
    from workflow_scripts.common import write_json
    from workflow_scripts.search.plan import write_plan

    def files(name: str, ev: Evaluation) -> dict:
        rm = tmp_path / f"{name}.gold.json"
        write_json(rm, [{"id": k, "reward": v} for k, v in ev.rewards["gold"].items()])
        gen = tmp_path / f"{name}.gen.json"
        write_json(gen, [{"id": k, "n_tokens": 5} for k in ev.rewards["gold"]])
        return {"scores": {"gold": str(rm)}, "generations": str(gen)}

    curve = lambda a: peaked(a, 2.0)  # noqa: E731
    inputs = {"alpha0": files("alpha0", evaluation({"gold": curve(0)}, "a0"))}
    spec = {"grid": [0.5, 2, 8], "budget": 6, "min_ratio": 2.5, "layers": {"partitions": ["thirds"], "budget": 6}}
    for _ in range(20):
        plan = write_plan(inputs, spec, tmp_path / "plan.json", tmp_path / "alpha_search.csv", num_layers=L)
        if plan["done"]:
            break
        for p in plan["pending"]:
            c = p["scheme"]
            per_layer = Scheme.from_config(c).layer_alphas(L)
            value = sum(curve(a) for a in per_layer) / L
            inputs[p["variant"]] = files(p["variant"], evaluation({"gold": value}, p["variant"]))
    assert plan["done"] and plan["stage"] == "layers" and plan["best_uniform_alpha"] == 2.0
    assert plan["n_evals"] <= 12 and plan["pending"] == []
    assert json.loads((tmp_path / "plan.json").read_text()) == plan
    with open(tmp_path / "alpha_search.csv") as fh:
        stages = {r["stage"] for r in csv.DictReader(fh)}
    assert stages == {"uniform", "layers"}


def test_group_candidate_names_read_back():
    for c in [
        Candidate((1.0, 1.0, 2.0), "thirds"),
        Candidate((0.5, 2.0, 2.0, 2.0, 1.41, 0.707), "sixths"),
        Candidate(tuple(float(i % 3 + 1) for i in range(2 * L)), "layers+attn_mlp"),
        Candidate((1.0, 4.0), "components"),
        Candidate.uniform(2.83),
    ]:
        assert Candidate.from_name(c.name) == c
    assert Candidate((1.0, 1.0, 2.0), "thirds").name == "scheme_search_thirds_1x2_2"
    with pytest.raises(ValueError, match="not a search candidate name"):
        Candidate.from_name("scheme_search_thirds_1_two")
    with pytest.raises(ValueError, match="exceeds 200 characters"):
        Candidate(tuple(float(i + 1) for i in range(80)), "layers").name  # noqa: B018


def test_layer_search_skips_repeated_splits_and_empty_groups():
    """On 6 layers sixths and per-layer split alike (per-layer is skipped); on 2 layers the middle
    third is empty (no moves for it)."""
    cfg = LayerConfig(partitions=("thirds", "sixths", "layers"), budget=60)
    res, _, _ = drive_layers([1, 1, 1, 1, 1, 1], cfg, start=1.0, sigma=0.01)
    assert {r["partition"] for r in res.rows} == {"uniform", "thirds", "sixths"}
    ev0 = evaluation({"gold": 0.0}, "zero")
    evals = {"alpha0": ev0, "alpha1": evaluation({"gold": 1.0}, "one")}
    res2 = layer_search(evals, Scorer(Objective(), ev0), LayerConfig(partitions=("thirds",)), 1.0, 2)
    labels = ["thirds[2, 1, 1]", "thirds[0.5, 1, 1]", "thirds[1, 1, 2]", "thirds[1, 1, 0.5]"]
    assert [c.label for c in res2.pending] == labels
