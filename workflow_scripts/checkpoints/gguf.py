"""GGUF sources: dequantized once with transformers and saved as a safetensors folder."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

from ..common import atomic_dir
from .folder import _finish_record, check_chat_ready, describe_folder, validate_folder
from .local import find_package_file
from .spec import CheckpointError

log = logging.getLogger(__name__)


def _sha256(path: Path, chunk: int = 1 << 24) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def convert_gguf(gguf: Path, out_dir: Path, *, dtype: str = "float32") -> None:
    """Dequantize ``gguf`` into a safetensors HF folder at ``out_dir`` (model + tokenizer).

    ``GgufConfig(dequantize=True)`` asks transformers for plain dense weights (no GGUF kernels),
    which is what makes the model serializable; float32 keeps the dequantized values exact.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"gguf_file": gguf.name, "dtype": getattr(torch, dtype)}
    try:
        from transformers import GgufConfig

        kwargs["quantization_config"] = GgufConfig(dequantize=True)
    except ImportError:  # older transformers always dequantize GGUF
        pass
    log.info("dequantizing %s (%.1f MB) to %s", gguf, gguf.stat().st_size / 1e6, dtype)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, **kwargs)
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        packed = sorted({type(m).__name__ for m in model.modules() if "gguf" in type(m).__name__.lower()})
        if packed:
            raise CheckpointError(f"{gguf}: transformers kept packed GGUF modules {packed}; cannot save as safetensors")
        quantizer.remove_quantization_config(model)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    max_pos = getattr(model.config, "max_position_embeddings", None)
    if max_pos and (tok.model_max_length is None or tok.model_max_length > 10 * max_pos):
        tok.model_max_length = max_pos  # the GGUF tokenizer says "infinite"; truncation needs a real bound
    check_chat_ready(tok, where=str(gguf))
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)


def _materialize_gguf(spec: dict, out: Path) -> dict:
    if spec["package"]:
        gguf = find_package_file(spec["package"], spec["file"])
        try:
            from importlib.metadata import version

            pkg_version = version(spec["package"])
        except Exception:
            pkg_version = None
    else:
        gguf = Path(os.path.expandvars(os.path.expanduser(spec["path"])))
        if not gguf.is_file():
            raise CheckpointError(f"gguf source: file {str(gguf)!r} does not exist")
        gguf, pkg_version = gguf.resolve(), None
    digest = _sha256(gguf)
    with atomic_dir(out) as tmp:
        convert_gguf(gguf, tmp, dtype=spec["dtype"])
        fmt = validate_folder(tmp, where=f"converted {gguf.name}")
        record = {
            "spec": spec,
            "kind": "gguf",
            "gguf_file": str(gguf),
            "gguf_size": gguf.stat().st_size,
            "gguf_sha256": digest,
            "package_version": pkg_version,
            "dtype": spec["dtype"],
            "weights_format": fmt,
            "files": describe_folder(tmp),
        }
        _finish_record(record, tmp)
    return record
