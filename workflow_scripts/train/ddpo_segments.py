"""DDPO's explicit corrected segments: character spans of the answers, mapped to completion tokens.

A preference record may say which parts of its answers were corrected, instead of leaving DDPO to
guess them from a token diff::

    {"prompt": ..., "chosen": ..., "rejected": ...,
     "segments": {"chosen": [[start, end], ...], "rejected": [[start, end], ...]}}

Each span is ``[start, end)`` in Python character offsets into that record's own ``chosen`` /
``rejected`` text: the spans the annotator rewrote (chosen) and the hallucinated spans they
replaced (rejected); an empty list says that side has none. RLHF-V's released data carries only
the two answers (its Muffin code diffs them), so this field is for sets built from annotations
that kept the spans; a record without it falls back to the diff (:mod:`.ddpo`).

Why character spans mapped per batch: the trainer sees token ids rendered through the chat
template (and, for images, TRL's vision collator), not the raw answer. :class:`SegmentCollator`
wraps TRL's collator, renders each answer exactly as TRL does, tokenizes it with the fast
tokenizer's offsets, checks that it reproduces the batch's completion tokens, and marks a token
changed when its characters overlap a span. Template tokens (end of turn, EOS) are unchanged.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SEGMENTS_KEY = "segments"
COLUMN = "ddpo_segments"
"""Dataset column carrying a row's segments (JSON text, empty when the row has none)."""
FLAGS_KEY = "ddpo_changed"
"""Batch key: per row (chosen rows then rejected rows) the changed flag of each completion token, or None."""
SIDES = ("chosen", "rejected")


def _record_name(row: Mapping[str, Any], index: int) -> str:
    return f"record {row['id']!r}" if row.get("id") is not None else f"row {index}"


def validate_segments(row: Mapping[str, Any], index: int, source: str) -> dict[str, list[list[int]]] | None:
    """The record's ``segments`` as ``{"chosen": [[s, e], ...], "rejected": [...]}``, None without one.

    A malformed field is one ValueError naming the file and the record, before any model loads.
    """
    seg = row.get(SEGMENTS_KEY)
    if seg is None:
        return None
    where = f"{source}: {_record_name(row, index)}"
    if not isinstance(seg, Mapping) or set(seg) != set(SIDES):
        raise ValueError(f"{where}: segments must be {{'chosen': [[start, end], ...], 'rejected': [...]}}, got {seg!r}")
    out = {}
    for side in SIDES:
        text, spans = row[side], seg[side]
        if not isinstance(spans, list):
            raise ValueError(f"{where}: segments.{side} must be a list of [start, end] spans, got {spans!r}")
        for k, span in enumerate(spans):
            ok = (
                isinstance(span, (list, tuple))
                and len(span) == 2
                and all(isinstance(x, int) and not isinstance(x, bool) for x in span)
            )
            if not ok or not (0 <= span[0] < span[1] <= len(text)):
                raise ValueError(
                    f"{where}: segments.{side}[{k}] = {span!r} is not a span [start, end) with "
                    f"0 <= start < end <= {len(text)} (the length of its {side} text)"
                )
        out[side] = [[int(s), int(e)] for s, e in spans]
    return out


def validate_all_segments(rows: Sequence[Mapping[str, Any]], source: str) -> int:
    """Check every record's segments (the whole file, whatever fraction is trained); how many have them."""
    return sum(validate_segments(r, i, source) is not None for i, r in enumerate(rows))


def segment_cell(row: Mapping[str, Any], index: int, source: str, rendered: Mapping[str, str] | None = None) -> str:
    """The dataset cell of one row: its answers, spans and (text training) rendered prompt and
    completions, as JSON; "" when the row has no segments."""
    seg = validate_segments(row, index, source)
    if seg is None:
        return ""
    cell: dict[str, Any] = {"where": f"{source}: {_record_name(row, index)}"}
    for side in SIDES:
        cell[side] = {"answer": row[side], "spans": seg[side]}
        if rendered is not None:
            cell[side]["text"] = rendered[side]
    if rendered is not None:
        cell["prefix"] = rendered["prompt"]
    return json.dumps(cell)


