"""The output's manifest: what was computed from what, and where alignment moved the weights.

Why in the output folder: a results table must be traceable to its inputs (paths, sizes, hashes,
hub revision) and its scheme; and the per-layer ‖Δ‖ the stream computed anyway is what layer
schemes should be chosen from (:mod:`workflow_scripts.delta_report`).
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import shutil
from pathlib import Path
from typing import Any

from workflow_scripts.common import format_alpha
from workflow_scripts.extrapolate.dtypes import TORCH_NAME
from workflow_scripts.extrapolate.numerics import Stats
from workflow_scripts.extrapolate.plan import Plan
from workflow_scripts.schemes import Scheme

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf", ".onnx")
WEIGHT_INDEXES = (".safetensors.index.json", ".bin.index.json")
SMALL_FILE_HASH_LIMIT = 64 * 2**20
"""Non-weight files below this size are always hashed in the manifest (cheap, and they change)."""


def _is_weight_file(name: str) -> bool:
    return name.endswith(WEIGHT_SUFFIXES) or name.endswith(WEIGHT_INDEXES)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(8 * 2**20), b""):
            h.update(block)
    return h.hexdigest()


def _revision(path: Path) -> str | None:
    """Hub revision when the folder is a hub cache snapshot (…/snapshots/<sha>/)."""
    m = re.search(r"/snapshots/([0-9a-f]{40})(?:/|$)", str(path.resolve()))
    return m.group(1) if m else None


def describe_inputs(path: Path, *, hash_weights: bool = False) -> dict:
    """Paths, sizes and hashes of a model folder's files (weights hashed only on request: slow)."""
    files = []
    for f in sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")):
        entry: dict[str, Any] = {"name": f.name, "bytes": f.stat().st_size}
        if (not _is_weight_file(f.name) and entry["bytes"] <= SMALL_FILE_HASH_LIMIT) or hash_weights:
            entry["sha256"] = _sha256(f)
        files.append(entry)
    return {"path": str(path.resolve()), "revision": _revision(path), "files": files}


def copy_aux_files(aligned: Path, out: Path) -> list[str]:
    """Copy config, tokenizer, chat template, generation config… (everything that is not weights)."""
    copied = []
    for f in sorted(aligned.iterdir()):
        if f.name.startswith(".") or f.name == "manifest.json" or _is_weight_file(f.name):
            continue
        if f.is_file():
            shutil.copy2(f, out / f.name)
            copied.append(f.name)
        elif f.is_dir():
            log.info("not copying sub-folder %s of the aligned model", f.name)
    return copied


def _norm_entry(dd: float, aa: float) -> dict:
    """‖Δ‖, ‖θ_aligned‖ and their ratio from the sums of squares."""
    dn, an = math.sqrt(dd), math.sqrt(aa)
    return {"delta_norm": dn, "aligned_norm": an, "rel_delta": dn / an if an > 0 else None}


def build_manifest(
    p: Plan, scheme: Scheme, stats: dict[str, Stats], inputs: dict, copied: list[str], elapsed: float
) -> dict:
    """The manifest.json content (JSON-able)."""
    groups: dict[str, int] = {}
    layer_acc: dict[int, list] = {i: [0.0, 0.0, 0, set()] for i in range(p.num_layers)}
    special_acc: dict[str, list] = {}
    dtypes: dict[str, int] = {}
    for t in p.tensors:
        groups[t.group] = groups.get(t.group, 0) + 1
        dtypes[t.a.dtype] = dtypes.get(t.a.dtype, 0) + t.a.nbytes
        st = stats[t.name]
        if t.s is None:
            continue
        if t.kind == "layer":
            acc = layer_acc[t.layer]
        elif t.kind in ("embed", "norm", "lm_head"):
            acc = special_acc.setdefault(t.kind, [0.0, 0.0, 0, set()])
        else:
            continue
        acc[0] += st.dd
        acc[1] += st.aa
        acc[2] += 1
        acc[3].add(t.alpha)
    layers = [
        {"layer": i, **_norm_entry(v[0], v[1]), "n_tensors": v[2], "alphas": sorted(v[3])} for i, v in layer_acc.items()
    ]
    special = {
        k: {**_norm_entry(v[0], v[1]), "n_tensors": v[2], "alphas": sorted(v[3])} for k, v in special_acc.items()
    }
    main_dtype = max(dtypes, key=dtypes.get) if dtypes else None
    return {
        "scheme": scheme.describe(),
        "alpha": scheme.uniform,
        "alpha_text": format_alpha(scheme.uniform) if scheme.uniform is not None else None,
        "formula": "theta = theta_aligned + alpha * (theta_aligned - theta_sft), fp32 math",
        "inputs": inputs,
        "groups": groups,
        "layers": layers,
        "special": special,
        "num_layers": p.num_layers,
        "tied_embeddings": p.tied,
        "skipped_tensors": p.skipped,
        "added_vocab_rows": p.added_vocab_rows,
        "dtype": TORCH_NAME.get(main_dtype, main_dtype),
        "dtypes": {TORCH_NAME[k]: v for k, v in dtypes.items()},
        "n_tensors": len(p.tensors),
        "output": {"files": p.shard_names, "total_size": sum(p.shard_sizes), "copied": copied},
        "elapsed_s": round(elapsed, 3),
    }
