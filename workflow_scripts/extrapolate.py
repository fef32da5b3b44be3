"""Streaming model extrapolation (ExPO): θ = θ_aligned + α·(θ_aligned − θ_sft), tensor by tensor.

Why this design (see issue 3):

* **Constant memory.** Tensors are read with ``pread`` at the byte offsets given by each
  safetensors header into a small pool of reusable buffers, in chunks of a few million elements,
  so peak RSS is a few chunks — independent of tensor, shard and model size. We never ``mmap``
  the inputs: touched mmap pages count in RSS and would grow to the whole model.
* **Streaming output.** Every output shape and dtype is known from the headers before any data
  is read, so each output shard's safetensors header is written first and chunks are then
  ``pwrite``-n at their final offsets. No shard is ever buffered.
* **Overlap.** A reader thread, ``threads`` compute threads and a writer thread form a pipeline
  over a bounded buffer pool; ``pread``/``pwrite`` and numpy kernels release the GIL.
* **One pass per element for bf16.** numpy has no bf16, so the generic path costs ~15 array
  passes per chunk; bf16 pairs (nearly every modern checkpoint) go through a small fused C
  kernel (``workflow_scripts/kernels``: built once with the system compiler, checked against
  the numpy path, numpy used whenever it is unavailable) that gives the same bits ~5× faster.
* **No torch on the hot path.** Importing torch alone costs ~200 MB of RSS and seconds of
  start-up per job; it is imported only for pickle or fp8 checkpoints.
* **Correct pairing.** Tensors are matched by name, never by shard file, and processed in the
  aligned model's on-disk order; SFT and aligned may be sharded differently.
* **Fail before writing.** Keys, shapes, dtypes, configs and the scheme are checked from the
  headers (cheap) before the output folder is created; NaN/Inf found while streaming aborts the
  atomic output, so nothing that looks finished is left behind.

Math is fp32 (fp64 for fp64 tensors); each output tensor keeps the aligned model's dtype.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import queue
import re
import shutil
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workflow_scripts.common import atomic_dir, format_alpha, setup_logging, write_json
from workflow_scripts.schemes import VOCAB_KINDS, Scheme, tensor_kind

log = logging.getLogger(__name__)

SAFE_INDEX = "model.safetensors.index.json"
SAFE_SINGLE = "model.safetensors"
PICKLE_INDEX = "pytorch_model.bin.index.json"
PICKLE_SINGLE = "pytorch_model.bin"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf", ".onnx")
WEIGHT_INDEXES = (".safetensors.index.json", ".bin.index.json")
CHUNK_ELEMS = 1 << 19
"""Elements per streamed chunk (1 MB of bf16): big enough that per-chunk Python and syscall
overhead is negligible, small enough that memory stays flat (a few chunks in flight)."""
SMALL_FILE_HASH_LIMIT = 64 * 2**20
"""Non-weight files below this size are always hashed in the manifest (cheap, and they change)."""

_ITEMSIZE = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}
FLOAT_CODES = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"}


def torch_dtype(code: str):
    """torch dtype for a safetensors dtype code."""
    import torch

    return {
        "F64": torch.float64,
        "F32": torch.float32,
        "F16": torch.float16,
        "BF16": torch.bfloat16,
        "F8_E4M3": torch.float8_e4m3fn,
        "F8_E5M2": torch.float8_e5m2,
        "I64": torch.int64,
        "I32": torch.int32,
        "I16": torch.int16,
        "I8": torch.int8,
        "U8": torch.uint8,
        "BOOL": torch.bool,
    }[code]


def _code_of(dtype) -> str:
    import torch

    table = {
        torch.float64: "F64",
        torch.float32: "F32",
        torch.float16: "F16",
        torch.bfloat16: "BF16",
        torch.float8_e4m3fn: "F8_E4M3",
        torch.float8_e5m2: "F8_E5M2",
        torch.int64: "I64",
        torch.int32: "I32",
        torch.int16: "I16",
        torch.int8: "I8",
        torch.uint8: "U8",
        torch.bool: "BOOL",
    }
    if dtype not in table:
        raise ValueError(f"unsupported tensor dtype {dtype}")
    return table[dtype]


_TORCH_NAME = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
}


# ---------------------------------------------------------------------------------------------
# Reading checkpoints (headers only until the data pass)
# ---------------------------------------------------------------------------------------------
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
        return _ITEMSIZE[self.dtype]

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


def read_safetensors_header(path: Path) -> tuple[dict, int]:
    """(header dict, byte offset where the data section starts) — reads only the header bytes."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path}: not a safetensors file (shorter than 8 bytes)")
        (n,) = struct.unpack("<Q", raw)
        if n > min(size - 8, 100 * 2**20):
            raise ValueError(f"{path}: not a safetensors file (header length {n} is invalid)")
        try:
            header = json.loads(fh.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: corrupt safetensors header ({exc})") from exc
    return header, 8 + n


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
        data_len = f.stat().st_size - data_start
        for name, meta in header.items():
            if name == "__metadata__":
                continue
            try:
                code, shape, (b0, b1) = meta["dtype"], tuple(int(x) for x in meta["shape"]), meta["data_offsets"]
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{f}: malformed header entry for tensor {name!r}") from exc
            if code not in _ITEMSIZE:
                raise ValueError(f"{f}: tensor {name!r} has unsupported dtype {code}")
            info = TensorInfo(name, code, shape, f, data_start + b0, (fi, b0))
            if b1 - b0 != info.nbytes or b1 > data_len:
                raise ValueError(
                    f"{f}: tensor {name!r} data offsets {[b0, b1]} do not match its shape/dtype "
                    "or the file size (truncated download?)"
                )
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
            tensors[name] = TensorInfo(name, _code_of(t.dtype), tuple(t.shape), f, -1, (fi, pos))
            loaded[name] = t if t.is_contiguous() else t.contiguous()  # chunked reads need flat views
    return Checkpoint(path, config, tensors, files, pickle=True, _pickled=loaded)


def _cfg_get(cfg: dict, *keys: str) -> Any:
    for k in keys:
        if k in cfg:
            return cfg[k]
    sub = cfg.get("text_config")
    if isinstance(sub, dict):
        return _cfg_get(sub, *keys)
    return None


def num_layers_of(cfg: dict, where: Path) -> int:
    """Decoder depth from config.json (``num_hidden_layers``, ``n_layer`` or ``num_layers``)."""
    n = _cfg_get(cfg, "num_hidden_layers", "n_layer", "num_layers")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"{where}/config.json has no usable num_hidden_layers/n_layer (got {n!r})")
    return n


