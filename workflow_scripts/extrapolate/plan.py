"""Planning: pair SFT and aligned tensors, give each its α, lay out the output shards.

Why a separate pass: everything here needs only headers, so a wrong pair of checkpoints or a
scheme that does not fit the model fails before the output folder exists, and the output's
safetensors headers are fixed before the first byte of data is read.
"""

from __future__ import annotations

import json
import logging
import struct
from dataclasses import dataclass, field
from typing import Any

from workflow_scripts.extrapolate.assign import Placement, place_tensors
from workflow_scripts.extrapolate.dtypes import FLOAT_CODES
from workflow_scripts.extrapolate.reader import SAFE_SINGLE, Checkpoint, TensorInfo, cfg_get
from workflow_scripts.scheme_components import LANGUAGE_MODEL
from workflow_scripts.schemes import VOCAB_KINDS, Scheme, tensor_kind

log = logging.getLogger(__name__)


@dataclass
class OutTensor:
    """One output tensor: its aligned/sft sources, α, and where it goes in the output."""

    name: str
    a: TensorInfo
    s: TensorInfo | None  # None for non-float tensors that are copied
    alpha: float
    group: str
    kind: str
    layer: int | None
    component: str | None = None  # None in a text-only plan under a plain scheme
    shard: int = 0
    out_offset: int = 0  # absolute offset in the output shard file
    shared_elems: int = 0  # elements present in both (fewer than a.numel when vocab grew)


@dataclass
class Plan:
    """Everything the data pass needs: output tensors in order, shard names, sizes and headers."""

    tensors: list[OutTensor]
    shard_sizes: list[int]
    shard_names: list[str]
    shard_headers: list[bytes]
    num_layers: int
    tied: bool
    added_vocab_rows: int
    skipped: list[str]
    components: dict[str, int] | None = None  # component -> depth; None for a plain text-only plan
    dtype_mismatches: list[tuple[str, str, str]] = field(default_factory=list)  # (name, sft, aligned)


_STRUCT_KEYS = (
    ("model_type",),
    ("architectures",),
    ("num_hidden_layers", "n_layer", "num_layers"),
    ("hidden_size", "n_embd", "d_model"),
    ("intermediate_size", "n_inner", "ffn_dim"),
    ("num_attention_heads", "n_head"),
    ("num_key_value_heads",),
)


def check_configs(sft: Checkpoint, aligned: Checkpoint) -> None:
    if not aligned.config:
        raise ValueError(f"aligned checkpoint {aligned.path} has no config.json; the output could not be loaded")
    if not sft.config:
        log.warning("sft checkpoint %s has no config.json; architecture is checked from tensors only", sft.path)
        return
    for keys in _STRUCT_KEYS:
        va, vs = cfg_get(aligned.config, *keys), cfg_get(sft.config, *keys)
        if va is not None and vs is not None and va != vs:
            raise ValueError(
                f"architectures differ: config.json {keys[0]} is {vs!r} in sft ({sft.path}) but "
                f"{va!r} in aligned ({aligned.path})"
            )


def is_tied(ckpt: Checkpoint) -> bool:
    tie = cfg_get(ckpt.config, "tie_word_embeddings")
    if tie is None:
        return not any(tensor_kind(n)[0] == "lm_head" for n in ckpt.tensors)
    return bool(tie)


def plan(sft: Checkpoint, aligned: Checkpoint, scheme: Scheme, max_shard_bytes: int) -> Plan:
    """Pair tensors by name and lay out the output; raise ValueError on any mismatch.

    Only headers are used, so a wrong pair of checkpoints fails in milliseconds and before the
    output folder exists.
    """
    check_configs(sft, aligned)
    tied = is_tied(aligned)
    out_names, sft_name, skipped = pair_names(sft, aligned, tied)
    placed, depths = place_tensors(aligned, out_names, scheme)
    tensors: list[OutTensor] = []
    added_rows, mismatched = 0, []
    for n in out_names:
        a, s = aligned.tensors[n], sft.tensors[sft_name.get(n, n)]
        tensors.append(out_tensor(n, a, s, placed[n]))
        if a.shape != s.shape:
            added_rows = max(added_rows, a.shape[0] - s.shape[0])
        if a.dtype != s.dtype and a.dtype in FLOAT_CODES:
            mismatched.append((n, s.dtype, a.dtype))
    check_groups_used(tensors, placed)
    names, headers, sizes = layout_shards(tensors, max_shard_bytes)
    L = depths.get(LANGUAGE_MODEL, 0) if depths is not None else placed[out_names[0]].depth if out_names else 0
    return Plan(tensors, sizes, names, headers, L, tied, added_rows, skipped, depths, mismatched)


