"""The experiment configs in experiments/ plan exactly the jobs they should (dry runs only).

Each test runs ``python -m snakemake --configfile experiments/<name>.yaml --summary`` in a throwaway
copy of the workflow (so nothing is written into the repository's results/ or .snakemake/) and
compares the planned output files, grouped by rule, with the job list the experiment describes:
one checkpoint job per hub/local/GGUF model, one extrapolation per α (and layer scheme) per pair,
one generation per variant per prompt set (the dev set: aligned baselines and uniform α only), one
score per generation per reward model (the gold reward only on world prompt sets).

``--summary`` lists every output file of the plan with the rule that makes it: exact paths, not
counts parsed from a human-readable table.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(p.stem for p in (REPO / "experiments").glob("*.yaml"))
WORKFLOW_PARTS = (
    "Snakefile",
    "config.yaml",
    "rules",
    "schemas",
    "workflow_scripts",
    "resources",
    "envs",
    "profiles",
    "report",
    "experiments",
)


@pytest.fixture(scope="module")
def workflow_copy(tmp_path_factory) -> Path:
    """The workflow's files (no results, no tests) in a temporary folder, with an empty stand-in for
    every local data file an experiment names (a dry run checks that inputs exist, never reads them)."""
    root = tmp_path_factory.mktemp("wf")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for part in WORKFLOW_PARTS:
        src = REPO / part
        if src.is_dir():
            shutil.copytree(src, root / part, ignore=ignore)
        elif src.exists():
            shutil.copy2(src, root / part)
    _placeholder_data(root)
    for name in EXPERIMENTS:  # and local training data files
        cfg = yaml.safe_load((REPO / "experiments" / f"{name}.yaml").read_text())
        for entry in (cfg.get("datasets") or {}).values():
            if entry["source"] == "file" and not Path(entry["path"]).is_absolute():
                (root / entry["path"]).parent.mkdir(parents=True, exist_ok=True)
                (root / entry["path"]).touch()
    return root


def _placeholder_data(root: Path) -> None:
    """Empty stand-ins for the local benchmark files (POPE, CHAIR) experiments read: a dry run
    needs its inputs to exist, not their contents."""
    for cfg_path in (root / "experiments").glob("*.yaml"):
        for spec in yaml.safe_load(cfg_path.read_text()).get("prompt_sets", {}).values():
            if spec["source"] not in ("pope", "chair"):
                continue
            (root / spec["images"]).mkdir(parents=True, exist_ok=True)
            files = list(spec["questions"].values()) if spec["source"] == "pope" else [spec["questions"]]
            files += [spec[k] for k in ("annotations", "synonyms") if k in spec]
            for f in files:
                (root / f).parent.mkdir(parents=True, exist_ok=True)
                (root / f).touch()


def plan(root: Path, experiment: str) -> dict[str, set[str]]:
    """Output files of the dry-run plan, by rule (paths relative to results/<experiment>/)."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--configfile",
            f"experiments/{experiment}.yaml",
            "--summary",
            "--cores",
            "1",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"dry run of {experiment} failed:\n{proc.stderr[-4000:]}"
    lines = [ln.split("\t") for ln in proc.stdout.splitlines() if "\t" in ln]
    assert lines and lines[0][:3] == ["output_file", "date", "rule"], proc.stdout[:500]
    prefix = f"results/{experiment}/"
    out: dict[str, set[str]] = defaultdict(set)
    for row in lines[1:]:
        path, rule = row[0], row[2]
        assert path.startswith(prefix) or path.startswith("report"), f"{path} is outside {prefix}"
        out[rule].add(path[len(prefix) :])
    return out


def files_under(jobs: dict[str, set[str]], rule: str, folder: str) -> set[str]:
    return {p[len(folder) + 1 :] for p in jobs[rule] if p.startswith(folder + "/")}


def expected_variants(pairs: dict, *, dev: bool = False, schemes: dict | None = None) -> set[str]:
    """``group/variant`` names answered on a prompt set (see rules/common.smk: variants_for)."""
    out = set()
    for name, p in pairs.items():
        out.add(f"base/{p['aligned']}")
        if not dev:
            out.add(f"base/{p['sft']}")
            out |= {f"{name}/scheme_{s}" for s in p.get("schemes", schemes or {})}
        out |= {f"{name}/alpha{a}" for a in p["alphas"]}
    return out


