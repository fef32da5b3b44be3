"""Training data: loading (files, in-memory rows, hub specs), column checks, nested fraction subsets
and chat-template rendering shared by every trainer."""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..common import read_records

log = logging.getLogger(__name__)

PREFERENCE_COLUMNS = ("prompt", "chosen", "rejected")

PathLike = str | Path
DataSpec = PathLike | list[dict] | dict


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


def _from_rlhf_v(row: dict) -> dict:
    """An ``openbmb/RLHF-V-Dataset`` row as prompt/chosen/rejected (its ``text`` is a JSON string
    ``{"question", "chosen", "rejected"}``; the image stays in ``image``, decoded by ``datasets``)."""
    import json

    from ..multimodal import strip_image_token

    try:
        pref = json.loads(row["text"])
        out = {k: v for k, v in row.items() if k != "text"}
        out.update(prompt=strip_image_token(pref["question"]).strip(), chosen=pref["chosen"], rejected=pref["rejected"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(
            f"RLHF-V row {row.get('idx', '?')}: 'text' is not {{question, chosen, rejected}} JSON"
        ) from exc
    return out


def _from_hub_row(row: dict) -> dict:
    """A hub row in one of the known layouts as plain prompt/chosen/rejected."""
    if "prompt" not in row and isinstance(row.get("text"), str) and "chosen" not in row:
        return _from_rlhf_v(row)
    return _from_message_format(row)


def load_rows(data: DataSpec) -> list[dict]:
    """Load rows from a JSONL/JSON file, an in-memory list, or a hub spec ``{"source": "hub", ...}``.

    Hub rows in message-list format are converted to plain text (see :func:`_from_message_format`),
    RLHF-V's rows from their JSON ``text`` (:func:`_from_rlhf_v`).
    """
    if isinstance(data, list):
        return [dict(r) for r in data]
    if isinstance(data, dict):
        if data.get("source") != "hub" or not data.get("name"):
            raise ValueError(f"data spec {data!r}: expected {{'source': 'hub', 'name': ..., 'split': ...}}")
        extra = {k: v for k, v in data.items() if k not in ("source", "name", "split")}
        ds = _load_hub_dataset(data["name"], data.get("split", "train"), **extra)
        return [_from_hub_row(dict(r)) for r in ds]
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
