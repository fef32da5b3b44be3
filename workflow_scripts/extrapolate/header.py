"""safetensors headers, validated at least as strictly as the safetensors library does.

Why our own check: the engine reads tensor bytes at the header's offsets with ``pread``, so a header
that safetensors itself would refuse (negative or overlapping ``data_offsets``, negative dimensions,
a truncated file) would otherwise yield a finished-looking output made of the wrong bytes. The
checkpoint stage calls :func:`validate_safetensors` before it calls a download "ready".
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

from workflow_scripts.extrapolate.dtypes import ITEMSIZE

MAX_HEADER_BYTES = 100 * 2**20
"""safetensors' own limit on the JSON header."""


@dataclass(frozen=True)
class HeaderEntry:
    """One tensor as a header declares it, with offsets relative to the data section."""

    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


def read_safetensors_header(path: Path) -> tuple[dict, int]:
    """(raw header dict, byte offset where the data section starts): reads only the header bytes."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path}: not a safetensors file (shorter than 8 bytes)")
        (n,) = struct.unpack("<Q", raw)
        if n > min(size - 8, MAX_HEADER_BYTES):
            raise ValueError(f"{path}: not a safetensors file (header length {n} is invalid)")
        try:
            header = json.loads(fh.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: corrupt safetensors header ({exc})") from exc
    if not isinstance(header, dict):
        raise ValueError(f"{path}: corrupt safetensors header (not a JSON object)")
    return header, 8 + n


def _entry(path: Path, name: str, meta) -> HeaderEntry:
    if not isinstance(meta, dict) or set(meta) != {"dtype", "shape", "data_offsets"}:
        raise ValueError(f"{path}: malformed header entry for tensor {name!r} (needs dtype, shape, data_offsets)")
    code, shape, offs = meta["dtype"], meta["shape"], meta["data_offsets"]
    if code not in ITEMSIZE:
        raise ValueError(f"{path}: tensor {name!r} has unsupported dtype {code!r}")
    if not isinstance(shape, list) or any(type(d) is not int or d < 0 for d in shape):
        raise ValueError(f"{path}: tensor {name!r} has an invalid shape {shape!r} (dimensions must be ints >= 0)")
    if not isinstance(offs, list) or len(offs) != 2 or any(type(x) is not int or x < 0 for x in offs):
        raise ValueError(f"{path}: tensor {name!r} has invalid data_offsets {offs!r} (two ints >= 0)")
    begin, end = offs
    if end - begin != math.prod(shape) * ITEMSIZE[code]:
        raise ValueError(f"{path}: tensor {name!r} data offsets {offs} do not match its shape {shape} and dtype {code}")
    return HeaderEntry(code, tuple(shape), begin, end)


def validate_header(path: Path, header: dict, data_len: int) -> dict[str, HeaderEntry]:
    """The tensors of a parsed header, or ValueError: entries well formed, byte ranges contiguous
    from 0, non-overlapping and exactly covering the data section (what safetensors requires)."""
    meta = header.get("__metadata__")
    if meta is not None and (
        not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items())
    ):
        raise ValueError(f"{path}: __metadata__ must map strings to strings")
    entries = {name: _entry(path, name, m) for name, m in header.items() if name != "__metadata__"}
    pos = 0
    for name, e in sorted(entries.items(), key=lambda kv: (kv[1].begin, kv[1].end)):
        if e.begin != pos:
            what = "overlaps the previous tensor" if e.begin < pos else "leaves a gap before it"
            raise ValueError(f"{path}: tensor {name!r} data offsets [{e.begin}, {e.end}] {what}")
        pos = e.end
    if pos != data_len:
        raise ValueError(
            f"{path}: header describes {pos} data bytes but the file holds {data_len} "
            f"({'truncated download?' if pos > data_len else 'trailing bytes'})"
        )
    return entries


def validate_safetensors(path: str | Path) -> dict[str, HeaderEntry]:
    """Check one ``.safetensors`` file's header against its size; return its tensors (no data read)."""
    path = Path(path)
    header, data_start = read_safetensors_header(path)
    return validate_header(path, header, path.stat().st_size - data_start)