def _json(names: set[str]) -> set[str]:
    return {f"{n}.json" for n in names}


# ------------------------------------------------------------------------------ the paper's studies

ZEPHYR_PAIRS = {
    "dpo_0.05": {"sft": "zephyr_sft", "aligned": "zephyr_0.05", "alphas": ["10", "15", "20", "25", "30"]},
    "dpo_0.1": {"sft": "zephyr_sft", "aligned": "zephyr_0.1", "alphas": ["2", "4", "6", "8", "10"]},
    "dpo_0.2": {"sft": "zephyr_sft", "aligned": "zephyr_0.2", "alphas": ["1", "1.5", "2", "2.5", "3"]},
    "dpo_0.4": {"sft": "zephyr_sft", "aligned": "zephyr_0.4", "alphas": ["0.1", "0.3", "0.5", "0.7", "1"]},
    "dpo_full": {"sft": "zephyr_sft", "aligned": "zephyr_dpo", "alphas": ["0.1", "0.2", "0.3", "0.4", "0.5"]},
}
PUBLISHED_ALPHA = {"dpo_0.05": "25", "dpo_0.1": "8", "dpo_0.2": "2.5", "dpo_0.4": "0.5", "dpo_full": "0.3"}


def test_zephyr_controlled_plan(workflow_copy):
    jobs = plan(workflow_copy, "zephyr_controlled")
    assert set(jobs) == {
        "checkpoint_model",
        "prompt_set",
        "extrapolate_alpha",
        "generate",
        "score",
        "report",
        "capability",
        "model_card",
        "evaluation_report",
    }
    assert len(jobs["capability"]) == 6 + 25  # the Open LLM Leaderboard set on every checkpoint-backed variant
    assert jobs["checkpoint_model"] == {
        f"checkpoints/{m}"
        for m in ("zephyr_sft", "zephyr_0.05", "zephyr_0.1", "zephyr_0.2", "zephyr_0.4", "zephyr_dpo", "rm_mistral")
    }
    manifests = files_under(jobs, "extrapolate_alpha", "manifests")
    assert manifests == {f"{p}/alpha{a}.json" for p, s in ZEPHYR_PAIRS.items() for a in s["alphas"]}
    cards = files_under(jobs, "model_card", "cards")
    assert cards == {f"{p}/alpha{a}/README.md" for p, s in ZEPHYR_PAIRS.items() for a in s["alphas"]}
    assert len(manifests) == 25
    for pair, alpha in PUBLISHED_ALPHA.items():  # every sweep contains the paper's α
        assert f"{pair}/alpha{alpha}.json" in manifests
    assert jobs["prompt_set"] == {"prompts/alpaca_eval.jsonl", "prompts/uf_dev.jsonl"}
    assert files_under(jobs, "generate", "generations/alpaca_eval") == _json(expected_variants(ZEPHYR_PAIRS))
    assert files_under(jobs, "generate", "generations/uf_dev") == _json(expected_variants(ZEPHYR_PAIRS, dev=True))
    assert len(jobs["generate"]) == (6 + 25) + (5 + 25)
    assert jobs["score"] == {"/".join(["scores", g.split("/")[1], "rm", *g.split("/")[2:]]) for g in jobs["generate"]}
    assert len(jobs["score"]) == len(jobs["generate"])


def test_zephyr_controlled_publishes_every_pair():
    cfg = yaml.safe_load((REPO / "experiments/zephyr_controlled.yaml").read_text())
    import csv

    rows = list(csv.DictReader(open(REPO / "resources/expo_published_results.csv")))
    for name, pair in cfg["pairs"].items():
        pub = pair["published"]
        alphas = {
            float(r["alpha"])
            for r in rows
            if r["sft_model"] == pub["sft_model"] and r["aligned_model"] == pub["aligned_model"]
        }
        assert alphas, f"pair {name}: no published row for {pub}"
        assert alphas <= {float(a) for a in pair["alphas"]}, f"pair {name}: published α {alphas} not swept"
        assert cfg["models"][pair["aligned"]]["repo"] == pub["aligned_model"]
    assert cfg["decoding"]["preset"] == "paper"
    assert cfg["extrapolation"]["keep_extrapolated"] is False


