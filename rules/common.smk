"""Helpers shared by the rules: paths, the variant list, and input functions (named, no lambdas).

Every path that holds an α is built with `format_alpha`, so `2`, `2.0` and `2.00` in a config name
the same file and adding one α to the list adds exactly that α's jobs.
"""

import sys
from pathlib import Path

sys.path.insert(0, workflow.basedir)
from workflow_scripts.common import ALPHA_REGEX, format_alpha  # noqa: E402  (stdlib only)
from workflow_scripts.scheme_components import with_component_defaults  # noqa: E402
from workflow_scripts.schemes import Scheme  # noqa: E402  (no torch: cheap at parse time)

from snakemake.exceptions import WorkflowError  # noqa: E402

R = f"results/{config['experiment']}"
ENVS = "../envs"
SMK = "../workflow_scripts/smk"

NAME_REGEX = r"[A-Za-z0-9][A-Za-z0-9_.]*"
VARIANT_SELECTION_KEYS = ("alphas", "schemes")
"""Prompt-set keys that choose which variants answer the set, not what the prompts are: kept
out of the prompt and reference params so narrowing them never rebuilds those files."""


def _err(msg):
    raise WorkflowError(f"config error: {msg}")


# ------------------------------------------------------------------ models and their folders


def model_spec(key):
    try:
        return config["models"][key]
    except KeyError:
        _err(f"unknown model {key!r}; defined models: {sorted(config['models'])}")


def model_dir(key):
    """Folder of a model checkpoint: trained, or materialized by the checkpoint stage.

    Local folders also go through the checkpoint stage, which validates them and links their files
    (no multi-GB copy), so a broken folder fails there rather than in a GPU job.
    """
    spec = model_spec(key)
    if spec["source"] == "train":
        return f"{R}/trained/{key}"
    return f"{R}/checkpoints/{key}"  # hub/gguf: downloaded or converted; local: validated symlinks


def model_num_layers(key, _seen=None):
    """Decoder depth when known before anything runs (models trained from a world architecture)."""
    spec = model_spec(key)
    if spec["source"] != "train":
        return None
    if "init" in spec:
        return world_architecture(spec["init"])["num_hidden_layers"]
    seen = (_seen or set()) | {key}
    if spec["base"] in seen:
        _err(f"model {key!r}: training bases form a cycle ({sorted(seen)})")
    return model_num_layers(spec["base"], seen)


def world_architecture(name):
    archs = config.get("world", {}).get("architectures", {})
    if name not in archs:
        _err(f"unknown world architecture {name!r}; defined: {sorted(archs)}")
    return archs[name]


def downloaded_models():
    return [k for k, s in config["models"].items() if s["source"] in ("hub", "gguf", "local")]


def trained_models():
    return [k for k, s in config["models"].items() if s["source"] == "train"]


def regex_of(names):
    """An explicit alternation for a wildcard (never matches a name we did not configure)."""
    import re

    return "|".join(re.escape(n) for n in sorted(names)) or "(?!)"


# ------------------------------------------------------------------ pairs, α and schemes


def pair_alphas(pair):
    """Formatted α values of one pair (its own list or the global one), deduplicated, in order."""
    raw = config["pairs"][pair].get("alphas") or config["extrapolation"]["alphas"]
    out = []
    for a in raw:
        text = format_alpha(a)
        if text not in out:
            out.append(text)
    return out


def pair_schemes(pair):
    schemes = config["extrapolation"].get("schemes", {})
    chosen = config["pairs"][pair].get("schemes", list(schemes))
    for s in chosen:
        if s not in schemes:
            _err(f"pair {pair!r} names unknown scheme {s!r}; defined: {sorted(schemes)}")
    return chosen


def scheme_spec(name):
    return config["extrapolation"]["schemes"][name]


def base_models():
    """SFT and aligned models of every pair: the baselines every table compares against."""
    out = []
    for p in config["pairs"].values():
        for k in (p["sft"], p["aligned"]):
            if k not in out:
                out.append(k)
    return out


def variants():
    """(group, variant) of every model whose answers are generated and scored.

    Baselines sit in group `base` (named by model key, generated once even when shared by pairs);
    extrapolations in the pair's group as `alpha<α>` or `scheme_<name>`.
    """
    out = [("base", m) for m in base_models()]
    for pair in config["pairs"]:
        out += [(pair, f"alpha{a}") for a in pair_alphas(pair)]
        out += [(pair, f"scheme_{s}") for s in pair_schemes(pair)]
    return out


