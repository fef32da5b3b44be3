"""Paths, wildcard constraints and one-line input/params functions for the rules.

What the experiment is (variants, which prompt sets they answer, what is scorable, every
cross-reference check) lives in `workflow_scripts/experiment.py`; the results tree in
`workflow_scripts/layout.py`. A config error is one `WorkflowError` line naming the culprit.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, workflow.basedir)
from workflow_scripts.common import ALPHA_REGEX  # noqa: E402  (stdlib only: cheap at parse time)
from workflow_scripts.config_schema import validate_config  # noqa: E402
from workflow_scripts.experiment import ConfigError, Experiment  # noqa: E402
from workflow_scripts.layout import RESERVED_GROUPS, BASE_GROUP, SEED_REGEX  # noqa: E402

from snakemake.exceptions import WorkflowError  # noqa: E402

try:
    validate_config(config)
    EXP = Experiment(config)
except ConfigError as exc:
    raise WorkflowError(f"config error: {exc}") from None

L = EXP.layout
R = L.root
ENVS = "../envs"
SMK = "../workflow_scripts/smk"
REPORT_FILES = L.report_files
WORLD_FILES = ("sft", "prefs", "eval", "dev")
NAME_REGEX = r"[A-Za-z0-9][A-Za-z0-9_.]*"


def regex_of(names):
    """An explicit alternation for a wildcard (never matches a name we did not configure)."""
    import re

    return "|".join(re.escape(n) for n in sorted(names)) or "(?!)"


wildcard_constraints:
    alpha=ALPHA_REGEX,
    pair=regex_of(config["pairs"]),
    scheme=NAME_REGEX,
    prompt_set=regex_of(config["prompt_sets"]),
    rm=regex_of(config["reward_models"]),
    group=regex_of(list(config["pairs"]) + list(RESERVED_GROUPS)),
    variant=r"[A-Za-z0-9][A-Za-z0-9_.\-]*",
    model=NAME_REGEX,
    seed=SEED_REGEX,


# ------------------------------------------------------------------ targets


def all_generations():
    return EXP.generation_files()


def all_scores():
    return EXP.score_files()


def judge_targets():
    return [L.judge(ps, v.group, v.name) for ps, v in EXP.judged()]


def all_manifests():
    return [L.manifest(v.group, v.name) for v in EXP.extrapolations()]


def all_cards():
    return [L.card(v.group, v.name) for v in EXP.extrapolations()]


def all_training_records():
    return [L.trained(m) for m in EXP.training_records()]


def world_file(name):
    return L.world_file(name)


def hallucination_targets():
    return list(L.hallucination_files.values()) if EXP.multimodal_prompt_sets() else []


def extrapolated_dir(path):
    """`temp()` when the user asked not to keep extrapolated checkpoints (~14 GB per α at 7B)."""
    return directory(path) if config["extrapolation"].get("keep_extrapolated", True) else temp(directory(path))


# ------------------------------------------------------------------ input functions


def pair_inputs(wildcards):
    p = config["pairs"][wildcards.pair]
    return {"sft": EXP.model_dir(p["sft"]), "aligned": EXP.model_dir(p["aligned"])}


def variant_model_dir(wildcards):
    """Checkpoint folder behind a (group, variant)."""
    if wildcards.group == BASE_GROUP:
        return EXP.model_dir(wildcards.variant)
    return L.extrapolated(wildcards.group, wildcards.variant)


def train_inputs(wildcards):
    """Inputs of a training job: base checkpoint or tokenizer, and a local data file if any."""
    spec = EXP.model_spec(wildcards.model)
    inputs = (
        {"base": EXP.model_dir(spec["base"])} if "base" in spec else {"tokenizer": EXP.init_tokenizer(wildcards.model)}
    )
    data = EXP.dataset_file(spec["data"])
    return {**inputs, "data": data} if data else inputs


def prompt_inputs(wildcards):
    spec = config["prompt_sets"][wildcards.prompt_set]
    if spec["source"] == "world":
        return {"world": L.world_file(spec["split"])}
    if spec["source"] in ("pope", "chair"):
        return EXP.prompt_set_files(wildcards.prompt_set)
    return {"file": spec["path"]} if spec["source"] == "file" else {}


def score_inputs(wildcards):
    inputs = {"generations": L.generation(wildcards.prompt_set, wildcards.group, wildcards.variant)}
    spec = config["reward_models"][wildcards.rm]
    if "model" in spec:
        inputs["rm"] = EXP.model_dir(spec["model"])
    return inputs


def seeded_score_inputs(wildcards):
    """A score job of one sampling seed (``decoding.seeds``) reads that seed's answers."""
    w = wildcards
    return {**score_inputs(w), "generations": L.generation(w.prompt_set, w.group, w.variant, w.seed)}


# ------------------------------------------------------------------ params and resources


