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

log = logging.getLogger(__name__)

PREFERENCE_KEYS = (
    "beta",
    "lr",
    "epochs",
    "batch_size",
    "grad_accum",
    "max_length",
    "gamma_beta_ratio",
    "lora",
    "seed",
    "ddpo",
)
VLM_KEYS = ("beta", "lr", "epochs", "batch_size", "grad_accum", "max_length", "lora", "seed", "ddpo", "freeze")
SUPERVISED_KEYS = ("epochs", "lr", "batch_size", "grad_accum", "max_length", "seed")


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
        from .train.vlm import train_vlm

        return train_vlm(
            inputs["base"],
            data,
            out,
            method=method,
            fraction=float(params.get("fraction", 1.0)),
            threads=threads,
            **_pick(hp, VLM_KEYS),
        )
    if method in ("sft", "reward"):
        model_init = params["init"] if params.get("init") else inputs["base"]
        tokenizer_dir = inputs.get("tokenizer") or inputs["base"]
        fn = train.train_sft if method == "sft" else train.train_reward
        return fn(model_init, tokenizer_dir, data, out, threads=threads, **_pick(hp, SUPERVISED_KEYS))
    if method in ("dpo", "simpo", "ddpo"):
        return train.train_preference(
            inputs["base"],
            data,
            out,
            method=method,
            fraction=float(params.get("fraction", 1.0)),
            threads=threads,
            **_pick(hp, PREFERENCE_KEYS),
        )
    raise ValueError(f"unknown training method {method!r}; expected sft, reward, dpo, simpo or ddpo")


def run_generation(
    model_dir: str, prompts: list[dict], decoding: Mapping[str, Any], out: str, *, generator: str
) -> None:
    """Generate answers and write the alpaca_eval `model_outputs` JSON."""
    from .generate import generate, write_generations

    spec = dict(decoding)
    backend = spec.pop("backend", "auto")
    batch_size = int(spec.pop("batch_size", 32))
    records = generate(model_dir, prompts, spec, backend=backend, batch_size=batch_size, generator=generator)
    write_generations(records, out)


def score_file(generations: str, out: str, rm: Mapping[str, Any], *, rm_dir: str | None) -> None:
    """Score a generations file with a reward model, or with the demo world's gold reward.

    The gold reward is a program over the world's task metadata: it imports no torch, so these
    jobs cost a fraction of a second.
    """
    records = read_json(generations)
    ids = [str(r.get("id", i)) for i, r in enumerate(records)]
    if rm.get("type") == "gold":
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