def span_flags(offsets: Sequence[tuple[int, int]], answer_start: int, spans: Sequence[Sequence[int]]) -> list[bool]:
    """Whether each token's characters ``[a, b)`` overlap a span (shifted to ``answer_start``)."""
    shifted = [(answer_start + s, answer_start + e) for s, e in spans]
    return [b > a and any(a < e and b > s for s, e in shifted) for a, b in offsets]


def _locate(answer: str, text: str, spans: Sequence[Sequence[int]], where: str) -> tuple[int, list[list[int]]]:
    """Where the raw answer starts in its rendered completion, and the spans relative to that start
    (a template that trims the answer shifts them by the whitespace it dropped)."""
    at = text.find(answer)
    if at >= 0:
        return at, [list(s) for s in spans]
    core = answer.strip()
    lead = len(answer) - len(answer.lstrip())
    at = text.find(core) if core else -1
    if at < 0:
        raise ValueError(
            f"{where}: its answer does not occur verbatim in the chat-template rendering, "
            "so its segments cannot be placed"
        )
    return at, [[max(0, s - lead), min(len(core), e - lead)] for s, e in spans]


def completion_flags(
    tokenizer,
    prefix: str,
    text: str,
    side: Mapping[str, Any],
    completion_ids: Sequence[int],
    start_token: int,
    where: str,
    **tok_kwargs: Any,
) -> list[bool]:
    """Changed flags of the completion tokens ``completion_ids`` (which start at token
    ``start_token`` of ``tokenizer(prefix + text)``) from the answer's character spans."""
    enc = tokenizer(prefix + text, return_offsets_mapping=True, **tok_kwargs)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    got = list(ids[start_token : start_token + len(completion_ids)])
    if got != list(completion_ids):
        raise ValueError(
            f"{where}: the tokenizer's offsets do not reproduce the trainer's completion tokens, so its "
            "segments cannot be mapped to tokens"
        )
    at, spans = _locate(side["answer"], text, side["spans"], where)
    return span_flags(offsets[start_token : start_token + len(completion_ids)], len(prefix) + at, spans)


def _rendered_vision(example: Mapping[str, Any], processor) -> dict[str, str]:
    """The prompt and completions TRL's vision collator renders for this example."""
    from trl.data_utils import apply_chat_template, prepare_multimodal_messages

    ex = {
        "prompt": prepare_multimodal_messages(copy.deepcopy(example["prompt"]), images=example.get("images")),
        **{s: prepare_multimodal_messages(copy.deepcopy(example[s])) for s in SIDES},
    }
    return apply_chat_template(ex, processor)


@dataclass
class SegmentCollator:
    """TRL's preference collator plus :data:`FLAGS_KEY`: explicit changed flags for rows with segments."""

    inner: Callable[[list[dict]], dict]
    processing_class: Any

    @property
    def tokenizer(self):
        return getattr(self.processing_class, "tokenizer", self.processing_class)

    def __call__(self, examples: list[dict]) -> dict:
        cells = [json.loads(e.get(COLUMN) or "null") for e in examples]
        originals = [{k: v for k, v in e.items() if k != COLUMN} for e in examples]
        batch = self.inner([dict(e) for e in originals])
        n = len(examples)
        flags: list[list[bool] | None] = [None] * (2 * n)
        for i, cell in enumerate(cells):
            if cell is None:
                continue
            vision = "prompt_ids" not in originals[i]
            rendered = _rendered_vision(originals[i], self.processing_class) if vision else None
            for k, side in enumerate(SIDES):
                row = i + k * n
                pos = batch["completion_mask"][row].nonzero().flatten()
                ids = batch["input_ids"][row, pos].tolist()
                if vision:
                    prefix, text, start, kw = "", rendered[side], 0, {"add_special_tokens": False}
                else:
                    text = cell[side]["text"]
                    eos = self.tokenizer.eos_token
                    text = text if text.endswith(eos) else text + eos  # as TRL's add_eos
                    prefix, start, kw = cell["prefix"], int(pos[0]) if len(pos) else 0, {}
                flags[row] = completion_flags(self.tokenizer, prefix, text, cell[side], ids, start, cell["where"], **kw)
        if any(f is not None for f in flags):
            batch[FLAGS_KEY] = flags
        return batch
