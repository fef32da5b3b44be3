"""Glue between Snakemake rules and the stage libraries.

Each function takes what a rule knows (input/output paths and the `params:` values that change
results) and calls the library. They live here, not in `workflow_scripts/smk/`, so that fixing glue
does not change a `script:` file and force Snakemake to rerun every job of the rule.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .common import read_json, write_json
from .experiment import PREFERENCE_HPARAMS, SUPERVISED_HPARAMS, VLM_HPARAMS

log = logging.getLogger(__name__)


def _pick(hp: Mapping[str, Any], keys: tuple[str, ...]) -> dict:
    unknown = set(hp) - set(keys)
    if unknown:
        raise ValueError(f"unknown training hyperparameters {sorted(unknown)}; known: {list(keys)}")
    return {k: hp[k] for k in keys if k in hp}


def train_from_rule(
    inputs: Mapping[str, str], out: str, params: Mapping[str, Any], *, threads: int | None = None
) -> dict:
    """Train one model as the `train_model` rule describes it (method, data, init/base, hparams)."""
    from . import train

    method = params["method"]
    hp = dict(params.get("hparams") or {})
    data = inputs.get("data") or params.get("dataset")
    if data is None:
        raise ValueError("training job has neither a local data file nor a hub dataset spec")
    if params.get("modality") == "image":
        return _train_image(inputs, data, out, params, hp, threads)
    if method in ("sft", "reward"):
        model_init = params["init"] if params.get("init") else inputs["base"]
        tokenizer_dir = inputs.get("tokenizer") or inputs["base"]
        fn = train.train_sft if method == "sft" else train.train_reward
        return fn(model_init, tokenizer_dir, data, out, threads=threads, **_pick(hp, SUPERVISED_HPARAMS))
    if method in ("dpo", "simpo", "ddpo"):
        return train.train_preference(
            inputs["base"],
            data,
            out,
            method=method,
            fraction=float(params.get("fraction", 1.0)),
            threads=threads,
            **_pick(hp, PREFERENCE_HPARAMS),
        )
    raise ValueError(f"unknown training method {method!r}; expected sft, reward, dpo, simpo or ddpo")


def _train_image(inputs: Mapping[str, str], data, out: str, params: Mapping[str, Any], hp: dict, threads) -> dict:
    """A vision-language model: from its base, or (``init``) a seeded tiny LLaVA built on the
    world's tokenizer first, so the demo trains from scratch like the text world."""
    import tempfile

    from .train.vlm import train_vlm

    kwargs = _pick(hp, VLM_HPARAMS)
    with tempfile.TemporaryDirectory(prefix="vlm-init-") as scratch:
        base = inputs.get("base")
        if base is None:
            from .multimodal import tiny_llava

            arch = params["init"]
            base = str(
                tiny_llava(
                    inputs["tokenizer"],
                    Path(scratch) / "init",
                    text=arch["text"],
                    vision=arch["vision"],
                    seed=int(kwargs.get("seed", 0)),
                )
            )
        return train_vlm(
            base,
            data,
            out,
            method=params["method"],
            fraction=float(params.get("fraction", 1.0)),
            threads=threads,
            **kwargs,
        )


def run_generation(
    model_dir: str, prompts: list[dict], decoding: Mapping[str, Any], out: str, *, generator: str
) -> None:
    """Generate answers and write the alpaca_eval `model_outputs` JSON (and its provenance beside it)."""
    from .generate import DEFAULT_BATCH_SIZE, generate_to_file, write_generations

    spec = dict(decoding)
    backend = spec.pop("backend", "auto")
    batch_size = int(spec.pop("batch_size", DEFAULT_BATCH_SIZE))
    from .multimodal import is_vlm_folder

    if is_vlm_folder(model_dir):
        from .vlm_generate import generate_vlm

        records = generate_vlm(model_dir, prompts, spec, generator=generator, batch_size=batch_size, backend=backend)
        write_generations(records, out)
    else:
        generate_to_file(model_dir, prompts, spec, out, backend=backend, batch_size=batch_size, generator=generator)


def score_file(generations: str, out: str, rm: Mapping[str, Any], *, rm_dir: str | None) -> None:
    """Score a generations file with a reward model, or with the demo world's gold reward.

    The gold reward is a program over the world's task metadata: it imports no torch, so these
    jobs cost a fraction of a second.
    """
    records = read_json(generations)
    ids = [str(r.get("id", i)) for i, r in enumerate(records)]
    if rm.get("type") == "gold" and records and ("scene" in records[0] or "image" in records[0]):
        from .world.shapes import grade_record as grade_shapes

        rows = [{"id": i, "reward": (g := grade_shapes(r)).pop("gold"), **g} for i, r in zip(ids, records)]
    elif rm.get("type") == "gold":
        from .world.tasks import grade_record

        rows = []
        for i, r in zip(ids, records):
            g = grade_record(r)
            # the parts explain the reward: the report averages them into columns
            rows.append(
                {
                    "id": i,
                    "reward": g["gold"],
                    "correctness": g["correctness"],
                    "restated": float(g["restated"]),
                    "rambling": float(g["rambling"]),
                }
            )
    else:
        from .score import score

        if rm_dir is None:
            raise ValueError("a model reward needs its checkpoint folder")
        rewards = score(rm_dir, records, trust_remote_code=bool(rm.get("trust_remote_code")))
        rows = [{"id": i, "reward": float(x)} for i, x in zip(ids, rewards)]
    write_json(out, rows, indent=None)
    log.info("scored %d answers from %s (%s)", len(rows), Path(generations).name, rm.get("type", "model"))


