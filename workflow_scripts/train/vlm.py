"""Vision-language training (``modality: image``): SFT and DPO / DDPO of a LLaVA-style model.

The model is ``AutoModelForImageTextToText`` with ``AutoProcessor`` as TRL's ``processing_class``
(TRL then uses its vision collators: the image goes through the processor, the text through the
chat template with an image part). What differs from text training, and why:

* ``freeze``: substrings of parameter names (Align-Anything's semantics), default vision tower and
  projector. DPO on LLaVA with them trainable stalled at reward accuracy ≈ 0.5 in Align-Anything;
  frozen, it trains. Frozen parameters are switched off before the trainer exists, so they change
  by exactly 0, and their counts go into the manifest.
* LoRA adapts only the language model unless the config names its own ``target_modules``, and is
  merged before saving: the extrapolation needs full tensors with the base's names.
* The policy is loaded from its folder (TRL rebuilds the reference from that path), and the
  reference log-probs are computed per batch (TRL cannot precompute them for vision data).
* fp16 weights with fp16 mixed precision are refused: that combination makes the gradient scaler
  raise "Attempting to unscale FP16 gradients". GPU training uses bf16.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from ..common import atomic_dir, pick_device, read_json, set_threads, write_json
from ..multimodal import DEFAULT_FREEZE, apply_freeze, assistant_turn, image_size, load_image, lora_targets, user_turn
from .base import (
    DEFAULT_LORA,
    HISTORY_NAME,
    MANIFEST_NAME,
    _check_common,
    _common_args,
    _final_metrics,
    _fit,
    _library_versions,
    _quiet_library_warnings,
    _sha256_rows,
    _timing_callback,
    _timing_summary,
    step_history,
    write_history_csv,
)
from .data import DataSpec, PathLike, _describe, load_rows, validate_columns
from .ddpo_segments import COLUMN, segment_cell
from .preference import make_preference_trainer, prepare_preference_rows, validate_preference_config

log = logging.getLogger(__name__)

PREF_METRICS = ("loss", "rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected")


def check_precision(weights_dtype: str, amp: str | None) -> None:
    """Refuse fp16 weights trained under fp16 autocast (the gradient scaler cannot unscale them)."""
    if str(weights_dtype).replace("torch.", "") == "float16" and amp == "fp16":
        raise ValueError(
            "fp16 weights with fp16 mixed precision fail in the gradient scaler "
            "('Attempting to unscale FP16 gradients'); load the weights in fp32/bf16 or train with bf16"
        )


def _load_vlm(base: Path, dtype):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    if not (base / "config.json").exists():
        raise ValueError(f"base model {base} is not a checkpoint folder (no config.json)")
    model = AutoModelForImageTextToText.from_pretrained(base, dtype=dtype)
    processor = AutoProcessor.from_pretrained(base)
    return model, processor


def _image_rows(
    rows: list[dict], processor, base_dir: Path | None, answer_keys: tuple[str, ...], *, segments: bool = False
) -> list[dict]:
    """TRL's vision rows; ``segments``: DDPO's explicit segments in their own column (:mod:`.ddpo_segments`)."""
    size = image_size(processor)
    out = []
    for i, r in enumerate(rows):
        row: dict[str, Any] = {"images": [load_image(r, base_dir, size)], "prompt": user_turn(r["prompt"])}
        for k in answer_keys:
            row[k] = assistant_turn(r[k])
        if segments:
            row[COLUMN] = segment_cell(r, i, "preference data")
        out.append(row)
    return out


def _save(trainer, processor, out: PathLike, manifest: dict, *, merge_lora: bool, save_dtype) -> dict:
    history = step_history(trainer.state.log_history)
    summary = [r for r in trainer.state.log_history if "train_runtime" in r]
    manifest["steps"] = int(trainer.state.global_step)
    if summary:
        manifest["train_summary"] = summary[-1]
    model = trainer.model
    with atomic_dir(out) as tmp:
        if merge_lora:
            model.save_pretrained(tmp / "lora_adapter")
            model = model.merge_and_unload()
        if save_dtype is not None and model.dtype != save_dtype:
            model = model.to(save_dtype)
        for p in model.parameters():
            p.requires_grad_(True)
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        write_history_csv(history, tmp / HISTORY_NAME)
        write_json(tmp / MANIFEST_NAME, manifest)
    log.info("saved %s (%d steps)", out, manifest["steps"])
    return manifest


def _setup(base: PathLike, lora: dict | None, freeze, device: str, threads: int | None):
    import torch

    base = Path(base)
    set_threads(threads)
    device = pick_device(device)
    cfg = read_json(base / "config.json") if (base / "config.json").exists() else {}
    base_dtype = str(cfg.get("dtype") or cfg.get("torch_dtype") or "float32").replace("torch.", "")
    amp = "bf16" if device.startswith("cuda") and torch.cuda.is_bf16_supported() else None
    check_precision(base_dtype, amp)
    # LoRA on a GPU trains adapters over bf16 weights (a 7B LLaVA in fp32 would double the memory)
    load_dtype = torch.bfloat16 if (amp == "bf16" and lora is not None) else torch.float32
    model, processor = _load_vlm(base, load_dtype)
    frozen = apply_freeze(model, list(DEFAULT_FREEZE if freeze is None else freeze))
    peft_config, lora_args = None, None
    if lora is not None:
        from peft import LoraConfig

        lora_args = {**DEFAULT_LORA, **lora, "target_modules": lora_targets(lora)}
        peft_config = LoraConfig(task_type="CAUSAL_LM", **lora_args)
    return base, device, model, processor, frozen, peft_config, lora_args, getattr(torch, base_dtype, torch.float32)


def _vlm_rows(data: DataSpec, source: str, method: str, fraction: float, beta: float, lora, ddpo, subset_seed: int):
    """The training rows, their manifest info, and the answer keys each row renders."""
    if method == "sft":
        rows = load_rows(data)
        validate_columns(rows, ("prompt", "completion"), source)
        info = {"data": source, "data_sha256": _sha256_rows(rows), "n_examples": len(rows)}
        keys: tuple[str, ...] = ("completion",)
    else:
        validate_preference_config(method, fraction, beta=beta, gamma_beta_ratio=0.0, lora=lora, ddpo=ddpo)
        if method == "simpo":
            raise ValueError("method 'simpo' is not supported for modality image; use dpo or ddpo")
        rows, info = prepare_preference_rows(data, fraction, subset_seed)
        keys = ("chosen", "rejected")
    return rows, info, keys


def _vlm_trainer(
    method: str, model, ds, processor, common: dict, max_length: int, beta: float, ddpo, peft_config, timer
):
    """TRL's SFTTrainer (completion-only loss) or the preference trainer, and the method's hyperparameters."""
    if method == "sft":
        from trl import SFTConfig, SFTTrainer

        cfg = SFTConfig(**common, max_length=max_length, completion_only_loss=True)
        trainer = SFTTrainer(
            model=model,
            args=cfg,
            train_dataset=ds,
            processing_class=processor,
            peft_config=peft_config,
            callbacks=[timer],
        )
        return trainer, {}
    return make_preference_trainer(
        method,
        model,
        ds,
        processor,
        common,
        beta=beta,
        max_length=max_length,
        ddpo=ddpo,
        peft_config=peft_config,
        precompute_ref_log_probs=False,
        callbacks=[timer],
    )


def train_vlm(
    base: PathLike,
    data: DataSpec,
    out: PathLike,
    *,
    method: str,
    lr: float,
    epochs: float,
    batch_size: int,
    max_length: int,
    grad_accum: int = 1,
    fraction: float = 1.0,
    beta: float = 0.1,
    ddpo: dict | None = None,
    freeze: list[str] | None = None,
    lora: dict | None = None,
    seed: int = 0,
    subset_seed: int = 0,
    threads: int | None = None,
    device: str = "auto",
    image_dir: PathLike | None = None,
) -> dict:
    """SFT (``method="sft"``, rows ``prompt``/``completion``) or DPO / DDPO (rows ``prompt``/
    ``chosen``/``rejected``) of the VLM in ``base``; every row has an ``image`` (relative to
    ``image_dir``, default the data file's folder) or a shapes-world ``scene``.

    It stays one function on purpose: with rows, setup and trainer in helpers, what is left is the
    flat sequence load → fit → manifest, and the manifest reads best beside the arguments it records.
    """
    from datasets import Dataset

    t_start = time.perf_counter()
    _check_common(epochs=epochs, lr=lr, batch_size=batch_size, max_length=max_length, grad_accum=grad_accum)
    source = _describe(data)
    rows, info, keys = _vlm_rows(data, source, method, fraction, beta, lora, ddpo, subset_seed)
    if not rows:
        raise ValueError(f"{source}: no training rows")
    base, device, model, processor, frozen, peft_config, lora_args, save_dtype = _setup(
        base, lora, freeze, device, threads
    )
    img_dir = Path(image_dir) if image_dir else (Path(data).parent if isinstance(data, (str, Path)) else None)
    with_segments = method == "ddpo" and bool(info.get("n_pairs_with_segments"))
    ds = Dataset.from_list(_image_rows(rows, processor, img_dir, keys, segments=with_segments))
    common = _common_args(
        device=device, epochs=epochs, lr=lr, batch_size=batch_size, grad_accum=grad_accum, seed=seed, scratch=Path(".")
    )
    with tempfile.TemporaryDirectory(prefix=f"vlm-{method}-") as scratch, _quiet_library_warnings():
        common["output_dir"] = scratch
        timer = _timing_callback()
        trainer, method_hp = _vlm_trainer(
            method, model, ds, processor, common, max_length, beta, ddpo, peft_config, timer
        )
        t0, t1 = _fit(trainer)
    history = step_history(trainer.state.log_history)
    manifest = {
        "stage": "vlm_sft" if method == "sft" else "vlm_preference",
        "modality": "image",
        "method": method,
        "fraction": fraction if method != "sft" else None,
        "base": str(base),
        **info,
        "seed": seed,
        "freeze": frozen,
        "hyperparameters": {
            "lr": lr,
            "epochs": epochs,
            "batch_size": batch_size,
            "grad_accum": grad_accum,
            "max_length": max_length,
            **({"beta": beta, **method_hp} if method != "sft" else {}),
            "lora": lora_args,
        },
        "device": device,
        "bf16": bool(common["bf16"]),
        **_final_metrics(history, PREF_METRICS if method != "sft" else ("loss", "mean_token_accuracy")),
        "timing": _timing_summary(timer, t_start, t0, t1),
        "library_versions": _library_versions(),
    }
    return _save(trainer, processor, out, manifest, merge_lora=lora is not None, save_dtype=save_dtype)
