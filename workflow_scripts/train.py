"""Training stage: SFT, reward model and preference alignment (DPO / SimPO) with TRL.

Why this module exists: ExPO's weak-to-strong claim is about models aligned on a *fraction* of the
preference data, so the workflow must produce those partially aligned checkpoints itself,
reproducibly (fixed seeds, a nested deterministic subset per fraction), instead of relying on
someone's uploaded weights. The demo world also needs an SFT model and a reward model; all three
trainers share the same conventions so every checkpoint is an ordinary Hugging Face folder that the
rest of the DAG loads with ``from_pretrained``.

Conventions shared by every trainer here:

* Plain-text data (``prompt`` = user turn, ``completion``/``chosen``/``rejected`` = assistant turn)
  is rendered with the tokenizer's own chat template (:func:`render_pair`). For the policy
  trainers (SFT, DPO, SimPO) the assistant text is cut right after its EOS, so the trained
  tokens always *end with EOS* (the demo template puts a ``"\\n"`` after EOS, which TRL would
  otherwise train on, and CPOTrainer would even append a second EOS after). The reward model sees
  the full template rendering of ``[user, assistant]`` (exactly what
  ``tokenizer.apply_chat_template(messages)`` gives a scorer).
* Nothing mid-run touches the disk (``save_strategy="no"``, no eval loop); the trainer's scratch
  ``output_dir`` is a throwaway temp folder; the result is written atomically with
  :func:`~workflow_scripts.common.atomic_dir` together with ``training_manifest.json`` and
  ``training_history.csv`` (one row per optimizer step from ``trainer.state.log_history``).
* CPU: fp32, no gradient checkpointing (TRL defaults it on, which only costs time on tiny models).
  GPU: bf16 mixed precision, gradient accumulation as configured.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import json
import logging
import math
import random
import tempfile
import time
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .common import atomic_dir, pick_device, read_json, read_records, run_cli, set_threads, setup_logging, write_json
from .model_kind import require_model_kind

log = logging.getLogger(__name__)

METHODS = ("dpo", "simpo")
PREFERENCE_COLUMNS = ("prompt", "chosen", "rejected")
MANIFEST_NAME = "training_manifest.json"
HISTORY_NAME = "training_history.csv"
ADAPTER_DIR = "lora_adapter"
DEFAULT_LORA: dict[str, Any] = {
    "r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.0,
    "target_modules": "all-linear",
}

PathLike = str | Path
DataSpec = PathLike | list[dict] | dict


# --------------------------------------------------------------------------------------------
# Data loading and validation
# --------------------------------------------------------------------------------------------


def _describe(data: Any) -> str:
    """A short name for a data source in error messages (the file path, or what it was)."""
    if isinstance(data, (str, Path)):
        return str(data)
    if isinstance(data, dict):
        return f"hub dataset {data.get('name')!r} split {data.get('split', 'train')!r}"
    return "<in-memory rows>"


def _load_hub_dataset(name: str, split: str, **kwargs: Any) -> Iterable[dict]:
    """Thin wrapper around ``datasets.load_dataset`` (one place for tests to monkeypatch)."""
    import datasets

    return datasets.load_dataset(name, split=split, **kwargs)


def _last_content(messages: Any, role: str) -> Any:
    """Content of the last message with ``role`` in a message list; non-lists pass through."""
    if not isinstance(messages, list):
        return messages
    for msg in reversed(messages):
        if isinstance(msg, dict) and msg.get("role") == role:
            return msg.get("content")
    return None


def _from_message_format(row: dict) -> dict:
    """Convert a hub preference row (UltraFeedback-binarized style) to plain prompt/chosen/rejected.

    ``HuggingFaceH4/ultrafeedback_binarized`` stores ``prompt`` as a string and ``chosen`` /
    ``rejected`` as full conversations ``[user, assistant]``; our trainers want the prompt text and
    the two assistant answers only (single-turn, which is what ExPO's evaluations use).
    """
    out = dict(row)
    prompt = row.get("prompt")
    if isinstance(prompt, list):
        prompt = _last_content(prompt, "user")
    if prompt is None and isinstance(row.get("chosen"), list):
        prompt = _last_content(row["chosen"], "user")
    out["prompt"] = prompt
    for key in ("chosen", "rejected"):
        if key in row:
            out[key] = _last_content(row[key], "assistant")
    return out


def load_rows(data: DataSpec) -> list[dict]:
    """Load rows from a JSONL/JSON file, an in-memory list, or a hub spec ``{"source": "hub", ...}``.

    Hub rows in message-list format are converted to plain text (see :func:`_from_message_format`).
    """
    if isinstance(data, list):
        return [dict(r) for r in data]
    if isinstance(data, dict):
        if data.get("source") != "hub" or not data.get("name"):
            raise ValueError(f"data spec {data!r}: expected {{'source': 'hub', 'name': ..., 'split': ...}}")
        extra = {k: v for k, v in data.items() if k not in ("source", "name", "split")}
        ds = _load_hub_dataset(data["name"], data.get("split", "train"), **extra)
        return [_from_message_format(dict(r)) for r in ds]
    return read_records(data, "data")


def validate_columns(rows: Sequence[dict], columns: Sequence[str], source: str) -> None:
    """Raise a ValueError naming the first missing/non-text column and the file it came from.

    Checked before any model is loaded so a bad config fails in seconds, not after minutes of
    tokenisation and model loading.
    """
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"{source}: row {i} is not an object")
        for col in columns:
            if col not in row:
                raise ValueError(
                    f"{source}: dataset is missing column {col!r} (row {i}; columns present: {sorted(row)})"
                )
            if not isinstance(row[col], str):
                raise ValueError(f"{source}: column {col!r} in row {i} must be text, got {type(row[col]).__name__}")


def select_fraction(n: int, fraction: float, seed: int = 0) -> list[int]:
    """Indices of a deterministic ``fraction`` subset of ``range(n)``, nested across fractions.

    One fixed seeded permutation of ``range(n)``; a fraction takes its first ``ceil(fraction*n)``
    entries. The 5 % set is therefore inside the 10 % set, which is what the weak-to-strong study
    needs (a larger fraction only *adds* data). A tiny tolerance keeps float noise such as
    ``0.1 * 30 = 3.0000000000000004`` from adding an extra example.
    """
    if not (0.0 < float(fraction) <= 1.0):
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    perm = list(range(n))
    random.Random(seed).shuffle(perm)
    k = min(n, math.ceil(float(fraction) * n - 1e-9))
    return perm[:k]


# --------------------------------------------------------------------------------------------
# Chat-template rendering
# --------------------------------------------------------------------------------------------


def _messages(prompt: str | list[dict]) -> list[dict]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


def tokenizer_adds_bos(tokenizer) -> bool:
    """Whether ``tokenizer(text)`` prepends BOS on its own (Llama/Mistral do; the demo one does not)."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    ids = tokenizer("a")["input_ids"]
    return len(ids) > 0 and ids[0] == bos


def render_pair(tokenizer, prompt: str | list[dict], answer: str) -> tuple[str, str]:
    """Render (prompt, answer) with the chat template: ``(prompt_text, answer_text)``.

    ``prompt_text`` is the template with the generation prompt opened (what generation feeds the
    model); ``answer_text`` is the rest of the full conversation cut right after the last EOS, so
    the trained completion ends with EOS and nothing after it. Derived from the template rather
    than hard-coded so another chat template works too; fails loudly if the template renders the
    prompt differently alone than inside the conversation.
    """
    msgs = _messages(prompt)
    prompt_text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(msgs + [{"role": "assistant", "content": answer}], tokenize=False)
    if not full.startswith(prompt_text):
        raise ValueError(
            "chat template renders the prompt differently with an answer; cannot split "
            f"prompt {prompt_text!r} from conversation {full[:200]!r}"
        )
    rest = full[len(prompt_text) :]
    # TRL tokenizes these strings with ``tokenizer(text)``; a tokenizer that adds BOS itself would
    # give a second BOS after the template's own one, so the template's BOS text is dropped here.
    bos = tokenizer.bos_token
    if bos and prompt_text.startswith(bos) and tokenizer_adds_bos(tokenizer):
        prompt_text = prompt_text[len(bos) :]
    eos = tokenizer.eos_token
    cut = rest.rfind(eos)
    rest = rest[: cut + len(eos)] if cut >= 0 else rest + eos
    return prompt_text, rest


def _conversation(prompt: str | list[dict], answer: str) -> list[dict]:
    return _messages(prompt) + [{"role": "assistant", "content": answer}]


def _length_stats(tokenizer, texts: Iterable[str], max_length: int) -> dict:
    lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    if not lengths:
        return {"max_tokens": 0, "mean_tokens": 0.0, "n_over_max_length": 0}
    return {
        "max_tokens": max(lengths),
        "mean_tokens": round(sum(lengths) / len(lengths), 2),
        "n_over_max_length": sum(n > max_length for n in lengths),
    }


# --------------------------------------------------------------------------------------------
# Models, trainer arguments, saving
# --------------------------------------------------------------------------------------------


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


def _sha256_rows(rows: Sequence[dict]) -> str:
    h = hashlib.sha256()
    for r in rows:
        h.update(json.dumps(r, sort_keys=True, ensure_ascii=False).encode())
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


# --------------------------------------------------------------------------------------------
# SFT
# --------------------------------------------------------------------------------------------


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
    """
    from datasets import Dataset
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
    rendered = [render_pair(tok, r["prompt"], r["completion"]) for r in rows]
    stats = _length_stats(tok, (p + c for p, c in rendered), max_length)
    if stats["n_over_max_length"]:
        log.warning(
            "%d of %d SFT examples exceed max_length=%d and lose their EOS to truncation",
            stats["n_over_max_length"],
            len(rows),
            max_length,
        )
    ds = Dataset.from_list([{"prompt": p, "completion": c} for p, c in rendered])
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


# --------------------------------------------------------------------------------------------
# Reward model
# --------------------------------------------------------------------------------------------


def score_conversations(
    model, tok, prompts: Sequence[str | list[dict]], answers: Sequence[str], *, batch_size: int = 32
) -> list[float]:
    """Scalar reward of each (prompt, answer) under a sequence-classification reward model.

    Uses the full chat-template rendering of ``[user, assistant]`` — the same text the reward
    model was trained on and what a scorer gets from ``tokenizer.apply_chat_template``.
    """
    import torch

    from .minilm import score_pairs, uses_plain_format

    if uses_plain_format(tok):  # encoder RMs: the plain format, tokenized exactly as the score stage does
        return score_pairs(model, tok, list(prompts), list(answers), batch_size=batch_size)
    model.eval()
    dev = next(model.parameters()).device
    scores: list[float] = []
    old_side = tok.padding_side
    tok.padding_side = "right"
    try:
        for i in range(0, len(prompts), batch_size):
            texts = [
                tok.apply_chat_template(_conversation(p, a), tokenize=False)
                for p, a in zip(prompts[i : i + batch_size], answers[i : i + batch_size])
            ]
            enc = tok(texts, add_special_tokens=False, padding=True, return_tensors="pt").to(dev)
            with torch.no_grad():
                logits = model(**enc).logits
            scores.extend(logits[:, 0].float().cpu().tolist())
    finally:
        tok.padding_side = old_side
    return scores


def pair_accuracy(model, tok, rows: Sequence[dict], *, batch_size: int = 32) -> dict:
    """Fraction of pairs where the RM scores ``chosen`` above ``rejected``, and the mean margin."""
    if not rows:
        return {"accuracy": None, "margin": None, "n": 0}
    prompts = [r["prompt"] for r in rows]
    c = score_conversations(model, tok, prompts, [r["chosen"] for r in rows], batch_size=batch_size)
    r_ = score_conversations(model, tok, prompts, [r["rejected"] for r in rows], batch_size=batch_size)
    margins = [a - b for a, b in zip(c, r_)]
    return {
        "accuracy": sum(m > 0 for m in margins) / len(margins),
        "margin": sum(margins) / len(margins),
        "n": len(margins),
    }


def train_reward(
    model_init: dict | PathLike,
    tokenizer_dir: PathLike,
    data: DataSpec,
    out: PathLike,
    *,
    epochs: float,
    lr: float,
    batch_size: int,
    max_length: int,
    seed: int = 0,
    heldout_fraction: float = 0.1,
    threads: int | None = None,
    device: str = "auto",
    grad_accum: int = 1,
) -> dict:
    """Train a 1-label Llama sequence classifier with TRL's RewardTrainer (Bradley-Terry loss).

    A seeded ``heldout_fraction`` slice (at least one pair when there are ≥ 2) is kept out of
    training and its pair accuracy goes into the manifest: the demo world's reward model stands in
    for a real one, and the report must say how good a judge it is.
    """
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    t_start = time.perf_counter()
    _check_common(epochs=epochs, lr=lr, batch_size=batch_size, max_length=max_length, grad_accum=grad_accum)
    if not (0.0 <= heldout_fraction < 1.0):
        raise ValueError(f"heldout_fraction must be in [0, 1), got {heldout_fraction!r}")
    rows = load_rows(data)
    source = _describe(data)
    validate_columns(rows, PREFERENCE_COLUMNS, source)
    perm = list(range(len(rows)))
    random.Random(seed).shuffle(perm)
    n_held = math.ceil(heldout_fraction * len(rows)) if heldout_fraction > 0 and len(rows) >= 2 else 0
    held = [rows[i] for i in sorted(perm[:n_held])]
    train_rows = [rows[i] for i in sorted(perm[n_held:])]
    if not train_rows:
        raise ValueError(f"{source}: no preference pairs left to train the reward model on")
    set_threads(threads)
    device = pick_device(device)
    tok = _load_tokenizer(tokenizer_dir, plain_ok=True)
    from .minilm import plain_preference_rows, uses_plain_format

    plain = uses_plain_format(tok)
    if plain:  # no chat template (BERT/MiniLM): pre-tokenized exactly as the score stage encodes
        ds_rows, stats = plain_preference_rows(tok, train_rows, max_length)
        ds = Dataset.from_list(ds_rows)
    else:
        convs = [
            (_conversation(r["prompt"], r["chosen"]), _conversation(r["prompt"], r["rejected"])) for r in train_rows
        ]
        stats = _length_stats(
            tok, (tok.apply_chat_template(c, tokenize=False) for pair in convs for c in pair), max_length
        )
        if stats["n_over_max_length"]:
            log.warning(
                "%d reward-model sequences exceed max_length=%d; RewardTrainer drops those pairs",
                stats["n_over_max_length"],
                max_length,
            )
        ds = Dataset.from_list(
            [
                {
                    "prompt": [{"role": "user", "content": r["prompt"]}]
                    if isinstance(r["prompt"], str)
                    else r["prompt"],
                    "chosen": [{"role": "assistant", "content": r["chosen"]}],
                    "rejected": [{"role": "assistant", "content": r["rejected"]}],
                }
                for r in train_rows
            ]
        )
    model = _init_model(model_init, tok, seed=seed, reward=True)
    model.config.pad_token_id = tok.pad_token_id

    with tempfile.TemporaryDirectory(prefix="rm-scratch-") as scratch:
        cfg = RewardConfig(
            **_common_args(
                device=device,
                epochs=epochs,
                lr=lr,
                batch_size=batch_size,
                grad_accum=grad_accum,
                seed=seed,
                scratch=Path(scratch),
                extra=dict(max_length=max_length),
            )
        )
        timer = _timing_callback()
        trainer = RewardTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tok, callbacks=[timer])
        t0, t1 = _fit(trainer)
    model = trainer.model
    history = step_history(trainer.state.log_history)
    manifest = {
        "stage": "reward",
        "reward_model": True,
        "model_init": model_init if isinstance(model_init, dict) else str(model_init),
        "tokenizer": str(tokenizer_dir),
        "data": source,
        "data_sha256": _sha256_rows(rows),
        "n_pairs": len(rows),
        "n_train_pairs": len(train_rows),
        "n_heldout_pairs": len(held),
        "seed": seed,
        "hyperparameters": {
            "epochs": epochs,
            "lr": lr,
            "batch_size": batch_size,
            "grad_accum": grad_accum,
            "max_length": max_length,
            "heldout_fraction": heldout_fraction,
        },
        "device": device,
        "threads": threads,
        "length_stats": stats,
        **_final_metrics(history, ("loss", "accuracy", "margin")),
        "heldout": pair_accuracy(model, tok, held),
        "input_format": (
            "score.PLAIN_FORMAT tokenized with the tokenizer's special tokens (no chat template)"
            if plain
            else "tokenizer.apply_chat_template([user, assistant]) (full template, no generation prompt)"
        ),
        "timing": _timing_summary(timer, t_start, t0, t1),
        "library_versions": _library_versions(),
    }
    log.info("reward model held-out accuracy %s on %d pairs", manifest["heldout"]["accuracy"], len(held))
    return _finish(trainer, model, tok, out, manifest)


# --------------------------------------------------------------------------------------------
# Preference alignment: DPO / SimPO
# --------------------------------------------------------------------------------------------


def validate_preference_config(
    method: str, fraction: float, *, beta: float, gamma_beta_ratio: float, lora: dict | None
) -> None:
    """Config errors a user can make, raised before any data or model is touched."""
    if method not in METHODS:
        raise ValueError(f"unknown preference method {method!r}; expected one of {list(METHODS)}")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not (0.0 < fraction <= 1.0):
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    if not (isinstance(beta, (int, float)) and beta > 0):
        raise ValueError(f"beta must be positive, got {beta!r}")
    if method == "simpo" and not (isinstance(gamma_beta_ratio, (int, float)) and gamma_beta_ratio >= 0):
        raise ValueError(f"gamma_beta_ratio must be >= 0, got {gamma_beta_ratio!r}")
    if lora is not None and not isinstance(lora, dict):
        raise ValueError(f"lora must be a dict of peft LoraConfig arguments or null, got {lora!r}")


def prepare_preference_rows(data: DataSpec, fraction: float, subset_seed: int = 0) -> tuple[list[dict], dict]:
    """Load, validate and subset preference data; returns (rows used, info for the manifest)."""
    source = _describe(data)
    rows = load_rows(data)
    if not rows:
        raise ValueError(f"{source}: preference dataset is empty")
    validate_columns(rows, PREFERENCE_COLUMNS, source)
    idx = select_fraction(len(rows), fraction, subset_seed)
    if not idx:
        raise ValueError(f"{source}: fraction {fraction} of {len(rows)} pairs selects no pairs")
    subset = [rows[i] for i in idx]
    info = {
        "data": source,
        "data_sha256": _sha256_rows(rows),
        "n_pairs_total": len(rows),
        "n_pairs": len(subset),
        "subset_seed": subset_seed,
        "subset_sha256": hashlib.sha256(json.dumps(idx).encode()).hexdigest(),
    }
    return subset, info


def train_preference(
    base: PathLike,
    data: DataSpec,
    out: PathLike,
    *,
    method: str,
    fraction: float = 1.0,
    beta: float,
    lr: float,
    epochs: float,
    batch_size: int,
    grad_accum: int = 1,
    max_length: int,
    gamma_beta_ratio: float = 0.5,
    lora: dict | None = None,
    seed: int = 0,
    subset_seed: int = 0,
    threads: int | None = None,
    device: str = "auto",
    precompute_ref_log_probs: bool = True,
) -> dict:
    """Align ``base`` (an SFT checkpoint folder) on a ``fraction`` of preference pairs.

    ``method="dpo"``: TRL DPOTrainer (sigmoid loss, reference = ``base``; reference log-probs
    precomputed once, so no second model runs during training). ``method="simpo"``: TRL CPOTrainer
    with ``loss_type="simpo"``, ``cpo_alpha=0`` and ``simpo_gamma = gamma_beta_ratio * beta`` as the
    SimPO authors configure it. ``lora``: a dict of peft LoraConfig arguments; the adapter is merged
    into full weights before saving (the extrapolation needs full tensors), and also kept under
    ``lora_adapter/`` for provenance. ``subset_seed`` fixes the nested subset independently of the
    training ``seed`` so replicate seeds train on the same pairs.
    """
    from datasets import Dataset

    t_start = time.perf_counter()
    validate_preference_config(method, fraction, beta=beta, gamma_beta_ratio=gamma_beta_ratio, lora=lora)
    _check_common(epochs=epochs, lr=lr, batch_size=batch_size, max_length=max_length, grad_accum=grad_accum)
    base = Path(base)
    if not (base / "config.json").exists():
        raise ValueError(f"base model {base} is not a checkpoint folder (no config.json)")
    rows, info = prepare_preference_rows(data, fraction, subset_seed)
    set_threads(threads)
    device = pick_device(device)
    tok = _load_tokenizer(base)

    rendered = []
    for r in rows:
        p, c = render_pair(tok, r["prompt"], r["chosen"])
        p2, rj = render_pair(tok, r["prompt"], r["rejected"])
        assert p == p2
        rendered.append({"prompt": p, "chosen": c, "rejected": rj})
    stats = _length_stats(tok, (r["prompt"] + r[k] for r in rendered for k in ("chosen", "rejected")), max_length)
    if stats["n_over_max_length"]:
        log.warning(
            "%d of %d preference sequences exceed max_length=%d and are truncated",
            stats["n_over_max_length"],
            2 * len(rendered),
            max_length,
        )
    ds = Dataset.from_list(rendered)

    import torch

    on_gpu = device.startswith("cuda")
    load_dtype = torch.bfloat16 if (on_gpu and lora is not None) else torch.float32
    model = _init_model(base, tok, seed=seed, dtype=load_dtype)
    # Save in the SFT checkpoint's own dtype: extrapolation subtracts the two, tensor by tensor.
    base_cfg = read_json(base / "config.json")
    base_dtype = str(base_cfg.get("dtype") or base_cfg.get("torch_dtype") or "float32").replace("torch.", "")
    peft_config = None
    lora_args = None
    if lora is not None:
        from peft import LoraConfig

        lora_args = {**DEFAULT_LORA, **lora}
        peft_config = LoraConfig(task_type="CAUSAL_LM", **lora_args)

    common = _common_args(
        device=device, epochs=epochs, lr=lr, batch_size=batch_size, grad_accum=grad_accum, seed=seed, scratch=Path(".")
    )  # output_dir replaced below
    gamma = None
    with tempfile.TemporaryDirectory(prefix=f"{method}-scratch-") as scratch, _quiet_library_warnings():
        common["output_dir"] = scratch
        timer = _timing_callback()
        if method == "dpo":
            from trl import DPOConfig, DPOTrainer

            cfg = DPOConfig(
                **common,
                beta=float(beta),
                max_length=max_length,
                loss_type=["sigmoid"],
                precompute_ref_log_probs=bool(precompute_ref_log_probs),
            )
            trainer = DPOTrainer(
                model=model,
                ref_model=None,
                args=cfg,
                train_dataset=ds,
                processing_class=tok,
                peft_config=peft_config,
                callbacks=[timer],
            )
        else:
            from trl.experimental.cpo import CPOConfig, CPOTrainer

            gamma = float(gamma_beta_ratio) * float(beta)
            cfg = CPOConfig(
                **common,
                beta=float(beta),
                max_length=max_length,
                loss_type="simpo",
                cpo_alpha=0.0,
                simpo_gamma=gamma,
                remove_unused_columns=False,
            )
            trainer = CPOTrainer(
                model=model,
                args=cfg,
                train_dataset=ds,
                processing_class=tok,
                peft_config=peft_config,
                callbacks=[timer],
            )
        t0, t1 = _fit(trainer)

    history = step_history(trainer.state.log_history)
    model = trainer.model
    manifest = {
        "stage": "preference",
        "method": method,
        "fraction": fraction,
        "base": str(base),
        **info,
        "seed": seed,
        "hyperparameters": {
            "beta": beta,
            "lr": lr,
            "epochs": epochs,
            "batch_size": batch_size,
            "grad_accum": grad_accum,
            "effective_batch_size": batch_size * grad_accum,
            "max_length": max_length,
            **(
                {"gamma_beta_ratio": gamma_beta_ratio, "simpo_gamma": gamma, "cpo_alpha": 0.0}
                if method == "simpo"
                else {"loss_type": "sigmoid", "precompute_ref_log_probs": precompute_ref_log_probs}
            ),
            "lora": lora_args,
        },
        "device": device,
        "threads": threads,
        "bf16": bool(common["bf16"]),
        "length_stats": stats,
        **_final_metrics(
            history, ("loss", "rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected")
        ),
        "timing": _timing_summary(timer, t_start, t0, t1),
        "library_versions": _library_versions(),
    }
    return _finish(
        trainer,
        model,
        tok,
        out,
        manifest,
        merge_lora=lora is not None,
        save_dtype=getattr(torch, base_dtype, torch.float32),
    )


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _json_arg(text: str | None) -> Any:
    """A JSON literal, or a path to a JSON/YAML file holding one."""
    if text is None:
        return None
    p = Path(text)
    if p.exists():
        if p.suffix in (".yaml", ".yml"):
            import yaml

            return yaml.safe_load(p.read_text())
        return json.loads(p.read_text())
    return json.loads(text)


def _model_init_arg(a: argparse.Namespace) -> dict | str:
    if bool(a.model_init) == bool(a.model_config):
        raise ValueError("give exactly one of --model-init (checkpoint folder) or --model-config (JSON)")
    return a.model_init or _json_arg(a.model_config)


def _data_arg(text: str) -> DataSpec:
    if text.startswith("hub:"):
        name, _, split = text[4:].partition(":")
        return {"source": "hub", "name": name, "split": split or "train"}
    return text


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p: argparse.ArgumentParser, lr: float, epochs: float) -> None:
        p.add_argument("--data", required=True, help="JSONL/JSON file (or hub:NAME:SPLIT for preference data)")
        p.add_argument("--out", required=True)
        p.add_argument("--epochs", type=float, default=epochs)
        p.add_argument("--lr", type=float, default=lr)
        p.add_argument("--batch-size", type=int, default=16)
        p.add_argument("--grad-accum", type=int, default=1)
        p.add_argument("--max-length", type=int, default=512)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--threads", type=int)
        p.add_argument("--device", default="auto")
        p.add_argument("--log")

    for name in ("sft", "reward"):
        p = sub.add_parser(name, help=f"train a {'SFT policy' if name == 'sft' else 'reward model'}")
        p.add_argument("--model-init", help="checkpoint folder to fine-tune")
        p.add_argument("--model-config", help="LlamaConfig kwargs as JSON (or a JSON file): train from scratch")
        p.add_argument("--tokenizer", required=True)
        common(p, lr=1e-3, epochs=1.0)
        if name == "reward":
            p.add_argument("--heldout-fraction", type=float, default=0.1)

    p = sub.add_parser("preference", help="DPO/SimPO on a fraction of preference pairs")
    p.add_argument("--base", required=True, help="SFT checkpoint folder")
    p.add_argument("--method", required=True, help="dpo or simpo")
    p.add_argument("--fraction", type=float, default=1.0)
    p.add_argument("--beta", type=float, default=0.1)
    p.add_argument("--gamma-beta-ratio", type=float, default=0.5)
    p.add_argument("--lora", help="peft LoraConfig kwargs as JSON (or a JSON/YAML file)")
    p.add_argument("--subset-seed", type=int, default=0)
    common(p, lr=5e-7, epochs=1.0)

    a = ap.parse_args(argv)
    setup_logging(a.log)
    shared = dict(
        epochs=a.epochs,
        lr=a.lr,
        batch_size=a.batch_size,
        grad_accum=a.grad_accum,
        max_length=a.max_length,
        seed=a.seed,
        threads=a.threads,
        device=a.device,
    )
    if a.cmd == "sft":
        train_sft(_model_init_arg(a), a.tokenizer, a.data, a.out, **shared)
    elif a.cmd == "reward":
        train_reward(_model_init_arg(a), a.tokenizer, a.data, a.out, heldout_fraction=a.heldout_fraction, **shared)
    else:
        train_preference(
            a.base,
            _data_arg(a.data),
            a.out,
            method=a.method,
            fraction=a.fraction,
            beta=a.beta,
            gamma_beta_ratio=a.gamma_beta_ratio,
            lora=_json_arg(a.lora),
            subset_seed=a.subset_seed,
            **shared,
        )


if __name__ == "__main__":
    run_cli(main)
