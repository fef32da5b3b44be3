"""Preference alignment of an SFT checkpoint on a nested fraction of pairs: DPO / SimPO with TRL."""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from pathlib import Path

from ..common import pick_device, read_json, set_threads
from .base import (
    DEFAULT_LORA,
    _check_common,
    _common_args,
    _final_metrics,
    _finish,
    _fit,
    _init_model,
    _library_versions,
    _load_tokenizer,
    _quiet_library_warnings,
    _sha256_rows,
    _timing_callback,
    _timing_summary,
    step_history,
)
from .data import (
    PREFERENCE_COLUMNS,
    DataSpec,
    PathLike,
    _describe,
    _length_stats,
    load_rows,
    render_pair,
    select_fraction,
    validate_columns,
)
from .ddpo_segments import COLUMN, SEGMENTS_KEY, segment_cell, validate_all_segments

log = logging.getLogger(__name__)

METHODS = ("dpo", "simpo", "ddpo")


def validate_preference_config(
    method: str,
    fraction: float,
    *,
    beta: float,
    gamma_beta_ratio: float,
    lora: dict | None,
    ddpo: dict | None = None,
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
    if method == "ddpo":
        validate_ddpo(ddpo)
    elif ddpo is not None:
        raise ValueError(f"ddpo settings given for method {method!r}; they only apply to method 'ddpo'")


def validate_ddpo(ddpo: dict | None) -> None:
    """DDPO needs γ and summed-vs-averaged stated: published runs differ on both (no default)."""
    if not isinstance(ddpo, dict) or set(ddpo) - {"gamma", "average"}:
        raise ValueError(f"method 'ddpo' needs ddpo: {{gamma: <number>, average: <bool>}}, got {ddpo!r}")
    g = ddpo.get("gamma")
    if isinstance(g, bool) or not isinstance(g, (int, float)) or not g > 0:
        raise ValueError(f"ddpo.gamma must be a positive number, got {g!r}")
    if not isinstance(ddpo.get("average"), bool):
        raise ValueError(f"ddpo.average must be true (RLHF-V paper) or false (summed), got {ddpo.get('average')!r}")


def prepare_preference_rows(data: DataSpec, fraction: float, subset_seed: int = 0) -> tuple[list[dict], dict]:
    """Load, validate and subset preference data; returns (rows used, info for the manifest)."""
    source = _describe(data)
    rows = load_rows(data)
    if not rows:
        raise ValueError(f"{source}: preference dataset is empty")
    validate_columns(rows, PREFERENCE_COLUMNS, source)
    n_segments = validate_all_segments(rows, source)
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
        "n_pairs_with_segments": sum(SEGMENTS_KEY in r for r in subset) if n_segments else 0,
    }
    return subset, info


def _render_preference_rows(tok, rows: list[dict], max_length: int, *, segments: bool = False):
    """The rendered (prompt, chosen, rejected) dataset and its length statistics (over-long ones are logged).

    ``segments``: DDPO's explicit segments travel in their own column (:mod:`.ddpo_segments`).
    """
    from datasets import Dataset

    rendered = []
    for i, r in enumerate(rows):
        p, c = render_pair(tok, r["prompt"], r["chosen"])
        p2, rj = render_pair(tok, r["prompt"], r["rejected"])
        assert p == p2
        rendered.append({"prompt": p, "chosen": c, "rejected": rj})
        if segments:
            rendered[-1][COLUMN] = segment_cell(r, i, "preference data", rendered[-1])
    stats = _length_stats(tok, (r["prompt"] + r[k] for r in rendered for k in ("chosen", "rejected")), max_length)
    if stats["n_over_max_length"]:
        log.warning(
            "%d of %d preference sequences exceed max_length=%d and are truncated",
            stats["n_over_max_length"],
            2 * len(rendered),
            max_length,
        )
    return Dataset.from_list(rendered), stats


def _checkpoint_dtype(base: Path) -> str:
    """The SFT checkpoint's own dtype, which the aligned model is saved in: extrapolation subtracts
    the two, tensor by tensor."""
    base_cfg = read_json(base / "config.json")
    return str(base_cfg.get("dtype") or base_cfg.get("torch_dtype") or "float32").replace("torch.", "")


