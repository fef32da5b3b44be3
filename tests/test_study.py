"""Tests for the controlled-study table (workflow_scripts/study.py): hand-made summaries, hand-computed values."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from workflow_scripts import study as st

EV = {"primary_reward": "gold", "dev_prompt_set": "dev", "baseline": "aligned", "bootstrap": 200, "seed": 0}
RMS = {"gold": {"label": "gold reward", "type": "gold"}}
META = {
    "dpo_f0.1": {"method": "dpo", "fraction": 0.1, "aligned": "dpo_0.1"},
    "dpo_f1.0": {"method": "dpo", "fraction": 1.0, "aligned": "dpo_1.0"},
}


def _row(pair, ps, kind, alpha, m, lo=None, hi=None):
    return {
        "pair": pair,
        "prompt_set": ps,
        "kind": kind,
        "alpha": alpha,
        "gold_mean": m,
        "gold_ci_low": m - 0.1 if lo is None else lo,
        "gold_ci_high": m + 0.1 if hi is None else hi,
    }


@pytest.fixture
def summary() -> pd.DataFrame:
    rows = [
        # dev: 10 % model peaks at α = 2; full-data model ties at α = 0 and α = 1 → α = 0 (smaller |α|)
        _row("dpo_f0.1", "dev", "aligned", 0.0, 0.5),
        _row("dpo_f0.1", "dev", "alpha", 1.0, 0.6),
        _row("dpo_f0.1", "dev", "alpha", 2.0, 0.7),
        _row("dpo_f0.1", "dev", "alpha", 4.0, 0.65),
        _row("dpo_f1.0", "dev", "aligned", 0.0, 0.8),
        _row("dpo_f1.0", "dev", "alpha", 1.0, 0.8),
        _row("dpo_f1.0", "dev", "alpha", 2.0, 0.7),
        # eval
        _row("dpo_f0.1", "eval", "sft", -1.0, 0.2),
        _row("dpo_f0.1", "eval", "aligned", 0.0, 0.4, 0.3, 0.5),
        _row("dpo_f0.1", "eval", "alpha", 1.0, 0.5),
        _row("dpo_f0.1", "eval", "alpha", 2.0, 0.75, 0.65, 0.85),
        _row("dpo_f0.1", "eval", "alpha", 4.0, 0.3),
        _row("dpo_f1.0", "eval", "sft", -1.0, 0.2),
        _row("dpo_f1.0", "eval", "aligned", 0.0, 0.7, 0.6, 0.8),
        _row("dpo_f1.0", "eval", "alpha", 1.0, 0.9),
        _row("dpo_f1.0", "eval", "alpha", 2.0, 0.6),
    ]
    return pd.DataFrame(rows)


def test_table_equals_hand_computed_values(summary):
    df = st.build_study(summary, META, EV, ["gold"])
    assert list(df.pair) == ["dpo_f0.1", "dpo_f1.0"] and set(df.prompt_set) == {"eval"}
    small, full = df.iloc[0], df.iloc[1]
    assert small.best_alpha == 2.0 and small.dev_gold_at_best_alpha == pytest.approx(0.7)
    assert (small.gold_aligned, small.gold_aligned_ci_low, small.gold_aligned_ci_high) == pytest.approx((0.4, 0.3, 0.5))
    assert (small.gold_expo, small.gold_expo_ci_low, small.gold_expo_ci_high) == pytest.approx((0.75, 0.65, 0.85))
    assert small.gold_gain == pytest.approx(0.35)
    assert small.full_data_pair == "dpo_f1.0" and small.gold_full_aligned == pytest.approx(0.7)
    assert small.gold_expo_minus_full == pytest.approx(0.05)
    assert math.isnan(small.gold_gain_ci_low)  # no per-prompt scores → point estimates only
    # the tie on dev goes to α = 0: the full-data model is reported as is (the eval-best α=1 is not used)
    assert full.best_alpha == 0.0
    assert full.gold_expo == pytest.approx(0.7) and full.gold_gain == pytest.approx(0.0)
    assert full.gold_expo_minus_full == pytest.approx(0.0)


def _scores(values, ids=None):
    ids = ids or [f"p{i}" for i in range(len(values))]
    return [{"id": i, "reward": v} for i, v in zip(ids, values)]


def test_paired_cis_from_per_prompt_scores(summary):
    aligned = [0.1, 0.9, 0.4, 0.2]
    expo = [a + 0.35 for a in aligned]  # every prompt gains exactly 0.35
    full = [a + 0.3 for a in aligned]  # so ExPO − full is exactly +0.05 on every prompt
    ids = [f"p{i}" for i in range(4)]
    scores = {
        ("eval", "gold", "base", "dpo_0.1"): _scores(aligned),
        # listed in another order: pairs must be matched by prompt id, never by position
        ("eval", "gold", "dpo_f0.1", "alpha2"): _scores(expo[::-1], ids[::-1]),
        ("eval", "gold", "base", "dpo_1.0"): _scores(full),
    }
    df = st.build_study(summary, META, EV, ["gold"], scores)
    small = df.iloc[0]
    assert (small.gold_gain, small.gold_gain_ci_low, small.gold_gain_ci_high) == pytest.approx((0.35,) * 3)
    assert (
        small.gold_expo_minus_full,
        small.gold_expo_minus_full_ci_low,
        small.gold_expo_minus_full_ci_high,
    ) == pytest.approx((0.05,) * 3)


def test_paired_diff_ci_rejects_mismatched_prompts():
    with pytest.raises(ValueError, match="ids of 'b' do not match"):
        st.paired_diff_ci(_scores([1.0, 2.0]), _scores([1.0, 2.0], ["p0", "other"]))


def test_two_methods_each_get_their_own_full_data_reference(summary):
    simpo = summary.assign(pair=summary.pair.str.replace("dpo", "simpo"), gold_mean=summary.gold_mean + 0.01)
    meta = {
        **META,
        **{
            k.replace("dpo", "simpo"): {**v, "method": "simpo", "aligned": v["aligned"].replace("dpo", "simpo")}
            for k, v in META.items()
        },
    }
    df = st.build_study(pd.concat([summary, simpo]), meta, EV, ["gold"])
    assert list(zip(df.method, df.fraction)) == [("dpo", 0.1), ("dpo", 1.0), ("simpo", 0.1), ("simpo", 1.0)]
    assert list(df.full_data_pair) == ["dpo_f1.0", "dpo_f1.0", "simpo_f1.0", "simpo_f1.0"]
    assert df.iloc[2].gold_full_aligned == pytest.approx(0.71)


def test_a_single_fraction_has_no_full_data_reference(summary):
    df = st.build_study(summary, {"dpo_f0.1": META["dpo_f0.1"]}, EV, ["gold"])
    assert len(df) == 1 and df.full_data_pair.iloc[0] == "" and math.isnan(df.gold_full_aligned.iloc[0])
    assert math.isnan(df.gold_expo_minus_full.iloc[0]) and df.gold_gain.iloc[0] == pytest.approx(0.35)
    assert "not testable" in st.pattern_verdict(df, "gold")[0]


def test_verdict_states_the_pattern(summary):
    df = st.build_study(summary, META, EV, ["gold"])
    lines = st.pattern_verdict(df, "gold")
    assert "0.1 → α 2, 1 → α 0" in lines[0] and "yes" in lines[0]
    assert "0.1: +0.050 (no CI)" in lines[1]
    flipped = df.assign(best_alpha=[0.0, 2.0])
    assert "no: the best α is not monotone" in st.pattern_verdict(flipped, "gold")[0]


def test_user_errors_name_the_culprit(summary):
    with pytest.raises(ValueError, match=r"pairs \['ghost'\] have metadata"):
        st.build_study(summary, {**META, "ghost": {"method": "dpo", "fraction": 0.2, "aligned": "x"}}, EV, ["gold"])
    with pytest.raises(ValueError, match="primary reward 'rm'"):
        st.build_study(summary, META, {**EV, "primary_reward": "rm"}, ["gold", "rm"])
    with pytest.raises(ValueError, match=r"'dpo_f0.1' metadata lacks \['aligned'\]"):
        st.build_study(summary, {"dpo_f0.1": {"method": "dpo", "fraction": 0.1}}, EV, ["gold"])


def test_no_metadata_writes_an_empty_but_valid_table(summary, tmp_path):
    df = st.build_study(summary, {}, EV, ["gold"])
    assert df.empty and "best_alpha" in df.columns
    st.write_study(df, EV, RMS, tmp_path / "study.csv", tmp_path / "study.md")
    back = pd.read_csv(tmp_path / "study.csv")
    assert back.empty and "best_alpha" in back.columns
    assert "no study table" in (tmp_path / "study.md").read_text()


def test_nothing_scored_gives_an_empty_table_not_an_error(summary):
    unscored = summary[[c for c in summary.columns if not c.startswith("gold")]]
    df = st.build_study(unscored, META, EV, ["gold"])
    assert df.empty and "best_alpha" in df.columns


def test_markdown_and_cli(summary, tmp_path):
    summary.to_csv(tmp_path / "summary.csv", index=False)
    (tmp_path / "params.json").write_text(json.dumps({"evaluation": EV, "reward_models": RMS, "pair_meta": META}))
    st.main(
        [
            str(tmp_path / "summary.csv"),
            "--params",
            str(tmp_path / "params.json"),
            "--out-csv",
            str(tmp_path / "s.csv"),
            "--out-md",
            str(tmp_path / "s.md"),
        ]
    )
    md = (tmp_path / "s.md").read_text()
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in md.splitlines() if line.startswith("| dpo")]
    assert rows[0][:7] == [
        "dpo",
        "0.1",
        "0.400 [0.300, 0.500]",
        "2",
        "0.750 [0.650, 0.850]",
        "+0.350",
        "0.700 [0.600, 0.800]",
    ]
    assert rows[0][7] == "+0.050" and rows[1][3] == "0"
    assert pd.read_csv(tmp_path / "s.csv").best_alpha.tolist() == [2.0, 0.0]


# ------------------------------------------------------------------ through the report stage


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return str(path)


def _report_inputs(root, rewards):
    """Generation and gold-score files laid out as the rules write them; rewards[(ps, group, variant)]."""
    gens, scores = [], []
    for (ps, group, variant), vals in rewards.items():
        ids = [f"{ps}{i}" for i in range(len(vals))]
        recs = [
            {
                "id": i,
                "instruction": "list three colours",
                "output": "red green blue",
                "generator": variant,
                "dataset": "world",
                "n_tokens": 3,
                "finish_reason": "stop",
            }
            for i in ids
        ]
        gens.append(_write(root / "generations" / ps / group / f"{variant}.json", recs))
        scores.append(_write(root / "scores" / ps / "gold" / group / f"{variant}.json", _scores(vals, ids)))
    return {
        "generations": gens,
        "scores": scores,
        "manifests": [],
        "training": [],
        "published": str(root / "published.csv"),
    }


@pytest.mark.parametrize("with_meta", [True, False])
def test_build_report_writes_the_study_table(tmp_path, with_meta):
    from workflow_scripts.report import build_report

    pairs = {"dpo_f0.1": {"sft": "sft", "aligned": "dpo_0.1"}, "dpo_f1.0": {"sft": "sft", "aligned": "dpo_1.0"}}
    r = {
        ("eval", "base", "sft"): [0.0, 0.1, 0.2],
        ("eval", "base", "dpo_0.1"): [0.2, 0.3, 0.4],
        ("eval", "dpo_f0.1", "alpha2"): [0.6, 0.7, 0.8],
        ("eval", "base", "dpo_1.0"): [0.5, 0.6, 0.7],
        ("eval", "dpo_f1.0", "alpha2"): [0.4, 0.5, 0.6],
        ("dev", "base", "dpo_0.1"): [0.1, 0.1],
        ("dev", "dpo_f0.1", "alpha2"): [0.5, 0.5],
        ("dev", "base", "dpo_1.0"): [0.6, 0.6],
        ("dev", "dpo_f1.0", "alpha2"): [0.3, 0.3],
    }
    inputs = _report_inputs(tmp_path, r)
    pd.DataFrame(columns=["sft_model", "aligned_model", "alpha"]).to_csv(inputs["published"], index=False)
    variants = [
        ["base", "sft"],
        ["base", "dpo_0.1"],
        ["base", "dpo_1.0"],
        ["dpo_f0.1", "alpha2"],
        ["dpo_f1.0", "alpha2"],
    ]
    params = {
        "evaluation": EV,
        "variants": variants,
        "pairs": pairs,
        "prompt_sets": ["eval", "dev"],
        "variants_by_prompt_set": {"eval": variants, "dev": [v for v in variants if v[1] != "sft"]},
        "prompt_set_sources": {"eval": "world", "dev": "world"},
        "reward_models": RMS,
        "max_new_tokens": 16,
    }
    if with_meta:
        params["pair_meta"] = META
    names = [
        "summary_csv",
        "summary_md",
        "reward_plot",
        "diagnostics_plot",
        "delta_csv",
        "delta_plot",
        "training_plot",
        "published_csv",
        "study_csv",
        "study_md",
    ]
    outputs = {
        n: str(tmp_path / "report" / n.replace("_csv", ".csv").replace("_md", ".md").replace("_plot", ".png"))
        for n in names
    }
    build_report(inputs, outputs, params)
    for n in names:
        assert (tmp_path / "report").joinpath(outputs[n].rsplit("/", 1)[1]).exists(), n
    study = pd.read_csv(outputs["study_csv"])
    if not with_meta:
        assert study.empty
        return
    small = study[study.pair == "dpo_f0.1"].iloc[0]
    assert small.best_alpha == 2.0 and small.gold_expo == pytest.approx(0.7)
    # per-prompt differences are constant, so the paired CIs collapse onto the point estimates
    assert (small.gold_gain, small.gold_gain_ci_low, small.gold_gain_ci_high) == pytest.approx((0.4,) * 3)
    assert (small.gold_expo_minus_full_ci_low, small.gold_expo_minus_full_ci_high) == pytest.approx((0.1, 0.1))
    assert study[study.pair == "dpo_f1.0"].best_alpha.iloc[0] == 0.0


def test_summary_and_study_agree_when_the_aligned_model_wins_on_dev():
    """One rule for "α chosen on dev": the aligned model is a candidate in every table."""
    from workflow_scripts.report import mark_chosen_alpha
    from workflow_scripts.study import choose_alpha_on_dev

    rows = [
        {"pair": "p", "prompt_set": ps, "kind": kind, "alpha": a, "gold_mean": m}
        for ps in ("dev", "eval")
        for kind, a, m in [("sft", -1.0, 0.1), ("aligned", 0.0, 0.9), ("alpha", 1.0, 0.5), ("alpha", 2.0, 0.4)]
    ]
    df = mark_chosen_alpha(pd.DataFrame(rows), {"dev_prompt_set": "dev", "primary_reward": "gold"})
    chosen = df[df.chosen_on_dev]
    assert set(chosen.kind) == {"aligned"} and set(chosen.prompt_set) == {"dev", "eval"}
    assert choose_alpha_on_dev(df[df.prompt_set == "dev"], "gold_mean") == (0.0, 0.9)
