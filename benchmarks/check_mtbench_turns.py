"""Check two-turn MT-Bench answer files (FastChat ``model_answer`` JSONL written by the workflow).

For each file: the number of records, how many carry two turns, how many turn-2 answers are
non-empty, and for how many the rendered turn-2 prompt holds question 1, then answer 1, then
question 2 (the second question is asked after the model's own first answer).

    python benchmarks/check_mtbench_turns.py <model folder with the tokenizer> <answers.jsonl> ...
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transformers import AutoTokenizer  # noqa: E402

from workflow_scripts.common import read_jsonl  # noqa: E402
from workflow_scripts.mtbench import conversation_ids, load_questions  # noqa: E402


def main(tokenizer_dir: str, paths: list[str]) -> None:
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    questions = {q["question_id"]: q for q in load_questions()}
    for path in paths:
        records = read_jsonl(path)
        two = [r for r in records if len(r["choices"][0]["turns"]) == 2]
        non_empty = sum(bool(r["choices"][0]["turns"][1].strip()) for r in two)
        in_context = 0
        for r in two:
            q, (a1, _) = questions[r["question_id"]], r["choices"][0]["turns"]
            text = tok.decode(conversation_ids(tok, q["turns"], [a1]))
            i1, ia, i2 = text.find(q["turns"][0]), text.find(a1), text.find(q["turns"][1])
            in_context += 0 <= i1 < ia < i2
        print(
            f"{path}: {len(records)} records, {len(two)} with 2 turns, {non_empty} non-empty turn-2 answers, "
            f"{in_context} turn-2 prompts with Q1 < A1 < Q2 in the rendered text"
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
