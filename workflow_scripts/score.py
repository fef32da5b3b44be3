"""Reward stage: score every (instruction, answer) pair with a sequence-classification reward model.

Why not ``pipeline("text-classification", return_all_scores=True)`` as the official ExPO script
does: transformers 5 silently ignores ``return_all_scores`` and the pipeline applies its own
padding and post-processing. Here the model's raw logit (``logits[:, 0]``) is read directly, in
batches sorted by length (less padding; order restored afterwards).

Input formatting follows the official ExPO scoring of ``weqweasdas/RM-Mistral-7B``: the pair is
rendered with the *reward model's* chat template as ``[user, assistant]``. The official code then
deletes the BOS string because the tokenizer adds BOS again; we strip a *leading* BOS string only
when the tokenizer would add one itself, so the model always sees exactly one BOS (also for
tokenizers that add none, where deleting it would leave zero).

Reward models without a chat template get the documented plain format :data:`PLAIN_FORMAT`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .common import StageParser, pick_device, read_json, run_cli, setup_logging, write_json
from .model_kind import require_model_kind

log = logging.getLogger(__name__)

PLAIN_FORMAT = "User: {instruction}\n\nAssistant: {output}"
"""Text scored when the RM tokenizer has no chat template (tokenized with its special tokens)."""

_HUGE = 10**7  # tokenizers report ``model_max_length`` ~1e30 when they have no limit


def tokenizer_adds_bos(tokenizer) -> bool:
    """Whether ``tokenizer(text)`` prepends BOS on its own (Llama/Mistral do, many others do not)."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return len(ids) > 0 and ids[0] == bos


def format_for_rm(tokenizer, instruction: str, output: str) -> str:
    """The text the reward model scores for one answer (see module docstring for the BOS rule)."""
    if getattr(tokenizer, "chat_template", None):
        chat = [{"role": "user", "content": str(instruction)}, {"role": "assistant", "content": str(output)}]
        text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=False)
        bos = tokenizer.bos_token
        if bos and text.startswith(bos) and tokenizer_adds_bos(tokenizer):
            text = text[len(bos) :]
        return text
    return PLAIN_FORMAT.format(instruction=instruction, output=output)


def encode_for_rm(
    tokenizer, records: Sequence[Mapping[str, Any]], max_length: int | None
) -> tuple[list[list[int]], int]:
    """Token ids per record, truncated on the right to ``max_length``; returns (ids, n_truncated)."""
    if not getattr(tokenizer, "chat_template", None):
        log.warning(
            "reward tokenizer %r has no chat template; scoring the plain format %r",
            getattr(tokenizer, "name_or_path", "?"),
            PLAIN_FORMAT,
        )
    encoded, n_trunc = [], 0
    for i, r in enumerate(records):
        if "instruction" not in r or "output" not in r:
            raise ValueError(f"generation record #{i} (id={r.get('id')!r}) lacks 'instruction' or 'output'")
        ids = list(
            tokenizer(format_for_rm(tokenizer, r["instruction"], r["output"]), add_special_tokens=True)["input_ids"]
        )
        if max_length is not None and len(ids) > max_length:
            ids, n_trunc = ids[:max_length], n_trunc + 1
        encoded.append(ids)
    return encoded, n_trunc


def _default_max_length(tokenizer, config) -> int | None:
    limits = [
        v
        for v in (getattr(tokenizer, "model_max_length", None), getattr(config, "max_position_embeddings", None))
        if isinstance(v, int) and 0 < v < _HUGE
    ]
    return min(limits) if limits else None


