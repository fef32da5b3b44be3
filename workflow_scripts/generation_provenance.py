"""What produced a generation file, written beside it as ``<gens>.provenance.json``.

Why beside and not inside: the generation file is an alpaca_eval ``model_outputs`` list, which
alpaca_eval and every reader of the format load as rows; a run-level header would have to be
repeated in every record or break the format. The sidecar holds what is needed to redo the file
(the resolved decoding, the seeding rule, batch size, backend, device, the model folder and a
hash of its content, the prompts' hash, library versions) and the sha256 of the generation file
it describes, so a sidecar that does not belong to its file is detectable.

The model hash must identify the weights without costing a second pass over a 14 GB folder
when it can be avoided: an extrapolated folder's ``manifest.json`` (written by the engine from
the same bytes, with per-layer norms of what it wrote) is hashed instead of its weights; any
other folder's weight files are hashed by streaming (sizes and mtimes would not notice a
re-download or an edit in place). Small files (config, tokenizer, chat template) are always
hashed, since they change the answers too.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .outputs import OUTPUT_MARKER

SUFFIX = ".provenance.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
ENGINE_MANIFEST = "manifest.json"
LIBRARIES = ("torch", "transformers", "tokenizers", "safetensors", "numpy", "accelerate", "vllm")
_CHUNK = 1 << 20


def provenance_path(generations: str | Path) -> Path:
    """``gens.json`` -> ``gens.json.provenance.json`` (beside it, named after it)."""
    generations = Path(generations)
    return generations.with_name(generations.name + SUFFIX)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_json(data: Any) -> str:
    """Hash of JSON data in a canonical form (sorted keys, no whitespace)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _is_engine_manifest(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and str(data.get("formula", "")).startswith("theta = theta_aligned")


def model_fingerprint(model_dir: str | Path) -> dict[str, Any]:
    """The folder's path, a hash of its weights (see the module docstring) and of its other files."""
    model_dir = Path(model_dir)
    files = sorted(p for p in model_dir.iterdir() if p.is_file() and p.name != OUTPUT_MARKER)
    weights = [p for p in files if p.name.endswith(WEIGHT_SUFFIXES)]
    manifest = model_dir / ENGINE_MANIFEST
    h = hashlib.sha256()
    if _is_engine_manifest(manifest):
        how = f"sha256 of the extrapolation {ENGINE_MANIFEST}"
        h.update(manifest.read_bytes())
    else:
        how = "sha256 over the weight files' sha256, in name order"
        for p in weights:
            h.update(f"{p.name}\0{sha256_file(p)}\n".encode())
    return {
        "path": str(model_dir.resolve()),
        "weights_sha256": h.hexdigest(),
        "weights_hash": how,
        "weight_files": [p.name for p in weights],
        "other_files_sha256": {p.name: sha256_file(p) for p in files if p not in weights},
    }


def library_versions(backend: str) -> dict[str, str]:
    """Versions of the libraries that shape the answers (vLLM only when it generated them)."""
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        if name == "vllm" and backend != "vllm":
            continue
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def build_provenance(
    *,
    model_dir: str | Path,
    prompts: Sequence[Mapping[str, Any]],
    decoding: Mapping[str, Any],
    seeding: str | None,
    backend: str,
    batch_size: int,
    device: str,
    generator: str,
) -> dict[str, Any]:
    """Everything but the generation file's own hash (added by :func:`write_provenance`)."""
    return {
        "generator": generator,
        "model": model_fingerprint(model_dir),
        "prompts": {"n": len(prompts), "sha256": sha256_json([dict(p) for p in prompts])},
        "decoding": dict(decoding),
        "seed": decoding.get("seed"),
        "seeding": seeding,
        "backend": backend,
        "batch_size": batch_size,
        "device": device,
        "libraries": library_versions(backend),
    }


def write_provenance(provenance: Mapping[str, Any], generations: str | Path) -> Path:
    """Write the sidecar of the finished file ``generations`` (atomically); return its path."""
    from .common import write_json

    path = provenance_path(generations)
    write_json(path, {"generations_sha256": sha256_file(Path(generations)), **provenance})
    return path