def test_seed_report_plan(workflow_copy):
    jobs = plan(workflow_copy, "seed_report")
    assert jobs["checkpoint_model"] == {"checkpoints/zephyr_sft", "checkpoints/zephyr_0.05", "checkpoints/rm_mistral"}
    assert files_under(jobs, "extrapolate_alpha", "manifests") == {"dpo_0.05/alpha12.json"}
    assert files_under(jobs, "extrapolate_scheme", "manifests") == {"dpo_0.05/scheme_thirds_5_10_15.json"}
    variants = {"base/zephyr_sft", "base/zephyr_0.05", "dpo_0.05/alpha12", "dpo_0.05/scheme_thirds_5_10_15"}
    assert files_under(jobs, "generate", "generations/alpaca_eval") == _json(variants)
    assert files_under(jobs, "score", "scores/alpaca_eval/rm") == _json(variants)
    assert "train_model" not in jobs and "world_data" not in jobs


def test_openchat_starling_plan(workflow_copy):
    jobs = plan(workflow_copy, "openchat_starling")
    assert jobs["checkpoint_model"] == {"checkpoints/openchat", "checkpoints/starling", "checkpoints/rm_mistral"}
    alphas = ["0.1", "0.3", "0.5", "0.7"]
    assert files_under(jobs, "extrapolate_alpha", "manifests") == {f"starling/alpha{a}.json" for a in alphas}
    pairs = {"starling": {"sft": "openchat", "aligned": "starling", "alphas": alphas}}
    for ps in ("alpaca_eval", "mt_bench"):
        assert files_under(jobs, "generate", f"generations/{ps}") == _json(expected_variants(pairs))
        assert files_under(jobs, "score", f"scores/{ps}/rm") == _json(expected_variants(pairs))
    assert files_under(jobs, "generate", "generations/uf_dev") == _json(expected_variants(pairs, dev=True))
    assert len(jobs["generate"]) == 6 + 6 + 5 == len(jobs["score"])


# ------------------------------------------------------------------------------ the offline real model


def test_smollm2_offline_plan(workflow_copy):
    jobs = plan(workflow_copy, "smollm2_offline")
    assert jobs["checkpoint_model"] == {"checkpoints/smollm2", "checkpoints/minilm"}
    assert jobs["train_model"] == {"trained/smollm2_dpo", "trained/minilm_rm"}
    assert files_under(jobs, "world_data", "world/data") == {"sft.jsonl", "prefs.jsonl", "eval.jsonl", "dev.jsonl"}
    assert "world_tokenizer" not in jobs  # SmolLM2 and MiniLM bring their own tokenizers
    alphas = ["1", "2", "4", "8"]
    assert files_under(jobs, "extrapolate_alpha", "manifests") == {f"dpo/alpha{a}.json" for a in alphas}
    assert files_under(jobs, "extrapolate_scheme", "manifests") == {"dpo/scheme_thirds.json"}
    pairs = {"dpo": {"sft": "smollm2", "aligned": "smollm2_dpo", "alphas": alphas, "schemes": ["thirds"]}}
    full, dev = _json(expected_variants(pairs)), _json(expected_variants(pairs, dev=True))
    # the expensive MT-Bench set answers only `prompt_sets.mt_bench.alphas` (and the scheme)
    mt = _json(expected_variants({"dpo": {**pairs["dpo"], "alphas": ["1", "4"]}}))
    assert files_under(jobs, "generate", "generations/mt_bench") == mt
    assert files_under(jobs, "generate", "generations/eval") == full
    assert files_under(jobs, "generate", "generations/dev") == dev
    # gold reward only on world tasks; the MiniLM reward everywhere
    assert files_under(jobs, "score", "scores/mt_bench/minilm") == mt
    assert not files_under(jobs, "score", "scores/mt_bench/gold")
    for rm in ("gold", "minilm"):
        assert files_under(jobs, "score", f"scores/eval/{rm}") == full
        assert files_under(jobs, "score", f"scores/dev/{rm}") == dev
    assert len(jobs["generate"]) == 5 + 7 + 5
    assert len(jobs["score"]) == 5 + 2 * 7 + 2 * 5


