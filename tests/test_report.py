"""The report stage on a small synthetic experiment: the summary page, the answer browser, the tidy
tables, the front page and the captions say what the outputs hold."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from workflow_scripts.layout import REPORT_FILES

ROOT = Path(__file__).resolve().parents[1]
N_EVAL, N_DEV = 12, 6
VARIANTS = {"base/sft": 0, "base/al": 1, "p/alpha1": 2, "p/alpha2": 3, "p/scheme_thirds": 2}
"""variant id → answer quality (0: restates only, 1: restates then answers, 2–3: answers well)."""


def _answer(quality: int, i: int, instruction: str) -> dict:
    if quality == 0:
        return {"output": instruction, "n_tokens": 4, "finish_reason": "stop"}
    if quality == 1:
        return {"output": f"{instruction} red blue", "n_tokens": 6, "finish_reason": "stop"}
    if i % 5 == 0:  # an empty answer and one cut at the token limit, to be flagged
        return {"output": "", "n_tokens": 0, "finish_reason": "stop"}
    if i % 5 == 1:
        return {"output": "red " * 16, "n_tokens": 16, "finish_reason": "length"}
    return {"output": "red </script><b>blue</b>" if i == 2 else "red blue", "n_tokens": 2, "finish_reason": "stop"}


def params() -> dict:
    dev_variants = [["base", "al"], ["p", "alpha1"], ["p", "alpha2"]]
    return {
        "evaluation": {"primary_reward": "rm", "baseline": "aligned", "dev_prompt_set": "dev", "bootstrap": 200},
        "variants": [["p", "alpha1"], ["p", "alpha2"], ["p", "scheme_thirds"]],
        "variants_by_prompt_set": {"eval": [v.split("/") for v in VARIANTS], "dev": dev_variants},
        "pairs": {"p": {"sft": "sft", "aligned": "al"}},
        "prompt_sets": ["eval", "dev"],
        "prompt_set_sources": {"eval": "file", "dev": "file"},
        "reward_models": {"rm": {"label": "a test reward model", "type": "model"}},
        "max_new_tokens": 16,
        "pair_meta": {},
    }


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    from workflow_scripts.report import build_report

    res = tmp_path_factory.mktemp("r") / "results" / "tiny"
    inputs: dict = {"generations": [], "scores": [], "published": str(ROOT / "resources/expo_published_results.csv")}
    p = params()
    for ps, n in (("eval", N_EVAL), ("dev", N_DEV)):
        for vid in [f"{g}/{v}" for g, v in p["variants_by_prompt_set"][ps]] if ps == "dev" else VARIANTS:
            gen, sc = [], []
            for i in range(n):
                instr = f"Name two colours, case {i}."
                rec = {"id": f"{ps}-{i}", "instruction": instr, "dataset": "t", **_answer(VARIANTS[vid], i, instr)}
                gen.append({**rec, "generator": vid})
                sc.append({"id": rec["id"], "reward": float(VARIANTS[vid] + (i % 3) * 0.1)})
            g = res / "generations" / ps / f"{vid}.json"
            s = res / "scores" / ps / "rm" / f"{vid}.json"
            for path, data in ((g, gen), (s, sc)):
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(data))
            inputs["generations"].append(str(g))
            inputs["scores"].append(str(s))
    out = res / "report"
    build_report(inputs, {k: str(out / v) for k, v in REPORT_FILES.items()}, p)
    return out


def test_every_report_file_is_written(report):
    for name in REPORT_FILES.values():
        assert (report / name).stat().st_size > 0, name


def test_summary_page_holds_the_summary_table(report):
    page = (report / "summary.html").read_text()
    df = pd.read_csv(report / "summary.csv")
    ev = df[df.prompt_set == "eval"]
    assert page.count("<table>") == 2  # eval and dev
    for label, mean in zip(ev.variant, ev.rm_mean):
        assert f"<td>{label}" in page
        assert f"{mean:.3f}<br>" in page
    chosen = df[df.chosen_on_dev & (df.prompt_set == "dev")]
    assert list(chosen.variant) == ["α=2"]
    assert '<tr class="alpha chosen" data-variant="p/alpha2">' in page
    assert "α = 2 has the highest mean rm reward on the dev prompts" in page
    assert "http" not in page.replace("https://", "")  # no external resources


def _browser_data(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S)
    return json.loads(m.group(1))


def test_answer_browser_holds_every_answer_with_rewards_and_flags(report):
    page = (report / "answers.html").read_text()
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page)  # self-contained: no CDN
    assert "</script><b>" not in page  # a model's markup stays data
    data = _browser_data(page)
    assert [v["id"] for v in data["variants"]] == ["base/sft", "base/al", "p/alpha1", "p/alpha2", "p/scheme_thirds"]
    assert len(data["prompts"]) == N_EVAL + N_DEV
    assert data["chosen"] == {"p": "p/alpha2"}
    for p in data["prompts"]:
        want = set(VARIANTS) if p["ps"] == "eval" else {"base/al", "p/alpha1", "p/alpha2"}
        assert set(p["answers"]) == want
        i = int(p["id"].split("-")[1])
        for vid, a in p["answers"].items():
            assert a["r"]["rm"] == pytest.approx(VARIANTS[vid] + (i % 3) * 0.1)
            assert a["o"] == _answer(VARIANTS[vid], i, p["instruction"])["output"]
    sft = data["prompts"][0]["answers"]["base/sft"]
    assert {"restating", "restating_only"} <= set(sft["x"])
    alpha2 = {p["id"]: p["answers"]["p/alpha2"]["x"] for p in data["prompts"] if p["ps"] == "eval"}
    assert alpha2["eval-0"] == ["empty"] and alpha2["eval-1"] == ["truncated", "repetitive"]
    assert alpha2["eval-2"] == []


def test_results_long_table_columns_units_and_values(report):
    from workflow_scripts.report import RESULT_COLUMNS

    long = pd.read_csv(report / "results_long.csv", keep_default_na=False, na_values=[""])
    wide = pd.read_csv(report / "summary.csv")
    assert list(long.columns) == RESULT_COLUMNS
    units = long.groupby("metric").unit.unique().map(list).to_dict()
    assert units["mean_reward"] == ["score"] and units["win_rate"] == ["percent"]
    assert units["mean_tokens"] == ["tokens"] and units["restating_rate"] == ["fraction"]
    assert long[long.unit == "fraction"].value.between(0, 1).all()
    assert long[long.unit == "percent"].value.between(0, 100).all()
    for _, w in wide.iterrows():
        mine = long[(long.prompt_set == w.prompt_set) & (long.variant_id == w.variant_id)].set_index("metric")
        assert mine.loc["mean_reward", "value"] == pytest.approx(w.rm_mean)
        assert mine.loc["mean_reward", "ci_low"] == pytest.approx(w.rm_ci_low)
        assert mine.loc["win_rate", "value"] == pytest.approx(w.rm_win_rate)
        assert mine.loc["win_rate", "baseline"] == "aligned"
        assert mine.loc["truncation_rate", "value"] == pytest.approx(w.truncation_rate)
        assert bool(mine.chosen_on_dev.iloc[0]) == bool(w.chosen_on_dev)
    assert set(long.kind) == {"sft", "aligned", "alpha", "scheme"}
    assert long[long.kind == "scheme"].scheme.unique().tolist() == ["thirds"]


def test_per_prompt_table_restates_the_summary_rates(report):
    from workflow_scripts.report import PER_PROMPT_COLUMNS

    pp = pd.read_csv(report / "per_prompt.csv")
    wide = pd.read_csv(report / "summary.csv")
    assert list(pp.columns) == PER_PROMPT_COLUMNS
    n_answers = N_EVAL * len(VARIANTS) + N_DEV * 3
    assert (pp.metric == "reward").sum() == n_answers
    assert dict(pp.groupby("metric").unit.first()) == {
        "reward": "score",
        "n_tokens": "tokens",
        "n_words": "words",
        "truncated": "flag",
        "empty": "flag",
        "restating": "flag",
        "restating_only": "flag",
        "repetitive": "flag",
    }
    assert set(pp[pp.unit == "flag"].value) <= {0.0, 1.0}
    rates = pp[pp.unit == "flag"].groupby(["prompt_set", "variant_id", "metric"]).value.mean()
    for _, w in wide.iterrows():
        for flag, col in (("restating", "restating_rate"), ("empty", "empty_rate"), ("truncated", "truncation_rate")):
            assert rates[(w.prompt_set, w.variant_id, flag)] == pytest.approx(w[col]), (w.variant_id, flag)


# ------------------------------------------------------------------ the report's front page and captions


class _Record:
    """What Snakemake's report hands the description template as ``files``."""

    def __init__(self, path: Path):
        self.path, self.target = path, path.name


