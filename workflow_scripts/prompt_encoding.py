"""Prompt encoding shared by the generation backends, so they see identical token ids.

The chat-template rendering, the right-side cut of prompts too long for the model (the rule is in
:mod:`workflow_scripts.generate`'s docstring), the EOS ids that end an answer, and the generation
record every backend writes. :mod:`workflow_scripts.generate` re-exports these names.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .records import flat_value

log = logging.getLogger(__name__)

RESERVED_KEYS = (
    "id",
    "instruction",
    "output",
    "generator",
    "dataset",
    "n_tokens",
    "finish_reason",
    "prompt_truncated_tokens",
)
"""Keys a generation record owns; a prompt's other keys are copied through untouched."""


def _load_tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    if tok.pad_token is None:
        # Same choice as the official code; pad positions are masked, so the id does not matter.
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"  # generation continues from the right edge of every row
    return tok


def _prompt_id(prompt: Mapping[str, Any], index: int) -> str:
    return str(prompt.get("id", index))


def render_prompt_ids(tokenizer, instruction: str, *, chat_template: bool = True) -> list[int]:
    """Token ids of one prompt, as the model will see them.

    With a chat template: the template's text for ``[user]`` plus the assistant header, tokenized
    without extra special tokens (the template already writes BOS; adding another would give two,
    and the official ``apply_chat_template(tokenize=True)`` adds none). Without a template (only
    when the decoding says ``chat_template: false``): the raw instruction with the tokenizer's
    usual special tokens, i.e. plain completion for base models.
    """
    if chat_template:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                f"tokenizer of {getattr(tokenizer, 'name_or_path', '?')!r} has no chat template; "
                "generating without one makes an aligned model continue the prompt instead of "
                "answering it. Add a chat template to the checkpoint, or set "
                "`chat_template: false` in the decoding config to feed raw instructions."
            )
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": instruction}], tokenize=False, add_generation_prompt=True
        )
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return list(tokenizer(instruction, add_special_tokens=True)["input_ids"])


def fit_prompt_ids(tokenizer, instruction: str, budget: int, *, chat_template: bool = True) -> tuple[list[int], int]:
    """Prompt ids of at most ``budget`` tokens, and how many instruction tokens were cut to get there.

    The instruction is cut on the right (its start usually says what is asked) and the prompt
    re-rendered, so the template's closing tokens stay; a template that alone exceeds the budget
    is an error.
    """
    ids = render_prompt_ids(tokenizer, instruction, chat_template=chat_template)
    if len(ids) <= budget:
        return ids, 0
    words = list(tokenizer(instruction, add_special_tokens=False)["input_ids"])
    keep = max(0, len(words) - (len(ids) - budget))
    while True:
        text = tokenizer.decode(words[:keep], skip_special_tokens=True)
        ids = render_prompt_ids(tokenizer, text, chat_template=chat_template)
        if len(ids) <= budget:
            return ids, len(words) - keep
        if keep == 0:
            raise ValueError(
                f"the chat template alone takes {len(ids)} tokens, more than the {budget} positions left for a "
                "prompt; use a model with more positions or lower max_new_tokens in the decoding config"
            )
        keep = max(0, keep - max(1, len(ids) - budget))


def encode_prompts(
    tokenizer, prompts: Sequence[Mapping[str, Any]], decoding: Mapping[str, Any], max_positions: int | None
) -> tuple[list[list[int]], list[int]]:
    """Prompt ids for every prompt and the tokens cut from each.

    The rule is in the module docstring of :mod:`workflow_scripts.generate`.
    """
    max_new = decoding["max_new_tokens"]
    budget = max_positions - min(max_new, max_positions // 4) if max_positions else None
    encoded, dropped = [], []
    for p in prompts:
        if budget is None:
            ids, cut = render_prompt_ids(tokenizer, p["instruction"], chat_template=decoding["chat_template"]), 0
        else:
            ids, cut = fit_prompt_ids(tokenizer, p["instruction"], budget, chat_template=decoding["chat_template"])
        encoded.append(ids)
        dropped.append(cut)
    n_cut = sum(1 for d in dropped if d)
    if n_cut:
        log.warning(
            "%d of %d prompts were longer than %d tokens (the model's %d positions minus room for the answer); "
            "their instructions were cut on the right (recorded per answer as prompt_truncated_tokens)",
            n_cut,
            len(prompts),
            budget,
            max_positions,
        )
    longest = max(len(e) for e in encoded)
    if max_positions and longest + max_new > max_positions:
        log.warning(
            "longest prompt (%d tokens) + max_new_tokens (%d) exceeds the model's max_position_embeddings (%d)",
            longest,
            max_new,
            max_positions,
        )
    return encoded, dropped


def _as_id_list(value: Any) -> list[int]:
    if value is None:
        return []
    if isinstance(value, int):
        return [value]
    return [int(v) for v in value]


def eos_token_ids(tokenizer, model_config=None, generation_config=None) -> list[int]:
    """All ids that end an answer: the tokenizer's EOS plus the checkpoint's configured EOS ids.

    Chat models often end turns with a token (``<|eot_id|>``, ``<|im_end|>``) that only the
    ``generation_config.json`` lists; stopping on the tokenizer's EOS alone would run on.
    """
    ids: list[int] = []
    for source in (
        tokenizer.eos_token_id,
        getattr(generation_config, "eos_token_id", None),
        getattr(model_config, "eos_token_id", None),
    ):
        for i in _as_id_list(source):
            if i not in ids:
                ids.append(i)
    if not ids:
        raise ValueError(
            f"no EOS token id found for {getattr(tokenizer, 'name_or_path', '?')!r}: "
            "set eos_token in the tokenizer or eos_token_id in generation_config.json"
        )
    return ids


def _check_prompts(prompts: Sequence[Mapping[str, Any]]) -> None:
    seen: set[str] = set()
    for i, p in enumerate(prompts):
        if not isinstance(p.get("instruction"), str) or not p["instruction"].strip():
            raise ValueError(f"prompt #{i} (id={p.get('id')!r}) has no non-empty 'instruction'")
        pid = str(p.get("id", i))
        if pid in seen:
            raise ValueError(f"duplicate prompt id {pid!r}")
        seen.add(pid)


def _record(
    prompt: Mapping[str, Any],
    index: int,
    output: str,
    generator: str,
    n_tokens: int,
    finish_reason: str,
    truncated: int = 0,
) -> dict[str, Any]:
    rec = {
        "id": _prompt_id(prompt, index),
        "instruction": prompt["instruction"],
        "output": output,
        "generator": generator,
        "dataset": prompt.get("dataset", "unknown"),
        "n_tokens": int(n_tokens),
        "finish_reason": finish_reason,
    }
    if truncated:
        rec["prompt_truncated_tokens"] = int(truncated)
    rec.update({k: flat_value(v) for k, v in prompt.items() if k not in RESERVED_KEYS})
    return rec
