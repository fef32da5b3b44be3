"""TRL arguments the DDPO and VLM trainer tests build their trainers with (CPU, no reporting)."""

from __future__ import annotations

from pathlib import Path


def cpu_dpo_config(scratch: Path, **overrides):
    """A ``DPOConfig`` for a few CPU steps: β 0.1, reference log-probs per batch (TRL cannot
    precompute them for vision data), no activation checkpointing (the tiny models do not need it)."""
    from trl import DPOConfig

    kwargs = dict(
        output_dir=str(scratch),
        beta=0.1,
        max_length=64,
        precompute_ref_log_probs=False,
        use_cpu=True,
        report_to="none",
        activation_checkpointing=False,
    )
    return DPOConfig(**{**kwargs, **overrides})