def test_smollm2_offline_never_trains_on_evaluated_prompts():
    cfg = yaml.safe_load((REPO / "experiments/smollm2_offline.yaml").read_text())
    trained_on = {cfg["datasets"][m["data"]]["file"] for m in cfg["models"].values() if m["source"] == "train"}
    evaluated = {ps.get("split") for ps in cfg["prompt_sets"].values() if ps["source"] == "world"}
    assert trained_on == {"prefs"} and evaluated == {"eval", "dev"}
    assert cfg["evaluation"]["primary_reward"] == "gold"
    assert all(rm.get("label") for rm in cfg["reward_models"].values())


# ------------------------------------------------------------------------------ the report's VLM


def _assert_pope_chair_planned(jobs: dict, pairs: dict) -> set[str]:
    """POPE and CHAIR answered and scored by every variant, the CHAIR dev set by the α candidates;
    the gold reward (yes/no correctness) exists on POPE only, CHAIR is scored by the hallucination
    rule. Returns the full set of variant files."""
    assert jobs["prompt_set"] == {"prompts/pope.jsonl", "prompts/chair.jsonl", "prompts/chair_dev.jsonl"}
    full, dev = _json(expected_variants(pairs)), _json(expected_variants(pairs, dev=True))
    for ps in ("pope", "chair"):
        assert files_under(jobs, "generate", f"generations/{ps}") == full
        assert files_under(jobs, "hallucination", f"hallucination/{ps}") == full
    assert files_under(jobs, "generate", "generations/chair_dev") == dev
    assert files_under(jobs, "hallucination", "hallucination/chair_dev") == dev
    assert files_under(jobs, "score", "scores/pope/gold") == full
    return full


def test_llava_report_composition_plan(workflow_copy):
    """CLIP + open_llama composed, projector-first SFT → instruction SFT → DDPO 20 %, LLM-only α sweep."""
    jobs = plan(workflow_copy, "llava_report_composition")
    assert jobs["checkpoint_model"] == {"checkpoints/clip_vit_b16", "checkpoints/open_llama_3b", "checkpoints/composed"}
    assert jobs["train_model"] == {"trained/projector", "trained/sft", "trained/ddpo_0.2"}
    alphas = ["0.5", "1", "2", "4", "8"]
    assert files_under(jobs, "extrapolate_alpha", "manifests") == {f"ddpo/alpha{a}.json" for a in alphas}
    assert "extrapolate_scheme" not in jobs
    pairs = {"ddpo": {"sft": "sft", "aligned": "ddpo_0.2", "alphas": alphas, "schemes": []}}
    _assert_pope_chair_planned(jobs, pairs)
    assert len(jobs["generate"]) == 7 + 7 + 6


def test_llava_report_composition_hyperparameters():
    """The report's numbers, and a projector that stays one linear layer in every training stage."""
    from workflow_scripts.config_schema import validate_config
    from workflow_scripts.experiment import Experiment

    cfg = yaml.safe_load((REPO / "experiments/llava_report_composition.yaml").read_text())
    validate_config(cfg)
    exp = Experiment(cfg)
    hp = exp.hparams("ddpo_0.2")
    assert hp["ddpo"] == {"gamma": 2.0, "average": False} and hp["beta"] == 0.1 and hp["lr"] == 2e-6
    assert (hp["epochs"], hp["batch_size"] * hp["grad_accum"], hp["weight_decay"], hp["warmup_ratio"]) == (
        3,
        8,
        0.01,
        0.03,
    )
    assert hp["lora"] and "freeze" not in hp  # the default: vision tower and projector frozen
    assert cfg["models"]["ddpo_0.2"]["fraction"] == 0.2
    comp = cfg["models"]["composed"]
    assert (comp["projector_hidden_act"], comp["projector_layers"], comp["vision_feature_layer"]) == ("linear", 1, -2)
    for stage in ("projector", "sft"):
        assert "multi_modal_projector.linear_2" in exp.hparams(stage)["freeze"]
    assert {"vision_tower", "language_model", "lm_head"} <= set(exp.hparams("projector")["freeze"])
    assert exp.model_is_multimodal("composed") and exp.is_image("composed")
    assert exp.checkpoint_inputs("composed") == {
        "vision": exp.model_dir("clip_vit_b16"),
        "language": exp.model_dir("open_llama_3b"),
    }


