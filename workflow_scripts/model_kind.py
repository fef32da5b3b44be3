"""Refuse a checkpoint of the wrong kind before its weights are loaded.

``from_pretrained`` fills any head the checkpoint lacks with random weights and only warns: a
causal LM given as a reward model gets a random score head (different rewards on every run), a
reward model given to generation or DPO gets a random ``lm_head``, and everything exits 0. Here the
folder's ``config.json`` and its safetensors headers decide, in milliseconds:

* ``"reward"``: the architecture is a sequence classifier and the checkpoint holds its head weights;
* ``"causal_lm"``: the architecture has a language-model head (``*ForCausalLM``, ``*LMHeadModel``,
  ``*ForConditionalGeneration``) and, unless tied to the embeddings, the checkpoint holds it.

The head's parameter names come from the model class itself, built on the ``meta`` device (no
memory, no weights), so any architecture transformers knows is covered. The tokenizer is checked
too: without its files transformers falls back to a misleading sentencepiece/tiktoken error.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from .extrapolate.header import validate_safetensors

log = logging.getLogger(__name__)

KINDS = ("reward", "causal_lm")
LM_ARCH_SUFFIXES = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer.tiktoken", "vocab.txt")
_USE = {"reward": "a reward model", "causal_lm": "generation and preference training"}


def _config(folder: Path) -> dict:
    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{folder}: no config.json; not a Hugging Face model folder") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{folder}/config.json is not valid JSON ({exc})") from exc
    if not isinstance(cfg, dict):
        raise ValueError(f"{folder}/config.json is not a JSON object")
    return cfg


def checkpoint_tensor_names(folder: Path) -> set[str] | None:
    """Tensor names of the folder's safetensors weights (headers only); ``None`` for pickle weights."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    names: set[str] = set()
    for f in files:
        names |= set(validate_safetensors(f))
    return names


def _head_params(folder: Path, kind: str) -> set[str]:
    """Parameter names of the model's head (not in its base model, not tied), from a meta-device build."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    auto = AutoModelForSequenceClassification if kind == "reward" else AutoModelForCausalLM
    config = AutoConfig.from_pretrained(folder)
    with torch.device("meta"):
        model = auto.from_config(config)
    base = getattr(model, "base_model_prefix", "")
    tied = set(getattr(model, "all_tied_weights_keys", {}) or {})
    names = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    return {n for n in names if not (base and n.startswith(base + ".")) and n not in tied}


def _check_architecture(folder: Path, cfg: dict, kind: str) -> None:
    archs = [a for a in cfg.get("architectures") or [] if isinstance(a, str)]
    if not archs:
        return
    is_cls = any(a.endswith("ForSequenceClassification") for a in archs)
    is_lm = any(a.endswith(LM_ARCH_SUFFIXES) for a in archs)
    if kind == "reward" and not is_cls:
        raise ValueError(
            f"{folder} is a {archs[0]}, not a sequence classifier: as a reward model it would get a randomly "
            "initialised score head. Use a reward model (an *ForSequenceClassification checkpoint), or train one "
            "(models.<name>: {source: train, method: reward})"
        )
    if kind == "causal_lm" and not is_lm:
        raise ValueError(
            f"{folder} is a {archs[0]} without a language-model head: generation or training would use a randomly "
            "initialised lm_head. Give a causal LM checkpoint (e.g. *ForCausalLM) here"
        )


def require_tokenizer(folder: str | os.PathLike) -> None:
    """A clear error when the folder has no tokenizer files at all."""
    folder = Path(folder)
    if not any((folder / n).is_file() for n in TOKENIZER_FILES):
        raise ValueError(
            f"{folder} has no tokenizer ({', '.join(TOKENIZER_FILES)} missing); copy the tokenizer files of "
            "the model it comes from into it, or use a checkpoint that includes them"
        )


def require_model_kind(
    folder: str | os.PathLike, kind: str, *, trust_remote_code: bool = False, tokenizer: bool = True
) -> None:
    """Raise ``ValueError`` unless ``folder`` holds a complete model of ``kind`` (see module docstring)."""
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; one of {KINDS}")
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"model folder {folder} does not exist")
    cfg = _config(folder)
    _check_architecture(folder, cfg, kind)
    if tokenizer:
        require_tokenizer(folder)
    names = checkpoint_tensor_names(folder)
    if names is None:
        log.warning("%s: pickle weights; the %s head cannot be checked before loading", folder, kind)
        return
    if trust_remote_code:  # custom classes: their head names are not ours to guess
        return
    missing = sorted(_head_params(folder, kind) - names)
    if missing:
        raise ValueError(
            f"{folder}: the checkpoint lacks the head weights {missing[:4]} that {_USE[kind]} needs; they would be "
            "initialised at random. Use a checkpoint trained with that head"
        )
