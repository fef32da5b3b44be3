"""Supervised fine-tuning with TRL's SFTTrainer (loss on the assistant turn only)."""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from ..common import pick_device, set_threads
from .base import (
    _check_common,
    _common_args,
    _final_metrics,
    _finish,
    _fit,
    _init_model,
    _library_versions,
    _load_tokenizer,
    _sha256_rows,
    _timing_callback,
    _timing_summary,
    step_history,
)
from .data import PathLike, _describe, _length_stats, load_rows, render_pair, validate_columns

log = logging.getLogger(__name__)


def _render_sft_rows(tok, rows: list[dict], max_length: int):
    """The rendered (prompt, completion) dataset and its length statistics (over-long ones are logged)."""
    from datasets import Dataset

    rendered = [render_pair(tok, r["prompt"], r["completion"]) for r in rows]
    stats = _length_stats(tok, (p + c for p, c in rendered), max_length)
    if stats["n_over_max_length"]:
        log.warning(
            "%d of %d SFT examples exceed max_length=%d and lose their EOS to truncation",
            stats["n_over_max_length"],
            len(rows),
            max_length,
        )
    return Dataset.from_list([{"prompt": p, "completion": c} for p, c in rendered]), stats


def train_sft(
    model_init: dict | PathLike,
    tokenizer_dir: PathLike,
    data: PathLike | list[dict],
    out: PathLike,
    *,
    epochs: float,
    lr: float,
    batch_size: int,
    max_length: int,
    seed: int = 0,
    threads: int | None = None,
    device: str = "auto",
    grad_accum: int = 1,
) -> dict:
    """Supervised fine-tuning on ``{"prompt", "completion"}`` rows; loss on the completion only.

    ``model_init`` is a checkpoint folder (fine-tune) or a dict of LlamaConfig kwargs (from scratch,
    vocab and special ids from the tokenizer). The completion is the chat-template assistant turn
    ending with EOS (see :func:`render_pair`), so the model learns to stop.

    It stays one function on purpose: with rendering in a helper, what is left is the flat
    sequence load → fit → manifest, and the manifest reads best beside the arguments it records.
    """
    from trl import SFTConfig, SFTTrainer

    t_start = time.perf_counter()
    _check_common(epochs=epochs, lr=lr, batch_size=batch_size, max_length=max_length, grad_accum=grad_accum)
    rows = load_rows(data)
    source = _describe(data)
    validate_columns(rows, ("prompt", "completion"), source)
    if not rows:
        raise ValueError(f"{source}: no SFT examples")
    set_threads(threads)
    device = pick_device(device)
    tok = _load_tokenizer(tokenizer_dir)
    ds, stats = _render_sft_rows(tok, rows, max_length)
    model = _init_model(model_init, tok, seed=seed)

    with tempfile.TemporaryDirectory(prefix="sft-scratch-") as scratch:
        cfg = SFTConfig(
            **_common_args(
                device=device,
                epochs=epochs,
                lr=lr,
                batch_size=batch_size,
                grad_accum=grad_accum,
                seed=seed,
                scratch=Path(scratch),
                extra=dict(max_length=max_length, completion_only_loss=True, packing=False),
            )
        )
        timer = _timing_callback()
        trainer = SFTTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tok, callbacks=[timer])
        t0, t1 = _fit(trainer)
    history = step_history(trainer.state.log_history)
    manifest = {
        "stage": "sft",
        "model_init": model_init if isinstance(model_init, dict) else str(model_init),
        "tokenizer": str(tokenizer_dir),
        "data": source,
        "data_sha256": _sha256_rows(rows),
        "n_examples": len(rows),
        "seed": seed,
        "hyperparameters": {
            "epochs": epochs,
            "lr": lr,
            "batch_size": batch_size,
            "grad_accum": grad_accum,
            "max_length": max_length,
        },
        "device": device,
        "threads": threads,
        "length_stats": stats,
        **_final_metrics(history, ("loss", "mean_token_accuracy")),
        "timing": _timing_summary(timer, t_start, t0, t1),
        "library_versions": _library_versions(),
    }
    model = trainer.model
    return _finish(trainer, model, tok, out, manifest)
