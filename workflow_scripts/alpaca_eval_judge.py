"""Optional real AlpacaEval evaluation with an API judge (e.g. GPT-4 turbo), skipped cleanly offline.

Why optional: the paper's headline numbers are AlpacaEval 2.0 win rates judged by GPT-4, which
costs money and needs a key and network. The workflow must still run end to end without them, so
when the annotator's credentials are not configured this step writes
``{"status": "skipped", "reason": ...}`` and exits 0 instead of failing the DAG. With credentials it
calls ``alpaca_eval.evaluate`` and records its leaderboard row (``win_rate``,
``length_controlled_winrate``, ``standard_error``, ``n_total``, ``avg_length`` …) in
``<out_dir>/result.json``; alpaca_eval's own ``leaderboard.csv`` / ``annotations.json`` land in
``<out_dir>/<annotator>/``. An API failure is recorded as ``status: "error"`` (logged at ERROR) and
only raised with ``strict=True`` / ``--strict``, because one flaky judge call should not discard a
whole sweep's generations.

Credentials are detected from the annotator config's ``fn_completions`` (read from alpaca_eval's
``evaluators_configs/<annotator>/configs.yaml`` without importing alpaca_eval):
``openai_completions`` needs ``OPENAI_API_KEY`` or ``OPENAI_API_KEYS`` (or an existing
``OPENAI_CLIENT_CONFIG_PATH`` file), ``anthropic_completions`` ``ANTHROPIC_API_KEY``, and so on
(:data:`KEY_ENV`). Local judges (``huggingface_local_completions``, ``vllm_local_completions``) need
no key.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from workflow_scripts.common import atomic_dir, setup_logging, write_json

logger = logging.getLogger(__name__)

RESULT_FILE = "result.json"
DEFAULT_ANNOTATOR = "weighted_alpaca_eval_gpt4_turbo"

KEY_ENV: dict[str, tuple[str, ...]] = {
    "openai_completions": ("OPENAI_API_KEY", "OPENAI_API_KEYS"),
    "anthropic_completions": ("ANTHROPIC_API_KEY",),
    "google_completions": ("GOOGLE_API_KEY",),
    "cohere_completions": ("COHERE_API_KEY",),
    "huggingface_api_completions": ("HUGGINGFACEHUB_API_TOKEN",),
    "jina_chat_completions": ("JINA_CHAT_API_KEY",),
    "replicate_completions": ("REPLICATE_API_TOKEN",),
    "bedrock_anthropic_completions": ("AWS_ACCESS_KEY_ID", "AWS_PROFILE"),
}
"""Which environment variables configure each alpaca_eval completion backend."""
LOCAL_BACKENDS = frozenset({"huggingface_local_completions", "vllm_local_completions", "test_completions"})


def _alpaca_eval_dir() -> Path | None:
    """The installed package folder, found without importing it (importing reads env at import)."""
    spec = importlib.util.find_spec("alpaca_eval")
    return Path(spec.origin).parent if spec and spec.origin else None


def annotator_backends(annotator: str) -> list[str]:
    """``fn_completions`` names used by an annotator config (a name under alpaca_eval's
    ``evaluators_configs`` or a path to a ``configs.yaml``/folder)."""
    import yaml

    candidate = Path(annotator)
    if candidate.is_dir():
        candidate = candidate / "configs.yaml"
    if not candidate.is_file():
        pkg = _alpaca_eval_dir()
        if pkg is None:
            raise ValueError("alpaca_eval is not installed")
        candidate = pkg / "evaluators_configs" / annotator / "configs.yaml"
        if not candidate.is_file():
            known = sorted(p.name for p in (pkg / "evaluators_configs").iterdir() if p.is_dir())
            raise ValueError(f"unknown alpaca_eval annotator {annotator!r}; known: {', '.join(known[:12])}, …")
    cfg = yaml.safe_load(candidate.read_text(encoding="utf-8")) or {}
    fns = sorted({v.get("fn_completions") for v in cfg.values() if isinstance(v, dict) and v.get("fn_completions")})
    return fns


def missing_credentials(annotator: str, env: dict[str, str] | None = None) -> str | None:
    """Why the annotator cannot run here (no key configured), or None when it can."""
    env = dict(os.environ if env is None else env)
    problems = []
    for fn in annotator_backends(annotator):
        if fn in LOCAL_BACKENDS:
            continue
        names = KEY_ENV.get(fn)
        if names is None:
            logger.warning("unknown completion backend %r: cannot check its credentials, trying it", fn)
            continue
        if any(env.get(n, "").strip() for n in names):
            continue
        cfg = env.get("OPENAI_CLIENT_CONFIG_PATH", "")
        if fn == "openai_completions" and cfg and Path(cfg).is_file():
            continue
        problems.append(f"{fn} needs one of {', '.join('$' + n for n in names)}")
    if problems:
        return f"annotator {annotator!r}: " + "; ".join(problems) + " (none is set)"
    return None


def _validate_outputs(path: Path, what: str) -> list[dict]:
    if not path.is_file():
        raise ValueError(f"{what} file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} {path} is not valid JSON ({exc.msg})") from exc
    if (
        not isinstance(data, list)
        or not data
        or not all(isinstance(r, dict) and "instruction" in r and "output" in r for r in data)
    ):
        raise ValueError(f"{what} {path} must be a non-empty alpaca_eval list of {{instruction, output}} records")
    return data


def _jsonable(x: Any) -> Any:
    if hasattr(x, "item") and callable(x.item):
        try:
            return x.item()
        except (ValueError, TypeError):
            return str(x)
    return x


def run_alpaca_eval(
    model_outputs: Path,
    reference_outputs: Path | None,
    out_dir: Path,
    annotator: str = DEFAULT_ANNOTATOR,
    *,
    name: str | None = None,
    max_instances: int | None = None,
    strict: bool = False,
) -> dict[str, Any]:
    """Judge ``model_outputs`` against ``reference_outputs`` (None: alpaca_eval's default GPT-4
    turbo baseline from the hub) with ``annotator``; write ``out_dir/result.json`` atomically.

    Returns the result dict: ``status`` is ``"ok"`` (with ``metrics``), ``"skipped"`` (no
    credentials / alpaca_eval missing) or ``"error"`` (the judge failed; raised when ``strict``).

    It stays one function on purpose: the input checks, the judge call and the result record are
    one flat sequence whose every exit writes the same result file.
    """
    model_outputs = Path(model_outputs)
    records = _validate_outputs(model_outputs, "model_outputs")
    if reference_outputs is not None:
        _validate_outputs(Path(reference_outputs), "reference_outputs")
    name = name or str(records[0].get("generator") or model_outputs.stem)
    base = {
        "annotator": annotator,
        "model_outputs": str(model_outputs),
        "reference_outputs": str(reference_outputs) if reference_outputs is not None else "alpaca_eval default",
        "name": name,
    }

    if _alpaca_eval_dir() is None:
        reason = "alpaca_eval is not installed"
    else:
        reason = missing_credentials(annotator)
    if reason is not None:
        result = {"status": "skipped", "reason": reason, **base}
        logger.warning("alpaca_eval judge skipped: %s", reason)
        with atomic_dir(out_dir) as tmp:
            write_json(tmp / RESULT_FILE, result)
        return result

    with atomic_dir(out_dir) as tmp:
        try:
            from workflow_scripts.metrics import _import_alpaca_eval_metrics

            _import_alpaca_eval_metrics()  # pkg_resources compat before alpaca_eval.main loads
            from alpaca_eval import main as ae_main

            kwargs: dict[str, Any] = dict(
                model_outputs=str(model_outputs),
                annotators_config=annotator,
                name=name,
                output_path=str(tmp),
                precomputed_leaderboard=None,
                is_return_instead_of_print=True,
                is_cache_leaderboard=False,
                max_instances=max_instances,
            )
            if reference_outputs is not None:
                kwargs["reference_outputs"] = str(reference_outputs)
            leaderboard, _ = ae_main.evaluate(**kwargs)
            row = leaderboard.loc[name].to_dict() if name in leaderboard.index else leaderboard.iloc[0].to_dict()
            result = {"status": "ok", "reason": None, "metrics": {k: _jsonable(v) for k, v in row.items()}, **base}
            logger.info("alpaca_eval %s: %s", name, result["metrics"])
        except Exception as exc:  # the judge is remote: record the failure, keep the sweep
            if strict:
                raise
            logger.error("alpaca_eval judge failed: %s: %s", type(exc).__name__, exc)
            result = {"status": "error", "reason": f"{type(exc).__name__}: {exc}", **base}
        write_json(tmp / RESULT_FILE, result)
    return result


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Optional AlpacaEval run with an API judge (skipped without a key).")
    ap.add_argument("--model-outputs", required=True, type=Path, help="alpaca_eval model_outputs .json")
    ap.add_argument(
        "--reference-outputs",
        type=Path,
        default=None,
        help="reference outputs .json (default: alpaca_eval's GPT-4 turbo baseline from the hub)",
    )
    ap.add_argument("--out-dir", required=True, type=Path)
    ap.add_argument("--annotator", default=DEFAULT_ANNOTATOR)
    ap.add_argument("--name", default=None, help="model name in the leaderboard (default: generator field)")
    ap.add_argument("--max-instances", type=int, default=None, help="judge only this many prompts (cost control)")
    ap.add_argument("--strict", action="store_true", help="fail when the judge errors instead of recording it")
    ap.add_argument("--log", default=None)
    args = ap.parse_args(argv)
    setup_logging(args.log)
    run_alpaca_eval(
        args.model_outputs,
        args.reference_outputs,
        args.out_dir,
        args.annotator,
        name=args.name,
        max_instances=args.max_instances,
        strict=args.strict,
    )


if __name__ == "__main__":
    main()