def score_gpu(wildcards):
    """The gold reward is a program: it needs no GPU slot."""
    return 0 if EXP.is_gold(wildcards.rm) else 1


def model_spec_of(wildcards):
    return EXP.checkpoint_spec(wildcards.model)


def checkpoint_inputs(wildcards):
    return EXP.checkpoint_inputs(wildcards.model)


def alpha_of(wildcards):
    return EXP.alpha_spec(wildcards.pair, wildcards.alpha)


def scheme_of(wildcards):
    return EXP.pair_scheme_spec(wildcards.pair, wildcards.scheme)


def prompt_spec_of(wildcards):
    return EXP.prompt_spec(wildcards.prompt_set)


def reference_spec_of(wildcards):
    return EXP.reference_spec(wildcards.prompt_set)


def train_params(wildcards):
    return EXP.train_params(wildcards.model)


def rm_spec_of(wildcards):
    return EXP.rm_spec(wildcards.rm)


def seeded_decoding_of(wildcards):
    return EXP.seeded_decoding(wildcards.seed)


def generator_of(wildcards):
    return f"{EXP.name}/{wildcards.group}/{wildcards.variant}"


# multimodal (rules/multimodal.smk)


def shapes_file(name):
    return L.shapes_file(name)


def shapes_prompt_file(wildcards):
    return L.shapes_file(EXP.prompt_spec(wildcards.prompt_set)["split"])


def hallucination_vocab_inputs(wildcards):
    return EXP.hallucination_vocab_files(wildcards.prompt_set)


def hallucination_inputs():
    return [L.hallucination(ps, v.group, v.name) for ps, v in EXP.hallucination_scored()]


# ------------------------------------------------------------------ α search and logit extrapolation (rules/search.smk)


def search_plan_loader(pair):
    """round → plan; `get` raises until that round's checkpoint has run (Snakemake then runs it)."""

    def load(rnd):
        return json.loads(Path(checkpoints.search_plan.get(pair=pair, round=rnd).output[0]).read_text())

    return load


def search_result_of(pair):
    return json.loads(Path(checkpoints.search_result.get(pair=pair).output.result).read_text())


def search_plan_inputs(wildcards):
    return EXP.search.plan_inputs(wildcards.pair, int(wildcards.round), search_plan_loader(wildcards.pair))


def search_result_inputs(wildcards):
    return EXP.search.result_inputs(wildcards.pair, search_plan_loader(wildcards.pair))


def searched_targets(wildcards):
    return [f for p in EXP.search.pairs for f in EXP.search.targets(p, search_result_of(p))]


def search_results():
    return [L.search_result(p) for p in EXP.search.pairs]


def search_report_targets():
    files = list(L.search_report_files.values()) if EXP.search.enabled else []
    return files + ([L.logit_report] if EXP.logit_alphas() else [])


def search_plan_spec(wildcards):
    return EXP.search.plan_spec(wildcards.pair)


def search_result_spec(wildcards):
    return EXP.search.result_spec(wildcards.pair)


def search_aligned(wildcards):
    return config["pairs"][wildcards.pair]["aligned"]


def logit_inputs(wildcards):
    return {**pair_inputs(wildcards), "prompts": L.prompts(wildcards.prompt_set)}


def alpha_value(wildcards):
    return float(wildcards.alpha)


def logit_generator_of(wildcards):
    return f"{EXP.name}/{wildcards.pair}/logit{wildcards.alpha}"


# ------------------------------------------------------------------ judges, MT-Bench, capability


def local_judge_targets():
    return [f"{R}/local_judge/{ps}/{v.group}/{v.name}.json" for ps, v in EXP.local_judged()]


def mtbench_targets():
    return [f"{R}/mtbench/grade/{v.group}/{v.name}.json" for v in EXP.model_variants()] if EXP.mtbench_spec() else []


def capability_targets():
    return [f"{R}/capability/{v.group}/{v.name}.json" for v in EXP.model_variants()] if EXP.capability_spec() else []


def evaluation_report_targets():
    return list(L.evaluation_files.values()) if EXP.evaluation_reported() else []


def local_judge_inputs(wildcards):
    return {
        "generations": L.generation(wildcards.prompt_set, wildcards.group, wildcards.variant),
        "baseline": L.generation(wildcards.prompt_set, BASE_GROUP, EXP.local_judge_baseline(wildcards.group)),
        "judge": EXP.model_dir(EXP.local_judge_spec()["model"]),
    }


def mtbench_grade_inputs(wildcards):
    inputs = {"answers": f"{R}/mtbench/model_answer/{wildcards.group}/{wildcards.variant}.jsonl"}
    judge_dir = EXP.judge_model_dir(EXP.mtbench_spec()["judge"])
    return {**inputs, "judge": judge_dir} if judge_dir else inputs
