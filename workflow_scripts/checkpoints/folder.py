"""Checks on a checkpoint folder and its ``source.json`` record (the "finished" marker)."""

from __future__ import annotations

import errno
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from ..common import read_json, write_json
from ..extrapolate.header import validate_safetensors
from .spec import SOURCE_FILE, TOKENIZER_FILES, CheckpointError, normalize_spec, weights_format

log = logging.getLogger(__name__)


def describe_folder(folder: Path) -> list[dict]:
    """Name and size of every top-level file (``source.json`` excluded), sorted."""
    rows = []
    for p in sorted(Path(folder).iterdir()):
        if p.name == SOURCE_FILE or not p.is_file():
            continue
        rows.append({"name": p.name, "size": p.stat().st_size})
    return rows


def _broken_links(folder: Path, where: str) -> None:
    """Name a symlink loop or a dangling link (``is_file()`` is False for both, which would read as
    "no model weights")."""
    for p in sorted(folder.iterdir()):
        if not p.is_symlink():
            continue
        try:
            p.resolve(strict=True)
        except RuntimeError:  # Python < 3.13 reports loops this way
            raise CheckpointError(f"{where}: {p.name} is a symlink loop; fix or remove the link") from None
        except OSError as exc:
            kind = "a symlink loop" if exc.errno == errno.ELOOP else "a broken symlink"
            raise CheckpointError(
                f"{where}: {p.name} is {kind} (-> {os.readlink(p)}); fix or remove the link"
            ) from None


def _check_safetensors(folder: Path, names: list[str], index_name: str, where: str) -> None:
    """Every safetensors file valid (header and size); the shard index naming only real tensors."""
    headers: dict[str, set[str]] = {}
    for name in sorted(n for n in names if n.endswith(".safetensors")):
        try:
            headers[name] = set(validate_safetensors(folder / name))
        except ValueError as exc:
            raise CheckpointError(f"{where}: {exc}") from None
    if index_name not in names:
        return
    weight_map = read_json(folder / index_name)["weight_map"]
    for tensor, shard in sorted(weight_map.items()):
        if tensor not in headers.get(shard, set()):
            raise CheckpointError(f"{where}/{index_name}: tensor {tensor!r} is not in {shard} (mismatched index)")


def validate_folder(folder: Path, *, allow_pickle: bool = False, where: str | None = None) -> str:
    """Check that ``folder`` is a loadable HF checkpoint; return its weights format.

    Why this much: a folder without ``config.json``, whose shard index names missing shards, or
    whose safetensors file is truncated would only fail much later inside a GPU job. Only headers
    are read, so this costs milliseconds even for a 70B model.
    """
    folder = Path(folder)
    where = where or str(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{where}: not a folder")
    _broken_links(folder, where)
    names = [p.name for p in folder.iterdir() if p.is_file()]
    if "config.json" not in names:
        raise CheckpointError(f"{where}: no config.json (is this a Hugging Face model folder?)")
    fmt = weights_format(names, allow_pickle=allow_pickle, where=where)
    index_name = "model.safetensors.index.json" if fmt == "safetensors" else "pytorch_model.bin.index.json"
    if index_name in names:
        try:
            shards = set(read_json(folder / index_name)["weight_map"].values())
        except (KeyError, json.JSONDecodeError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"{where}/{index_name}: unreadable shard index ({exc})") from exc
        missing = sorted(shards - set(names))
        if missing:
            raise CheckpointError(f"{where}: shard(s) named in {index_name} are missing: {missing}")
    if fmt == "safetensors":
        _check_safetensors(folder, names, index_name, where)
    if not any(n in names for n in TOKENIZER_FILES):
        log.warning("%s: no tokenizer files (%s); generation needs a tokenizer", where, ", ".join(TOKENIZER_FILES))
    return fmt


def is_complete(out: Path, spec: dict) -> bool:
    """True when ``out`` was finished for this very spec (and a local source has not changed)."""
    src = Path(out) / SOURCE_FILE
    if not src.is_file():
        return False
    try:
        rec = read_json(src)
    except (OSError, json.JSONDecodeError):
        return False
    if rec.get("spec") != normalize_spec(spec):
        log.info("%s exists but was made for a different spec; rebuilding", out)
        return False
    for f in rec.get("files", []):
        p = Path(out) / f["name"]
        if not p.is_file() or p.stat().st_size != f["size"]:
            log.info("%s: %s is missing or changed; rebuilding", out, f["name"])
            return False
        if "mtime_ns" in f and Path(f["target"]).stat().st_mtime_ns != f["mtime_ns"]:
            log.info("%s: source file %s was modified; rebuilding", out, f["target"])
            return False
    return True


def check_chat_ready(tok: Any, *, where: str) -> None:
    """Fail if the tokenizer has no EOS; warn if it has no chat template (generation needs both)."""
    if tok.eos_token is None:
        raise CheckpointError(f"{where}: the tokenizer has no eos_token; generation would never stop")
    if not getattr(tok, "chat_template", None):
        log.warning("%s: the tokenizer has no chat template; chat prompts cannot be formatted", where)
        return
    rendered = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    if "hi" not in rendered:
        raise CheckpointError(f"{where}: the chat template does not render the user message: {rendered!r}")


def _finish_record(record: dict, folder: Path) -> None:
    """Add totals/versions and write ``source.json`` — always the last file written."""
    from importlib.metadata import PackageNotFoundError, version

    def _v(pkg: str) -> str | None:
        try:
            return version(pkg)
        except PackageNotFoundError:
            return None

    record["total_bytes"] = sum(f["size"] for f in record["files"])
    record["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    record["versions"] = {"transformers": _v("transformers"), "huggingface_hub": _v("huggingface_hub")}
    write_json(folder / SOURCE_FILE, record)
