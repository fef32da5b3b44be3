"""Per-prompt seeds: a prompt's sampled answer depends on the run seed and its id, nothing else.

Why: Hugging Face ``generate`` draws every row of a batch from one global RNG, so the random
numbers a prompt gets depend on which prompts share its batch, on their order and on the batch
size: the same workflow answer could not be reproduced by a command with another batch size, or
by answering a subset. vLLM offers per-request seeds (``SamplingParams(seed=...)``); this module
gives the Hugging Face backend the same property:

* :func:`prompt_seed` derives a 63-bit seed from the run seed and the prompt id (sha256), used by
  both backends;
* :class:`PerRowSampler` is the last logits processor of a *greedy* ``generate`` call: it draws
  each row's token from that row's own ``torch.Generator`` and leaves only that token finite, so
  ``generate``'s argmax picks it. The filters before it are the library's own warpers
  (temperature, top-k, top-p, in the order ``generate`` applies them when sampling), so the
  distribution is the one ``do_sample=True`` samples from; only the source of randomness differs.

Answers are then independent of batch size and order up to float rounding of the logits (a
batch's padding can change the last bits; a draw flips only when it lands within that distance
of a token boundary).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

SEEDING = "per-prompt: sha256(f'{seed}:{id}'), first 8 bytes >> 1"
"""How :func:`prompt_seed` derives a prompt's seed (recorded in the provenance)."""


def prompt_seed(seed: int, prompt_id: str) -> int:
    """The seed of one prompt's answer: a hash of the run seed and the prompt id (0 <= s < 2**63)."""
    digest = hashlib.sha256(f"{int(seed)}:{prompt_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


class PerRowSampler:
    """Sample each row with its own generator; return scores whose argmax is the sampled token.

    ``generators[r]`` belongs to row ``r`` of the batch for the whole ``generate`` call (one draw
    per decoding step, finished rows included), so a row's k-th token always uses its k-th draw.
    Create one instance per ``generate`` call.
    """

    def __init__(self, generators: Sequence[torch.Generator]):
        self.generators = list(generators)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        import torch

        if scores.shape[0] != len(self.generators):
            raise RuntimeError(f"PerRowSampler built for {len(self.generators)} rows got {scores.shape[0]}")
        probs = torch.softmax(scores.float(), dim=-1)
        picked = torch.stack([torch.multinomial(probs[r], 1, generator=g)[0] for r, g in enumerate(self.generators)])
        out = torch.full_like(scores, float("-inf"))
        out.scatter_(1, picked[:, None], 0.0)
        return out


def warpers(decoding: Mapping[str, Any]) -> list:
    """The library's sampling filters for a resolved decoding dict, in ``generate``'s order."""
    from transformers.generation.logits_process import (
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    out: list = []
    if decoding["temperature"] != 1.0:
        out.append(TemperatureLogitsWarper(decoding["temperature"]))
    if decoding["top_k"]:
        out.append(TopKLogitsWarper(top_k=decoding["top_k"], min_tokens_to_keep=1))
    if decoding["top_p"] < 1.0:
        out.append(TopPLogitsWarper(top_p=decoding["top_p"], min_tokens_to_keep=1))
    return out


def row_generators(seed: int, prompt_ids: Sequence[str], device: str) -> list[torch.Generator]:
    """One generator per row, seeded with :func:`prompt_seed`."""
    import torch

    return [torch.Generator(device=device).manual_seed(prompt_seed(seed, pid)) for pid in prompt_ids]


def per_prompt_seeding(decoding: Mapping[str, Any]) -> bool:
    """Sampling with a seed: answers are drawn with :class:`PerRowSampler` (``generate`` runs greedy)."""
    return bool(decoding["do_sample"]) and decoding["seed"] is not None


def seeded_processors(decoding: Mapping[str, Any], prompt_ids: Sequence[str], device: str) -> list:
    """The processors that end a batch's list under :func:`per_prompt_seeding` (else none): the
    library's warpers, then one sampler whose rows are seeded from ``prompt_ids`` (the batch's rows)."""
    if not per_prompt_seeding(decoding):
        return []
    return [*warpers(decoding), PerRowSampler(row_generators(decoding["seed"], prompt_ids, device))]
