"""Seeded instruction tasks whose answers a program can grade (the demo world's "gold reward").

Why: without a model hub we still need an experiment in which alignment is measurable. Each task has
a checkable answer, and the answer *styles* mimic what real SFT/aligned models do wrong:

- ``good``            the answer alone;
- ``restate``         restating the instruction before answering ("List three colors. red, blue, ...");
- ``restate_only``    restating the instruction *instead of* answering;
- ``ramble``          the answer followed by rambling repetition;
- ``wrong``           wrong count or format.

The SFT data mixes all styles; preference pairs prefer ``good`` over a flawed style of the same task.
A model that moves towards ``good`` gains gold reward; one pushed too far breaks down.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable
from dataclasses import dataclass

CATEGORIES: dict[str, list[str]] = {
    "colors": ["red", "blue", "green", "pink", "black", "white"],
    "animals": ["cat", "dog", "cow", "fox", "owl", "pig"],
    "fruits": ["apple", "pear", "plum", "lime", "fig", "kiwi"],
    "tools": ["saw", "axe", "drill", "hammer", "knife", "rake"],
    "drinks": ["tea", "milk", "juice", "water", "soda", "wine"],
    "shapes": ["circle", "square", "star", "cube", "cone", "oval"],
}
OPPOSITES: dict[str, str] = {
    "hot": "cold",
    "cold": "hot",
    "big": "small",
    "small": "big",
    "up": "down",
    "down": "up",
    "fast": "slow",
    "slow": "fast",
    "old": "new",
    "new": "old",
    "day": "night",
    "night": "day",
    "wet": "dry",
    "dry": "wet",
    "happy": "sad",
    "sad": "happy",
    "open": "closed",
    "closed": "open",
    "light": "dark",
    "dark": "light",
    "early": "late",
    "late": "early",
    "full": "empty",
    "empty": "full",
}
ALL_ITEMS = sorted({w for items in CATEGORIES.values() for w in items})

# One short template per family: a tiny model learns to read the slots in a couple of minutes of
# CPU training, so what separates the models is the answer *style*, as in real alignment.
LIST_TEMPLATES = ["List {n} {cat}."]
REPEAT_TEMPLATES = ["Say {w} {n} times."]
REVERSE_TEMPLATES = ["Reverse: {seq}"]
OPPOSITE_TEMPLATES = ["Opposite of {w}?"]
KINDS = ("list", "repeat", "opposite")
LIST_COUNTS = (2, 4)  # "List n colors.": n drawn from this closed range
REPEAT_COUNTS = (2, 5)  # "Say w n times."
# Families whose eval/dev instructions never occur in training (their slots do: "Say cat 4 times."
# is held out while "Say cat 3 times." and "Say dog 4 times." are not). Opposites are facts: a
# held-out word could not be known, so their instructions occur in every split.
HELD_OUT_KINDS = ("list", "repeat", "reverse")

STYLES = ("good", "restate", "restate_only", "ramble", "wrong")
FLAWED = STYLES[1:]
DEFAULT_MIX = {"good": 0.35, "restate": 0.25, "restate_only": 0.15, "ramble": 0.15, "wrong": 0.10}

# Gold-reward penalties. Documented here because the report's columns are read against them.
RESTATE_PENALTY = 0.3  # opening by restating the instruction wastes the reader's time
RAMBLE_PENALTY = 0.4  # text after a complete answer (repetition) is worse than stopping


@dataclass(frozen=True)
class Task:
    """One instruction with everything the grader needs (kept JSON-able in ``meta``)."""

    kind: str
    instruction: str
    meta: dict

    def as_record(self) -> dict:
        return {"kind": self.kind, **self.meta}


def sample_task(rng: random.Random) -> Task:
    """Draw one task uniformly over the families in :data:`KINDS` ("reverse" is graded but not drawn:
    copying a sequence backwards takes a tiny model far longer to learn than the demo's budget)."""
    kind = rng.choice(KINDS)
    if kind == "list":
        cat = rng.choice(sorted(CATEGORIES))
        n = rng.randint(*LIST_COUNTS)
        text = rng.choice(LIST_TEMPLATES).format(n=n, cat=cat)
        return Task(kind, text, {"category": cat, "n": n})
    if kind == "repeat":
        w = rng.choice(ALL_ITEMS)
        n = rng.randint(*REPEAT_COUNTS)
        text = rng.choice(REPEAT_TEMPLATES).format(w=w, n=n)
        return Task(kind, text, {"word": w, "n": n})
    if kind == "reverse":
        seq = rng.sample(ALL_ITEMS, rng.randint(2, 3))
        text = rng.choice(REVERSE_TEMPLATES).format(seq=" ".join(seq))
        return Task(kind, text, {"seq": seq})
    w = rng.choice(sorted(OPPOSITES))
    text = rng.choice(OPPOSITE_TEMPLATES).format(w=w)
    return Task(kind, text, {"word": w})


def correct_answer(task: Task | dict, rng: random.Random) -> str:
    """A correct answer (list answers vary: any n distinct items of the category are right)."""
    t = task.as_record() if isinstance(task, Task) else task
    if t["kind"] == "list":
        return ", ".join(rng.sample(CATEGORIES[t["category"]], t["n"]))
    if t["kind"] == "repeat":
        return " ".join([t["word"]] * t["n"])
    if t["kind"] == "reverse":
        return " ".join(reversed(t["seq"]))
    return OPPOSITES[t["word"]]


def _wrong_answer(task: Task, rng: random.Random) -> str:
    t = task.as_record()
    if t["kind"] == "list":
        m = t["n"] + rng.choice([-1, 1])
        return ", ".join(rng.sample(CATEGORIES[t["category"]], max(1, m)))
    if t["kind"] == "repeat":
        return " ".join([t["word"]] * (t["n"] + rng.choice([-1, 1])))
    if t["kind"] == "reverse":
        return " ".join(t["seq"])  # not reversed
    return t["word"]  # echoes the word instead of its opposite


def _ramble(task: Task, rng: random.Random) -> str:
    ans = correct_answer(task, rng)
    last = re.split(r"[ ,]+", ans)[-1]
    sep = ", " if task.kind == "list" else " "
    return ans + sep + sep.join([last] * rng.randint(3, 6))


def answer_in_style(task: Task, style: str, rng: random.Random) -> str:
    """Render an answer to ``task`` in one of :data:`STYLES`."""
    if style == "good":
        return correct_answer(task, rng)
    if style == "restate":
        return f"{task.instruction} {correct_answer(task, rng)}"
    if style == "restate_only":
        return task.instruction
    if style == "ramble":
        return _ramble(task, rng)
    if style == "wrong":
        return _wrong_answer(task, rng)

    raise ValueError(f"unknown answer style {style!r}; expected one of {STYLES}")


# ---------------------------------------------------------------------------------------------
# Grading


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^a-z0-9 ]", " ", text.lower())).strip()


