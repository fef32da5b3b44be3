"""What every trainer shares: tokenizer/model loading, TrainingArguments, the timing callback, the
per-step history and the atomic save of model + manifest."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import math
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..common import atomic_dir, write_json
from ..model_kind import require_model_kind
from .data import PathLike

log = logging.getLogger(__name__)

MANIFEST_NAME = "training_manifest.json"
HISTORY_NAME = "training_history.csv"
ADAPTER_DIR = "lora_adapter"
DEFAULT_LORA: dict[str, Any] = {
    "r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.0,
    "target_modules": "all-linear",
}


def _load_tokenizer(path: PathLike, *, plain_ok: bool = False):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if plain_ok and not tok.chat_template:
        # Encoder reward models (BERT/MiniLM) have no chat template and no EOS; they are trained and
        # scored on score.PLAIN_FORMAT with their own [CLS]/[SEP] (workflow_scripts/minilm.py).
        if tok.pad_token is None:
            raise ValueError(f"tokenizer in {path} has neither a chat template nor a pad_token")
        return tok
    if tok.eos_token is None:
        raise ValueError(f"tokenizer in {path} has no eos_token; generation could never stop")
    if tok.pad_token is None:
        # Common for released base models (Llama, Mistral); TRL would do the same silently.
        log.warning("tokenizer in %s has no pad_token; using eos_token %r for padding", path, tok.eos_token)
        tok.pad_token = tok.eos_token
    if not tok.chat_template:
        raise ValueError(f"tokenizer in {path} has no chat template")
    return tok


def _llama_config(model_init: dict, tok, *, num_labels: int | None = None):
    """LlamaConfig from user kwargs, with vocab/special-token ids forced to the tokenizer's."""
    from transformers import LlamaConfig

    kw = dict(model_init)
    kw.update(
        vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )
    if num_labels is not None:
        kw["num_labels"] = num_labels
    return LlamaConfig(**kw)


def _init_model(model_init: dict | PathLike, tok, *, seed: int, reward: bool = False, dtype=None):
    """Load a checkpoint or build a fresh Llama (seeded) from a dict of LlamaConfig kwargs."""
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        LlamaForCausalLM,
        LlamaForSequenceClassification,
    )

    torch.manual_seed(seed)
    if isinstance(model_init, dict):
        cfg = _llama_config(model_init, tok, num_labels=1 if reward else None)
        model = (LlamaForSequenceClassification if reward else LlamaForCausalLM)(cfg)
        return model.to(dtype) if dtype is not None else model
    path = Path(model_init)
    if not (path / "config.json").exists():
        raise ValueError(f"model_init {path} is not a checkpoint folder (no config.json)")
    kw: dict[str, Any] = {"dtype": dtype or torch.float32}
    if reward:
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, **kw)
    else:
        require_model_kind(path, "causal_lm", tokenizer=False)
        model = AutoModelForCausalLM.from_pretrained(path, **kw)
    model.config.pad_token_id = tok.pad_token_id
    return model


def _common_args(
    *,
    device: str,
    epochs: float,
    lr: float,
    batch_size: int,
    grad_accum: int,
    seed: int,
    scratch: Path,
    extra: dict | None = None,
) -> dict:
    """TrainingArguments shared by all trainers: no saving, no eval, log every step, seeded."""
    import torch

    on_gpu = device.startswith("cuda")
    args = dict(
        output_dir=str(scratch),
        num_train_epochs=float(epochs),
        learning_rate=float(lr),
        per_device_train_batch_size=int(batch_size),
        gradient_accumulation_steps=int(grad_accum),
        seed=int(seed),
        data_seed=int(seed),
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        logging_steps=1,
        logging_first_step=True,
        disable_tqdm=False,
        dataloader_num_workers=0,
        use_cpu=not on_gpu,
        bf16=bool(on_gpu and torch.cuda.is_bf16_supported()),
        fp16=False,
        # TRL turns checkpointing on by default; on tiny CPU models it only costs time. The
        # transformers-5 name avoids the deprecation warning of `gradient_checkpointing`.
        activation_checkpointing=False,
        dataset_num_proc=None,
        lr_scheduler_type="linear",
        warmup_steps=0,
        weight_decay=0.0,
    )
    args.update(extra or {})
    return args


def _save_generation_config(model, tok, folder: Path) -> None:
    """generation_config.json with the tokenizer's EOS/PAD so generation stops at end of turn."""
    from transformers import GenerationConfig

    gen = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    gen.save_pretrained(folder)


