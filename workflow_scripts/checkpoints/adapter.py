"""PEFT adapters as checkpoints: merge an adapter (hub or local) into its named base model.

Why: many published aligned models, and LoRA training runs, are adapters over their SFT model,
while extrapolation needs full tensors θ_aligned of the same names and shapes as θ_sft. So an
adapter source is merged once here (peft's ``merge_and_unload``, saved as safetensors) and every
later stage sees an ordinary folder. An adapter trained on another base would give a
meaningless Δ, so it is refused: by name when the adapter and the base both name a Hub repo, and
always by shape (every adapted module must exist in the base with the adapter's in/out sizes).

Spec (the config's model entry plus the base folder the workflow resolved)::

    {"source": "hub", "repo": "org/dpo-lora", "revision": "<sha>", "adapter_of": "sft",
     "base_dir": "results/<exp>/checkpoints/sft"}
    {"source": "local", "path": "runs/dpo/checkpoint-300", "adapter_of": "sft", "base_dir": "..."}

Text and vision-language models alike: the base is loaded with the class named in its
``config.json`` (``LlamaForCausalLM``, ``LlavaForConditionalGeneration``…).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from ..common import atomic_dir, read_json
from ..model_card import is_training_artifact
from .folder import _finish_record, describe_folder, validate_folder
from .spec import SOURCE_FILE, CheckpointError, _wanted, normalize_spec

log = logging.getLogger(__name__)

ADAPTER_KEYS = ("adapter_of", "base_dir")
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
_LORA_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.[^.]+)?\.weight$")


def is_adapter_spec(spec: Any) -> bool:
    return isinstance(spec, dict) and any(k in spec for k in ADAPTER_KEYS)


def normalize_adapter_spec(spec: dict) -> dict:
    """The adapter's own source spec (validated like any hub/local source) plus the adapter keys."""
    missing = [k for k in ADAPTER_KEYS if not spec.get(k)]
    if missing:
        raise CheckpointError(f"adapter source {spec.get('repo', spec.get('path'))!r}: {missing} required")
    if spec.get("source") not in ("hub", "local"):
        raise CheckpointError(f"adapter source: 'source' must be hub or local, got {spec.get('source')!r}")
    src = normalize_spec({k: v for k, v in spec.items() if k not in ADAPTER_KEYS})
    return {**src, "adapter_of": str(spec["adapter_of"]), "base_dir": str(spec["base_dir"])}


def materialize_adapter(spec: dict, out: Path, *, token_env: str = "HF_TOKEN") -> dict:
    """Merge the adapter of ``spec`` into ``spec['base_dir']`` and write a full checkpoint at ``out``."""
    out, spec = Path(out), normalize_adapter_spec(spec)
    if _complete(out, spec):
        log.info("%s is already merged for this adapter; nothing to do", out)
        return read_json(out / SOURCE_FILE)
    base = Path(spec["base_dir"])
    validate_folder(base, where=f"adapter base {spec['adapter_of']!r} ({base})")
    staging = out.parent / f".partial-{out.name}"
    src, origin = _fetch(spec, staging, token_env)
    adapter_cfg = _adapter_config(src)
    check_base_name(adapter_cfg, base, where=_where(spec))
    with atomic_dir(out) as tmp:
        meta = merge_into(base, src, tmp, where=_where(spec))
        record = {
            "spec": spec,
            "kind": "adapter",
            "adapter": origin,
            "base": {"model": spec["adapter_of"], "path": str(base.resolve()), **_base_source(base)},
            "peft": {k: adapter_cfg.get(k) for k in ("peft_type", "r", "lora_alpha", "target_modules")},
            **meta,
            "weights_format": "safetensors",
            "files": describe_folder(tmp),
        }
        _finish_record(record, tmp)
    shutil.rmtree(staging, ignore_errors=True)
    log.info("merged adapter %s into %s: %s", _where(spec), base, out)
    return record


def _where(spec: dict) -> str:
    return f"adapter {spec['repo']}@{spec['revision']}" if spec["source"] == "hub" else f"adapter {spec['path']}"


def _complete(out: Path, spec: dict) -> bool:
    try:
        rec = read_json(out / SOURCE_FILE)
    except (OSError, ValueError):
        return False
    files_ok = all((out / f["name"]).is_file() and (out / f["name"]).stat().st_size == f["size"] for f in rec["files"])
    return rec.get("spec") == spec and files_ok


def _fetch(spec: dict, staging: Path, token_env: str) -> tuple[Path, dict]:
    """The adapter folder (a local path, or a Hub snapshot downloaded into ``staging``) and its origin."""
    if spec["source"] == "local":
        path = Path(os.path.expandvars(os.path.expanduser(spec["path"])))
        if not path.is_dir():
            raise CheckpointError(f"adapter source: folder {str(path)!r} does not exist")
        return path, {"source": "local", "path": str(path.resolve())}
    from . import hub

    repo, revision = spec["repo"], spec["revision"]
    token, _ = hub.read_token(token_env)
    reason = "HF_HUB_OFFLINE is set" if hub.hub_offline() else None
    if reason is None:
        try:
            return _download(repo, revision, staging, token)
        except CheckpointError:
            raise
        except Exception as exc:
            err = hub._translate_hub_error(exc, repo, revision, token)
            if err is None:
                raise
            if not isinstance(exc, hub._connection_errors()):
                raise err from None
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    cached, why = hub._cached_snapshot(repo, revision, token, spec["allow_pickle"])
    if cached is None:
        raise CheckpointError(hub._offline_message(repo, revision, f"{reason}, and {why}"))
    return cached, {"source": "hub", "repo": repo, "revision": revision, "commit": cached.name}


