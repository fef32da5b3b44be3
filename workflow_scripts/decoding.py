"""Decoding presets and the presence/frequency penalty for Hugging Face ``generate``.

Why a module of its own: the generation stage, the Snakemake config and the report must all agree on
what "the paper's decoding" means. The official ExPO code samples with vLLM at temperature 0.7,
top-k 50, top-p 0.9, presence and frequency penalty 0.1, seed 42 and up to 2048 new tokens; a
reproduction that silently drops the penalties (Hugging Face ``generate`` has none) or swaps in
``repetition_penalty`` (a different, multiplicative rule) would not be comparable with the paper.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported lazily: the Snakefile imports this module to read presets
    import torch

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "do_sample": True,
    "temperature": 1.0,
    "top_k": None,  # None = no top-k filter
    "top_p": 1.0,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "repetition_penalty": 1.0,
    "seed": 42,
    "max_new_tokens": 2048,
    "chat_template": True,  # False: feed the raw instruction (base models without a template)
}
"""Every key a decoding spec may set. Anything else is a typo and raises."""

PRESETS: dict[str, dict[str, Any]] = {
    # The official ExPO generation settings (generate_alpaca.py / generate_ultrafeedback.py).
    "paper": {
        "do_sample": True,
        "temperature": 0.7,
        "top_k": 50,
        "top_p": 0.9,
        "presence_penalty": 0.1,
        "frequency_penalty": 0.1,
        "seed": 42,
        "max_new_tokens": 2048,
    },
    # The paper's sampler with short answers, so the CPU demo finishes in minutes.
    "demo": {
        "do_sample": True,
        "temperature": 0.7,
        "top_k": 50,
        "top_p": 0.9,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "seed": 42,
        "max_new_tokens": 64,
    },
    # Deterministic decoding for tests and for comparing variants without sampling noise.
    "greedy": {
        "do_sample": False,
        "temperature": 1.0,
        "top_k": None,
        "top_p": 1.0,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "seed": 42,
        "max_new_tokens": 2048,
    },
}

DEFAULT_PRESET = "paper"
"""The library's and command line's default. The workflow's is the schema's (``decoding: {preset: demo}``,
with ``preset`` required inside ``decoding:``), so a rule never falls back on this one."""


def resolve_decoding(spec: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Turn a config entry into a complete, validated decoding dict.

    ``spec`` may name ``preset`` (default ``"paper"``, so an experiment is at paper fidelity unless
    it says otherwise) and override any key of :data:`DEFAULTS`. Unknown keys raise ``ValueError``
    because a misspelt ``top-p`` would otherwise silently decode with the preset's value.
    """
    spec = dict(spec or {})
    name = spec.pop("preset", DEFAULT_PRESET)
    if name not in PRESETS:
        raise ValueError(f"unknown decoding preset {name!r}; choose one of {sorted(PRESETS)}")
    unknown = sorted(set(spec) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown decoding key(s) {unknown}; allowed: {sorted(DEFAULTS)} and 'preset'")
    out = copy.deepcopy(DEFAULTS)
    out.update(PRESETS[name])
    out.update(spec)
    out["preset"] = name
    _validate(out)
    return out


def _validate(d: dict[str, Any]) -> None:
    def bad(key: str, why: str) -> ValueError:
        return ValueError(f"decoding {key}={d[key]!r}: {why}")

    for key in ("do_sample", "chat_template"):
        if not isinstance(d[key], bool):
            raise bad(key, "must be true or false")
    mnt = d["max_new_tokens"]
    if isinstance(mnt, bool) or not isinstance(mnt, int) or mnt < 1:
        raise bad("max_new_tokens", "must be an integer >= 1")
    if d["seed"] is not None and (isinstance(d["seed"], bool) or not isinstance(d["seed"], int)):
        raise bad("seed", "must be an integer or null")
    if d["top_k"] is not None:
        if isinstance(d["top_k"], bool) or not isinstance(d["top_k"], int) or d["top_k"] < 0:
            raise bad("top_k", "must be a non-negative integer or null (0/null = off)")
        if d["top_k"] == 0:
            d["top_k"] = None
    for key in ("temperature", "top_p", "presence_penalty", "frequency_penalty", "repetition_penalty"):
        v = d[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise bad(key, "must be a finite number")
        d[key] = float(v)
    if d["do_sample"] and d["temperature"] <= 0:
        raise bad("temperature", "must be > 0 when sampling (use preset: greedy for argmax)")
    if not 0.0 < d["top_p"] <= 1.0:
        raise bad("top_p", "must be in (0, 1]")
    for key in ("presence_penalty", "frequency_penalty"):
        if not -2.0 <= d[key] <= 2.0:  # the range OpenAI and vLLM accept
            raise bad(key, "must be in [-2, 2]")
    if d["repetition_penalty"] <= 0:
        raise bad("repetition_penalty", "must be > 0")


class PresenceFrequencyPenaltyLogitsProcessor:
    """OpenAI/vLLM presence and frequency penalties as a Hugging Face logits processor.

    For every token ``t`` that occurs ``c_t`` times in the text generated *so far* (the prompt is
    not counted, as in vLLM), ``logit_t -= frequency_penalty * c_t + presence_penalty * [c_t > 0]``.
    transformers 5 ships no such processor (its ``repetition_penalty`` divides/multiplies logits
    and also counts the prompt), hence this one.

    ``prompt_length`` is the padded prompt length of the batch: ``generate`` passes the full
    sequence (prompt + generated) to every processor, and only the tail counts. Create one
    instance per ``generate`` call. Being a plain callable with the ``LogitsProcessor`` signature,
    it is placed by ``generate`` before temperature/top-k/top-p, the same order as vLLM.
    """

    def __init__(self, presence_penalty: float, frequency_penalty: float, prompt_length: int):
        if prompt_length < 0:
            raise ValueError(f"prompt_length must be >= 0, got {prompt_length}")
        self.presence_penalty = float(presence_penalty)
        self.frequency_penalty = float(frequency_penalty)
        self.prompt_length = int(prompt_length)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        import torch

        generated = input_ids[:, self.prompt_length :]
        if generated.shape[1] == 0 or (self.presence_penalty == 0 and self.frequency_penalty == 0):
            return scores
        counts = torch.zeros(scores.shape, dtype=scores.dtype, device=scores.device)
        # Ids beyond the logits' width (tokenizer larger than the head) cannot be penalised anyway.
        valid = generated < scores.shape[1]
        counts.scatter_add_(1, generated.clamp(max=scores.shape[1] - 1), valid.to(scores.dtype))
        penalty = self.frequency_penalty * counts + self.presence_penalty * (counts > 0).to(scores.dtype)
        return scores - penalty


def hf_generation_kwargs(decoding: Mapping[str, Any]) -> dict[str, Any]:
    """The ``GenerationConfig`` fields for a resolved decoding dict (penalties excluded)."""
    kw: dict[str, Any] = {"max_new_tokens": decoding["max_new_tokens"], "do_sample": decoding["do_sample"]}
    if decoding["do_sample"]:
        kw.update(
            temperature=decoding["temperature"],
            top_p=decoding["top_p"],
            top_k=decoding["top_k"] if decoding["top_k"] is not None else 0,
        )
    else:
        # Explicit neutral values so a model's generation_config.json cannot sneak sampling knobs in.
        kw.update(temperature=None, top_p=None, top_k=None)
    if decoding["repetition_penalty"] != 1.0:
        kw["repetition_penalty"] = decoding["repetition_penalty"]
    return kw


def vllm_sampling_kwargs(decoding: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``vllm.SamplingParams`` matching :func:`hf_generation_kwargs`."""
    return {
        "n": 1,
        "temperature": decoding["temperature"] if decoding["do_sample"] else 0.0,
        "top_k": decoding["top_k"] if (decoding["do_sample"] and decoding["top_k"]) else -1,
        "top_p": decoding["top_p"] if decoding["do_sample"] else 1.0,
        "presence_penalty": decoding["presence_penalty"],
        "frequency_penalty": decoding["frequency_penalty"],
        "repetition_penalty": decoding["repetition_penalty"],
        "seed": decoding["seed"],
        "max_tokens": decoding["max_new_tokens"],
        "skip_special_tokens": True,
    }
