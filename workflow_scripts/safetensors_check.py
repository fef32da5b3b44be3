"""Validate a safetensors file from its header and its size, without reading any tensor data.

Why here and not in the safetensors library: ``safe_open`` checks the same things, but only when a
stage loads the file, hours after the checkpoint stage said "ready"; and a tool that reads the
header itself (the extrapolation engine streams with ``pread``) must not accept what safetensors
would refuse. The rules are safetensors' own: offsets non-negative, contiguous from 0, not
overlapping, covering the data section exactly (a truncated or padded file is an error), shapes of
non-negative integers, and each tensor's byte length equal to its element count times its dtype
size.
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path
from typing import Any

DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "F64": 64,
    "I64": 64,
    "U64": 64,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
}
"""Bits per element of every dtype safetensors knows."""
MAX_HEADER_BYTES = 100_000_000
"""safetensors' own limit on the JSON header."""


class SafetensorsError(ValueError):
    """A safetensors file that safetensors would refuse (or that is truncated)."""


def _read_header(path: Path, size: int) -> tuple[dict, int]:
    if size < 8:
        raise SafetensorsError(f"{path}: not a safetensors file ({size} bytes, shorter than its 8-byte length prefix)")
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        if n == 0 or n > MAX_HEADER_BYTES or 8 + n > size:
            raise SafetensorsError(
                f"{path}: header length {n} is invalid for a {size}-byte file (truncated or not safetensors)"
            )
        raw = fh.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SafetensorsError(f"{path}: corrupt safetensors header ({exc})") from exc
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: the safetensors header is not a JSON object")
    return header, 8 + n


def _entry_range(path: Path, name: str, meta: Any) -> tuple[int, int]:
    """(begin, end) of one tensor after checking its dtype, shape and byte length."""
    if not isinstance(meta, dict) or set(meta) - {"dtype", "shape", "data_offsets"}:
        raise SafetensorsError(f"{path}: malformed header entry for tensor {name!r}: {meta!r}")
    dtype, shape, offsets = meta.get("dtype"), meta.get("shape"), meta.get("data_offsets")
    if dtype not in DTYPE_BITS:
        raise SafetensorsError(f"{path}: tensor {name!r} has unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise SafetensorsError(f"{path}: tensor {name!r} has a malformed shape {shape!r}")
    if any(d < 0 for d in shape):
        raise SafetensorsError(f"{path}: tensor {name!r} has a negative dimension in shape {shape}")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
    ):
        raise SafetensorsError(f"{path}: tensor {name!r} has malformed data_offsets {offsets!r}")
    begin, end = offsets
    if begin < 0 or end < begin:
        raise SafetensorsError(f"{path}: tensor {name!r} has invalid data_offsets {offsets} (negative or reversed)")
    bits = math.prod(shape) * DTYPE_BITS[dtype]
    if bits % 8 or end - begin != bits // 8:
        raise SafetensorsError(
            f"{path}: tensor {name!r} ({dtype}, shape {shape}) needs {bits / 8:g} bytes but its data_offsets "
            f"{offsets} span {end - begin}"
        )
    return begin, end


def validate_safetensors(path: str | os.PathLike) -> dict[str, dict]:
    """Check ``path`` as safetensors would; return its tensor entries (``__metadata__`` removed).

    Raises :class:`SafetensorsError` (a ``ValueError``) naming the file, the tensor and the rule.
    """
    path = Path(path)
    size = path.stat().st_size
    header, data_start = _read_header(path, size)
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    meta = header.get("__metadata__")
    if meta is not None and not (isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())):
        raise SafetensorsError(f"{path}: __metadata__ must map strings to strings")
    ranges = sorted((_entry_range(path, name, m), name) for name, m in tensors.items())
    pos, prev = 0, None
    for (begin, end), name in ranges:
        if begin != pos:
            what = "overlaps" if begin < pos else "leaves a gap after"
            raise SafetensorsError(
                f"{path}: tensor {name!r} (bytes {begin}-{end}) {what} {prev!r} (ends at {pos}); "
                "safetensors requires contiguous, non-overlapping tensors"
            )
        pos, prev = end, name
    data = size - data_start
    if pos != data:
        what = "truncated" if data < pos else "longer than its header says"
        raise SafetensorsError(
            f"{path}: file is {what}: the header describes {pos} bytes of tensor data, the file holds {data}; "
            "download or copy it again"
        )
    return tensors