def pair_names(sft: Checkpoint, aligned: Checkpoint, tied: bool) -> tuple[list[str], dict[str, str], list[str]]:
    """(output names in aligned on-disk order, aligned → sft name where they differ, skipped heads).

    A tied aligned model writes no separate head (it *is* the embedding; writing one would untie
    it or be silently dropped by from_pretrained); an untied aligned head over a tied SFT takes
    the SFT embedding as its SFT value.
    """
    sft_tied = is_tied(sft) if sft.config else False
    heads_a = [n for n in aligned.tensors if tensor_kind(n)[0] == "lm_head"]
    heads_s = [n for n in sft.tensors if tensor_kind(n)[0] == "lm_head"]
    if sft.config and tied != sft_tied:
        log.warning("tie_word_embeddings differs: sft %s, aligned %s; following the aligned model", sft_tied, tied)
    skipped = sorted(heads_a) if tied else []
    ignore_s = set(heads_s) if tied else set()
    sft_name: dict[str, str] = {}
    if not tied and heads_a and not heads_s and sft_tied:
        embeds = [
            n
            for n in sft.tensors
            if tensor_kind(n)[0] == "embed" and n.endswith("weight") and "position" not in n and "wpe" not in n
        ]
        if len(embeds) != 1:
            raise ValueError(
                f"tensor {heads_a[0]!r} is in aligned but sft ties its head to embeddings and "
                f"the embedding tensor is ambiguous ({embeds})"
            )
        sft_name = dict.fromkeys(heads_a, embeds[0])
        log.warning("sft ties lm_head to %s; using it as the sft value of %s", embeds[0], heads_a)
    out_names = [n for n in sorted(aligned.tensors, key=lambda n: aligned.tensors[n].order) if n not in skipped]
    missing = [n for n in out_names if sft_name.get(n, n) not in sft.tensors]
    if missing:
        raise ValueError(
            f"tensor {missing[0]!r} is in aligned ({aligned.path}) but not in sft ({sft.path})" + _more(missing)
        )
    used = {sft_name.get(n, n) for n in out_names}
    extra = [n for n in sft.tensors if n not in used and n not in ignore_s]
    if extra:
        raise ValueError(
            f"tensor {extra[0]!r} is in sft ({sft.path}) but not in aligned ({aligned.path})" + _more(extra)
        )
    return out_names, sft_name, skipped


def _more(names: list[str]) -> str:
    return f" (and {len(names) - 1} more)" if len(names) > 1 else ""


def out_tensor(n: str, a: TensorInfo, s: TensorInfo, where: Placement) -> OutTensor:
    """One output tensor with its α; shapes may differ only by added vocabulary rows."""
    kind, layer = tensor_kind(n)
    if layer is not None and layer >= where.depth:
        of = f" for component {where.component}" if where.component else ""
        raise ValueError(f"tensor {n!r} has layer index {layer} but config.json says {where.depth} layers{of}")
    a_float, s_float = a.dtype in FLOAT_CODES, s.dtype in FLOAT_CODES
    if a_float != s_float:
        raise ValueError(f"tensor {n!r} is {a.dtype} in aligned but {s.dtype} in sft")
    shared = a.numel
    if a.shape != s.shape:
        grows = (
            kind in VOCAB_KINDS
            and len(a.shape) == len(s.shape) >= 1
            and a.shape[1:] == s.shape[1:]
            and a.shape[0] > s.shape[0]
        )
        if not grows:
            raise ValueError(f"tensor {n!r} has shape {list(s.shape)} in sft but {list(a.shape)} in aligned")
        shared = s.numel
    alpha, group = where.scheme.alpha_for(n, where.depth) if a_float else (0.0, "copied")
    if where.component is not None:
        group = f"{where.component}/{group}"
    return OutTensor(n, a, s if a_float else None, alpha, group, kind, layer, where.component, shared_elems=shared)


def check_groups_used(tensors: list[OutTensor], placed: dict[str, Placement]) -> None:
    """Every group the user wrote (and its module filter) must select at least one tensor: a typo
    such as ``modules: [mpl]`` would otherwise silently give that group's tensors the default α."""
    used = {(id(placed[t.name].scheme), t.group.split("/", 1)[1] if t.component else t.group) for t in tensors}
    schemes = {id(p.scheme): (p.scheme, p.component) for p in placed.values()}
    for sch, component in schemes.values():
        if sch.uniform is not None or sch.preset is not None:
            continue
        for g in sch.groups:
            if (id(sch), g.name) not in used:
                where = f" of component {component}" if component else ""
                raise ValueError(
                    f"scheme group {g.name!r}{where} (layers {g.describe()['layers']}, by {g.by}, "
                    f"modules {list(g.modules)}) matches no tensor; check its layer range and module names"
                )


def layout_shards(tensors: list[OutTensor], max_shard_bytes: int) -> tuple[list[str], list[bytes], list[int]]:
    """(shard names, header bytes, data sizes): aligned on-disk order, cut at ``max_shard_bytes``
    (a bigger tensor gets a shard of its own); sets each tensor's shard and absolute offset."""
    shards: list[list[OutTensor]] = [[]]
    size = 0
    for t in tensors:
        if shards[-1] and size + t.a.nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(t)
        size += t.a.nbytes
    n_sh = len(shards)
    names = [SAFE_SINGLE] if n_sh == 1 else [f"model-{i + 1:05d}-of-{n_sh:05d}.safetensors" for i in range(n_sh)]
    headers, sizes = [], []
    for si, members in enumerate(shards):
        header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
        pos = 0
        for t in members:
            header[t.name] = {"dtype": t.a.dtype, "shape": list(t.a.shape), "data_offsets": [pos, pos + t.a.nbytes]}
            pos += t.a.nbytes
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)  # safetensors pads the header to 8-byte alignment
        head = struct.pack("<Q", len(raw)) + raw
        start = len(head)
        for t in members:
            t.shard, t.out_offset = si, start
            start += t.a.nbytes
        headers.append(head)
        sizes.append(pos)
    return names, headers, sizes
