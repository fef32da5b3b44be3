"""Capability regression with lm-evaluation-harness: does extrapolation cost general ability?

Why: the ExPO paper backs "little impact on capabilities" with the Open LLM Leaderboard tasks (ARC,
HellaSwag, MMLU, TruthfulQA-mc2, Winogrande, GSM8K). This stage runs ``lm_eval.simple_evaluate``
(Hugging Face backend; vLLM where configured) on one checkpoint and keeps, per task, every metric the
harness reports with its standard error — nothing is re-scored here.

Offline: :func:`build_world_task` writes an lm-eval task (YAML over a local JSONL) from the demo
world — multiple-choice "Opposite of hot?" and "Which of these is a fruit?" questions graded by
log-likelihood (``acc``, ``acc_norm``) — so tests and the demo exercise the real harness without the
hub. ``python -m workflow_scripts.capability --help``.
"""

from __future__ import annotations

import argparse
import logging
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from workflow_scripts.common import setup_logging, write_json, write_jsonl

logger = logging.getLogger(__name__)

WORLD_TASK = "expo_world_mc"
OPEN_LLM_LEADERBOARD = {
    "arc_challenge": 25,
    "hellaswag": 10,
    "mmlu": 5,
    "truthfulqa_mc2": 0,
    "winogrande": 5,
    "gsm8k": 5,
}
"""The paper's capability set and the usual shots (Open LLM Leaderboard v1)."""