def dev_prompt_set():
    return (config.get("evaluation") or {}).get("dev_prompt_set")


def has_reference(prompt_set):
    return bool(config["prompt_sets"][prompt_set].get("reference"))


def variants_for(prompt_set):
    """Variants answered on a prompt set. The dev set exists to choose α, so it only needs the
    uniform-α variants and the aligned baselines they are compared with (no SFT, no schemes):
    on a 7B model that saves hours of generation per dev set. A prompt set's own `alphas:` /
    `schemes:` narrow it further (the full sweep on a cheap set, a subset on an expensive one).
    Reference outputs (e.g. GPT-4's answers), when configured, are scored like a variant, group
    `reference`."""
    spec = config["prompt_sets"][prompt_set]
    ref = [("reference", "reference")] if has_reference(prompt_set) else []
    keep_alpha = None if spec.get("alphas") is None else {f"alpha{format_alpha(a)}" for a in spec["alphas"]}
    keep_scheme = None if spec.get("schemes") is None else {f"scheme_{s}" for s in spec["schemes"]}
    aligned = {p["aligned"] for p in config["pairs"].values()}
    dev = prompt_set == dev_prompt_set()
    out = []
    for g, v in variants():
        if g == "base":
            ok = v in aligned or not dev
        elif v.startswith("alpha"):
            ok = keep_alpha is None or v in keep_alpha
        else:
            ok = not dev and (keep_scheme is None or v in keep_scheme)
        if ok:
            out.append((g, v))
    return out + ref


def reference_spec_of(wildcards):
    spec = config["prompt_sets"][wildcards.prompt_set]
    ref = dict(spec.get("reference") or {})
    if spec["source"] in ("file", "world"):
        return {"source": "file", **ref, "limit": spec.get("limit")}
    base = {k: v for k, v in spec.items() if k not in ("reference", "split", *VARIANT_SELECTION_KEYS)}
    return {**base, **ref}


def variant_model_dir(wildcards):
    """Checkpoint folder behind a (group, variant)."""
    if wildcards.group == "base":
        return model_dir(wildcards.variant)
    return f"{R}/extrapolated/{wildcards.group}/{wildcards.variant}"


def extrapolated_dir(path):
    """`temp()` when the user asked not to keep extrapolated checkpoints (~14 GB per α at 7B)."""
    return temp(directory(path)) if not config["extrapolation"].get("keep_extrapolated", True) else directory(path)


def pair_inputs(wildcards):
    p = config["pairs"][wildcards.pair]
    return {"sft": model_dir(p["sft"]), "aligned": model_dir(p["aligned"])}


# ------------------------------------------------------------------ training and the world


def uses_world():
    srcs = [d["source"] for d in config.get("datasets", {}).values()]
    srcs += [p["source"] for p in config["prompt_sets"].values()]
    srcs += ["world" for m in config["models"].values() if "init" in m]
    return "world" in srcs


WORLD_FILES = ("sft", "prefs", "eval", "dev")


def world_file(name):
    return f"{R}/world/data/{name}.jsonl"


def dataset_spec(key):
    ds = config.get("datasets", {})
    if key not in ds:
        _err(f"unknown dataset {key!r}; defined datasets: {sorted(ds)}")
    return ds[key]


def train_inputs(wildcards):
    """Inputs of a training job: base checkpoint or tokenizer, and a local data file if any."""
    spec = model_spec(wildcards.model)
    inputs = {}
    if "base" in spec:
        inputs["base"] = model_dir(spec["base"])
    else:
        inputs["tokenizer"] = f"{R}/world/tokenizer"
    ds = dataset_spec(spec["data"])
    if ds["source"] == "world":
        inputs["data"] = world_file(ds.get("file", "prefs"))
    elif ds["source"] == "file":
        inputs["data"] = ds["path"]
    return inputs


def train_params(wildcards):
    """Everything that changes a trained model's weights (so changing it retrains, nothing else)."""
    spec = model_spec(wildcards.model)
    hp = dict(config.get("training", {}).get(spec["method"], {}))
    hp.update(spec.get("hparams", {}))
    ds = dataset_spec(spec["data"])
    return {
        "method": spec["method"],
        "fraction": spec.get("fraction", 1.0),
        "hparams": hp,
        "init": world_architecture(spec["init"]) if "init" in spec else None,
        "dataset": ds if ds["source"] == "hub" else None,
    }


# ------------------------------------------------------------------ prompts, scoring, report