def strip_restatement(instruction: str, output: str) -> tuple[bool, str]:
    """(restated?, rest of the answer). Restating = the answer opens with the instruction's words."""
    ins, out = _norm(instruction), _norm(output)
    if ins and out.startswith(ins):
        return True, out[len(ins) :].strip()
    return False, out


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[ ,]+", text) if w]


def _grade_list(meta: dict, words: list[str]) -> tuple[float, bool]:
    n, cat = meta["n"], set(CATEGORIES[meta["category"]])
    ok = len(words) == n and len(set(words)) == n and set(words) <= cat
    if ok:
        return 1.0, False
    distinct_valid = len(set(words) & cat)
    rambling = len(words) > n and distinct_valid >= n
    score = min(distinct_valid, n) / n - 0.25 * abs(len(words) - n)
    return max(0.0, min(score, 0.75)), rambling


def _grade_repeat(meta: dict, words: list[str]) -> tuple[float, bool]:
    n, w = meta["n"], meta["word"]
    count = sum(x == w for x in words)
    others = len(words) - count
    if count == n and others == 0:
        return 1.0, False
    score = max(0.0, 1.0 - abs(count - n) / n - 0.25 * others)
    return min(score, 0.75), count > n


def _grade_reverse(meta: dict, words: list[str]) -> tuple[float, bool]:
    target = list(reversed(meta["seq"]))
    if words == target:
        return 1.0, False
    if words[: len(target)] == target:
        return 0.5, True  # right answer followed by more text
    if sorted(words) == sorted(target):
        return 0.25, False  # right words, wrong order
    return 0.0, False


def _grade_opposite(meta: dict, words: list[str]) -> tuple[float, bool]:
    target = OPPOSITES[meta["word"]]
    if words == [target]:
        return 1.0, False
    if words and words[0] == target:
        return 0.5, True
    return 0.0, False


GRADERS: dict[str, Callable[[dict, list[str]], tuple[float, bool]]] = {
    "list": _grade_list,
    "repeat": _grade_repeat,
    "reverse": _grade_reverse,
    "opposite": _grade_opposite,
}


def grade(task: dict, instruction: str, output: str) -> dict:
    """Gold reward and its parts for one answer.

    ``gold = correctness − RESTATE_PENALTY·restated − RAMBLE_PENALTY·rambling``, in [−0.7, 1]:
    a perfect answer scores 1, restating only scores −0.3, an empty answer 0.
    """
    restated, rest = strip_restatement(instruction, output)
    words = _words(rest)
    correctness, rambling = GRADERS[task["kind"]](task, words) if words else (0.0, False)
    gold = correctness - RESTATE_PENALTY * restated - RAMBLE_PENALTY * rambling
    return {
        "gold": round(gold, 6),
        "correctness": correctness,
        "restated": restated,
        "restated_only": restated and not words,
        "rambling": rambling,
    }


def grade_record(record: dict) -> dict:
    """:func:`grade` of a generation record that carries the world's ``task`` metadata (a dict in a
    prompt set, a JSON string in a generation file: :func:`workflow_scripts.records.record_field`)."""
    from ..records import record_field

    task = record_field(record, "task")
    if not isinstance(task, dict):
        raise ValueError(
            f"record {record.get('id')!r} has no 'task' field: gold reward only exists for demo-world prompt sets"
        )
    return grade(task, record["instruction"], record["output"])