# ------------------------------------------------------------------------------ a vision-language model


def test_llava15_rlhfv_plan(workflow_copy):
    jobs = plan(workflow_copy, "llava15_rlhfv")
    cfg = yaml.safe_load((REPO / "experiments/llava15_rlhfv.yaml").read_text())
    assert jobs["checkpoint_model"] == {"checkpoints/llava15"}
    assert jobs["train_model"] == {"trained/ddpo_0.2", "trained/dpo_0.2"}
    assert cfg["training"]["ddpo"]["ddpo"] == {"gamma": 5.0, "average": True} and cfg["training"]["ddpo"]["beta"] == 0.5
    alphas = ["0.5", "1", "2", "4"]
    pairs = {p: {"sft": "llava15", "aligned": f"{p}_0.2", "alphas": alphas, "schemes": []} for p in ("ddpo", "dpo")}
    assert files_under(jobs, "extrapolate_alpha", "manifests") == {f"{p}/alpha{a}.json" for p in pairs for a in alphas}
    assert "extrapolate_scheme" not in jobs  # the α sweep moves the LLM only (the pairs' component defaults)
    full = _assert_pope_chair_planned(jobs, pairs)
    assert len(jobs["score"]) == len(full) == 11
    assert len(jobs["generate"]) == 11 + 11 + 10
    assert "report/hallucination.md" in jobs["hallucination_report"]


def test_shapes_world_seed_overlays_replicate_every_seed():
    """Each overlay, merged over shapes_world.yaml as Snakemake merges config files, is a valid
    experiment of its own name in which every seed (world, init, training, sampler) is the overlay's."""
    from snakemake.utils import update_config

    from workflow_scripts.config_schema import validate_config
    from workflow_scripts.experiment import Experiment

    overlays = sorted((REPO / "experiments" / "overlays").glob("shapes_world_seed*.yaml"))
    assert len(overlays) == 2
    for path in overlays:
        cfg = yaml.safe_load((REPO / "experiments" / "shapes_world.yaml").read_text())
        update_config(cfg, yaml.safe_load(path.read_text()))
        exp = Experiment(validate_config(cfg))
        seed = int(path.stem[-1])
        assert cfg["experiment"] == path.stem and cfg["shapes_world"]["seed"] == seed
        assert cfg["shapes_world"]["n_sft"] == 800  # the rest of the world is the base file's
        assert {m: exp.hparams(m)["seed"] for m in cfg["models"]} == dict.fromkeys(cfg["models"], seed)
        assert cfg["decoding"]["seed"] == seed and cfg["decoding"]["temperature"] == 1.0


# ------------------------------------------------------------------------------ every experiment


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_replaces_the_default_config(workflow_copy, experiment):
    """--configfile replaces config.yaml: nothing from the demo experiment leaks into the plan."""
    cfg = yaml.safe_load((REPO / "experiments" / f"{experiment}.yaml").read_text())
    assert cfg["experiment"] == experiment, "the experiment name should match the file name"
    jobs = plan(workflow_copy, experiment)
    models = set(cfg["models"])
    built = {p.split("/")[1] for r in ("checkpoint_model", "train_model") for p in jobs.get(r, ())}
    assert built <= models, f"models not in {experiment}.yaml were planned: {sorted(built - models)}"
    groups = {p.split("/")[2] for p in jobs["generate"]}
    assert groups <= set(cfg["pairs"]) | {"base"}
    prompt_sets = {p.split("/")[1] for p in jobs["generate"]}
    assert prompt_sets == set(cfg["prompt_sets"])
    scorers = {p.split("/")[2] for p in jobs.get("score", ())}
    assert scorers == set(cfg["reward_models"])
    assert ("world_data" in jobs) == ("world" in cfg)
