"""Reading checkpoints: tensor locations from safetensors headers, data with ``pread``.

Why headers only: every check the engine makes (names, shapes, dtypes, depth) needs nothing but the
headers, so a wrong pair fails in milliseconds; tensor bytes are read later, chunk by chunk, into
the pipeline's buffers. Inputs are never ``mmap``-ed: touched pages would count in RSS.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workflow_scripts.extrapolate.dtypes import ITEMSIZE, code_of
from workflow_scripts.extrapolate.header import read_safetensors_header, validate_header

log = logging.getLogger(__name__)

SAFE_INDEX = "model.safetensors.index.json"
SAFE_SINGLE = "model.safetensors"
PICKLE_INDEX = "pytorch_model.bin.index.json"
PICKLE_SINGLE = "pytorch_model.bin"


@dataclass
class TensorInfo:
    """Where one tensor lives: enough to read any element range with one ``pread``."""

    name: str
    dtype: str  # safetensors code
    shape: tuple[int, ...]
    file: Path
    offset: int  # absolute byte offset of the data in ``file`` (-1 for pickle sources)
    order: tuple[int, int]  # (file index, offset): on-disk order

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def itemsize(self) -> int:
        return ITEMSIZE[self.dtype]

    @property
    def nbytes(self) -> int:
        return self.numel * self.itemsize


@dataclass
class Checkpoint:
    """A model folder: its config, its tensors (by name) and how to read them."""

    path: Path
    config: dict
    tensors: dict[str, TensorInfo]
    weight_files: list[Path]
    pickle: bool = False
    _pickled: dict[str, Any] = field(default_factory=dict, repr=False)
    _fds: dict[Path, int] = field(default_factory=dict, repr=False)

    def open(self) -> None:
        for f in self.weight_files:
            if not self.pickle and f not in self._fds:
                self._fds[f] = os.open(f, os.O_RDONLY)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self._pickled.clear()

    def read_into(self, name: str, e0: int, e1: int, dest) -> None:
        """Copy elements [e0, e1) of tensor ``name`` (flattened) into the writable buffer ``dest``."""
        info = self.tensors[name]
        nbytes = (e1 - e0) * info.itemsize
        if self.pickle:
            import numpy as np
            import torch

            src = self._pickled[name].reshape(-1)[e0:e1].contiguous()
            torch.from_numpy(np.frombuffer(dest, np.uint8, nbytes)).copy_(src.view(torch.uint8))
            return
        fd = self._fds[info.file]
        view = memoryview(dest)[:nbytes]
        pos, off = 0, info.offset + e0 * info.itemsize
        while pos < nbytes:
            got = os.preadv(fd, [view[pos:]], off + pos)
            if got <= 0:
                raise ValueError(f"{info.file}: unexpected end of file while reading tensor {name!r}")
            pos += got


def _load_config(path: Path) -> dict:
    cfg = path / "config.json"
    if not cfg.is_file():
        return {}
    try:
        return json.loads(cfg.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{cfg}: invalid JSON ({exc.msg})") from exc


def load_checkpoint(path: Path, *, allow_pickle: bool = False, role: str = "model") -> Checkpoint:
    """Index a model folder's tensors from its headers (no tensor data is read).

    Uses ``model.safetensors.index.json`` when present, else ``model.safetensors``; pickle
    ``.bin`` checkpoints only with ``allow_pickle`` because unpickling can run arbitrary code.
    """
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"{role} checkpoint {path} is not a folder")
    config = _load_config(path)
    if (path / SAFE_INDEX).is_file():
        files = _files_from_index(path / SAFE_INDEX, role)
    elif (path / SAFE_SINGLE).is_file():
        files = [path / SAFE_SINGLE]
    elif sorted(path.glob("model-*.safetensors")):
        files = sorted(path.glob("model-*.safetensors"))
        log.warning(
            "%s %s has shards but no %s; using all %d model-*.safetensors files", role, path, SAFE_INDEX, len(files)
        )
    elif (path / PICKLE_INDEX).is_file() or (path / PICKLE_SINGLE).is_file():
        if not allow_pickle:
            raise ValueError(
                f"{role} checkpoint {path} has only pickle weights ({PICKLE_SINGLE}*); unpickling "
                "can execute code. Convert it to safetensors, or pass allow_pickle=True "
                "(--allow-pickle) if you trust it"
            )
        files = (
            _files_from_index(path / PICKLE_INDEX, role) if (path / PICKLE_INDEX).is_file() else [path / PICKLE_SINGLE]
        )
        return _load_pickle_checkpoint(path, config, files)
    elif any(path.glob("adapter_model.*")):
        raise ValueError(f"{role} checkpoint {path} is a PEFT adapter; merge it into its base model first")
    else:
        raise ValueError(f"{role} checkpoint {path} has no model weights ({SAFE_SINGLE} or {SAFE_INDEX})")

    tensors: dict[str, TensorInfo] = {}
    for fi, f in enumerate(files):
        header, data_start = read_safetensors_header(f)
        for name, e in validate_header(f, header, f.stat().st_size - data_start).items():
            info = TensorInfo(name, e.dtype, e.shape, f, data_start + e.begin, (fi, e.begin))
            if name in tensors:
                raise ValueError(
                    f"{role} checkpoint {path}: tensor {name!r} appears in both {tensors[name].file.name} and {f.name}"
                )
            tensors[name] = info
    if (path / SAFE_INDEX).is_file():
        wm = json.loads((path / SAFE_INDEX).read_text())["weight_map"]
        for name, fname in wm.items():
            if name not in tensors or tensors[name].file.name != fname:
                raise ValueError(
                    f"{path / SAFE_INDEX}: tensor {name!r} is mapped to {fname} but that "
                    "shard's header does not contain it"
                )
    return Checkpoint(path, config, tensors, files)


def _files_from_index(index: Path, role: str) -> list[Path]:
    try:
        wm = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{role} index {index} is not a valid weight index ({exc})") from exc
    files = []
    for fname in sorted(set(wm.values())):
        f = index.parent / fname
        if not f.is_file():
            raise ValueError(f"{role} index {index} lists shard {fname}, which is missing")
        files.append(f)
    return files


def _load_pickle_checkpoint(path: Path, config: dict, files: list[Path]) -> Checkpoint:
    """Pickle shards, memory-mapped where torch can (zip format), read like safetensors later."""
    import torch

    tensors: dict[str, TensorInfo] = {}
    loaded: dict[str, Any] = {}
    for fi, f in enumerate(files):
        try:
            sd = torch.load(f, map_location="cpu", mmap=True, weights_only=True)
        except RuntimeError:  # legacy (non-zip) format cannot be mmapped
            sd = torch.load(f, map_location="cpu", weights_only=True)
        for pos, (name, t) in enumerate(sd.items()):
            if not isinstance(t, torch.Tensor):
                continue
            tensors[name] = TensorInfo(name, code_of(t.dtype), tuple(t.shape), f, -1, (fi, pos))
            loaded[name] = t if t.is_contiguous() else t.contiguous()  # chunked reads need flat views
    return Checkpoint(path, config, tensors, files, pickle=True, _pickled=loaded)


def cfg_get(cfg: dict, *keys: str) -> Any:
    """First of ``keys`` in a config.json dict, looking into ``text_config`` (VLMs) when absent."""
    for k in keys:
        if k in cfg:
            return cfg[k]
    sub = cfg.get("text_config")
    if isinstance(sub, dict):
        return cfg_get(sub, *keys)
    return None


def num_layers_of(cfg: dict, where: Path) -> int:
    """Decoder depth from config.json (``num_hidden_layers``, ``n_layer`` or ``num_layers``)."""
    n = cfg_get(cfg, "num_hidden_layers", "n_layer", "num_layers")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"{where}/config.json has no usable num_hidden_layers/n_layer (got {n!r})")
    return n
