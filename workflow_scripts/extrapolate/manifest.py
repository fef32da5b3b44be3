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
from workflow_scripts.extrapolate.plan import OutTensor, Plan
from workflow_scripts.model_card import is_training_artifact
from workflow_scripts.scheme_components import LANGUAGE_MODEL, ComponentScheme
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
    """Identity (name, Hub repo, revision), path, sizes and hashes of a model folder's files
    (weights hashed only on request: slow)."""
    from workflow_scripts.model_card import identify

    files = []
    for f in sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")):
        entry: dict[str, Any] = {"name": f.name, "bytes": f.stat().st_size}
        if (not _is_weight_file(f.name) and entry["bytes"] <= SMALL_FILE_HASH_LIMIT) or hash_weights:
            entry["sha256"] = _sha256(f)
        files.append(entry)
    ident = identify(path)
    return {
        "name": ident["name"],
        "repo": ident["repo"],
        "path": str(path.resolve()),
        "revision": _revision(path) or ident["revision"],
        "files": files,
    }


def copy_aux_files(aligned: Path, out: Path) -> list[str]:
    """Copy config, tokenizer, chat template, generation config, processor files… (everything
    that is neither weights nor a training artifact)."""
    copied = []
    for f in sorted(aligned.iterdir()):
        if f.name.startswith(".") or f.name == "manifest.json" or _is_weight_file(f.name):
            continue
        if is_training_artifact(f.name):
            log.info("not copying %s of the aligned model (a training artifact)", f.name)
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


class _Acc:
    """Sums of squares of Δ and θ_aligned over a set of tensors, and the α they got."""

    def __init__(self) -> None:
        self.dd, self.aa, self.n, self.alphas = 0.0, 0.0, 0, set()

    def add(self, st: Stats, alpha: float) -> None:
        self.dd += st.dd
        self.aa += st.aa
        self.n += 1
        self.alphas.add(alpha)

    def entry(self, flag_zero: bool = False) -> dict:
        out = {**_norm_entry(self.dd, self.aa), "n_tensors": self.n, "alphas": sorted(self.alphas)}
        if flag_zero:
            out["zero_delta"] = self.n > 0 and self.dd == 0.0
        return out


def _norms(tensors: list[OutTensor], stats: dict[str, Stats], depth: int, flag_zero: bool) -> tuple[list, dict, _Acc]:
    """(per-layer entries, embed/norm/lm_head entries, totals) of one stack of layers."""
    layer_acc = {i: _Acc() for i in range(depth)}
    special_acc: dict[str, _Acc] = {}
    total = _Acc()
    for t in tensors:
        if t.s is None:
            continue
        st = stats[t.name]
        total.add(st, t.alpha)
        if t.kind == "layer":
            layer_acc[t.layer].add(st, t.alpha)
        elif t.kind in ("embed", "norm", "lm_head"):
            special_acc.setdefault(t.kind, _Acc()).add(st, t.alpha)
    layers = [{"layer": i, **acc.entry(flag_zero)} for i, acc in layer_acc.items()]
    return layers, {k: acc.entry(flag_zero) for k, acc in special_acc.items()}, total


def _component_norms(p: Plan, stats: dict[str, Stats]) -> dict:
    """‖Δ‖ keyed by (component, layer); components and layers with Δ ≡ 0 (frozen, or unused such
    as the last vision layer under ``vision_feature_layer = -2``) carry ``zero_delta: true``."""
    out = {}
    for c, depth in p.components.items():
        layers, special, total = _norms([t for t in p.tensors if t.component == c], stats, depth, True)
        out[c] = {"num_layers": depth, **total.entry(True), "layers": layers, "special": special}
    return out


def build_manifest(
    p: Plan, scheme: Scheme | ComponentScheme, stats: dict[str, Stats], inputs: dict, copied: list[str], elapsed: float
) -> dict:
    """The manifest.json content (JSON-able). With components, the top-level ``layers``/``special``
    are the language model's, so reports that know one decoder keep working."""
    groups: dict[str, int] = {}
    dtypes: dict[str, int] = {}
    for t in p.tensors:
        groups[t.group] = groups.get(t.group, 0) + 1
        dtypes[t.a.dtype] = dtypes.get(t.a.dtype, 0) + t.a.nbytes
    extra: dict[str, Any] = {}
    if p.components is None:
        layers, special, _ = _norms(p.tensors, stats, p.num_layers, False)
    else:
        comps = _component_norms(p, stats)
        lm = comps.get(LANGUAGE_MODEL, {"layers": [], "special": {}})
        layers, special = lm["layers"], lm["special"]
        extra = {"components": comps, "zero_delta_components": [c for c, e in comps.items() if e["zero_delta"]]}
    main_dtype = max(dtypes, key=dtypes.get) if dtypes else None
    mismatch = [{"tensor": n, "sft": TORCH_NAME[s], "aligned": TORCH_NAME[a]} for n, s, a in p.dtype_mismatches]
    return {
        "scheme": scheme.describe(),
        "alpha": scheme.uniform,
        "alpha_text": format_alpha(scheme.uniform) if scheme.uniform is not None else None,
        "formula": "theta = theta_aligned + alpha * (theta_aligned - theta_sft), fp32 math",
        "inputs": inputs,
        "groups": groups,
        "layers": layers,
        "special": special,
        **extra,
        "num_layers": p.num_layers,
        "tied_embeddings": p.tied,
        "skipped_tensors": p.skipped,
        "added_vocab_rows": p.added_vocab_rows,
        "dtype": TORCH_NAME.get(main_dtype, main_dtype),
        "dtypes": {TORCH_NAME[k]: v for k, v in dtypes.items()},
        "dtype_mismatch": {"n_tensors": len(mismatch), "first": mismatch[:10]} if mismatch else None,
        "n_tensors": len(p.tensors),
        "output": {"files": p.shard_names, "total_size": sum(p.shard_sizes), "copied": copied},
        "elapsed_s": round(elapsed, 3),
    }