# ---------------------------------------------------------------------------------------------
# Planning (validation before anything is written)
# ---------------------------------------------------------------------------------------------
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
    shard: int = 0
    out_offset: int = 0  # absolute offset in the output shard file
    shared_elems: int = 0  # elements present in both (fewer than a.numel when vocab grew)


@dataclass
class Plan:
    tensors: list[OutTensor]
    shard_sizes: list[int]
    shard_names: list[str]
    shard_headers: list[bytes]
    num_layers: int
    tied: bool
    added_vocab_rows: int
    skipped: list[str]


_STRUCT_KEYS = (
    ("model_type",),
    ("architectures",),
    ("num_hidden_layers", "n_layer", "num_layers"),
    ("hidden_size", "n_embd", "d_model"),
    ("intermediate_size", "n_inner", "ffn_dim"),
    ("num_attention_heads", "n_head"),
    ("num_key_value_heads",),
)


def _check_configs(sft: Checkpoint, aligned: Checkpoint) -> None:
    if not aligned.config:
        raise ValueError(f"aligned checkpoint {aligned.path} has no config.json; the output could not be loaded")
    if not sft.config:
        log.warning("sft checkpoint %s has no config.json; architecture is checked from tensors only", sft.path)
        return
    for keys in _STRUCT_KEYS:
        va, vs = _cfg_get(aligned.config, *keys), _cfg_get(sft.config, *keys)
        if va is not None and vs is not None and va != vs:
            raise ValueError(
                f"architectures differ: config.json {keys[0]} is {vs!r} in sft ({sft.path}) but "
                f"{va!r} in aligned ({aligned.path})"
            )


def _is_tied(ckpt: Checkpoint) -> bool:
    tie = _cfg_get(ckpt.config, "tie_word_embeddings")
    if tie is None:
        return not any(tensor_kind(n)[0] == "lm_head" for n in ckpt.tensors)
    return bool(tie)