def score(
    rm_dir: str | Path,
    records: list[dict],
    *,
    batch_size: int = 16,
    device: str = "auto",
    trust_remote_code: bool = False,
    max_length: int | None = None,
) -> list[float]:
    """Raw reward (``logits[:, 0]``) of every record's answer, in the records' order.

    ``max_length`` defaults to the smaller of the tokenizer's ``model_max_length`` and the model's
    ``max_position_embeddings``; longer inputs are truncated on the right with a warning that
    counts them (never silently). ``trust_remote_code`` is forwarded only when true, so a config
    has to opt in per reward model.
    """
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    rm_dir = Path(rm_dir)
    if not rm_dir.is_dir():
        raise ValueError(f"reward model folder {rm_dir} does not exist")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not records:
        return []
    require_model_kind(rm_dir, "reward", trust_remote_code=trust_remote_code)
    extra = {"trust_remote_code": True} if trust_remote_code else {}
    dev = pick_device(device)
    tok = AutoTokenizer.from_pretrained(rm_dir, **extra)
    dtype = torch.float32 if dev == "cpu" else torch.bfloat16  # bf16 on GPU, as the official code
    model = AutoModelForSequenceClassification.from_pretrained(rm_dir, dtype=dtype, **extra)
    model = model.to(dev).eval()
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if getattr(model.config, "pad_token_id", None) is None:
        # Sequence classifiers pool at the last non-pad token and refuse batches without a pad id.
        model.config.pad_token_id = tok.pad_token_id
    # Right padding keeps every real token at the position it has unbatched (batched == unbatched).
    tok.padding_side = "right"

    if max_length is None:
        max_length = _default_max_length(tok, model.config)
    encoded, n_trunc = encode_for_rm(tok, records, max_length)
    if n_trunc:
        log.warning(
            "%d of %d inputs were longer than %d tokens and were truncated on the right",
            n_trunc,
            len(records),
            max_length,
        )

    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    rewards: list[float | None] = [None] * len(encoded)
    warned = False
    bar = tqdm(total=len(encoded), desc=f"score {rm_dir.name}", unit="answer")
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = tok.pad({"input_ids": [encoded[i] for i in idx]}, padding=True, return_tensors="pt")
        with torch.inference_mode():
            logits = model(input_ids=batch["input_ids"].to(dev), attention_mask=batch["attention_mask"].to(dev)).logits
        if logits.shape[-1] != 1 and not warned:
            log.warning("reward model %s has %d outputs; using logits[:, 0] as the reward", rm_dir, logits.shape[-1])
            warned = True
        for i, v in zip(idx, logits[:, 0].float().cpu().tolist()):
            rewards[i] = v
        bar.update(len(idx))
    bar.close()
    return rewards  # type: ignore[return-value]


def write_scores(ids: Sequence[str], rewards: Sequence[float], path: str | Path) -> None:
    """Write ``[{"id", "reward"}, ...]`` atomically; rejects mismatched lengths and NaN/inf."""
    if len(ids) != len(rewards):
        raise ValueError(f"{len(ids)} ids but {len(rewards)} rewards")
    rows = []
    for i, r in zip(ids, rewards):
        if not math.isfinite(float(r)):
            raise ValueError(f"reward for id {i!r} is not finite ({r!r})")
        rows.append({"id": str(i), "reward": float(r)})
    write_json(path, rows)


def record_ids(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The records' ids (their index as text when a file has none)."""
    return [str(r.get("id", i)) for i, r in enumerate(records)]


def main(argv: list[str] | None = None) -> None:
    ap = StageParser(description="Score generations with a reward model (raw logit).")
    ap.add_argument("--rm", required=True, help="reward model folder")
    ap.add_argument("--generations", required=True, help="model_outputs JSON from the generate stage")
    ap.add_argument("--out", required=True, help="scores JSON ([{id, reward}])")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--max-length", type=int, default=None)
    ap.add_argument("--trust-remote-code", action="store_true")
    ap.add_argument("--log", default=None, help="also log to this file")
    args = ap.parse_args(argv)
    setup_logging(args.log)
    records = read_json(args.generations)
    if not isinstance(records, list):
        raise ValueError(f"{args.generations}: expected a JSON list of generation records")
    rewards = score(
        args.rm,
        records,
        batch_size=args.batch_size,
        device=args.device,
        trust_remote_code=args.trust_remote_code,
        max_length=args.max_length,
    )
    write_scores(record_ids(records), rewards, args.out)
    if rewards:
        log.info("wrote %s: %d rewards, mean %.4f", args.out, len(rewards), sum(rewards) / len(rewards))


if __name__ == "__main__":
    run_cli(main)