def world_questions(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` multiple-choice questions (``question``, ``choices``, ``answer`` index) from the demo world."""
    from workflow_scripts.world.tasks import CATEGORIES, OPPOSITES

    rng = random.Random(seed)
    words = sorted(OPPOSITES)
    cats = sorted(CATEGORIES)
    out = []
    for i in range(n):
        if i % 2 == 0:
            w = rng.choice(words)
            right = OPPOSITES[w]
            wrong = rng.sample([x for x in words if x not in (w, right)], 3)
            question = f"Opposite of {w}?"
        else:
            cat = rng.choice(cats)
            right = rng.choice(CATEGORIES[cat])
            wrong = rng.sample([x for c in cats if c != cat for x in CATEGORIES[c]], 3)
            question = f"Which of these is one of the {cat}?"
        choices = [right, *wrong]
        rng.shuffle(choices)
        out.append({"question": question, "choices": choices, "answer": choices.index(right)})
    return out


def build_world_task(out_dir: str | Path, *, n: int = 40, seed: int = 0) -> Path:
    """Write ``<out_dir>/expo_world_mc.yaml`` and its JSONL; return the folder (lm-eval ``include_path``)."""
    import yaml

    out_dir = Path(out_dir).resolve()
    data = out_dir / f"{WORLD_TASK}.jsonl"
    write_jsonl(data, world_questions(n, seed))
    task = {
        "task": WORLD_TASK,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "Question: {{question}}\nAnswer:",
        "doc_to_choice": "{{choices}}",
        "doc_to_target": "{{answer}}",
        "metric_list": [
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
        ],
        "metadata": {"version": 1.0},
    }
    (out_dir / f"{WORLD_TASK}.yaml").write_text(yaml.safe_dump(task, sort_keys=False), encoding="utf-8")
    return out_dir


def _metrics(task_result: Mapping[str, Any]) -> dict[str, float]:
    """lm-eval's ``"acc,none"`` / ``"acc_stderr,none"`` keys as ``acc`` / ``acc_stderr``."""
    out = {}
    for key, value in task_result.items():
        if "," not in key or not isinstance(value, (int, float)):
            continue
        name, filt = key.split(",", 1)
        out[name if filt == "none" else f"{name}[{filt}]"] = float(value)
    return out


def evaluate(
    model_dir: str | Path,
    tasks: Mapping[str, int | None],
    *,
    include_path: str | Path | None = None,
    backend: str = "hf",
    limit: int | None = None,
    batch_size: int = 1,
    device: str = "cpu",
    seed: int = 0,
) -> dict[str, Any]:
    """Run lm-eval on ``model_dir`` for ``tasks`` (name → few-shot count, None = the task's default).

    Tasks with different shot counts are separate harness calls (``num_fewshot`` is per call).
    Returns ``{"tasks": {task: {metric: value}}, "lm_eval_version", "n_samples"}``.
    """
    import importlib.metadata

    import lm_eval
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(include_path) if include_path else None)
    unknown = [t for t in tasks if not manager.match_tasks([t])]
    if unknown:
        raise ValueError(f"unknown lm-eval task(s) {unknown} (include_path={include_path})")
    dtype = "float32" if device == "cpu" else "auto"
    model_args = f"pretrained={Path(model_dir).resolve()},dtype={dtype}"
    results: dict[str, dict[str, float]] = {}
    n_samples: dict[str, int] = {}
    by_shots: dict[int | None, list[str]] = {}
    for task, shots in tasks.items():
        by_shots.setdefault(shots, []).append(task)
    for shots, names in by_shots.items():
        logger.info("lm-eval %s on %s (%s-shot)", names, model_dir, "default" if shots is None else shots)
        out = lm_eval.simple_evaluate(
            model=backend,
            model_args=model_args,
            tasks=names,
            num_fewshot=shots,
            limit=limit,
            batch_size=batch_size,
            device=device,
            task_manager=manager,
            random_seed=seed,
            numpy_random_seed=seed,
            torch_random_seed=seed,
            fewshot_random_seed=seed,
            log_samples=False,
        )
        for task, res in out["results"].items():
            results[task] = _metrics(res)
        for task, n in (out.get("n-samples") or {}).items():
            n_samples[task] = int(n.get("effective", n.get("original", 0)))
    return {"tasks": results, "n_samples": n_samples, "lm_eval_version": importlib.metadata.version("lm_eval")}


def capability_file(
    model_dir: str | Path,
    out: str | Path,
    tasks: Mapping[str, int | None],
    *,
    world_task_dir: str | Path | None = None,
    limit: int | None = None,
    backend: str = "hf",
    device: str = "cpu",
) -> dict[str, Any]:
    """Run :func:`evaluate` on one checkpoint (building the offline world task first when asked); write ``out``."""
    include = build_world_task(world_task_dir) if world_task_dir is not None else None
    result = {
        "model": str(model_dir),
        **evaluate(model_dir, tasks, include_path=include, backend=backend, limit=limit, device=device),
    }
    write_json(out, result)
    logger.info("wrote %s", out)
    return result


def capability_job(model_dir: str, out: str, spec: Mapping[str, Any], task_dir: str) -> dict[str, Any]:
    """The ``capability`` rule: ``evaluation.capability`` of the config on one variant's checkpoint."""
    return capability_file(
        model_dir,
        out,
        dict(spec["tasks"]),
        world_task_dir=task_dir if spec.get("world_task") else None,
        limit=spec.get("limit"),
        backend=spec.get("backend", "hf"),
    )


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m workflow_scripts.capability", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, type=Path, help="checkpoint folder (HF format)")
    ap.add_argument("--task", action="append", required=True, help="TASK or TASK:SHOTS (repeatable)")
    ap.add_argument("--world-task-dir", type=Path, default=None, help=f"build the offline {WORLD_TASK} task here")
    ap.add_argument("--include-path", type=Path, default=None, help="folder of extra lm-eval task YAMLs")
    ap.add_argument("--backend", default="hf", choices=["hf", "vllm"])
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--log", default=None)
    args = ap.parse_args(argv)
    setup_logging(args.log)
    tasks: dict[str, int | None] = {}
    for spec in args.task:
        name, _, shots = spec.partition(":")
        tasks[name] = int(shots) if shots else None
    if args.include_path is not None and args.world_task_dir is None:
        result = evaluate(
            args.model,
            tasks,
            include_path=args.include_path,
            backend=args.backend,
            limit=args.limit,
            batch_size=args.batch_size,
            device=args.device,
        )
        write_json(args.out, {"model": str(args.model), **result})
        return
    capability_file(
        args.model,
        args.out,
        tasks,
        world_task_dir=args.world_task_dir,
        limit=args.limit,
        backend=args.backend,
        device=args.device,
    )


if __name__ == "__main__":
    main()