def plan(sft: Checkpoint, aligned: Checkpoint, scheme: Scheme, max_shard_bytes: int) -> Plan:
    """Pair tensors by name and lay out the output; raise ValueError on any mismatch.

    Only headers are used, so a wrong pair of checkpoints fails in milliseconds and before the
    output folder exists.
    """
    _check_configs(sft, aligned)
    L = num_layers_of(aligned.config, aligned.path)
    scheme.validate_for(L)
    tied = _is_tied(aligned)
    sft_tied = _is_tied(sft) if sft.config else False
    heads_a = [n for n in aligned.tensors if tensor_kind(n)[0] == "lm_head"]
    heads_s = [n for n in sft.tensors if tensor_kind(n)[0] == "lm_head"]
    skipped: list[str] = []
    sft_name: dict[str, str] = {}
    if sft.config and tied != sft_tied:
        log.warning("tie_word_embeddings differs: sft %s, aligned %s; following the aligned model", sft_tied, tied)
    if tied:
        # Tied: the head *is* the embedding; writing a separate lm_head would untie it (or be
        # silently dropped by from_pretrained).
        skipped = sorted(heads_a)
        ignore_s = set(heads_s)
    else:
        ignore_s = set()
        if heads_a and not heads_s and sft_tied:
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
            for h in heads_a:
                sft_name[h] = embeds[0]
            log.warning("sft ties lm_head to %s; using it as the sft value of %s", embeds[0], heads_a)
    out_names = [n for n in sorted(aligned.tensors, key=lambda n: aligned.tensors[n].order) if n not in skipped]
    missing = [n for n in out_names if sft_name.get(n, n) not in sft.tensors]
    if missing:
        raise ValueError(
            f"tensor {missing[0]!r} is in aligned ({aligned.path}) but not in sft ({sft.path})"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    used = {sft_name.get(n, n) for n in out_names}
    extra = [n for n in sft.tensors if n not in used and n not in ignore_s]
    if extra:
        raise ValueError(
            f"tensor {extra[0]!r} is in sft ({sft.path}) but not in aligned ({aligned.path})"
            + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else "")
        )

    tensors: list[OutTensor] = []
    added_rows = 0
    for n in out_names:
        a, s = aligned.tensors[n], sft.tensors[sft_name.get(n, n)]
        kind, layer = tensor_kind(n)
        if layer is not None and layer >= L:
            raise ValueError(f"tensor {n!r} has layer index {layer} but config.json says {L} layers")
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
            added_rows = max(added_rows, a.shape[0] - s.shape[0])
            shared = s.numel
        alpha, group = scheme.alpha_for(n, L) if a_float else (0.0, "copied")
        tensors.append(OutTensor(n, a, s if a_float else None, alpha, group, kind, layer, shared_elems=shared))

    # Shard layout: aligned on-disk order, cut at max_shard_bytes (a bigger tensor gets its own).
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
    return Plan(tensors, sizes, names, headers, L, tied, added_rows, skipped)


# ---------------------------------------------------------------------------------------------
# Streaming pipeline
# ---------------------------------------------------------------------------------------------
@dataclass
class _Chunk:
    t: OutTensor
    e0: int
    e1: int
    mode: str  # "math" | "copy_stats" (α=0 or added rows: bytes copied, norms computed) | "copy"


def _chunks(plan_: Plan, chunk_elems: int) -> Iterator[_Chunk]:
    for t in plan_.tensors:
        if t.s is None:
            mode_shared = "copy"
        else:
            mode_shared = "copy_stats" if t.alpha == 0.0 else "math"
        bounds = [(0, t.shared_elems, mode_shared)]
        if t.shared_elems < t.a.numel:
            bounds.append((t.shared_elems, t.a.numel, "copy_stats" if t.s is not None else "copy"))
        for lo, hi, mode in bounds:
            for e0 in range(lo, hi, chunk_elems):
                yield _Chunk(t, e0, min(hi, e0 + chunk_elems), mode)


class _Stop(Exception):
    """Raised in a pipeline thread when another stage failed."""