def _lora_config(lora: dict | None):
    """The peft ``LoraConfig`` and its full arguments (defaults filled in); both None without LoRA."""
    if lora is None:
        return None, None
    from peft import LoraConfig

    lora_args = {**DEFAULT_LORA, **lora}
    return LoraConfig(task_type="CAUSAL_LM", **lora_args), lora_args


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
    ddpo: dict | None = None,
) -> dict:
    """Align ``base`` (an SFT checkpoint folder) on a ``fraction`` of preference pairs.

    ``method="dpo"``: TRL DPOTrainer (sigmoid loss, reference = ``base``; reference log-probs
    precomputed once, so no second model runs during training). ``method="simpo"``: TRL CPOTrainer
    with ``loss_type="simpo"``, ``cpo_alpha=0`` and ``simpo_gamma = gamma_beta_ratio * beta`` as the
    SimPO authors configure it. ``method="ddpo"``: DPO on RLHF-V's segment-weighted log-probability
    (:mod:`.ddpo`), ``ddpo = {"gamma": γ, "average": bool}``. ``lora``: a dict of peft LoraConfig arguments;
    the adapter is merged into full weights before saving (the extrapolation needs full tensors), and also kept under
    ``lora_adapter/`` for provenance. ``subset_seed`` fixes the nested subset independently of the
    training ``seed`` so replicate seeds train on the same pairs.

    It stays one function on purpose: with rendering, LoRA and dtype in helpers, what is left is
    the flat sequence check → load → fit → manifest, and the manifest reads best beside the
    arguments it records.
    """
    t_start = time.perf_counter()
    validate_preference_config(method, fraction, beta=beta, gamma_beta_ratio=gamma_beta_ratio, lora=lora, ddpo=ddpo)
    _check_common(epochs=epochs, lr=lr, batch_size=batch_size, max_length=max_length, grad_accum=grad_accum)
    base = Path(base)
    if not (base / "config.json").exists():
        raise ValueError(f"base model {base} is not a checkpoint folder (no config.json)")
    rows, info = prepare_preference_rows(data, fraction, subset_seed)
    set_threads(threads)
    device = pick_device(device)
    tok = _load_tokenizer(base)

    with_segments = method == "ddpo" and info["n_pairs_with_segments"] > 0
    ds, stats = _render_preference_rows(tok, rows, max_length, segments=with_segments)

    import torch

    on_gpu = device.startswith("cuda")
    load_dtype = torch.bfloat16 if (on_gpu and lora is not None) else torch.float32
    model = _init_model(base, tok, seed=seed, dtype=load_dtype)
    base_dtype = _checkpoint_dtype(base)
    peft_config, lora_args = _lora_config(lora)

    common = _common_args(
        device=device, epochs=epochs, lr=lr, batch_size=batch_size, grad_accum=grad_accum, seed=seed, scratch=Path(".")
    )  # output_dir replaced below
    with tempfile.TemporaryDirectory(prefix=f"{method}-scratch-") as scratch, _quiet_library_warnings():
        common["output_dir"] = scratch
        timer = _timing_callback()
        trainer, method_hp = make_preference_trainer(
            method,
            model,
            ds,
            tok,
            common,
            beta=beta,
            max_length=max_length,
            gamma_beta_ratio=gamma_beta_ratio,
            ddpo=ddpo,
            peft_config=peft_config,
            precompute_ref_log_probs=precompute_ref_log_probs,
            callbacks=[timer],
        )
        t0, t1 = _fit(trainer)

    history = step_history(trainer.state.log_history)
    model = trainer.model
    hp = {
        "beta": beta,
        "lr": lr,
        "epochs": epochs,
        "batch_size": batch_size,
        "grad_accum": grad_accum,
        "effective_batch_size": batch_size * grad_accum,
        "max_length": max_length,
        **method_hp,
        "lora": lora_args,
    }
    manifest = {
        "stage": "preference",
        "method": method,
        "fraction": fraction,
        "base": str(base),
        **info,
        "seed": seed,
        "hyperparameters": hp,
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


def make_preference_trainer(
    method: str,
    model,
    ds,
    processing_class,
    common: dict,
    *,
    beta: float,
    max_length: int,
    gamma_beta_ratio: float = 0.5,
    ddpo: dict | None = None,
    peft_config=None,
    precompute_ref_log_probs: bool = True,
    callbacks: list | None = None,
):
    """The TRL trainer for ``method`` and the method-specific hyperparameters for the manifest.

    DDPO cannot precompute the reference log-probs (its weights come from each batch), so the
    reference runs beside the policy; text and vision batches go through the same trainers.
    """
    if method in ("dpo", "ddpo"):
        return _dpo_trainer(
            method,
            model,
            ds,
            processing_class,
            common,
            beta,
            max_length,
            ddpo,
            peft_config,
            precompute_ref_log_probs,
            callbacks,
        )
    return _simpo_trainer(
        model, ds, processing_class, common, beta, max_length, gamma_beta_ratio, peft_config, callbacks
    )


def _dpo_trainer(
    method,
    model,
    ds,
    processing_class,
    common,
    beta,
    max_length,
    ddpo,
    peft_config,
    precompute_ref_log_probs,
    callbacks,
):
    """DPO (sigmoid loss) or DDPO; see :func:`make_preference_trainer`."""
    from trl import DPOConfig, DPOTrainer

    precompute = bool(precompute_ref_log_probs) and method == "dpo"
    cfg = DPOConfig(
        **common,
        beta=float(beta),
        max_length=max_length,
        loss_type=["sigmoid"],
        precompute_ref_log_probs=precompute,
    )
    kw = dict(model=model, ref_model=None, args=cfg, train_dataset=ds, processing_class=processing_class)
    kw.update(peft_config=peft_config, callbacks=callbacks)
    hp = {"loss_type": "sigmoid", "precompute_ref_log_probs": precompute}
    if method == "dpo":
        return DPOTrainer(**kw), hp
    from .ddpo import make_ddpo_trainer_class

    trainer = make_ddpo_trainer_class()(**kw, gamma=ddpo["gamma"], average=ddpo["average"])
    return trainer, {**hp, "ddpo_gamma": float(ddpo["gamma"]), "ddpo_average": ddpo["average"]}


def _simpo_trainer(model, ds, processing_class, common, beta, max_length, gamma_beta_ratio, peft_config, callbacks):
    """SimPO as TRL's CPOTrainer with ``cpo_alpha=0``; see :func:`make_preference_trainer`."""
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
        processing_class=processing_class,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    return trainer, {"gamma_beta_ratio": gamma_beta_ratio, "simpo_gamma": gamma, "cpo_alpha": 0.0}