def _render_front_page(config: dict, files: list) -> str:
    """report/workflow.rst rendered the way ``snakemake --report`` renders it."""
    from docutils.core import publish_parts
    from jinja2 import Environment

    class Smk:
        pass

    Smk.config = config
    text = (ROOT / "report" / "workflow.rst").read_text()
    rst = Environment(trim_blocks=True, lstrip_blocks=True).from_string(text).render(snakemake=Smk, files=files)
    rst += "\n.. _summary.html: javascript:void(0)\n.. _answers.html: javascript:void(0)\n"
    return publish_parts(rst, writer="html", settings_overrides={"halt_level": 2})["html_body"]


def test_front_page_says_what_was_compared_and_which_alpha_was_chosen(report):
    import yaml

    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    body = _render_front_page(cfg, [_Record(report / "summary.html")])
    assert "dpo_0.05" in body and "5 % of the preference pairs" in body
    assert "α = 1, 2, 4, 8" in body and "thirds" in body
    assert "the dev set: it chooses α" in body
    assert "α = 2 has the highest mean rm reward" in body  # the run's overview.rst
    assert 'href="javascript:void(0)">summary.html' in body
    before = _render_front_page(cfg, [])
    assert "has not run yet" in before


def _report_outputs() -> dict[str, str]:
    """Output name → caption file of every ``report(...)`` output of rules/report.smk."""
    text = (ROOT / "rules" / "report.smk").read_text()
    return dict(re.findall(r"(\w+)=report\(\s*REPORT_FILES\[\"\w+\"\],\s*caption=\"\.\./report/([\w.]+)\"", text))