@dataclass
class _Stats:
    dd: float = 0.0  # ||θ_aligned - θ_sft||² over shared elements
    aa: float = 0.0  # ||θ_aligned||²
    n: int = 0


def _put(q: queue.Queue, item, stop: threading.Event) -> None:
    while True:
        if stop.is_set():
            raise _Stop
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def _get(q: queue.Queue, stop: threading.Event):
    while True:
        if stop.is_set():
            raise _Stop
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    pos = 0
    while pos < len(view):
        pos += os.pwrite(fd, view[pos:], offset + pos)


_FLOAT_MAX = {
    "F64": 1.7976931348623157e308,
    "F32": 3.4028234663852886e38,
    "F16": 65504.0,
    "BF16": 3.3895313892515355e38,
    "F8_E4M3": 448.0,
    "F8_E5M2": 57344.0,
}


def _to_wide(raw, code: str, n: int, dest_f, dest_u) -> None:
    """Decode ``n`` elements of ``code`` from the byte buffer ``raw`` into the float32/64 ``dest_f``.

    bf16 → fp32 is exact and is just the 16 bits moved to the top of a 32-bit word, which numpy
    does with an integer widen + shift (numpy has no bf16 type); fp8 goes through torch.
    """
    import numpy as np

    if code == "BF16":
        np.copyto(dest_u, raw[: 2 * n].view(np.uint16))
        np.left_shift(dest_u, 16, out=dest_u)
    elif code in ("F16", "F32", "F64"):
        np.copyto(
            dest_f, raw[: n * _ITEMSIZE[code]].view({"F16": np.float16, "F32": np.float32, "F64": np.float64}[code])
        )
    else:  # fp8
        import torch

        np.copyto(dest_f, torch.from_numpy(raw[:n]).view(torch_dtype(code)).float().numpy())


def _from_wide(src_f, src_u, tmp_u, code: str, n: int, out_raw) -> None:
    """Round the float32/64 ``src_f`` to ``code`` (nearest-even, like torch) into ``out_raw``.

    bf16: add 0x7FFF plus the lowest kept bit, keep the top 16 bits — IEEE round-to-nearest-even,
    bit-identical to ``tensor.to(torch.bfloat16)`` for finite values and ±inf. Clobbers ``src``.
    """
    import numpy as np

    if code == "BF16":
        np.right_shift(src_u, 16, out=tmp_u)
        np.bitwise_and(tmp_u, 1, out=tmp_u)
        np.add(tmp_u, 0x7FFF, out=tmp_u)
        np.add(src_u, tmp_u, out=src_u)
        np.right_shift(src_u, 16, out=src_u)
        np.copyto(out_raw[: 2 * n].view(np.uint16), src_u, casting="unsafe")
    elif code in ("F16", "F32", "F64"):
        np.copyto(
            out_raw[: n * _ITEMSIZE[code]].view({"F16": np.float16, "F32": np.float32, "F64": np.float64}[code]),
            src_f,
            casting="unsafe",
        )
    else:
        import torch

        q = torch.from_numpy(np.ascontiguousarray(src_f, dtype=np.float32)).to(torch_dtype(code))
        np.copyto(out_raw[:n], q.view(torch.uint8).numpy())


def _nonfinite_error(ch: _Chunk, slot) -> ValueError:
    import numpy as np

    t, n = ch.t, ch.e1 - ch.e0
    for role, info, raw in (("aligned", t.a, slot[0]), ("sft", t.s, slot[1])):
        if info is None or (role == "sft" and ch.e0 >= t.shared_elems):
            continue
        u = np.empty(n, np.uint64 if info.dtype == "F64" else np.uint32)
        f = u.view(np.float64 if info.dtype == "F64" else np.float32)
        _to_wide(raw, info.dtype, n, f, u)
        if not np.isfinite(f).all():
            return ValueError(f"tensor {t.name!r} contains NaN/Inf in the {role} checkpoint ({info.file})")
    return ValueError(f"tensor {t.name!r}: values too large for float32 arithmetic")