def gold_reward(record: dict) -> float:
    """Gold reward of a generation record that carries the world's ``task`` metadata."""
    return grade_record(record)["gold"]


# ---------------------------------------------------------------------------------------------
# Data set construction


def split_of(instruction: str, dev_frac: float, eval_frac: float) -> str:
    """Stable split by a hash of the instruction, so eval/dev prompts never occur in training."""
    h = int(hashlib.sha256(instruction.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    if h < eval_frac:
        return "eval"
    if h < eval_frac + dev_frac:
        return "dev"
    return "train"


def split_pool(split: str, dev_frac: float, eval_frac: float) -> list[str]:
    """Every distinct instruction :func:`sample_task` can draw for ``split`` (sorted).

    Why: eval and dev prompts are drawn without repeats, so their counts are bounded by this pool;
    a count above it is the user's to lower, and the error says by how much.
    """
    held = [
        f.format(n=n, cat=c)
        for f in LIST_TEMPLATES
        for c in CATEGORIES
        for n in range(LIST_COUNTS[0], LIST_COUNTS[1] + 1)
    ]
    held += [
        f.format(w=w, n=n)
        for f in REPEAT_TEMPLATES
        for w in ALL_ITEMS
        for n in range(REPEAT_COUNTS[0], REPEAT_COUNTS[1] + 1)
    ]
    pool = [i for i in held if split_of(i, dev_frac, eval_frac) == split]
    pool += [f.format(w=w) for f in OPPOSITE_TEMPLATES for w in OPPOSITES]  # facts: in every split
    return sorted(set(pool))


def _check_counts(counts: dict[str, int], dev_frac: float, eval_frac: float) -> None:
    """Each split's prompt count fits its pool of distinct instructions, or one line says which not."""
    for split, n in counts.items():
        have = len(split_pool(split, dev_frac, eval_frac))
        if n > have:
            raise ValueError(
                f"world.n_{split} = {n}, but the {split} split holds {have} distinct instructions; lower it"
            )


def build_world(
    seed: int,
    n_sft: int,
    n_pref: int,
    n_eval: int,
    n_dev: int,
    mix: dict[str, float] | None = None,
    dev_frac: float = 0.2,
    eval_frac: float = 0.3,
) -> dict[str, list[dict]]:
    """Generate every data file of the world, deterministically from ``seed``.

    Eval and dev instructions of the :data:`HELD_OUT_KINDS` families are disjoint from training
    instructions (split by a hash of the text). Each eval and dev instruction occurs once in its
    set: a bootstrap over prompts treats every row as an independent prompt, and a repeat is not
    one (asking for more than :func:`split_pool` holds is a ValueError). Training instructions
    repeat, with different answers.

    Returns ``{"sft": [...], "prefs": [...], "eval": [...], "dev": [...]}``; SFT rows are
    ``{"prompt", "completion", "style"}``, preference rows ``{"prompt", "chosen", "rejected",
    "rejected_style"}`` and prompt-set rows ``{"id", "instruction", "dataset", "task"}``.
    """
    mix = dict(DEFAULT_MIX if mix is None else mix)
    unknown = set(mix) - set(STYLES)
    if unknown:
        raise ValueError(f"unknown answer styles in world mix: {sorted(unknown)}")
    total = sum(mix.values())
    if total <= 0:
        raise ValueError("world mix weights must sum to a positive number")
    styles, weights = zip(*sorted(mix.items()))
    _check_counts({"eval": n_eval, "dev": n_dev}, dev_frac, eval_frac)
    rng = random.Random(seed)

    def tasks_of(split: str, n: int, unique: bool):
        seen: set[str] = set()
        out: list[Task] = []
        guard = 0
        while len(out) < n:
            guard += 1
            if guard > 200 * n + 10000:
                raise ValueError(f"cannot draw {n} distinct {split} prompts; lower the count")
            t = sample_task(rng)
            if t.kind in HELD_OUT_KINDS and split_of(t.instruction, dev_frac, eval_frac) != split:
                continue
            if unique and t.instruction in seen:
                continue
            seen.add(t.instruction)
            out.append(t)
        return out

    sft = []
    for t in tasks_of("train", n_sft, unique=False):
        style = rng.choices(styles, weights)[0]
        sft.append({"prompt": t.instruction, "completion": answer_in_style(t, style, rng), "style": style})
    prefs = []
    for t in tasks_of("train", n_pref, unique=False):
        bad = rng.choice(FLAWED)
        prefs.append(
            {
                "prompt": t.instruction,
                "chosen": answer_in_style(t, "good", rng),
                "rejected": answer_in_style(t, bad, rng),
                "rejected_style": bad,
            }
        )
    sets = {}
    for split, n in (("eval", n_eval), ("dev", n_dev)):
        sets[split] = [
            {"id": f"{split}-{i:04d}", "instruction": t.instruction, "dataset": f"world_{split}", "task": t.as_record()}
            for i, t in enumerate(tasks_of(split, n, unique=True))
        ]
    return {"sft": sft, "prefs": prefs, **sets}
