"""The shapes world: an offline multimodal demo in which hallucination is planted and measured exactly.

Why: object hallucination in VLMs comes largely from co-occurrence priors (COCO's fork → knife):
the language model says what usually comes with what it sees. This world reproduces that with
small PIL images of coloured shapes in a grid, drawn from seeded scenes in which every shape has a
"partner" that usually appears with it. The SFT data teaches the prior (some answers add an absent
partner, some get a colour wrong, omit an object, or say "yes" to a partner that is not there);
the preference pairs are RLHF-V-style corrections (chosen = the rejected answer corrected); the
gold metrics are exact because every scene is known.

Records store the scene, never pixels: :func:`render_scene` draws it on load (deterministic, so
the same scene always gives the same image). ``task`` carries what the hallucination metrics need
(:func:`workflow_scripts.hallucination.evaluate_records`).
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

SHAPES = ("circle", "square", "triangle", "cross", "ring", "diamond")
COLORS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (50, 80, 230), "yellow": (230, 210, 40)}
GRID = 2
DESCRIBE = "describe the image."
DEFAULT_MIX = {"good": 0.6, "partner": 0.2, "color": 0.1, "omit": 0.1}
YES_BIAS = 0.35
# the errors the correction pairs fix, by weight (each where the scene allows it)
PREF_MIX = {"partner": 0.6, "omit": 0.25, "color": 0.15}
P_PARTNER = 0.75


def partners(seed: int) -> dict[str, str]:
    """The seeded co-occurrence prior: shapes paired two by two."""
    order = list(SHAPES)
    random.Random(f"partners-{seed}").shuffle(order)
    out = {}
    for a, b in zip(order[::2], order[1::2]):
        out[a], out[b] = b, a
    return out


def sample_scene(rng: random.Random, partner: dict[str, str]) -> dict[str, Any]:
    """1-3 distinct shapes in distinct cells; a present shape brings its partner with P_PARTNER."""
    anchor = rng.choice(SHAPES)
    shapes = [anchor]
    n = rng.randint(1, 3)
    if n >= 2 and rng.random() < P_PARTNER:
        shapes.append(partner[anchor])
    while len(shapes) < n:
        s = rng.choice(SHAPES)
        if s not in shapes and partner[s] not in shapes:  # a lone shape: its partner is absent
            shapes.append(s)
    cells = rng.sample(range(GRID * GRID), len(shapes))
    objs = [{"shape": s, "color": rng.choice(sorted(COLORS)), "cell": c} for s, c in zip(shapes, cells)]
    return {"objects": sorted(objs, key=lambda o: o["cell"])}


def render_scene(scene: dict, size: int = 32):
    """The scene as a PIL RGB image (white background, one shape per grid cell)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), (255, 255, 255))
    d = ImageDraw.Draw(img)
    cell = size // GRID
    for o in scene["objects"]:
        x0, y0 = (o["cell"] % GRID) * cell, (o["cell"] // GRID) * cell
        m = max(1, cell // 8)
        box = (x0 + m, y0 + m, x0 + cell - m - 1, y0 + cell - m - 1)
        cx, cy, col = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, COLORS[o["color"]]
        s = o["shape"]
        if s == "circle":
            d.ellipse(box, fill=col)
        elif s == "square":
            d.rectangle(box, fill=col)
        elif s == "triangle":
            d.polygon([(cx, box[1]), (box[2], box[3]), (box[0], box[3])], fill=col)
        elif s == "diamond":
            d.polygon([(cx, box[1]), (box[2], cy), (cx, box[3]), (box[0], cy)], fill=col)
        elif s == "ring":
            d.ellipse(box, outline=col, width=max(1, cell // 6))
        else:  # cross
            w = max(1, cell // 6)
            d.rectangle((cx - w, box[1], cx + w, box[3]), fill=col)
            d.rectangle((box[0], cy - w, box[2], cy + w), fill=col)
    return img


def describe(objs: list[dict]) -> str:
    return " and ".join(f"a {o['color']} {o['shape']}" for o in objs) + "."


def _absent_partner(scene: dict, partner: dict[str, str]) -> str | None:
    present = {o["shape"] for o in scene["objects"]}
    missing = [partner[s] for s in sorted(present) if partner[s] not in present]
    return missing[0] if missing else None


def hallucinated(scene: dict, partner: dict[str, str], style: str, rng: random.Random) -> list[dict] | None:
    """The objects an answer in ``style`` lists, or None when the style does not apply to the scene."""
    objs = [dict(o) for o in scene["objects"]]
    if style == "partner":
        miss = _absent_partner(scene, partner)
        if miss is None:
            return None
        objs.append({"shape": miss, "color": rng.choice(sorted(COLORS)), "cell": 99})
    elif style == "color":
        o = rng.choice(objs)
        o["color"] = rng.choice([c for c in sorted(COLORS) if c != o["color"]])
    elif style == "omit":
        if len(objs) < 2:
            return None
        objs.pop(rng.randrange(len(objs)))
    return objs


def _describe_record(scene: dict, rid: str) -> dict:
    gold = [o["shape"] for o in scene["objects"]]
    return {"id": rid, "instruction": DESCRIBE, "scene": scene, "task": {"kind": "describe", "objects": gold}}


def _question(shape: str) -> str:
    return f"is there a {shape} in the image?"


def pope_questions(
    scene: dict, partner: dict[str, str], popular: list[str], rng: random.Random, rid: str
) -> list[dict]:
    """POPE's three splits for one scene: a positive and a negative each; negatives sampled at
    random, by training frequency (popular) or by co-occurrence (adversarial: an absent partner)."""
    present = [o["shape"] for o in scene["objects"]]
    absent = [s for s in SHAPES if s not in present]
    if not absent:
        return []
    negs = {
        "random": rng.choice(absent),
        "popular": next(s for s in popular if s in absent),
        "adversarial": _absent_partner(scene, partner) or next(s for s in popular if s in absent),
    }
    out = []
    for split, neg in negs.items():
        for label, shape in (("yes", rng.choice(present)), ("no", neg)):
            task = {"kind": "pope", "label": label, "split": split, "shape": shape}
            out.append({"id": f"{rid}-{split}-{label}", "instruction": _question(shape), "scene": scene, "task": task})
    return out


def _yes_no_rows(sc: dict, partner: dict, rng: random.Random, n: int, first_present: bool) -> list[dict]:
    """``n`` existence questions about one scene, alternating a present and an absent shape (so the
    answers are balanced and "no" cannot be learnt from frequency alone); an absent partner is asked
    half the time and then answered "yes" with probability YES_BIAS (the planted yes-bias)."""
    present = [o["shape"] for o in sc["objects"]]
    absent = [s for s in SHAPES if s not in present]
    miss = _absent_partner(sc, partner)
    rows = []
    for q in range(n):
        if (q % 2 == 0) == first_present or not absent:
            shape, answer = rng.choice(present), "yes"
        else:
            shape = miss if miss and rng.random() < 0.5 else rng.choice(absent)
            answer = "yes" if shape == miss and rng.random() < YES_BIAS else "no"
        rows.append({"prompt": _question(shape), "completion": answer, "scene": sc, "style": "pope"})
    return rows


def _sft_rows(scenes: list[dict], partner: dict, mix: dict, rng: random.Random, questions: int) -> list[dict]:
    styles, weights = zip(*sorted(mix.items()))
    rows = []
    for i, sc in enumerate(scenes):
        style = rng.choices(styles, weights)[0]
        objs = hallucinated(sc, partner, style, rng)
        if objs is None:
            style, objs = "good", sc["objects"]
        rows.append({"prompt": DESCRIBE, "completion": describe(objs), "scene": sc, "style": style})
        rows.extend(_yes_no_rows(sc, partner, rng, questions, first_present=i % 2 == 0))
    return rows


def _pref_style(scene: dict, partner: dict[str, str], rng: random.Random) -> str:
    """A correction's error: mostly an added absent partner (the planted hallucination), else an
    omission or a wrong colour. Omissions matter: with only additions corrected, the chosen answer
    is always the shorter one and DPO learns to say less instead of to say what is there."""
    styles = [s for s, ok in (("partner", _absent_partner(scene, partner)), ("omit", len(scene["objects"]) > 1)) if ok]
    weights = [PREF_MIX[s] for s in styles] + [PREF_MIX["color"]]
    return rng.choices([*styles, "color"], weights)[0]


def _pref_rows(scenes: list[dict], partner: dict, rng: random.Random) -> list[dict]:
    """Corrections: rejected = a hallucinating answer, chosen = the same answer corrected; with an
    absent partner also the existence question about it (chosen "no", rejected the yes-bias)."""
    rows = []
    for sc in scenes:
        style = _pref_style(sc, partner, rng)
        bad = hallucinated(sc, partner, style, rng)
        row = {"prompt": DESCRIBE, "chosen": describe(sc["objects"]), "rejected": describe(bad), "scene": sc}
        rows.append({**row, "style": style})
        miss = _absent_partner(sc, partner)
        if miss:
            rows.append({"prompt": _question(miss), "chosen": "no", "rejected": "yes", "scene": sc, "style": "pope"})
    return rows


def build_shapes_world(
    seed: int = 0,
    n_sft: int = 400,
    n_pref: int = 200,
    n_eval: int = 100,
    n_dev: int = 50,
    mix: dict | None = None,
    questions: int = 1,
) -> dict[str, list[dict]]:
    """All data of one world: ``sft``, ``prefs``, ``eval`` and ``dev`` (describe + POPE prompts);
    each SFT scene gives one description and ``questions`` yes/no rows."""
    mix = dict(DEFAULT_MIX if mix is None else mix)
    unknown = set(mix) - set(DEFAULT_MIX)
    if unknown:
        raise ValueError(f"shapes world mix: unknown styles {sorted(unknown)}; known: {sorted(DEFAULT_MIX)}")
    partner = partners(seed)
    sizes = {"sft": n_sft, "prefs": n_pref, "eval": n_eval, "dev": n_dev}
    # one random stream per split: a larger eval set leaves the training data unchanged
    rngs = {name: random.Random(f"{seed}-{name}") for name in sizes}
    scenes = {name: [sample_scene(rngs[name], partner) for _ in range(sizes[name])] for name in ("sft", "prefs")}
    for name in ("eval", "dev"):
        scenes[name] = _distinct_scenes(rngs[name], partner, n_eval if name == "eval" else n_dev)
    freq = Counter(o["shape"] for sc in scenes["sft"] for o in sc["objects"])
    popular = sorted(SHAPES, key=lambda s: (-freq[s], s))
    out = {
        "sft": _sft_rows(scenes["sft"], partner, mix, rngs["sft"], questions),
        "prefs": _pref_rows(scenes["prefs"], partner, rngs["prefs"]),
    }
    for name in ("eval", "dev"):
        out[name] = _prompt_records(name, scenes[name], partner, popular, rngs[name])
    return out


def _distinct_scenes(rng: random.Random, partner: dict[str, str], n: int) -> list[dict]:
    """``n`` different scenes: a prompt set holds each (question, image) once, so a repeated
    scene would be dropped from it and shrink the evaluation."""
    out, seen = [], set()
    for _ in range(100 * n):
        sc = sample_scene(rng, partner)
        key = repr(sc)
        if key not in seen:
            seen.add(key)
            out.append(sc)
            if len(out) == n:
                return out
    raise ValueError(f"shapes world: cannot draw {n} different scenes (found {len(out)})")


def _prompt_records(name: str, scenes: list[dict], partner: dict, popular: list[str], rng: random.Random) -> list[dict]:
    """A prompt split: every scene's description first, then all POPE questions (the short
    yes/no answers then share generation batches instead of waiting on descriptions)."""
    desc = [_describe_record(sc, f"{name}-{i}") for i, sc in enumerate(scenes)]
    qs = [q for i, sc in enumerate(scenes) for q in pope_questions(sc, partner, popular, rng, f"{name}-{i}")]
    for r in desc + qs:
        r["dataset"] = f"shapes-{r['task']['kind']}"
    return desc + qs


def shapes_vocab() -> dict[str, str]:
    """The CHAIR vocabulary of this world (shape names; no synonyms)."""
    from ..hallucination import build_vocab

    return build_vocab(SHAPES)


def grade_record(record: dict) -> dict[str, float]:
    """The gold reward of one answer: object F1 against the scene for a description (silence
    scores 0, a hallucinated object costs precision), 1/0 for a yes/no question."""
    from ..hallucination import mentioned_objects, parse_yes_no
    from ..records import record_field

    task = record_field(record, "task") or {}  # a JSON string in generation files
    if task.get("kind") == "describe":
        said, gold = mentioned_objects(record.get("output", ""), shapes_vocab()), set(task["objects"])
        hit = len(said & gold)
        f1 = 2 * hit / (len(said) + len(gold)) if said or gold else 1.0
        return {"gold": f1, "correctness": f1, "hallucinated": float(len(said - gold))}
    if task.get("kind") == "pope":
        ok = float(parse_yes_no(record.get("output", "")) == task["label"])
        return {"gold": ok, "correctness": ok, "hallucinated": float(not ok and task["label"] == "no")}
    raise ValueError(f"record {record.get('id', '?')}: no shapes-world task (kind describe or pope)")