def prompt_inputs(wildcards):
    spec = config["prompt_sets"][wildcards.prompt_set]
    if spec["source"] == "world":
        return {"world": world_file(spec["split"])}
    if spec["source"] == "file":
        return {"file": spec["path"]}
    return {}


def rm_spec(name):
    return config["reward_models"][name]


def score_inputs(wildcards):
    inputs = {"generations": f"{R}/generations/{wildcards.prompt_set}/{wildcards.group}/{wildcards.variant}.json"}
    spec = rm_spec(wildcards.rm)
    if "model" in spec:
        inputs["rm"] = model_dir(spec["model"])
    return inputs


def score_gpu(wildcards):
    """The gold reward is a program: it needs no GPU slot."""
    return 0 if rm_spec(wildcards.rm).get("type") == "gold" else 1


def scorable(prompt_set, rm):
    """The gold reward only exists on world prompt sets."""
    return rm_spec(rm).get("type") != "gold" or config["prompt_sets"][prompt_set]["source"] == "world"


def all_generations():
    return [f"{R}/generations/{ps}/{g}/{v}.json" for ps in config["prompt_sets"] for g, v in variants_for(ps)]


def all_scores():
    return [
        f"{R}/scores/{ps}/{rm}/{g}/{v}.json"
        for ps in config["prompt_sets"]
        for rm in config["reward_models"]
        if scorable(ps, rm)
        for g, v in variants_for(ps)
    ]


def judge_annotator():
    return (config.get("evaluation") or {}).get("alpaca_eval_judge")


def judge_targets():
    """Real-AlpacaEval judgements, only when an annotator is configured (costs API money)."""
    if not judge_annotator():
        return []
    return [
        f"{R}/alpaca_eval/{ps}/{g}/{v}"
        for ps, spec in config["prompt_sets"].items()
        if spec["source"] == "alpaca_eval"
        for g, v in variants_for(ps)
    ]


def all_manifests():
    return [f"{R}/manifests/{pair}/{v}.json" for pair in config["pairs"] for g, v in variants() if g == pair]


def all_training_records():
    return [
        f"{R}/trained/{m}"
        for m in trained_models()
        if model_spec(m)["method"] in ("dpo", "simpo") and m in base_models()
    ]


REPORT_FILES = {
    "summary_csv": f"{R}/report/summary.csv",
    "summary_md": f"{R}/report/summary.md",
    "reward_plot": f"{R}/report/reward_vs_alpha.png",
    "diagnostics_plot": f"{R}/report/diagnostics_vs_alpha.png",
    "delta_csv": f"{R}/report/layer_delta.csv",
    "delta_plot": f"{R}/report/layer_delta.png",
    "training_plot": f"{R}/report/training_curves.png",
    "published_csv": f"{R}/report/published_comparison.csv",
    "study_csv": f"{R}/report/study.csv",
    "study_md": f"{R}/report/study.md",
}


def pair_meta():
    """Method and data fraction of each pair whose aligned model is trained here (DPO/SimPO).

    Read from `models`, not parsed from pair names, so the controlled-study table cannot be fooled
    by a name; pairs with downloaded aligned models are left out (their training is unknown).
    """
    out = {}
    for pair, p in config["pairs"].items():
        spec = model_spec(p["aligned"])
        if spec["source"] == "train" and spec["method"] in ("dpo", "simpo"):
            out[pair] = {
                "method": spec["method"],
                "fraction": float(spec.get("fraction", 1.0)),
                "aligned": p["aligned"],
            }
    return out


def report_params():
    """Settings that change the report's numbers (not paths: those are inputs)."""
    ev = dict(config.get("evaluation", {}))
    ev.setdefault("primary_reward", next(iter(config["reward_models"])))
    return {
        "evaluation": ev,
        "variants": variants(),
        "variants_by_prompt_set": {ps: variants_for(ps) for ps in config["prompt_sets"]},
        "pairs": config["pairs"],
        "prompt_sets": list(config["prompt_sets"]),
        "prompt_set_sources": {k: v["source"] for k, v in config["prompt_sets"].items()},
        "reward_models": {
            k: {"label": v.get("label", k), "type": v.get("type", "model")} for k, v in config["reward_models"].items()
        },
        "max_new_tokens": config.get("decoding", {}).get("max_new_tokens"),
        "pair_meta": pair_meta(),
    }


# ------------------------------------------------------------------ semantic checks