class _Slot:
    """One set of pipeline buffers (aligned input, SFT input, output) in anonymous mmaps.

    Plain page-aligned memory with fixed addresses for the C kernel; numpy views are made only
    when the generic path needs them, so a bf16 run never imports numpy (~0.15 s per job).
    """

    def __init__(self, n_a: int, n_s: int, n_o: int) -> None:
        import ctypes
        import mmap

        self.bufs = tuple(mmap.mmap(-1, max(1, n)) for n in (n_a, n_s, n_o))
        self._pins = [ctypes.c_char.from_buffer(b) for b in self.bufs]
        self.addrs = tuple(ctypes.addressof(p) for p in self._pins)

    def arrays(self) -> tuple:
        import numpy as np

        return tuple(np.frombuffer(b, np.uint8) for b in self.bufs)


class _Scratch:
    """Per-worker state: the fused kernel and (allocated on first use) fp32 work buffers."""

    def __init__(self, n: int, kernel=None) -> None:
        import ctypes

        self.n = n
        self.kernel = kernel
        self.stats = (ctypes.c_double * 2)()
        self.stats_addr = ctypes.addressof(self.stats)
        self.u: list = []
        self.f: list = []

    def numpy_buffers(self) -> None:
        if not self.u:
            import numpy as np

            self.u = [np.empty(self.n, np.uint32) for _ in range(3)]
            self.f = [u.view(np.float32) for u in self.u]


def _compute_fused(ch: _Chunk, slot: _Slot, sc: _Scratch) -> tuple[int, float, float] | None:
    """bf16 chunk in one pass of the C kernel (same bits as the numpy path below).

    Returns None when the result might overflow bf16: the numpy path then redoes the chunk with
    its full overflow check (this never happens with real weights).
    """
    t, n = ch.t, ch.e1 - ch.e0
    a_addr, s_addr, o_addr = slot.addrs
    sc.stats[0] = sc.stats[1] = 0.0
    write = ch.mode == "math"
    sc.kernel(a_addr, s_addr, o_addr if write else None, n, t.alpha, sc.stats_addr)
    dd, aa = sc.stats[0], sc.stats[1]
    if not (math.isfinite(aa) and math.isfinite(dd)):
        raise _nonfinite_error(ch, slot.arrays())
    if not write:  # α = 0: the aligned bytes, bit for bit
        return 0, dd, aa
    if math.sqrt(aa) + abs(t.alpha) * math.sqrt(dd) >= 0.5 * _FLOAT_MAX["BF16"]:
        return None
    return 2, dd, aa


def _compute(ch: _Chunk, slot: _Slot, sc: _Scratch) -> tuple[int, float, float]:
    """Compute one chunk: (which slot buffer holds the output bytes, ‖Δ‖², ‖θ_aligned‖²).

    Buffer 0 means the aligned bytes are written unchanged (α = 0, added rows, non-float), so
    α = 0 reproduces the aligned model bit for bit (even −0.0); 2 means the computed result.
    """
    t, n = ch.t, ch.e1 - ch.e0
    if ch.mode == "copy":
        return 0, 0.0, 0.0
    if sc.kernel is not None and t.a.dtype == "BF16" and t.s.dtype == "BF16" and ch.e1 <= t.shared_elems:
        done = _compute_fused(ch, slot, sc)
        if done is not None:
            return done
    import numpy as np

    slot = slot.arrays()
    a_raw, s_raw, o_raw = slot
    sc.numpy_buffers()
    if "F64" in (t.a.dtype, t.s.dtype):  # rare: keep fp64 precision, allocate per chunk
        a_f, d_f, a_u, d_u, tmp_u = np.empty(n, np.float64), np.empty(n, np.float64), None, None, None
    else:
        a_u, d_u, tmp_u = (u[:n] for u in sc.u)
        a_f, d_f = sc.f[0][:n], sc.f[1][:n]
    _to_wide(a_raw, t.a.dtype, n, a_f, a_u)
    aa = float(np.dot(a_f, a_f))
    if ch.e0 >= t.shared_elems:  # added vocabulary rows: aligned kept, Δ = 0
        if not math.isfinite(aa):
            raise _nonfinite_error(ch, slot)
        return 0, 0.0, aa
    _to_wide(s_raw, t.s.dtype, n, d_f, d_u)
    np.subtract(a_f, d_f, out=d_f)  # Δ = θ_aligned − θ_sft
    dd = float(np.dot(d_f, d_f))
    if not (math.isfinite(aa) and math.isfinite(dd)):
        raise _nonfinite_error(ch, slot)
    if ch.mode == "copy_stats":  # α = 0: the aligned bytes, bit for bit
        return 0, dd, aa
    np.multiply(d_f, t.alpha, out=d_f)
    np.add(a_f, d_f, out=a_f)  # θ = θ_aligned + α·Δ in fp32, then one rounding below
    # max|θ| <= ‖θ_aligned‖ + |α|·‖Δ‖: only when that bound nears the dtype's range can the result
    # be non-finite, so the full check is skipped in the normal case.
    risky = math.sqrt(aa) + abs(t.alpha) * math.sqrt(dd) >= 0.5 * _FLOAT_MAX[t.a.dtype]
    if risky and not (np.isfinite(a_f).all() and np.abs(a_f).max() <= _FLOAT_MAX[t.a.dtype]):
        raise ValueError(f"tensor {t.name!r}: extrapolated values overflow {t.a.dtype} with α={t.alpha}")
    _from_wide(a_f, a_u, tmp_u, t.a.dtype, n, o_raw)
    return 2, dd, aa


