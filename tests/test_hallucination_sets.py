"""POPE and CHAIR (Object HalBench-style) sets from files: records, gold objects, mentions, errors.

Fixture files are in tests/data/hallucination/ (a few lines in the official formats); the COCO
images they name are drawn with PIL into a temporary folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from workflow_scripts.hallucination import evaluate_records, mentioned_objects, vocab_for
from workflow_scripts.hallucination_sets import chair_vocab
from workflow_scripts.prompts import load_prompt_set

DATA = Path(__file__).parent / "data" / "hallucination"
IMAGES = [f"COCO_val2014_{i:012d}.jpg" for i in (1, 2, 3)]


@pytest.fixture(scope="module")
def coco(tmp_path_factory) -> Path:
    """A COCO-style image folder with the three images the fixture files name."""
    from PIL import Image, ImageDraw

    d = tmp_path_factory.mktemp("val2014")
    for k, name in enumerate(IMAGES):
        im = Image.new("RGB", (32, 32), "white")
        ImageDraw.Draw(im).ellipse([4 + k, 4, 20 + k, 20], fill=("red", "green", "blue")[k])
        im.save(d / name)
    return d


def _pope(coco, **files):
    files = files or {"random": "coco_pope_random.json", "adversarial": "coco_pope_adversarial.json"}
    return {"source": "pope", "images": str(coco), "questions": {k: str(DATA / v) for k, v in files.items()}}


def _chair(coco, **over):
    spec = {
        "source": "chair",
        "images": str(coco),
        "questions": str(DATA / "chair_questions.jsonl"),
        "annotations": str(DATA / "instances_mini.json"),
        "synonyms": str(DATA / "synonyms.txt"),
    }
    return {**spec, **over}


def test_pope_records_keep_every_image_question_pair(coco):
    recs = load_prompt_set(_pope(coco))
    # the same question about two images is two prompts; the splits keep their own ids
    assert [r["id"] for r in recs] == [f"pope-random-{i}" for i in (1, 2, 3, 4)] + [
        "pope-adversarial-1",
        "pope-adversarial-2",
    ]
    assert recs[2]["instruction"] == recs[0]["instruction"] == "Is there a dog in the image?"
    assert recs[0]["image"] == str(coco / IMAGES[0]) and recs[3]["image"] == str(coco / IMAGES[1])
    assert recs[5]["task"] == {"kind": "pope", "label": "no", "split": "adversarial"}
    assert {r["dataset"] for r in recs} == {"pope_random", "pope_adversarial"}


def test_pope_metrics_per_split_from_the_loaded_records(coco):
    recs = load_prompt_set(_pope(coco))
    answers = ["Yes.", "No", "yes", "Yes, a man.", "yes", "Yes"]  # a yes-biased model
    gens = [{**r, "output": a, "task": json.dumps(r["task"])} for r, a in zip(recs, answers)]
    m = evaluate_records(gens, vocab_for({"source": "pope"}))["pope"]
    assert m["random"]["accuracy"] == 0.75 and m["adversarial"]["accuracy"] == 0.5
    assert m["all"]["yes_ratio"] == pytest.approx(5 / 6) and m["all"]["n"] == 6


def test_chair_gold_objects_come_from_the_annotations_in_canonical_names(coco):
    recs = load_prompt_set(_chair(coco))
    assert [r["id"] for r in recs] == ["halbench-1", "halbench-2", "halbench-3"]
    assert [r["task"]["objects"] for r in recs] == [["dog", "person"], ["dining table", "hot dog", "person"], []]
    assert recs[2]["instruction"] == "What is in this picture?" and recs[2]["image_id"] == 3
    assert recs[1]["image"] == str(coco / IMAGES[1])


def test_chair_mentions_use_synonyms_plurals_and_longest_phrases():
    vocab = chair_vocab(DATA / "synonyms.txt")
    text = "Two men and the children eat hotdogs; puppies sleep under a table with knives. Ponies."
    assert mentioned_objects(text, vocab) == {"person", "hot dog", "dog", "dining table", "knife", "pony"}
    assert mentioned_objects("a hot dog on a plate", vocab) == {"hot dog"}  # never also a dog
    assert mentioned_objects("a dogma", vocab) == set()


def test_chair_metrics_of_answers_over_the_loaded_set(coco):
    spec = _chair(coco)
    recs = load_prompt_set(spec)
    outputs = ["A man with two puppies and a knife.", "People at a table with hot dogs.", "Nothing."]
    gens = [{**r, "output": o, "task": json.dumps(r["task"])} for r, o in zip(recs, outputs)]
    c = evaluate_records(gens, vocab_for(spec))["chair"]
    # mentions: {person, dog, knife} (knife hallucinated) + {person, dining table, hot dog}
    assert c["chair_i"] == pytest.approx(1 / 6) and c["chair_s"] == pytest.approx(1 / 3)
    assert c["recall"] == pytest.approx(5 / 5)


@pytest.mark.parametrize(
    "edit, match",
    [
        ("random:2:{not json", r"coco_pope_random\.json:2: not valid JSON"),
        (
            'random:1:{"question_id": 1, "image": "COCO_val2014_000000000001.jpg", "text": "Is it?", "label": "maybe"}',
            r"entry #0: label must be 'yes' or 'no'",
        ),
        (
            'random:1:{"question_id": 1, "image": "missing.jpg", "text": "Is there a dog?", "label": "yes"}',
            r"image 'missing\.jpg' is not in the images folder",
        ),
        (
            'random:1:{"image": "COCO_val2014_000000000001.jpg", "text": "Is there a dog?", "label": "yes"}',
            r"entry #0: missing field 'question_id'",
        ),
    ],
)
def test_malformed_pope_file_is_one_clear_line(coco, tmp_path, edit, match):
    split, line, text = edit.split(":", 2)
    path = tmp_path / "coco_pope_random.json"
    lines = (DATA / "coco_pope_random.json").read_text().splitlines()
    lines[int(line) - 1] = text
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=match) as err:
        load_prompt_set({**_pope(coco), "questions": {split: str(path)}})
    assert "\n" not in str(err.value)


def test_malformed_chair_inputs_name_the_culprit(coco, tmp_path):
    syn = tmp_path / "synonyms.txt"
    syn.write_text("person, man\ndog, man\n")
    with pytest.raises(ValueError, match=r"synonyms\.txt:2: 'man' is already a synonym of 'person'"):
        load_prompt_set(_chair(coco, synonyms=str(syn)))
    syn.write_text("person\ndog\n")  # COCO categories missing from the list
    with pytest.raises(
        ValueError, match=r"categories \['dining table', 'hot dog', 'knife'\] are not in the synonym list"
    ):
        load_prompt_set(_chair(coco, synonyms=str(syn)))
    q = tmp_path / "q.jsonl"
    q.write_text('{"image": "COCO_val2014_000000000009.jpg", "instruction": "Describe."}\n')
    shutil.copy(coco / IMAGES[0], coco / "COCO_val2014_000000000009.jpg")
    with pytest.raises(ValueError, match=r"entry #0: image id 9 is not in .*instances_mini\.json"):
        load_prompt_set(_chair(coco, questions=str(q)))
