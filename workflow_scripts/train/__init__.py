"""Training stage (package): SFT, reward model and preference alignment (DPO / SimPO) with TRL.

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

Modules: :mod:`.data` (loading, validation, subsets, chat-template rendering), :mod:`.base` (model
init, trainer arguments, saving, history), :mod:`.sft`, :mod:`.reward`, :mod:`.preference`
(DPO / SimPO), :mod:`.cli` (``python -m workflow_scripts.train``).
"""

from __future__ import annotations

from .base import (
    ADAPTER_DIR,
    DEFAULT_LORA,
    HISTORY_NAME,
    MANIFEST_NAME,
    step_history,
    write_history_csv,
)
from .cli import main
from .data import (
    PREFERENCE_COLUMNS,
    load_rows,
    render_pair,
    select_fraction,
    tokenizer_adds_bos,
    validate_columns,
)
from .preference import METHODS, prepare_preference_rows, train_preference, validate_preference_config
from .reward import pair_accuracy, score_conversations, train_reward
from .sft import train_sft

__all__ = [
    "ADAPTER_DIR",
    "DEFAULT_LORA",
    "HISTORY_NAME",
    "MANIFEST_NAME",
    "METHODS",
    "PREFERENCE_COLUMNS",
    "load_rows",
    "main",
    "pair_accuracy",
    "prepare_preference_rows",
    "render_pair",
    "score_conversations",
    "select_fraction",
    "step_history",
    "tokenizer_adds_bos",
    "train_preference",
    "train_reward",
    "train_sft",
    "validate_columns",
    "validate_preference_config",
    "write_history_csv",
]
