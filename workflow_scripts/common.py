"""Small helpers every stage shares: logging, atomic outputs, α formatting, JSON I/O, devices, the CLI.

Why one module: every stage must behave the same way on failure (nothing that looks finished is
left behind) and must name α the same way in paths, or Snakemake's incremental reruns break. Atomic outputs live in
:mod:`workflow_scripts.outputs` and the command-line error handling in :mod:`workflow_scripts.cli`;
both are re-exported here, the one import every stage uses.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

from .cli import StageParser, install_error_handling, run_cli
from .outputs import OUTPUT_MARKER, atomic_dir, atomic_path, check_replaceable, remove_stale_temporaries

__all__ = [
    "ALPHA_REGEX",
    "OUTPUT_MARKER",
    "StageParser",
    "atomic_dir",
    "atomic_path",
    "check_replaceable",
    "cuda_available",
    "format_alpha",
    "install_error_handling",
    "pick_device",
    "read_json",
    "read_jsonl",
    "read_records",
    "remove_stale_temporaries",
    "run_cli",
    "set_threads",
    "setup_logging",
    "write_json",
    "write_jsonl",
]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

ALPHA_REGEX = r"-?\d+(\.\d+)?"
"""Regex matched by :func:`format_alpha` output; used as the Snakemake wildcard constraint."""


def setup_logging(log_file: str | os.PathLike | None = None, level: int = logging.INFO) -> None:
    """Log to stderr and, when given, to ``log_file`` (the Snakemake ``log:`` path).

    Both sinks, because a user running ``python -m`` wants to see progress while a Snakemake job
    wants it kept in the rule's log file.
    """
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="a", encoding="utf-8"))
    logging.basicConfig(level=level, format=LOG_FORMAT, handlers=handlers, force=True)
    # Libraries that are chatty at INFO would drown the stage's own messages.
    for noisy in ("httpx", "urllib3", "filelock", "huggingface_hub.file_download"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def format_alpha(alpha: float | int | str) -> str:
    """Canonical, path-safe text for an α: ``0.5 -> '0.5'``, ``2.0 -> '2'``, ``-1e-3 -> '-0.001'``.

    Every path and table goes through this one function so that ``2``, ``2.0`` and ``"2.00"`` in a
    config name the same file (otherwise Snakemake would see a new α and rerun). No exponent
    notation, so the result always matches :data:`ALPHA_REGEX`.
    """
    if isinstance(alpha, bool):
        raise TypeError("alpha must be a number, not a bool")
    d = Decimal(repr(float(alpha))) if not isinstance(alpha, str) else Decimal(alpha)
    if not d.is_finite():
        raise ValueError(f"alpha must be finite, got {alpha!r}")
    text = format(d, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if text in ("-0", ""):
        text = "0"
    return text


def write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2) -> None:
    """Write JSON atomically (UTF-8, non-ASCII kept readable)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=indent, ensure_ascii=False) + "\n", encoding="utf-8")


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file; a syntax error names the file (still a ``json.JSONDecodeError``)."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise json.JSONDecodeError(f"{path}: not valid JSON ({exc.msg})", exc.doc, exc.pos) from None


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    """Write one JSON object per line, atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc
    return rows


def read_records(path: str | os.PathLike, what: str = "records") -> list[dict]:
    """A list of JSON objects from a JSON list file or a JSONL file (prompt sets, preference data,
    reference answers): users hand us both, and each stage must accept either the same way."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} file {path} does not exist")
    text = path.read_text(encoding="utf-8").lstrip()
    if not text:
        raise ValueError(f"{what} file {path} is empty (or only whitespace); it needs at least one record")
    if path.suffix == ".json" or text.startswith("["):
        data = read_json(path)
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON list of objects")
    else:
        data = read_jsonl(path)
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            raise ValueError(f"{path}: entry #{i} is not a JSON object")
    if not data:
        raise ValueError(f"{what} file {path} holds no records; it needs at least one")
    return data


def cuda_available() -> bool:
    """True only when torch sees a usable CUDA device.

    ``CUDA_VISIBLE_DEVICES`` is read defensively: SLURM and users set it to ``""``, ``"-1"`` or
    ``"NoDevFiles"`` to hide GPUs, and we must then stay on CPU rather than crash in CUDA init.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1", "NoDevFiles"):
        return False
    try:
        import torch

        return bool(torch.cuda.is_available()) and torch.cuda.device_count() > 0
    except Exception:  # pragma: no cover - broken CUDA installs
        return False


def pick_device(requested: str = "auto") -> str:
    """``'auto'`` → ``'cuda'`` when available, else ``'cpu'``; explicit values pass through."""
    if requested == "auto":
        return "cuda" if cuda_available() else "cpu"
    if requested.startswith("cuda") and not cuda_available():
        raise RuntimeError(f"device {requested!r} requested but no CUDA device is visible")
    return requested


def set_threads(n: int | None) -> None:
    """Bound CPU threads to the job's ``threads`` so parallel jobs do not oversubscribe.

    Sets the OpenMP/MKL variables (read when torch or numpy load) and, only if torch is already
    imported, torch's own setting: importing torch here would cost ~2 s in jobs that never use it
    (the gold reward, the extrapolation engine, the report).
    """
    if not n:
        return
    n = max(1, int(n))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)
