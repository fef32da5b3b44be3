"""The benchmark tables (MT-Bench, capability, judge win rates) from synthetic per-variant result
files: numbers, order, the change vs the aligned model, the published numbers beside ours, LC from
the judge's annotations or its reason, and captions that name the real columns. No model."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_metrics import _fake_df_gamed

from workflow_scripts.common import write_json
from workflow_scripts.layout import EVALUATION_FILES
from workflow_scripts.metrics import judge_lc_win_rate
from workflow_scripts.report.evaluation_pages import build_evaluation_report
from workflow_scripts.report.tidy import RESULT_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ROOT / "resources" / "expo_published_lmeval.csv"
PARAMS = {
    "experiment": "synthetic",
    "pairs": {
        "dpo": {
            "sft": "sft",
            "aligned": "aligned",
            "published": {
                "sft_model": "mistralai/Mistral-7B-Instruct-v0.2",
                "aligned_model": "snorkelai/Snorkel-Mistral-PairRM-DPO",
            },
        }
    },
    "variants": [
        ["base", "sft"],
        ["base", "aligned"],
        ["dpo", "alpha0.3"],
        ["dpo", "alpha2"],
        ["dpo", "scheme_thirds"],
    ],
}
VARIANTS = [tuple(v) for v in PARAMS["variants"]]
ARC = {"sft": 0.60, "aligned": 0.66, "alpha0.3": 0.661, "alpha2": 0.50, "scheme_thirds": 0.65}


def _grade(overall: float) -> dict:
    part = {"score": overall, "ci_low": overall - 0.5, "ci_high": overall + 0.5, "n": 80}
    return {
        "status": "ok",
        "judge": "smollm2",
        "n_judgments": 160,
        "n_unparseable": 7,
        "n_unparseable_replies": 7,
        "turn_1": {**part, "score": overall + 0.2},
        "turn_2": {**part, "score": overall - 0.2},
        "overall": {**part, "n_questions": 80},
    }


def _write_inputs(root: Path) -> dict:
    mt, cap, judge = [], [], []
    for i, (group, name) in enumerate(VARIANTS):
        p = root / "mtbench" / "grade" / group / f"{name}.json"
        write_json(p, _grade(5.0 + i) if name != "alpha2" else {"status": "skipped", "reason": "no key"})
        mt.append(str(p))
        p = root / "capability" / group / f"{name}.json"
        tasks = {
            "arc_challenge": {"acc": 0.5, "acc_stderr": 0.02, "acc_norm": ARC[name], "acc_norm_stderr": 0.01},
            "expo_world_mc": {"acc": 0.7, "acc_stderr": 0.05},
        }
        write_json(p, {"model": name, "tasks": tasks, "n_samples": {"arc_challenge": 1172, "expo_world_mc": 40}})
        cap.append(str(p))
    rng = np.random.default_rng(0)
    for name in ("alpha0.3", "alpha2"):
        ann = [
            {
                "id": f"alpaca_eval-{k:04d}",
                "instruction": f"q{k}",
                "output_1": "b" * int(rng.integers(10, 500)),
                "output_2": "m" * int(rng.integers(10, 500)),
                "preference": float(1 + rng.uniform()),
                "generator_1": "aligned",
                "generator_2": name,
            }
            for k in range(30)
        ]
        p = root / "local_judge" / "eval" / "dpo" / f"{name}.json"
        wr = {"win_rate": 55.0, "win_rate_ci_low": 45.0, "win_rate_ci_high": 65.0, "discrete_win_rate": 56.0}
        write_json(p, {"judge": "/x/smollm2", "win_rate": {**wr, "n_total": 30, "n_missing": 0}, "annotations": ann})
        judge.append(str(p))
    api = []
    for name, rec in (
        ("alpha0.3", {"status": "skipped", "reason": "OPENAI_API_KEY is not set"}),
        ("alpha2", {"status": "ok", "metrics": {"win_rate": 20.0, "length_controlled_winrate": 18.5, "n_total": 805}}),
    ):
        d = root / "alpaca_eval" / "alpaca_eval" / "dpo" / name
        write_json(d / "result.json", {**rec, "annotator": "weighted_alpaca_eval_gpt4_turbo"})
        api.append(str(d))
    return {
        "mtbench": mt,
        "capability": cap,
        "local_judge": judge,
        "alpaca_eval": api,
        "published_lmeval": str(PUBLISHED),
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluation")
    gamed = _fake_df_gamed(root / "df_gamed.csv")
    mp = pytest.MonkeyPatch()
    mp.setenv("EXPO_ALPACA_EVAL_DF_GAMED", str(gamed))
    inputs = _write_inputs(root)
    outputs = {k: str(root / "report" / v) for k, v in EVALUATION_FILES.items()}
    try:
        tables = build_evaluation_report(inputs, outputs, PARAMS)
    finally:
        mp.undo()
    return root, inputs, outputs, tables, gamed


def test_mtbench_table_per_variant(built):
    _, _, outputs, _, _ = built
    mt = pd.read_csv(outputs["mtbench_csv"])
    assert list(mt.variant_id) == [f"{g}/{n}" for g, n in VARIANTS]  # the summary's order
    assert list(mt.alpha[:3]) == [-1.0, 0.0, 0.3]
    ok = mt[mt.status == "ok"].set_index("variant_id")
    assert ok.loc["base/aligned", "overall"] == 6.0 and ok.loc["base/aligned", "turn_2"] == pytest.approx(5.8)
    assert ok.loc["base/aligned", "turn_1_ci_low"] == pytest.approx(5.5)
    assert ok.n_unparseable.eq(7).all() and ok.n_judgments.eq(160).all()
    assert mt.set_index("variant_id").loc["dpo/alpha2", "reason"] == "no key"
    md = Path(outputs["evaluation_md"]).read_text()
    assert (
        "| dpo | aligned (aligned) | 6.20 [5.50, 6.50] | 5.80 [5.50, 6.50] | 6.00 [5.50, 6.50] | 80 | 7 of 160 |" in md
    )


def test_capability_change_vs_aligned_and_published(built):
    _, _, outputs, _, _ = built
    cap = pd.read_csv(outputs["capability_csv"])
    arc = cap[cap.task == "arc_challenge"].set_index("variant_id")
    assert set(arc.metric) == {"acc_norm"}  # the leaderboard's metric, not acc
    assert arc.loc["dpo/alpha2", "delta_vs_aligned"] == pytest.approx(0.50 - 0.66)
    assert arc.loc["dpo/alpha2", "delta_stderr"] == pytest.approx(math.sqrt(2) * 0.01)
    assert math.isnan(arc.loc["base/aligned", "delta_vs_aligned"])
    pub = pd.read_csv(PUBLISHED)
    snorkel = pub[(pub.aligned_model == "snorkelai/Snorkel-Mistral-PairRM-DPO") & (pub.task == "arc_challenge")].iloc[0]
    assert arc.loc["base/aligned", "published_value"] == pytest.approx(snorkel.before)
    assert arc.loc["dpo/alpha0.3", "published_value"] == pytest.approx(snorkel.after)  # published α = 0.3
    assert math.isnan(arc.loc["dpo/alpha2", "published_value"]) and arc.published_alpha.eq(0.3).all()
    world = cap[cap.task == "expo_world_mc"]
    assert set(world.metric) == {"acc"} and world.published_value.isna().all()
    md = Path(outputs["evaluation_md"]).read_text()
    assert "dpo α=2: largest drop vs aligned -0.160 on arc_challenge; changed beyond noise on arc_challenge" in md
    assert "dpo α=0.3: largest drop vs aligned +0.000 on expo_world_mc; no task changes beyond noise" in md
    assert Path(outputs["capability_plot"]).stat().st_size > 5000


def test_judge_table_lc_from_annotations(built):
    _, inputs, outputs, _, gamed = built
    both = pd.read_csv(outputs["judge_csv"])
    api = both[both.source == "api"].set_index("variant_id")
    assert api.loc["dpo/alpha2", "lc_win_rate"] == 18.5 and api.loc["dpo/alpha2", "prompt_set"] == "alpaca_eval"
    assert api.loc["dpo/alpha0.3", "status"] == "skipped" and "OPENAI_API_KEY" in api.loc["dpo/alpha0.3", "lc_reason"]
    jt = both[both.source == "local"].set_index("variant_id")
    assert list(jt.index) == ["dpo/alpha0.3", "dpo/alpha2"] and set(jt.prompt_set) == {"eval"}
    from workflow_scripts.common import read_json

    ann = read_json(inputs["local_judge"][1])["annotations"]
    assert jt.loc["dpo/alpha2", "lc_win_rate"] == pytest.approx(
        judge_lc_win_rate(ann, df_gamed_path=gamed)["lc_win_rate"]
    )
    assert jt.loc["dpo/alpha2", "win_rate"] == 55.0 and jt.loc["dpo/alpha2", "baseline"] == "aligned"


def test_judge_lc_unavailable_says_why(built, tmp_path, monkeypatch):
    _, inputs, _, _, _ = built
    monkeypatch.delenv("EXPO_ALPACA_EVAL_DF_GAMED", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    outputs = {k: str(tmp_path / v) for k, v in EVALUATION_FILES.items()}
    build_evaluation_report({**inputs, "mtbench": [], "capability": []}, outputs, PARAMS)
    md = Path(outputs["evaluation_md"]).read_text()
    assert "unavailable (df_gamed.csv of the hub dataset tatsu-lab/alpaca_eval is not available locally" in md
    empty = pd.read_csv(outputs["capability_csv"])
    assert empty.empty and "delta_vs_aligned" in empty.columns  # an empty table keeps its header


def test_long_table_and_captions(built):
    _, _, outputs, _, _ = built
    long = pd.read_csv(outputs["evaluation_long"])
    assert list(long.columns) == RESULT_COLUMNS
    assert set(long.unit) == {"rating", "judgments", "fraction", "percent"}
    row = long[(long.metric == "mtbench_overall") & (long.variant_id == "dpo/alpha0.3")].iloc[0]
    assert row.value == 7.0 and row.reward_model == "smollm2" and row.prompt_set == "mt_bench"
    smk = (ROOT / "rules" / "report.smk").read_text()
    captions = dict(
        re.findall(r"(\w+)=report\(\s*L\.evaluation_files\[\"\w+\"\],\s*caption=\"\.\./report/([\w.]+)\"", smk)
    )
    assert set(captions) == set(EVALUATION_FILES) - {"evaluation_md"}
    for key in ("mtbench_csv", "capability_csv", "judge_csv"):
        text = (ROOT / "report" / captions[key]).read_text()
        named = set(re.findall(r"``(\w+)``", re.sub(r"\([^)]*\)", "", text.split("Columns:")[1])))
        named |= (
            {f"{c}_ci_{s}" for c in ("turn_1", "turn_2", "overall") for s in ("low", "high")}
            if key == "mtbench_csv"
            else set()
        )
        assert set(pd.read_csv(outputs[key], nrows=1).columns) <= named, key
    units = set(re.findall(r"``(\w+)``", (ROOT / "report" / captions["evaluation_long"]).read_text()))
    assert set(long.unit) <= units


def test_front_page_points_to_the_benchmark_tables():
    import yaml
    from test_report import _Record, _render_front_page

    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    assert "category <em>Benchmarks</em>" in _render_front_page(cfg, [_Record(Path("r/evaluation.html"))])
    assert "Benchmarks" not in _render_front_page(cfg, [])