def check_config():
    """Cross-references a JSON schema cannot express, each with a message naming the culprit."""
    for key, spec in config["models"].items():
        if spec["source"] == "train":
            dataset_spec(spec["data"])
            if "base" in spec:
                model_spec(spec["base"])
            else:
                world_architecture(spec["init"])
    for pair, p in config["pairs"].items():
        for side in ("sft", "aligned"):
            if p[side] not in config["models"]:
                _err(f"pair {pair!r}: {side} model {p[side]!r} is not defined under `models`")
        depth = model_num_layers(p["sft"])
        for s in pair_schemes(pair):
            try:
                scheme = Scheme.from_config(with_component_defaults(scheme_spec(s), p.get("components")))
                if depth is not None:
                    scheme.validate_for(depth)
            except ValueError as exc:
                _err(f"extrapolation.schemes.{s} (pair {pair!r}, sft model {p['sft']!r}): {exc}")
    for name, rm in config["reward_models"].items():
        if "model" in rm:
            model_spec(rm["model"])
    all_alphas = {a for pair in config["pairs"] for a in pair_alphas(pair)}
    for ps, spec in config["prompt_sets"].items():
        for a in spec.get("alphas") or []:
            if format_alpha(a) not in all_alphas:
                _err(f"prompt set {ps!r}: α {a} is not in any pair's α list {sorted(all_alphas, key=float)}")
        for s in spec.get("schemes") or []:
            if s not in config["extrapolation"].get("schemes", {}):
                _err(
                    f"prompt set {ps!r}: unknown scheme {s!r}; defined: "
                    f"{sorted(config['extrapolation'].get('schemes', {}))}"
                )
        if spec.get("reference") is not None and spec["source"] == "ultrafeedback":
            _err(f"prompt set {ps!r}: no reference outputs are known for ultrafeedback prompts")
        if (
            spec.get("reference") is not None
            and spec["source"] in ("file", "world")
            and "path" not in spec["reference"]
        ):
            _err(
                f"prompt set {ps!r}: reference outputs for a {spec['source']} prompt set need "
                "`reference: {path: answers.jsonl}` (ids and instructions matching the prompts)"
            )
    ev = config.get("evaluation") or {}
    if ev.get("baseline") == "reference" and not any(has_reference(ps) for ps in config["prompt_sets"]):
        _err("evaluation.baseline is 'reference' but no prompt set has `reference:` outputs")
    if uses_world() and "world" not in config:
        _err("a dataset, prompt set or model uses the demo world but the config has no `world:`")
    ev = config.get("evaluation", {})
    if ev.get("primary_reward") and ev["primary_reward"] not in config["reward_models"]:
        _err(f"evaluation.primary_reward {ev['primary_reward']!r} is not a reward model")
    dev = ev.get("dev_prompt_set")
    if dev and dev not in config["prompt_sets"]:
        _err(f"evaluation.dev_prompt_set {dev!r} is not a prompt set")


check_config()


wildcard_constraints:
    alpha=ALPHA_REGEX,
    pair=regex_of(config["pairs"]),
    scheme=NAME_REGEX,
    prompt_set=regex_of(config["prompt_sets"]),
    rm=regex_of(config["reward_models"]),
    group=regex_of(list(config["pairs"]) + ["base", "reference"]),
    variant=r"[A-Za-z0-9][A-Za-z0-9_.\-]*",
    model=NAME_REGEX,


def model_spec_of(wildcards):
    return model_spec(wildcards.model)


def alpha_of(wildcards):
    return with_component_defaults(float(wildcards.alpha), config["pairs"][wildcards.pair].get("components"))


def scheme_of(wildcards):
    return with_component_defaults(scheme_spec(wildcards.scheme), config["pairs"][wildcards.pair].get("components"))


def prompt_spec_of(wildcards):
    """What the prompts are (the `prompt_set` rule's params): which variants answer them is not
    part of it, so narrowing `alphas:`/`schemes:` never rebuilds the prompt file."""
    spec = config["prompt_sets"][wildcards.prompt_set]
    return {k: v for k, v in spec.items() if k not in VARIANT_SELECTION_KEYS}


def rm_spec_of(wildcards):
    spec = rm_spec(wildcards.rm)
    return {"type": spec.get("type", "model"), "trust_remote_code": spec.get("trust_remote_code", False)}


def generator_of(wildcards):
    return f"{config['experiment']}/{wildcards.group}/{wildcards.variant}"


def decoding():
    return dict(config.get("decoding") or {"preset": "demo"})