# ------------------------------------------------------------------ one entry point per rule
# `workflow_scripts/smk/<rule>.py` is `run_stage(snakemake, "<rule>")`: these take the rule's
# `snakemake` object, so fixing what a rule does never edits its `script:` file.


def checkpoints_job(smk: Any) -> None:
    from .checkpoints import materialize

    materialize(dict(smk.params.spec), smk.output[0])


def extrapolate_job(smk: Any) -> None:
    import shutil

    from .extrapolate import Scheme, extrapolate

    p = smk.params
    scheme = Scheme.from_config(p.alpha if hasattr(p, "alpha") else dict(p.scheme))
    extrapolate(
        smk.input.sft, smk.input.aligned, smk.output.model, scheme, allow_pickle=p.allow_pickle, threads=smk.threads
    )
    shutil.copyfile(f"{smk.output.model}/manifest.json", smk.output.manifest)


def generate_job(smk: Any) -> None:
    from .common import read_jsonl

    run_generation(
        smk.input.model,
        read_jsonl(smk.input.prompts),
        dict(smk.params.decoding),
        smk.output[0],
        generator=smk.params.generator,
    )


def model_card_job(smk: Any) -> None:
    from .model_card import card_from_report

    w = smk.wildcards
    card_from_report(smk.input.manifest, smk.input.results, smk.output[0], pair=w.pair, variant=w.variant)


def prompts_job(smk: Any) -> None:
    from .common import write_jsonl
    from .prompts import load_prompt_set

    spec = dict(smk.params.spec)
    if spec["source"] == "world":
        spec = {"source": "file", "path": smk.input.world, "limit": spec.get("limit")}
    write_jsonl(smk.output[0], load_prompt_set(spec, limit=spec.get("limit")))


def reference_job(smk: Any) -> None:
    from .prompts import load_reference_outputs

    spec = dict(smk.params.spec)
    limit = spec.pop("limit", None)
    write_json(smk.output[0], load_reference_outputs(spec, limit=limit))


def report_job(smk: Any) -> None:
    from .report import build_report

    build_report(dict(smk.input.items()), dict(smk.output.items()), dict(smk.params.report))


def score_job(smk: Any) -> None:
    score_file(smk.input.generations, smk.output[0], dict(smk.params.rm), rm_dir=smk.input.get("rm"))


def train_job(smk: Any) -> None:
    train_from_rule(dict(smk.input.items()), smk.output[0], smk.params.train, threads=smk.threads)


def world_data_job(smk: Any) -> None:
    from .world.build import write_world

    write_world(smk.params.world, dict(smk.output.items()))


def world_tokenizer_job(smk: Any) -> None:
    from .world.tokenizer import build

    build(list(smk.input), smk.output[0], smk.params.vocab_size)


def alpaca_eval_judge_job(smk: Any) -> None:
    from .alpaca_eval_judge import run_alpaca_eval

    run_alpaca_eval(smk.input.generations, None, smk.output[0], smk.params.annotator)


def shapes_world_data_job(smk: Any) -> None:
    from .world.shapes_build import write_shapes_world

    write_shapes_world(dict(smk.params.world), dict(smk.output.items()))


def shapes_world_tokenizer_job(smk: Any) -> None:
    from .world.shapes_build import build_shapes_tokenizer

    build_shapes_tokenizer(smk.input.sft, smk.input.prefs, smk.output[0], smk.params.vocab_size)


def shapes_prompts_job(smk: Any) -> None:
    from .world.shapes_build import write_shapes_prompts

    write_shapes_prompts(smk.input.world, smk.output[0], dict(smk.params.spec))


def hallucination_job(smk: Any) -> None:
    from .hallucination import score_generations

    score_generations(smk.input.generations, smk.output[0], dict(smk.params.spec), seed=smk.params.seed)


def evaluation_report_job(smk: Any) -> None:
    from .report.evaluation_pages import build_evaluation_report

    build_evaluation_report(dict(smk.input.items()), dict(smk.output.items()), dict(smk.params.report))


def hallucination_report_job(smk: Any) -> None:
    from .hallucination_report import build_hallucination_report

    build_hallucination_report(dict(smk.input.items()), dict(smk.output.items()), dict(smk.params.report))


from .search.jobs import (  # noqa: E402,F401  (the search and logit rules' jobs, found by name)
    generate_logit_job,
    logit_report_job,
    search_plan_job,
    search_report_job,
    search_result_job,
)


def capability_job(smk: Any) -> None:
    from .capability import capability_job as run

    run(smk.input.model, smk.output[0], dict(smk.params.spec), smk.params.task_dir)


def local_judge_job(smk: Any) -> None:
    from .local_judge import judge_files

    judge_files(
        smk.input.generations,
        smk.input.baseline,
        smk.input.judge,
        smk.params.cache,
        smk.output[0],
        n_boot=smk.params.n_boot,
    )


def mtbench_answers_job(smk: Any) -> None:
    from .mtbench import generate_file

    generate_file(smk.input.model, smk.output[0], model_id=smk.params.model_id, **smk.params.generation)


def mtbench_grade_job(smk: Any) -> None:
    from .mtbench import grade_file

    grading = smk.params.grading
    grade_file(
        smk.input.answers, grading["judge"], smk.output[0], judge_dir=smk.input.get("judge"), n_runs=grading["n_runs"]
    )
