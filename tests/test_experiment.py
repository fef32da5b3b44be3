"""The experiment model in process (no Snakemake subprocess): variants, targets and every
cross-reference check, each asserting the one-line message that names the culprit."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from workflow_scripts.config_schema import validate_config
from workflow_scripts.experiment import ConfigError, Experiment
from workflow_scripts.layout import Layout, Variant

ROOT = Path(__file__).resolve().parents[1]


def small() -> dict:
    """The default experiment (the demo world): every key the checks look at is in it."""
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def build(cfg: dict) -> Experiment:
    return Experiment(validate_config(copy.deepcopy(cfg)))


# ------------------------------------------------------------------------------ planning


def test_variants_and_what_answers_the_dev_set():
    cfg = small()
    exp = build(cfg)
    alphas = [f"alpha{a:g}" for a in cfg["extrapolation"]["alphas"]]
    schemes = [f"scheme_{s}" for s in cfg["extrapolation"]["schemes"]]
    assert [v.as_tuple() for v in exp.variants()] == [
        ("base", "sft"),
        ("base", "dpo_0.05"),
        *[("dpo", n) for n in alphas + schemes],
    ]
    # the dev set answers only what choosing α needs: the aligned model and the uniform α
    assert [v.as_tuple() for v in exp.variants_for("dev")] == [("base", "dpo_0.05"), *[("dpo", n) for n in alphas]]
    assert len(exp.variants_for("eval")) == 2 + len(alphas) + len(schemes)
    n = len(exp.variants_for("eval")) + len(exp.variants_for("dev"))
    assert len(list(exp.scored())) == 2 * n  # learned RM + gold on world sets
    assert list(exp.judged()) == []


def test_prompt_set_narrows_its_variants_and_reference_joins():
    cfg = small()
    cfg["prompt_sets"]["eval"].update(alphas=[cfg["extrapolation"]["alphas"][0]], schemes=[], reference={"path": "r"})
    exp = build(cfg)
    kinds = [v.kind for v in exp.variants_for("eval")]
    assert kinds == ["base", "base", "alpha", "reference"]
    assert "alphas" not in exp.prompt_spec("eval") and "schemes" not in exp.prompt_spec("eval")
    assert exp.reference_spec("eval") == {
        "source": "file",
        "path": "r",
        "limit": cfg["prompt_sets"]["eval"].get("limit"),
    }


def test_gold_reward_scores_world_prompt_sets_only():
    cfg = small()
    cfg["prompt_sets"]["extra"] = {"source": "file", "path": "p.jsonl"}
    exp = build(cfg)
    assert exp.scorable("eval", "gold") and not exp.scorable("extra", "gold") and exp.scorable("extra", "rm")


def test_pair_meta_and_report_params():
    exp = build(small())
    assert exp.pair_meta() == {"dpo": {"method": "dpo", "fraction": 0.05, "aligned": "dpo_0.05"}}
    p = exp.report_params()
    assert p["evaluation"]["primary_reward"] == "gold"
    assert p["variants"][0] == ("base", "sft")
    assert set(p["variants_by_prompt_set"]) == {"eval", "dev"}


def test_alphas_deduplicated_across_spellings():
    cfg = small()
    cfg["extrapolation"]["alphas"] = [2, 2.0, 0.5]
    assert build(cfg).pair_alphas("dpo") == ["2", "0.5"]


def test_decoding_default_is_the_schemas():
    cfg = small()
    del cfg["decoding"]
    assert build(cfg).decoding() == {"preset": "demo"}


def test_variant_grammar_round_trips_through_paths():
    lay = Layout("demo")
    pair = {"sft": "sft", "aligned": "dpo_0.05"}
    for v, role, alpha, label in [
        (Variant.base("sft"), "sft", -1.0, "sft (sft)"),
        (Variant.base("dpo_0.05"), "aligned", 0.0, "aligned (dpo_0.05)"),
        (Variant.alpha_of("dpo", 2.0), "alpha", 2.0, "α=2"),
        (Variant.scheme_of("dpo", "thirds"), "scheme", None, "thirds"),
        (Variant.reference(), "reference", None, "reference outputs"),
    ]:
        path = lay.score("eval", "rm", v.group, v.name)
        assert Variant.parse(path) == v == Variant.parse(lay.generation("eval", v.group, v.name))
        assert v.role(pair) == role and v.label(pair) == label
        assert v.alpha(pair) == alpha if alpha is not None else v.alpha(pair) != v.alpha(pair)
    with pytest.raises(ValueError, match="not a variant name"):
        _ = Variant("dpo", "weird").kind


# ------------------------------------------------------------------------------ cross-reference errors


def _local_model(tmp_path: Path, layers: int) -> str:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps({"num_hidden_layers": layers}))
    return str(tmp_path / "m")


CASES = {
    "unknown base model": (lambda c: c["models"]["dpo_0.05"].update(base="nope"), "unknown model 'nope'"),
    "unknown dataset": (lambda c: c["models"]["dpo_0.05"].update(data="nope"), "unknown dataset 'nope'"),
    "unknown architecture": (lambda c: c["models"]["sft"].update(init="nope"), "unknown world architecture 'nope'"),
    "base cycle": (
        lambda c: c["models"].update(
            a={"source": "train", "method": "dpo", "base": "b", "data": "world_prefs"},
            b={"source": "train", "method": "dpo", "base": "a", "data": "world_prefs"},
        ),
        "training bases form a cycle",
    ),
    "pair sft undefined": (
        lambda c: c["pairs"]["dpo"].update(sft="nope"),
        "pair 'dpo': sft model 'nope' is not defined",
    ),
    "pair aligned undefined": (
        lambda c: c["pairs"]["dpo"].update(aligned="nope"),
        "pair 'dpo': aligned model 'nope' is not defined",
    ),
    "pair unknown scheme": (
        lambda c: c["pairs"]["dpo"].update(schemes=["nope"]),
        "pair 'dpo' names unknown scheme 'nope'",
    ),
    "scheme outside depth": (
        lambda c: c["extrapolation"]["schemes"].update(
            deep={"groups": [{"layers": [4, 12], "by": "index", "alpha": 1}], "default": 0}
        ),
        r"extrapolation.schemes.deep \(pair 'dpo', sft model 'sft'\): .*outside a model with 6 layers",
    ),
    "reward model undefined": (
        lambda c: c["reward_models"]["rm"].update(model="nope"),
        "reward model 'rm': model 'nope'",
    ),
    "prompt-set α not swept": (
        lambda c: c["prompt_sets"]["eval"].update(alphas=[3]),
        "prompt set 'eval': α 3 is not in any pair's α list",
    ),
    "prompt-set unknown scheme": (
        lambda c: c["prompt_sets"]["eval"].update(schemes=["nope"]),
        "prompt set 'eval': unknown scheme 'nope'",
    ),
    "ultrafeedback reference": (
        lambda c: c["prompt_sets"].update(uf={"source": "ultrafeedback", "reference": {}}),
        "no reference outputs are known for ultrafeedback",
    ),
    "file reference without path": (
        lambda c: c["prompt_sets"]["eval"].update(reference={}),
        r"reference outputs for a world prompt set need `reference: \{path",
    ),
    "reference baseline without references": (
        lambda c: c["evaluation"].update(baseline="reference"),
        "evaluation.baseline is 'reference' but no prompt set has `reference:`",
    ),
    "unknown primary reward": (
        lambda c: c["evaluation"].update(primary_reward="nope"),
        "evaluation.primary_reward 'nope' is not a reward model",
    ),
    "unknown dev set": (
        lambda c: c["evaluation"].update(dev_prompt_set="nope"),
        "evaluation.dev_prompt_set 'nope' is not a prompt set",
    ),
    "world used without world": (lambda c: c.pop("world"), "uses the demo world but the config has no `world:`"),
    "training hparam of another method": (
        lambda c: c["training"]["sft"].update(beta=0.1),
        r"training.sft: \['beta'\] are not sft hyperparameters",
    ),
    "model hparam of another method": (
        lambda c: c["models"]["sft"].update(hparams={"gamma_beta_ratio": 0.5}),
        r"models.sft.hparams: \['gamma_beta_ratio'\] are not sft hyperparameters",
    ),
    "decoding value": (lambda c: c["decoding"].update(top_k=-1), r"decoding top_k=-1: must be a non-negative integer"),
    "decoding sampling at temperature 0": (
        lambda c: c["decoding"].update(temperature=0),
        r"decoding temperature=0(\.0)?: must be > 0 when sampling",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_cross_reference_errors_name_the_culprit(case):
    mutate, message = CASES[case]
    cfg = small()
    mutate(cfg)
    with pytest.raises(ConfigError, match=message) as info:
        Experiment(copy.deepcopy(cfg))  # checks without the schema: they must stand on their own
    assert "\n" not in str(info.value)


def test_local_model_depth_read_from_config_json(tmp_path):
    cfg = small()
    cfg["models"]["sft"] = {"source": "local", "path": _local_model(tmp_path, 4)}
    cfg["models"]["dpo_0.05"]["base"] = "sft"
    cfg["extrapolation"]["schemes"]["deep"] = {"groups": [{"layers": [2, 6], "by": "index", "alpha": 1}], "default": 0}
    with pytest.raises(ConfigError, match="outside a model with 4 layers"):
        Experiment(copy.deepcopy(cfg))
    assert Experiment(copy.deepcopy(cfg), check=False).model_num_layers("dpo_0.05") == 4


# ------------------------------------------------------------------------------ the closed schema

SCHEMA_CASES = {
    "model key typo": (
        lambda c: c["models"]["dpo_0.05"].update(fracton=0.05),
        r"^models\.dpo_0\.05: unknown key 'fracton' \(did you mean 'fraction'\?\)$",
    ),
    "hparams typo": (lambda c: c["models"]["dpo_0.05"].update(hparms={}), r"did you mean 'hparams'"),
    "hparam typo": (lambda c: c["training"]["dpo"].update(bta=0.1), r"^training\.dpo: unknown key 'bta'.*'beta'"),
    "key of another source": (
        lambda c: c["models"].update(loc={"source": "local", "path": "x", "repo": "a/b"}),
        r"^models\.loc: key 'repo' does not apply with these settings",
    ),
    "prompt-set typo": (
        lambda c: c["prompt_sets"]["eval"].update(limt=5),
        r"^prompt_sets\.eval: unknown key 'limt' \(did you mean 'limit'\?\)$",
    ),
    "dataset typo": (lambda c: c["datasets"]["world_prefs"].update(fiel="sft"), r"did you mean 'file'"),
    "reward-model typo": (
        lambda c: c["reward_models"]["rm"].update(trust_remote_cod=True),
        r"did you mean 'trust_remote_code'",
    ),
    "top-level typo": (
        lambda c: c.update(decodng={}),
        r"^config: unknown key 'decodng' \(did you mean 'decoding'\?\)$",
    ),
    "decoding typo": (lambda c: c["decoding"].update({"top-p": 0.9}), r"^decoding: unknown key 'top-p'.*'top_p'"),
    "decoding top_k -1": (lambda c: c["decoding"].update(top_k=-1), r"^decoding\.top_k: -1 is less than the minimum"),
    "decoding without preset": (lambda c: c.update(decoding={"temperature": 0.5}), r"'preset' is a required property"),
    "α NaN": (
        lambda c: c["extrapolation"].update(alphas=[float("nan")]),
        r"^extrapolation\.alphas\.0: NaN is not a number",
    ),
    "α infinite": (lambda c: c["extrapolation"].update(alphas=[float("inf")]), r"^extrapolation\.alphas\.0: inf"),
    "α huge": (lambda c: c["extrapolation"].update(alphas=[1e30]), r"greater than the maximum of 100"),
    "prompt-set α NaN": (
        lambda c: c["prompt_sets"]["eval"].update(alphas=[float("nan")]),
        r"prompt_sets\.eval\.alphas",
    ),
    "pair named reference": (
        lambda c: c["pairs"].update(reference={"sft": "sft", "aligned": "dpo_0.05"}),
        r"^pairs: 'reference' is not an allowed name",
    ),
    "pair named base": (
        lambda c: c["pairs"].update(base={"sft": "sft", "aligned": "dpo_0.05"}),
        r"'base' is not an allowed",
    ),
}


@pytest.mark.parametrize("case", sorted(SCHEMA_CASES))
def test_schema_errors_are_one_line_with_the_closest_key(case):
    mutate, message = SCHEMA_CASES[case]
    cfg = small()
    mutate(cfg)
    with pytest.raises(ConfigError, match=message) as info:
        validate_config(cfg)
    assert "\n" not in str(info.value)


def test_every_shipped_config_passes_the_closed_schema():
    for path in [ROOT / "config.yaml", *sorted((ROOT / "experiments").glob("*.yaml"))]:
        build(yaml.safe_load(path.read_text()))
