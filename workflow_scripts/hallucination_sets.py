"""Hallucination benchmarks from files: POPE question files and an Object HalBench-style CHAIR set.

Both give prompt records in the format the multimodal generate and hallucination stages already
use: ``{"id", "instruction", "dataset", "image": <path>, "task": {...}}`` with ``task`` =
``{"kind": "pope", "label": "yes"|"no", "split": ...}`` or ``{"kind": "describe", "objects": [...]}``.

* ``pope`` (Li et al. 2023): the official question files, one per negative-sampling split
  (``coco_pope_random.json`` / ``_popular`` / ``_adversarial``; JSON lines despite the suffix), each
  line ``{"question_id", "image", "text", "label"}``; ``image`` is a file name in the COCO folder.
* ``chair``: captioning prompts over COCO images (Object HalBench asks for detailed descriptions
  of 300 COCO val2014 images). Gold objects are the COCO instance categories of each image
  (``instances_val2014.json``: ``images``, ``annotations``, ``categories``), in the canonical
  names of a CHAIR synonym list (``synonyms.txt``: one object per line, comma-separated, the first
  entry the canonical name). CHAIR proper also adds objects named in the reference captions; this
  loader uses the instance annotations only, so a correctly named object that COCO did not
  annotate counts as hallucinated.

Mentions are found with the synonym list's surface forms and their plurals (regular ``s``/``es``
by the matcher in :mod:`.hallucination`; ``-ies``, ``-ves`` and irregular ones such as
men / children / people added here), longest phrase first, so "hot dog" is never a "dog".
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

POPE_SPLITS = ("random", "popular", "adversarial")
IRREGULAR_PLURALS = {
    "man": "men",
    "woman": "women",
    "child": "children",
    "person": "people",
    "mouse": "mice",
    "foot": "feet",
    "tooth": "teeth",
    "goose": "geese",
    "ox": "oxen",
}
_INSTRUCTION_KEYS = ("instruction", "question", "text", "prompt")


def read_json_records(path: str | Path, what: str) -> list[dict]:
    """Objects of a JSON list or a JSON-lines file (POPE's ``.json`` files are JSON lines);
    a bad line is one error naming the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from exc
    else:
        rows = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc
    bad = next((i for i, r in enumerate(rows) if not isinstance(r, dict)), None)
    if bad is not None or not rows:
        raise ValueError(
            f"{path}: expected {what} records (JSON objects), "
            + ("none found" if not rows else f"entry #{bad} is not one")
        )
    return rows


def _field(row: Mapping[str, Any], keys: tuple[str, ...], where: str) -> Any:
    for k in keys:
        if k in row:
            return row[k]
    raise ValueError(f"{where}: missing field {keys[0]!r}" + (f" (or {', '.join(keys[1:])})" if len(keys) > 1 else ""))


def _image_path(images: Path, name: Any, where: str, seen: dict[str, str]) -> str:
    """The image's path in the folder, checked once per image."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: 'image' must be a file name, got {name!r}")
    if name not in seen:
        path = images / name
        if not path.is_file():
            raise ValueError(f"{where}: image {name!r} is not in the images folder {images}")
        seen[name] = str(path)
    return seen[name]


def _images_dir(spec: Mapping[str, Any], source: str) -> Path:
    images = Path(spec.get("images", ""))
    if not spec.get("images") or not images.is_dir():
        raise ValueError(f"prompt source {source!r}: images folder {spec.get('images')!r} does not exist")
    return images


def load_pope(spec: Mapping[str, Any]) -> list[dict]:
    """POPE questions of every configured split (``questions: {random: file, ...}``), in split order."""
    images = _images_dir(spec, "pope")
    files = spec.get("questions")
    if not isinstance(files, Mapping) or not files or set(files) - set(POPE_SPLITS):
        raise ValueError(f"prompt source 'pope': questions must map splits {list(POPE_SPLITS)} to files, got {files!r}")
    seen: dict[str, str] = {}
    out = []
    for split in (s for s in POPE_SPLITS if s in files):
        for i, row in enumerate(read_json_records(files[split], f"POPE {split}")):
            where = f"{files[split]} entry #{i}"
            qid = _field(row, ("question_id",), where)
            text = _field(row, ("text", "question"), where)
            label = str(_field(row, ("label", "answer"), where)).strip().lower()
            if label not in ("yes", "no"):
                raise ValueError(f"{where}: label must be 'yes' or 'no', got {row.get('label')!r}")
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"{where}: 'text' must be a non-empty question")
            out.append(
                {
                    "id": f"pope-{split}-{qid}",
                    "instruction": text,
                    "dataset": f"pope_{split}",
                    "image": _image_path(images, row.get("image"), where, seen),
                    "task": {"kind": "pope", "label": label, "split": split},
                }
            )
    return out


def read_synonyms(path: str | Path) -> dict[str, list[str]]:
    """CHAIR's synonym list: canonical object → its surface forms (the canonical one first)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"synonym list {path} does not exist")
    out: dict[str, list[str]] = {}
    owner: dict[str, str] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        words = [w.strip().lower() for w in line.split(",")]
        if any(not w for w in words):
            raise ValueError(f"{path}:{lineno}: empty entry in {line.strip()!r} (one object per line, comma-separated)")
        for w in words:
            if w in owner and owner[w] != words[0]:
                raise ValueError(f"{path}:{lineno}: {w!r} is already a synonym of {owner[w]!r}")
            owner[w] = words[0]
        out.setdefault(words[0], []).extend(w for w in words if w not in out.get(words[0], []))
    if not out:
        raise ValueError(f"synonym list {path} is empty")
    return out


def plural_forms(phrase: str) -> list[str]:
    """Plurals of a phrase's last word the matcher's optional ``s``/``es`` does not produce."""
    head, _, last = phrase.rpartition(" ")
    forms = []
    if last in IRREGULAR_PLURALS:
        forms.append(IRREGULAR_PLURALS[last])
    if re.search(r"[^aeiou]y$", last):
        forms.append(last[:-1] + "ies")
    if last.endswith("fe"):
        forms.append(last[:-2] + "ves")
    elif last.endswith("f"):
        forms.append(last[:-1] + "ves")
    return [f"{head} {f}" if head else f for f in forms]


def chair_vocab(path: str | Path) -> dict[str, str]:
    """Surface form (singular or plural) → canonical object, from a synonym list."""
    vocab: dict[str, str] = {}
    for canon, words in read_synonyms(path).items():
        for w in words:
            vocab[w] = canon
            for p in plural_forms(w):
                vocab.setdefault(p, canon)
    return vocab


def coco_gold(annotations: str | Path, vocab: Mapping[str, str]) -> dict[int, list[str]]:
    """image id → the canonical names of its annotated COCO categories (sorted, each once)."""
    path = Path(annotations)
    if not path.is_file():
        raise ValueError(f"COCO annotation file {path} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        cats = {int(c["id"]): str(c["name"]).lower() for c in data["categories"]}
        ids = {int(im["id"]) for im in data["images"]}
        pairs = [(int(a["image_id"]), int(a["category_id"])) for a in data["annotations"]]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(
            f"{path}: not a COCO instances file with images, annotations and categories ({exc!r})"
        ) from exc
    unknown = sorted(n for n in cats.values() if n not in vocab)
    if unknown:
        raise ValueError(f"{path}: categories {unknown} are not in the synonym list")
    gold: dict[int, set[str]] = {i: set() for i in ids}
    for image_id, cat in pairs:
        if image_id not in gold or cat not in cats:
            raise ValueError(
                f"{path}: an annotation names image {image_id} / category {cat}, which the file does not define"
            )
        gold[image_id].add(vocab[cats[cat]])
    return {i: sorted(g) for i, g in gold.items()}


def _image_id(row: Mapping[str, Any], where: str) -> int:
    if "image_id" in row:
        return int(row["image_id"])
    m = re.search(r"(\d+)\.\w+$", str(row.get("image", "")))
    if not m:
        raise ValueError(f"{where}: no 'image_id' and none in the image name {row.get('image')!r}")
    return int(m.group(1))


def load_chair(spec: Mapping[str, Any]) -> list[dict]:
    """Description prompts over COCO images with their gold objects (``questions``: one line per
    prompt with ``image`` and ``instruction``/``question``/``text``, or the set's ``instruction``)."""
    images = _images_dir(spec, "chair")
    gold = coco_gold(spec["annotations"], chair_vocab(spec["synonyms"]))
    seen: dict[str, str] = {}
    out = []
    for i, row in enumerate(read_json_records(spec["questions"], "CHAIR question")):
        where = f"{spec['questions']} entry #{i}"
        text = next((row[k] for k in _INSTRUCTION_KEYS if k in row), spec.get("instruction"))
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{where}: no 'instruction' (or question/text), and the prompt set sets none")
        image_id = _image_id(row, where)
        if image_id not in gold:
            raise ValueError(f"{where}: image id {image_id} is not in {spec['annotations']}")
        out.append(
            {
                "id": str(row.get("id", row.get("question_id", f"chair-{i:05d}"))),
                "instruction": text,
                "dataset": "chair",
                "image": _image_path(images, row.get("image"), where, seen),
                "image_id": image_id,
                "task": {"kind": "describe", "objects": gold[image_id]},
            }
        )
    return out