def _download(repo: str, revision: str, staging: Path, token: str | None) -> tuple[Path, dict]:
    """The adapter's files at the commit ``revision`` resolves to, into ``staging`` (resumable)."""
    import huggingface_hub

    from .hub import resolve_revision

    commit, _ = resolve_revision(repo, revision, token=token)
    patterns = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "tokenizer*"]
    path = huggingface_hub.snapshot_download(
        repo, revision=commit, local_dir=staging, token=token, allow_patterns=patterns, ignore_patterns=["*/*"]
    )
    return Path(path), {"source": "hub", "repo": repo, "revision": revision, "commit": commit}


def _adapter_config(folder: Path) -> dict:
    if not (folder / ADAPTER_CONFIG).is_file():
        raise CheckpointError(f"{folder}: not a PEFT adapter (no {ADAPTER_CONFIG})")
    if not (folder / ADAPTER_WEIGHTS).is_file():
        raise CheckpointError(f"{folder}: no {ADAPTER_WEIGHTS} (pickled adapter_model.bin is refused)")
    return read_json(folder / ADAPTER_CONFIG)


def _base_source(base: Path) -> dict:
    """Hub repo and commit of the base folder, when the checkpoint stage recorded them."""
    try:
        rec = read_json(base / SOURCE_FILE)
    except (OSError, ValueError):
        return {}
    return {"repo": rec.get("repo"), "commit": rec.get("commit")} if rec.get("kind") == "hub" else {}


def check_base_name(adapter_cfg: dict, base: Path, *, where: str) -> None:
    """Refuse an adapter whose ``base_model_name_or_path`` names another Hub repo than the base's."""
    named = str(adapter_cfg.get("base_model_name_or_path") or "")
    repo = _base_source(base).get("repo")
    if repo and _HUB_ID.match(named) and not Path(named).exists() and named.lower() != repo.lower():
        raise CheckpointError(f"{where} was trained on {named!r}, but its base here is {repo!r}")


def check_base_shapes(adapter_dir: Path, model: Any, *, where: str) -> int:
    """Every adapted module exists in ``model`` with the adapter's (in, out) sizes; return how many."""
    modules = dict(model.named_modules())
    seen: dict[str, dict[str, list[int]]] = {}
    for key, shape in _shapes(adapter_dir / ADAPTER_WEIGHTS).items():
        m = _LORA_KEY.match(key)
        if m:
            seen.setdefault(m["module"], {})[m["ab"]] = shape
    if not seen:
        raise CheckpointError(f"{where}: no LoRA tensors (lora_A/lora_B) in {ADAPTER_WEIGHTS}; only LoRA is merged")
    for name, ab in sorted(seen.items()):
        mod = modules.get(name)
        weight = getattr(mod, "weight", None)
        if weight is None:
            raise CheckpointError(f"{where} adapts {name!r}, which the base model does not have: a different base")
        want = (ab["B"][0], ab["A"][1]) if {"A", "B"} <= set(ab) else None
        if want and tuple(weight.shape[:2]) != want:
            raise CheckpointError(
                f"{where} adapts {name!r} as (out, in) = {want}, but the base's weight is {tuple(weight.shape)}: "
                "a different base"
            )
    return len(seen)


def merge_into(base: Path, adapter_dir: Path, out: Path, *, where: str) -> dict:
    """Load ``base`` with its own class, check, merge the adapter, save safetensors + aux files."""
    import transformers
    from peft import PeftModel

    cfg = read_json(base / "config.json")
    arch = (cfg.get("architectures") or ["AutoModelForCausalLM"])[0]
    cls = getattr(transformers, arch, None) or transformers.AutoModelForCausalLM
    model = cls.from_pretrained(base, dtype="auto")
    n = check_base_shapes(adapter_dir, model, where=where)
    merged = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    for f in base.iterdir():  # tokenizer, generation config, chat template, processor files
        if f.is_file() and not f.name.endswith(".safetensors") and _wanted(f.name, False):
            if not is_training_artifact(f.name) and not f.name.endswith(".index.json"):
                shutil.copy2(f, out / f.name)
    for f in adapter_dir.iterdir():  # an adapter's own tokenizer / chat template wins over the base's
        if f.is_file() and (f.name.startswith("tokenizer") or f.name.startswith("chat_template")):
            shutil.copy2(f, out / f.name)
    merged.save_pretrained(out)
    _check_names(base, out, where)
    return {"architecture": arch, "adapted_modules": n}


def _shapes(path: Path) -> dict[str, list[int]]:
    """Tensor name → shape of a safetensors file, or of every shard of a folder (no data read)."""
    from safetensors import safe_open

    out = {}
    for f in sorted(path.glob("*.safetensors")) if path.is_dir() else [path]:
        with safe_open(f, "pt") as fh:
            out.update({k: list(fh.get_slice(k).get_shape()) for k in fh.keys()})
    return out


def _check_names(base: Path, out: Path, where: str) -> None:
    """The merged folder has the base's tensor names and shapes (extrapolation pairs them by name)."""
    a, b = _shapes(base), _shapes(out)
    diff = sorted(set(a) ^ set(b)) or sorted(n for n in a if a[n] != b[n])
    if diff:
        raise CheckpointError(f"{where}: the merged model's tensors differ from the base's (e.g. {diff[:3]})")