def test_captions_exist_and_name_real_columns(report):
    outs = _report_outputs()
    assert {"summary_html", "answers_html", "results_long", "per_prompt", "reward_plot"} <= set(outs)
    for caption in outs.values():
        assert (ROOT / "report" / caption).is_file(), caption
    for key, csv in (("results_long", "results_long.csv"), ("per_prompt", "per_prompt.csv")):
        text = (ROOT / "report" / outs[key]).read_text()
        columns_part = re.sub(r"\([^)]*\)", "", text.split("Columns:")[1].split("Metrics:")[0])
        named = set(re.findall(r"``(\w+)``", columns_part))  # the columns, without the parentheticals
        columns = set(pd.read_csv(report / csv, nrows=1).columns)
        assert named == columns, key
    units = set(re.findall(r"``(\w+)``", (ROOT / "report" / outs["results_long"]).read_text()))
    assert set(pd.read_csv(report / "results_long.csv").unit) <= units
    reward = (ROOT / "report" / outs["reward_plot"]).read_text()
    assert "Horizontal lines are the SFT" not in reward and "schemes" in reward


def test_plot_axes_leave_room_for_edge_points():
    from workflow_scripts.report.plots import _alpha_axis, _plt, scheme_x

    plt = _plt()
    fig, ax = plt.subplots()
    alphas = [-1.0, 0.0, 0.5, 1.0, 8.0]
    _alpha_axis(ax, alphas, has_schemes=True)
    lo, hi = ax.get_xlim()
    assert lo < -1.0 and hi > scheme_x(alphas) > 8.0
    plt.close(fig)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="headless chromium is not installed")
