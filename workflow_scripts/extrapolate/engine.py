"""The public entry point: check, plan, stream into an atomic output folder, write the manifest."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from workflow_scripts.common import atomic_dir, write_json
from workflow_scripts.extrapolate.manifest import build_manifest, copy_aux_files, describe_inputs
from workflow_scripts.extrapolate.outputs import check_out_target, finish_temp
from workflow_scripts.extrapolate.pipeline import CHUNK_ELEMS, default_workers, run_pipeline
from workflow_scripts.extrapolate.plan import Plan, plan
from workflow_scripts.extrapolate.reader import SAFE_INDEX, load_checkpoint
from workflow_scripts.model_card import inherited_metadata, write_card
from workflow_scripts.scheme_components import ComponentScheme
from workflow_scripts.schemes import Scheme

log = logging.getLogger(__name__)


def extrapolate(
    sft: Path,
    aligned: Path,
    out: Path,
    scheme: Scheme | ComponentScheme | float | dict,
    *,
    allow_pickle: bool = False,
    max_shard_bytes: int = 5 * 2**30,
    threads: int | None = None,
    hash_inputs: bool = False,
    chunk_elems: int = CHUNK_ELEMS,
) -> dict:
    """Write θ_aligned + α·(θ_aligned − θ_sft) to ``out`` (atomically) and return the manifest.

    ``scheme`` is a number (uniform α), a :class:`Scheme` or a scheme config mapping. All checks
    that need only headers run before ``out`` is touched. ``threads`` is the number of compute
    threads (default: available cores, at most 8; reading and writing run in two more).
    ``hash_inputs`` adds sha256 of the input weight files to the manifest (reads them once
    more; off by default). torch is not imported except for pickle or fp8 checkpoints.
    """
    t0 = time.perf_counter()
    sft, aligned, out = Path(sft), Path(aligned), Path(out)
    scheme = Scheme.from_config(scheme)
    if max_shard_bytes <= 0:
        raise ValueError(f"max_shard_bytes must be positive, got {max_shard_bytes}")
    if chunk_elems <= 0:
        raise ValueError(f"chunk_elems must be positive, got {chunk_elems}")
    for role, p in (("sft", sft), ("aligned", aligned)):
        if p.exists() and out.resolve() in (p.resolve(), *p.resolve().parents):
            raise ValueError(f"output folder {out} would overwrite the {role} checkpoint {p}")
    check_out_target(out)
    workers = default_workers() if not threads else max(1, int(threads))
    sck = load_checkpoint(sft, allow_pickle=allow_pickle, role="sft")
    ack = load_checkpoint(aligned, allow_pickle=allow_pickle, role="aligned")
    p = plan(sck, ack, scheme, max_shard_bytes)
    _log_plan(p, scheme)
    inputs = {
        "sft": describe_inputs(sft, hash_weights=hash_inputs),
        "aligned": describe_inputs(aligned, hash_weights=hash_inputs),
    }

    manifest = _write(p, scheme, sck, ack, out, inputs, (chunk_elems, workers), t0)  # atomic_dir: temps, signals
    if manifest.get("zero_delta_components"):
        log.info("components with Δ ≡ 0 (frozen or unused in training): %s", manifest["zero_delta_components"])
    log.info("wrote %s in %.1f s", out, manifest["elapsed_s"])
    return manifest


def _write(p: Plan, scheme, sck, ack, out: Path, inputs: dict, sizes: tuple[int, int], t0: float) -> dict:
    """Stream the weights into a temporary sibling of ``out``, add index, aux files, manifest and
    model card, then rename it to ``out`` (nothing that looks finished exists before the rename)."""
    chunk_elems, workers = sizes
    with atomic_dir(out) as tmp:
        sck.open()
        ack.open()
        try:
            stats = run_pipeline(p, sck, ack, tmp, chunk_elems, workers)
        finally:
            sck.close()
            ack.close()
        if len(p.shard_names) > 1:
            weight_map = {t.name: p.shard_names[t.shard] for t in p.tensors}
            write_json(tmp / SAFE_INDEX, {"metadata": {"total_size": sum(p.shard_sizes)}, "weight_map": weight_map})
        copied = copy_aux_files(ack.path, tmp)
        manifest = build_manifest(p, scheme, stats, inputs, copied, time.perf_counter() - t0)
        manifest["card_metadata"] = inherited_metadata(ack.path, sck.path)
        write_json(tmp / "manifest.json", manifest)
        write_card(tmp, manifest, model_name=f"expo-{out.parent.name}-{out.name}")
        finish_temp(tmp)
    return manifest


def _log_plan(p: Plan, scheme: Scheme | ComponentScheme) -> None:
    """What is about to be written, and the warnings a user should see before it is."""
    depth = f"{p.num_layers} layers" if p.components is None else f"components {p.components} (name: layers)"
    log.info(
        "extrapolating %d tensors (%.2f GB) in %d shard(s); scheme %s; %s%s",
        len(p.tensors),
        sum(p.shard_sizes) / 1e9,
        len(p.shard_names),
        scheme.describe()["kind"],
        depth,
        "; tied embeddings" if p.tied else "",
    )
    if p.skipped:
        log.info("tied embeddings: not writing %s", p.skipped)
    if p.added_vocab_rows:
        log.warning("aligned model has %d extra vocabulary rows; they are kept as aligned (Δ = 0)", p.added_vocab_rows)
    if p.dtype_mismatches:
        n, sd, ad = p.dtype_mismatches[0]
        log.warning(
            "%d tensor(s) have different dtypes in sft and aligned (e.g. %s: sft %s, aligned %s); Δ then holds "
            "the rounding difference, which α amplifies; the output keeps the aligned dtype",
            len(p.dtype_mismatches),
            n,
            sd,
            ad,
        )
