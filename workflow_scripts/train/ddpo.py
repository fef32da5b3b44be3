"""DDPO (RLHF-V's Dense DPO): DPO on a segment-weighted log-probability.

RLHF-V trains on *corrections*: the chosen answer is the rejected one with its hallucinated
segments rewritten. DDPO scores each answer as Σ_t w_t log π(y_t | …) with w_t = γ on tokens of a
corrected (changed) segment and 1 elsewhere, either summed or averaged (divided by Σ_t w_t, the
paper's default), and feeds those scores into the ordinary sigmoid DPO loss, for the policy and the
reference alike.

Implementation: :class:`DDPOTrainer` subclasses TRL's ``DPOTrainer`` and changes one thing, the
per-token log-probabilities the fused LM head returns. A forward hook multiplies them by the
per-token weights (divided by their sum when averaging), so TRL's own sum over the completion is
the DDPO score, and the loss, the reward metrics and the reference handling stay TRL's. With γ = 1
and summed scores the trainer is exactly DPO (tested).

Segments: a record's explicit ``segments`` (character spans of its answers, :mod:`.ddpo_segments`)
when it has them; otherwise a token diff of the chosen vs the rejected completion in the batch
itself (what RLHF-V's Muffin code does): tokens inside a common run of at least ``min_match`` (3)
tokens are unchanged, every other token is changed. Both work for text and vision batches alike,
since both collators give each pair as row ``i`` (chosen) and ``B + i`` (rejected) of one batch.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Sequence

MIN_MATCH = 3


def changed_tokens(a: Sequence[int], b: Sequence[int], min_match: int = MIN_MATCH) -> tuple[list[bool], list[bool]]:
    """Per-token "changed" flags of two token sequences from their longest common runs.

    A token is unchanged when it lies in a matching block (``difflib.SequenceMatcher`` without its
    junk heuristic, which would otherwise drop frequent tokens) of length ≥ ``min_match``;
    shorter coincidental matches inside a rewritten span count as changed.
    """
    ca, cb = [True] * len(a), [True] * len(b)
    sm = difflib.SequenceMatcher(None, list(a), list(b), autojunk=False)
    for blk in sm.get_matching_blocks():
        if blk.size >= min_match:
            ca[blk.a : blk.a + blk.size] = [False] * blk.size
            cb[blk.b : blk.b + blk.size] = [False] * blk.size
    return ca, cb


def segment_weights(
    input_ids, completion_mask, gamma: float, min_match: int = MIN_MATCH, explicit: Sequence | None = None
):
    """Weights ``[2B, L]`` for a DPO batch (rows 0..B-1 chosen, B..2B-1 rejected): γ on changed
    completion tokens, 1 on unchanged ones, 0 outside the completion.

    ``explicit``: per row the changed flag of each completion token (from a record's segments), or
    None where the pair's tokens are diffed.
    """
    import torch

    mask = completion_mask.bool()
    w = mask.to(torch.float32)
    n = input_ids.size(0) // 2
    for i in range(n):
        pos_c = mask[i].nonzero().flatten()
        pos_r = mask[n + i].nonzero().flatten()
        if explicit is not None and explicit[i] is not None:
            ca, cr = list(explicit[i])[: len(pos_c)], list(explicit[n + i])[: len(pos_r)]
        else:
            ca, cr = changed_tokens(input_ids[i, pos_c].tolist(), input_ids[n + i, pos_r].tolist(), min_match)
        w[i, pos_c[torch.tensor(ca, dtype=torch.bool)]] = float(gamma)
        w[n + i, pos_r[torch.tensor(cr, dtype=torch.bool)]] = float(gamma)
    return w


def token_scale(weights, completion_mask, *, average: bool):
    """Factor for the shifted per-token log-probs ``[2B, L-1]``: w, or w / Σw when averaging."""
    w = weights[:, 1:]
    if average:
        total = (w * completion_mask[:, 1:]).sum(dim=1, keepdim=True).clamp(min=1e-8)
        w = w / total
    return w


@contextlib.contextmanager
def _scaled_log_probs(modules, scale):
    """Multiply ``output.log_probs`` of every forward of ``modules`` by ``scale`` (aligned right)."""

    def hook(_module, _args, output):
        lp = getattr(output, "log_probs", None)
        if lp is not None:
            s = scale.to(device=lp.device, dtype=lp.dtype)
            output.log_probs = lp[:, -s.size(1) :] * s if lp.size(1) == s.size(1) else _right_scale(lp, s)
        return output

    handles = [m.register_forward_hook(hook) for m in modules if m is not None]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _right_scale(lp, s):
    """Scale the last ``s.size(1)`` positions (prompt-learning PEFT prepends virtual tokens)."""
    out = lp.clone()
    out[:, -s.size(1) :] = lp[:, -s.size(1) :] * s
    return out


def make_ddpo_trainer_class():
    """The DDPOTrainer class (built lazily so importing this module does not import TRL/torch)."""
    from trl import DPOTrainer

    from .ddpo_segments import COLUMN, FLAGS_KEY, SegmentCollator

    class DDPOTrainer(DPOTrainer):
        """TRL's DPOTrainer scoring answers by the segment-weighted log-probability of DDPO."""

        def __init__(self, *args, gamma: float, average: bool, min_match: int = MIN_MATCH, **kwargs):
            if kwargs.get("args") is not None and kwargs["args"].precompute_ref_log_probs:
                raise ValueError(
                    "ddpo needs the reference's weighted log-probs per batch: precompute_ref_log_probs off"
                )
            super().__init__(*args, **kwargs)
            self.ddpo_gamma = float(gamma)
            self.ddpo_average = bool(average)
            self.ddpo_min_match = int(min_match)
            if self.train_dataset is not None and COLUMN in (self.train_dataset.column_names or ()):
                self.data_collator = SegmentCollator(self.data_collator, self.processing_class)

        def _set_signature_columns_if_needed(self):
            super()._set_signature_columns_if_needed()
            if COLUMN not in self._signature_columns:
                self._signature_columns = [*self._signature_columns, COLUMN]

        def _compute_loss(self, model, inputs, return_outputs):
            explicit = inputs.pop(FLAGS_KEY, None)
            weights = segment_weights(
                inputs["input_ids"], inputs["completion_mask"], self.ddpo_gamma, self.ddpo_min_match, explicit
            )
            scale = token_scale(weights, inputs["completion_mask"].to(weights.dtype), average=self.ddpo_average)
            with _scaled_log_probs([model, self.ref_model], scale):
                return super()._compute_loss(model, inputs, return_outputs)

    return DDPOTrainer
