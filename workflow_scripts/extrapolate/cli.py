"""``python -m workflow_scripts.extrapolate``: the engine from the command line.

It behaves as every stage's command line (:mod:`workflow_scripts.cli`): a user error (bad pair,
bad scheme or α, bad path, a refused pickle, a full disk) ends with one ``error: ...`` line and
exit status 1 (``--debug`` shows the traceback), SIGTERM/SIGHUP with 128 + the signal, and
``--alpha -1e-3`` is a number.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from pathlib import Path

from workflow_scripts.common import StageParser, setup_logging
from workflow_scripts.extrapolate.engine import extrapolate
from workflow_scripts.schemes import Scheme

log = logging.getLogger(__name__)


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
    """``5GB``, ``500MiB`` or a byte count."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 5GB, 500MiB, 1000000)")
    unit = (m.group(2) or "B").upper().rstrip("B").rstrip("I")
    mult = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}[unit]
    if "I" in (m.group(2) or "").upper():
        mult = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}[unit]
    return int(float(m.group(1)) * mult)


def main(argv: list[str] | None = None) -> None:
    """Parse ``argv`` and run one extrapolation (errors propagate: run it with ``run_cli``)."""
    ap = StageParser(description="Streaming model extrapolation (ExPO): θ = θ_aligned + α·(θ_aligned − θ_sft)")
    ap.add_argument("--sft", required=True, type=Path, help="SFT checkpoint folder")
    ap.add_argument("--aligned", required=True, type=Path, help="aligned (DPO/RLHF) checkpoint folder")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--alpha", type=float, help="uniform α (a finite number; -1e-3 is a value)")
    g.add_argument("--scheme", help="scheme as a JSON/YAML file or inline JSON (see docs/ARCHITECTURE.md)")
    ap.add_argument("--out", required=True, type=Path, help="output checkpoint folder (written atomically)")
    ap.add_argument("--allow-pickle", action="store_true", help="accept pytorch_model.bin (runs pickle!)")
    ap.add_argument("--max-shard-size", type=_parse_size, default=5 * 2**30, help="e.g. 5GiB (default)")
    ap.add_argument("--threads", type=int, default=None, help="compute threads (default: all cores, max 8)")
    ap.add_argument("--hash-inputs", action="store_true", help="sha256 of input weight files in the manifest")
    ap.add_argument("--log", default=None, help="also log to this file")
    args = ap.parse_args(argv)
    setup_logging(args.log)
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
