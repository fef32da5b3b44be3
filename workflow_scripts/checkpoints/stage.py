"""The checkpoint stage's entry points: :func:`materialize` and the command line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..common import StageParser, read_json, setup_logging
from .adapter import is_adapter_spec, materialize_adapter
from .compose import is_compose_spec, materialize_compose
from .folder import is_complete
from .gguf import _materialize_gguf
from .hub import _materialize_hub
from .local import _materialize_local
from .spec import SOURCE_FILE, CheckpointError, normalize_spec

log = logging.getLogger(__name__)


def materialize(spec: dict, out: Path, *, token_env: str = "HF_TOKEN") -> dict:
    """Make ``out`` an ordinary HF checkpoint folder for ``spec``; return its ``source.json`` record.

    Idempotent: a folder already finished for the same spec is returned as is (no download).
    """
    out = Path(out)
    if is_adapter_spec(spec):  # a PEFT adapter: merged into its base folder
        return materialize_adapter(spec, out, token_env=token_env)
    if is_compose_spec(spec):  # a vision encoder + a causal LM joined by a fresh projector
        return materialize_compose(spec, out)
    spec = normalize_spec(spec)
    if is_complete(out, spec):
        log.info("%s is already complete for %s; nothing to do", out, _describe(spec))
        return read_json(out / SOURCE_FILE)
    if spec["source"] == "hub":
        record = _materialize_hub(spec, out, token_env)
    elif spec["source"] == "local":
        record = _materialize_local(spec, out)
    else:
        record = _materialize_gguf(spec, out)
    log.info("checkpoint ready at %s: %d files, %.2f GB", out, len(record["files"]), record["total_bytes"] / 1e9)
    return record


def _describe(spec: dict) -> str:
    if spec["source"] == "hub":
        return f"hub {spec['repo']}@{spec['revision']}"
    if spec["source"] == "gguf" and spec["package"]:
        return f"gguf {spec['package']}:{spec['file']}"
    return f"{spec['source']} {spec['path']}"


def main(argv: list[str] | None = None) -> None:
    parser = StageParser(
        prog="python -m workflow_scripts.checkpoints",
        description="Checkpoint stage: turn a model source spec into an ordinary Hugging Face folder.",
    )
    parser.add_argument(
        "--spec",
        required=True,
        help='source spec as JSON, e.g. \'{"source": "hub", "repo": "org/name", "revision": "<sha>"}\'',
    )
    parser.add_argument("--out", required=True, type=Path, help="checkpoint folder to create")
    parser.add_argument("--token-env", default="HF_TOKEN", help="environment variable holding the Hub token")
    parser.add_argument("--log", default=None, help="also log to this file")
    args = parser.parse_args(argv)
    setup_logging(args.log)
    try:
        spec = json.loads(args.spec)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"--spec is not valid JSON: {exc}") from exc
    materialize(spec, args.out, token_env=args.token_env)