class _LogProgress:
    """Progress as log lines (every 10 % or 30 s), for log files: a Snakemake job's stderr is its
    log, where a tqdm bar would be carriage-return noise — and importing tqdm (50 ms, it pulls in
    multiprocessing) would sit on the critical path of every small extrapolation."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.t0 = max(1, total), 0, time.perf_counter()
        self.next_pct, self.last = 10, self.t0

    def update(self, n: int) -> None:
        self.done += n
        pct, now = 100 * self.done / self.total, time.perf_counter()
        if pct >= self.next_pct or now - self.last >= 30:
            unit, scale = ("GB", 1e9) if self.total >= 1e9 else ("MB", 1e6)
            rate = self.done / max(now - self.t0, 1e-9) / scale
            log.info(
                "extrapolate: %3.0f%% (%.2f of %.2f %s, %.2f %s/s)",
                pct,
                self.done / scale,
                self.total / scale,
                unit,
                rate,
                unit,
            )
            self.next_pct = (int(pct) // 10 + 1) * 10
            self.last = now

    def __enter__(self) -> _LogProgress:
        return self

    def __exit__(self, *exc) -> None:
        return None


def _progress(total: int):
    """A tqdm bar on an interactive terminal, log lines otherwise."""
    import sys

    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(total=total, unit="B", unit_scale=True, desc="extrapolate", mininterval=1.0)
    return _LogProgress(total)


def default_workers() -> int:
    """Compute threads: one per available core (at most 8). The reader and writer threads spend
    their time in pread/pwrite syscalls, so they need no core of their own: on 2 cores, 2 compute
    threads took 2.17 s against 3.06 s with 1 for a 1 GB bf16 pair (benchmarks/README.md)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        n = os.cpu_count() or 1
    return max(1, min(8, n))