def _library_versions() -> dict:
    import importlib.metadata as md

    out = {}
    for name in ("torch", "transformers", "trl", "peft", "datasets", "accelerate"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def _pixels_digest(obj: Any) -> str:
    """JSON stand-in for a decoded image (hub datasets give PIL images): the hash of its pixels."""
    if hasattr(obj, "tobytes"):
        return hashlib.sha256(obj.tobytes()).hexdigest()
    raise TypeError(f"training row holds a {type(obj).__name__}, which cannot be hashed")


def _sha256_rows(rows: Sequence[dict]) -> str:
    h = hashlib.sha256()
    for r in rows:
        h.update(json.dumps(r, sort_keys=True, ensure_ascii=False, default=_pixels_digest).encode())
    return h.hexdigest()


def step_history(log_history: list[dict]) -> list[dict]:
    """Per-step training log rows (those with a ``loss``), ``step``/``epoch`` first."""
    return [dict(r) for r in log_history if "loss" in r and "train_runtime" not in r]


def write_history_csv(rows: list[dict], path: Path) -> None:
    """One CSV row per logged step; columns = union of keys (``step``, ``epoch``, ``loss`` first)."""
    keys: list[str] = []
    for r in rows:
        for k in r:
            if k not in keys:
                keys.append(k)
    first = [k for k in ("step", "epoch", "loss") if k in keys]
    cols = first + sorted(k for k in keys if k not in first)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in cols})


def _final_metrics(history: list[dict], keys: Sequence[str], tail: int = 10) -> dict:
    """Last value and mean over the last ``tail`` logged steps for each metric key.

    Per-step metrics on a small batch are noisy; the tail mean is what a reader should compare.
    """
    out: dict[str, Any] = {}
    for k in keys:
        vals = [r[k] for r in history if isinstance(r.get(k), (int, float))]
        if vals:
            out[f"final_{k}"] = vals[-1]
            t = vals[-tail:]
            out[f"tail_mean_{k}"] = sum(t) / len(t)
    return out


@contextlib.contextmanager
def _quiet_library_warnings():
    """Hide one known per-step deprecation warning TRL 1.16 triggers inside transformers 5.

    It is printed at every DPO step and drowns the training log; it is not actionable here.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def _timing_callback():
    """TrainerCallback recording wall time per optimizer step (for the overhead numbers)."""
    from transformers import TrainerCallback

    class _Timer(TrainerCallback):
        def __init__(self) -> None:
            self.t_begin = None
            self.t_last = None
            self.step_times: list[float] = []

        def on_train_begin(self, args, state, control, **kw):
            self.t_begin = self.t_last = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            now = time.perf_counter()
            self.step_times.append(now - self.t_last)
            self.t_last = now

    return _Timer()


def _fit(trainer) -> tuple[float, float]:
    """Run ``trainer.train()`` with the libraries' expected warnings quieted; return the wall-clock
    (start, end) the manifest's timing summary needs. One place for every trainer we run."""
    t0 = time.perf_counter()
    with _quiet_library_warnings():
        trainer.train()
    return t0, time.perf_counter()


def _timing_summary(timer, t_start: float, t_train_begin: float, t_train_end: float) -> dict:
    st = timer.step_times
    return {
        "setup_s": round(t_train_begin - t_start, 3),
        "train_s": round(t_train_end - t_train_begin, 3),
        "first_step_s": round(st[0], 4) if st else None,
        "mean_step_s": round(sum(st[1:]) / max(1, len(st) - 1), 4) if len(st) > 1 else None,
    }


def _finish(trainer, model, tok, out: PathLike, manifest: dict, *, merge_lora: bool = False, save_dtype=None) -> dict:
    """Write the model, tokenizer, generation config, manifest and history atomically.

    With ``merge_lora`` the peft adapter is first saved under ``lora_adapter/`` (provenance, and
    so the merge can be checked) and then merged into full weights, since extrapolation needs
    full tensors ``θ_aligned`` of the same shapes as ``θ_sft``.
    """
    history = step_history(trainer.state.log_history)
    summary = [r for r in trainer.state.log_history if "train_runtime" in r]
    manifest["steps"] = int(trainer.state.global_step)
    if summary:
        manifest["train_summary"] = summary[-1]
    with atomic_dir(out) as tmp:
        if merge_lora:
            model.save_pretrained(tmp / ADAPTER_DIR)
            model = model.merge_and_unload()
        if save_dtype is not None and model.dtype != save_dtype:
            model = model.to(save_dtype)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if not manifest.get("reward_model"):
            _save_generation_config(model, tok, tmp)
        write_history_csv(history, tmp / HISTORY_NAME)
        write_json(tmp / MANIFEST_NAME, manifest)
    log.info("saved %s (%d steps)", out, manifest["steps"])
    return manifest


def _check_common(*, epochs: float, lr: float, batch_size: int, max_length: int, grad_accum: int = 1) -> None:
    for name, v in (("epochs", epochs), ("lr", lr)):
        if not (isinstance(v, (int, float)) and v > 0 and math.isfinite(v)):
            raise ValueError(f"{name} must be a positive number, got {v!r}")
    for name, v in (("batch_size", batch_size), ("max_length", max_length), ("grad_accum", grad_accum)):
        if not (isinstance(v, int) and v >= 1):
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