def test_answer_browser_filters_in_a_browser(report, tmp_path):
    """The page's own JS, in headless Chromium: a flag + variant filter shows the prompts it should."""
    url = (report / "answers.html").as_uri() + "#ps=eval&flag=empty&variants=base/sft,p/alpha2"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path}",
           "--virtual-time-budget=5000", "--dump-dom", url]  # fmt: skip
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    data = _browser_data((report / "answers.html").read_text())
    want = [p for p in data["prompts"] if p["ps"] == "eval" and "empty" in p["answers"]["p/alpha2"]["x"]]
    assert f"{len(want)} of {N_EVAL + N_DEV} prompts · 2 variants shown" in dom
    assert dom.count('class="prompt"') == len(want) > 0
    assert "(empty answer)" in dom


def test_paired_difference_sees_a_gain_that_unpaired_cis_hide():
    from workflow_scripts.metrics import bootstrap_ci
    from workflow_scripts.report.summary import paired_difference

    # prompts differ widely in difficulty; the variant beats the aligned model by 0.05–0.15 on each
    base = [{"id": f"q{i}", "reward": float(i % 10)} for i in range(40)]
    mine = [{"id": f"q{i}", "reward": float(i % 10) + 0.05 + 0.1 * (i % 2)} for i in reversed(range(40))]
    boot = {"n_boot": 500, "seed": 0}
    m, lo, hi, n = paired_difference(mine, base, boot)
    assert n == 40 and m == pytest.approx(0.1)
    assert 0.05 <= lo < m < hi <= 0.15  # every prompt improves: the paired CI excludes 0
    _, base_lo, base_hi = bootstrap_ci([r["reward"] for r in base], **boot)
    _, mine_lo, _ = bootstrap_ci([r["reward"] for r in mine], **boot)
    assert mine_lo < base_hi  # while the two unpaired CIs overlap
    # only prompts both answered count; a worse variant gets a negative difference
    worse = [{"id": "q1", "reward": 0.0}, {"id": "q2", "reward": 1.0}, {"id": "extra", "reward": 9.0}]
    m, lo, hi, n = paired_difference(worse, base, boot)
    assert (n, m) == (2, pytest.approx(-1.0)) and hi <= 0


def test_summary_shows_the_paired_difference_from_the_aligned_model(report):
    df = pd.read_csv(report / "summary.csv")
    ev = df[df.prompt_set == "eval"].set_index("variant_id")
    # rewards are quality + (i % 3) * 0.1 on every prompt: each variant's paired gain is exact
    for vid, q in VARIANTS.items():
        if vid == "base/al":
            assert pd.isna(ev.loc[vid, "rm_diff_vs_aligned"])
            continue
        gain = q - VARIANTS["base/al"]
        row = ev.loc[vid]
        assert (row.rm_diff_vs_aligned, row.rm_diff_vs_aligned_ci_low, row.rm_diff_vs_aligned_ci_high) == (
            pytest.approx(gain),
            pytest.approx(gain),
            pytest.approx(gain),
        )
    md = (report / "summary.md").read_text()
    assert "rm Δ vs aligned (paired)" in md and "+2.000 [+2.000, +2.000]" in md and "-1.000 [-1.000, -1.000]" in md
    assert "dev-chosen α=2 gives 3.100 (+2.000 [+2.000, +2.000] paired)" in md
    html = (report / "summary.html").read_text()
    assert "On eval: 3.100 vs aligned 1.100 (+2.000 [+2.000, +2.000] paired" in html
    long = pd.read_csv(report / "results_long.csv", keep_default_na=False, na_values=[""])
    paired = long[long.metric == "paired_diff"].set_index(["prompt_set", "variant_id"])
    assert set(paired.unit) == {"score"} and set(paired.baseline) == {"aligned"}
    assert ("eval", "base/al") not in paired.index
    assert paired.loc[("eval", "p/alpha2"), ["value", "ci_low", "ci_high"]].tolist() == pytest.approx([2.0] * 3)
    assert paired.loc[("dev", "p/alpha1"), "value"] == pytest.approx(1.0)