def _run_pipeline(
    plan_: Plan, sft: Checkpoint, aligned: Checkpoint, out_dir: Path, chunk_elems: int = CHUNK_ELEMS, workers: int = 1
) -> dict[str, _Stats]:
    """Read → compute (``workers`` threads) → write all chunks; return per-tensor statistics.

    Buffers come from a fixed pool of ``workers + 3`` slots, so memory is constant; chunks may
    finish out of order because every chunk is written at its own final offset.
    """

    def isz(ts):
        return max((x.itemsize for x in ts), default=1)

    n_a = isz([t.a for t in plan_.tensors])
    n_s = isz([t.s for t in plan_.tensors if t.s is not None])
    from workflow_scripts.kernels import bf16_kernel

    kernel = bf16_kernel() if any(t.a.dtype == "BF16" for t in plan_.tensors) else None
    n_slots = workers + 3
    slots = [_Slot(chunk_elems * n_a, chunk_elems * n_s, chunk_elems * n_a) for _ in range(n_slots)]
    free_q: queue.Queue = queue.Queue()
    for i in range(n_slots):
        free_q.put(i)
    ready_q: queue.Queue = queue.Queue(maxsize=n_slots)
    write_q: queue.Queue = queue.Queue(maxsize=n_slots)
    stop = threading.Event()
    errors: list[BaseException] = []
    END = None
    stats: dict[str, _Stats] = {t.name: _Stats() for t in plan_.tensors}

    def guard(fn):
        def run() -> None:
            try:
                fn()
            except _Stop:
                pass
            except BaseException as exc:  # noqa: BLE001 - re-raised by the calling thread
                errors.append(exc)
                stop.set()

        return run

    @guard
    def reader() -> None:
        for ch in _chunks(plan_, chunk_elems):
            i = _get(free_q, stop)
            a_raw, s_raw, _ = slots[i].bufs
            aligned.read_into(ch.t.name, ch.e0, ch.e1, a_raw)
            if ch.mode == "math" or (ch.mode == "copy_stats" and ch.e1 <= ch.t.shared_elems):
                sft.read_into(ch.t.s.name, ch.e0, ch.e1, s_raw)
            _put(ready_q, (ch, i), stop)
        for _ in range(workers):
            _put(ready_q, END, stop)

    @guard
    def worker() -> None:
        sc = _Scratch(chunk_elems, kernel)
        while True:
            item = _get(ready_q, stop)
            if item is END:
                _put(write_q, END, stop)
                return
            ch, i = item
            which, dd, aa = _compute(ch, slots[i], sc)
            _put(write_q, (ch, i, which, dd, aa), stop)

    @guard
    def writer() -> None:
        ended = 0
        with _progress(sum(plan_.shard_sizes)) as bar:
            while ended < workers:
                item = _get(write_q, stop)
                if item is END:
                    ended += 1
                    continue
                ch, i, which, dd, aa = item
                nbytes = (ch.e1 - ch.e0) * ch.t.a.itemsize
                _pwrite_all(
                    out_fds[ch.t.shard],
                    memoryview(slots[i].bufs[which])[:nbytes],
                    ch.t.out_offset + ch.e0 * ch.t.a.itemsize,
                )
                free_q.put(i)
                st = stats[ch.t.name]
                st.dd += dd
                st.aa += aa
                st.n += ch.e1 - ch.e0
                bar.update(nbytes)

    out_fds: list[int] = []
    try:
        for name, head in zip(plan_.shard_names, plan_.shard_headers):
            fd = os.open(out_dir / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            out_fds.append(fd)
            _pwrite_all(fd, memoryview(head), 0)
        threads = [
            threading.Thread(target=reader, name="expo-reader", daemon=True),
            threading.Thread(target=writer, name="expo-writer", daemon=True),
        ]
        threads += [threading.Thread(target=worker, name=f"expo-worker-{k}", daemon=True) for k in range(workers)]
        for th in threads:
            th.start()
        try:
            for th in threads:
                while th.is_alive():
                    th.join(timeout=0.5)
        except BaseException:  # KeyboardInterrupt: stop the pipeline before cleaning up
            stop.set()
            for th in threads:
                th.join()
            raise
    finally:
        for fd in out_fds:
            os.close(fd)
    if errors:
        raise errors[0]
    return stats


# ---------------------------------------------------------------------------------------------
# Manifest helpers
# ---------------------------------------------------------------------------------------------
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


def _copy_aux_files(aligned: Path, out: Path) -> list[str]:
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
    dn, an = math.sqrt(dd), math.sqrt(aa)
    return {"delta_norm": dn, "aligned_norm": an, "rel_delta": dn / an if an > 0 else None}


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------
def extrapolate(
    sft: Path,
    aligned: Path,
    out: Path,
    scheme: Scheme | float,
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
    workers = default_workers() if not threads else max(1, int(threads))
    sck = load_checkpoint(sft, allow_pickle=allow_pickle, role="sft")
    ack = load_checkpoint(aligned, allow_pickle=allow_pickle, role="aligned")
    p = plan(sck, ack, scheme, max_shard_bytes)
    log.info(
        "extrapolating %d tensors (%.2f GB) in %d shard(s); scheme %s; %d layers%s",
        len(p.tensors),
        sum(p.shard_sizes) / 1e9,
        len(p.shard_names),
        scheme.describe()["kind"],
        p.num_layers,
        "; tied embeddings" if p.tied else "",
    )
    if p.skipped:
        log.info("tied embeddings: not writing %s", p.skipped)
    if p.added_vocab_rows:
        log.warning("aligned model has %d extra vocabulary rows; they are kept as aligned (Δ = 0)", p.added_vocab_rows)
    inputs = {
        "sft": describe_inputs(sft, hash_weights=hash_inputs),
        "aligned": describe_inputs(aligned, hash_weights=hash_inputs),
    }

    with atomic_dir(out) as tmp:
        sck.open()
        ack.open()
        try:
            stats = _run_pipeline(p, sck, ack, tmp, chunk_elems, workers)
        finally:
            sck.close()
            ack.close()
        if len(p.shard_names) > 1:
            weight_map = {t.name: p.shard_names[t.shard] for t in p.tensors}
            write_json(tmp / SAFE_INDEX, {"metadata": {"total_size": sum(p.shard_sizes)}, "weight_map": weight_map})
        copied = _copy_aux_files(aligned, tmp)
        manifest = _manifest(p, scheme, stats, inputs, copied, time.perf_counter() - t0)
        write_json(tmp / "manifest.json", manifest)
    log.info("wrote %s in %.1f s", out, manifest["elapsed_s"])
    return manifest


def _manifest(
    p: Plan, scheme: Scheme, stats: dict[str, _Stats], inputs: dict, copied: list[str], elapsed: float
) -> dict:
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
        "dtype": _TORCH_NAME.get(main_dtype, main_dtype),
        "dtypes": {_TORCH_NAME[k]: v for k, v in dtypes.items()},
        "n_tensors": len(p.tensors),
        "output": {"files": p.shard_names, "total_size": sum(p.shard_sizes), "copied": copied},
        "elapsed_s": round(elapsed, 3),
    }


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
def load_scheme_arg(text: str) -> Scheme:
    """``--scheme`` value: a JSON/YAML file, or inline JSON (a number or a mapping)."""
    p = Path(text)
    if p.is_file():
        raw = p.read_text(encoding="utf-8")
        if p.suffix in (".yaml", ".yml"):
            import yaml

            try:
                spec = yaml.safe_load(raw)
            except yaml.YAMLError as exc:
                raise ValueError(f"scheme file {p} is not valid YAML ({exc})") from exc
        else:
            try:
                spec = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ValueError(f"scheme file {p} is not valid JSON ({exc.msg})") from exc
    else:
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--scheme {text!r} is neither a file nor valid inline JSON ({exc.msg})") from exc
    return Scheme.from_config(spec)


def _parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 5GB, 500MiB, 1000000)")
    unit = (m.group(2) or "B").upper().rstrip("B").rstrip("I")
    mult = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}[unit]
    if "I" in (m.group(2) or "").upper():
        mult = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}[unit]
    return int(float(m.group(1)) * mult)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sft", required=True, type=Path, help="SFT checkpoint folder")
    ap.add_argument("--aligned", required=True, type=Path, help="aligned (DPO/RLHF) checkpoint folder")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--alpha", type=float, help="uniform α")
    g.add_argument("--scheme", help="scheme as a JSON/YAML file or inline JSON (see docs/ARCHITECTURE.md)")
    ap.add_argument("--out", required=True, type=Path, help="output checkpoint folder (written atomically)")
    ap.add_argument("--allow-pickle", action="store_true", help="accept pytorch_model.bin (runs pickle!)")
    ap.add_argument("--max-shard-size", type=_parse_size, default=5 * 2**30, help="e.g. 5GiB (default)")
    ap.add_argument("--threads", type=int, default=None, help="compute threads (default: all cores, max 8)")
    ap.add_argument("--hash-inputs", action="store_true", help="sha256 of input weight files in the manifest")
    ap.add_argument("--log", default=None, help="also log to this file")
    args = ap.parse_args(argv)
    setup_logging(args.log)
    try:
        scheme = Scheme.uniform_alpha(args.alpha) if args.alpha is not None else load_scheme_arg(args.scheme)
        extrapolate(
            args.sft,
            args.aligned,
            args.out,
            scheme,
            allow_pickle=args.allow_pickle,
            max_shard_bytes=args.max_shard_size,
            threads=args.threads,
            hash_inputs=args.hash_inputs,
        )
    except ValueError as exc:
        log.error("%s", exc)
        raise SystemExit(2) from exc


if __name__ == "__main__":
    main()
