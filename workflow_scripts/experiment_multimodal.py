"""Multimodal planning of an :class:`~workflow_scripts.experiment.Experiment`: the shapes world,
image-modality models, and the hallucination scores and report of multimodal prompt sets.

A mixin rather than more methods in ``experiment.py``: text experiments never reach this code
(no config of theirs has ``modality: image`` or a ``shapes_world`` source), so their plans and
rule params stay exactly as they were. Torch-free, like the rest of the planning.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from .layout import Variant

MULTIMODAL_SOURCES = ("shapes_world", "pope", "chair")
"""Prompt-set sources whose records carry an image (or a scene drawn on load) and gold objects."""
FILE_SET_INPUTS = {"chair": ("questions", "annotations", "synonyms")}
"""Files a file-based multimodal prompt set is built from (POPE's are per split, under ``questions``)."""
VLM_ONLY_HPARAMS = ("freeze", "weight_decay", "warmup_ratio")
"""Hyperparameters only image-modality models accept."""


class MultimodalPlanning:
    """Queries the multimodal rules ask (mixed into ``Experiment``; uses its ``config``/``layout``)."""

    config: Mapping[str, Any]

    # ------------------------------------------------------------------ models

    def is_image(self, model: str) -> bool:
        """An image-modality trained model, or a composed (LLaVA-style) one."""
        spec = self.model_spec(model)  # type: ignore[attr-defined]
        return spec.get("modality") == "image" or spec["source"] == "compose"

    def modality_hparams(self, model: str) -> tuple[str, ...]:
        return VLM_ONLY_HPARAMS if self.is_image(model) else ()

    def init_architecture(self, model: str) -> Mapping[str, Any]:
        """What a from-scratch model is built from: a ``world.architectures`` entry (text) or a
        ``shapes_world.architectures`` entry (image: ``{text: ..., vision: ...}``)."""
        spec = self.model_spec(model)  # type: ignore[attr-defined]
        if not self.is_image(model):
            return self.world_architecture(spec["init"])  # type: ignore[attr-defined]
        archs = (self.config.get("shapes_world") or {}).get("architectures", {})
        if spec["init"] not in archs:
            raise _error(
                f"model {model!r}: unknown shapes_world architecture {spec['init']!r}; defined: {sorted(archs)}"
            )
        return archs[spec["init"]]

    def init_tokenizer(self, model: str) -> str:
        """The tokenizer a from-scratch model starts from (its world's)."""
        return self.layout.shapes_tokenizer if self.is_image(model) else self.layout.world_tokenizer  # type: ignore[attr-defined]

    def dataset_file(self, key: str) -> str | None:
        """The local file of a training dataset (None for hub datasets)."""
        ds = self.dataset_spec(key)  # type: ignore[attr-defined]
        if ds["source"] == "world":
            return self.layout.world_file(ds.get("file", "prefs"))  # type: ignore[attr-defined]
        if ds["source"] == "shapes_world":
            return self.layout.shapes_file(ds.get("file", "prefs"))  # type: ignore[attr-defined]
        return ds["path"] if ds["source"] == "file" else None

    def shapes_world_params(self) -> dict[str, Any]:
        """What the shapes world's data are built from (not the tokenizer or the architectures)."""
        sw = self.config.get("shapes_world") or {}
        return {k: v for k, v in sw.items() if k not in ("architectures", "vocab_size")}

    def shapes_vocab_size(self) -> int | None:
        return (self.config.get("shapes_world") or {}).get("vocab_size")

    # ------------------------------------------------------------------ hallucination

    def uses_shapes_world(self) -> bool:
        srcs = [d["source"] for d in self.config.get("datasets", {}).values()]
        srcs += [p["source"] for p in self.prompt_sets.values()]  # type: ignore[attr-defined]
        return "shapes_world" in srcs

    def multimodal_prompt_sets(self) -> list[str]:
        return [k for k, v in self.prompt_sets.items() if v["source"] in MULTIMODAL_SOURCES]  # type: ignore[attr-defined]

    def shapes_prompt_sets(self) -> list[str]:
        """Multimodal prompt sets drawn from the shapes world (the others are read from files)."""
        return [k for k, v in self.prompt_sets.items() if v["source"] == "shapes_world"]  # type: ignore[attr-defined]

    def prompt_set_files(self, prompt_set: str) -> dict[str, str]:
        """The input files of a POPE / CHAIR prompt set (so Snakemake reruns it when one changes)."""
        spec = self.prompt_sets[prompt_set]  # type: ignore[attr-defined]
        if spec["source"] == "pope":
            return {f"questions_{split}": path for split, path in spec["questions"].items()}
        return {k: spec[k] for k in FILE_SET_INPUTS.get(spec["source"], ())}

    def hallucination_vocab_files(self, prompt_set: str) -> dict[str, str]:
        """The synonym list a CHAIR set's mentions are matched with (none for the other sources)."""
        spec = self.prompt_sets[prompt_set]  # type: ignore[attr-defined]
        return {"synonyms": spec["synonyms"]} if spec["source"] == "chair" else {}

    def hallucination_scored(self) -> Iterator[tuple[str, Variant]]:
        """Every (multimodal prompt set, variant) that gets CHAIR / POPE numbers."""
        for ps in self.multimodal_prompt_sets():
            for v in self.variants_for(ps):  # type: ignore[attr-defined]
                yield ps, v

    def hallucination_params(self) -> dict[str, Any]:
        """What changes the hallucination report's numbers (paths are its inputs)."""
        ev = self.evaluation  # type: ignore[attr-defined]
        meta = {}
        for pair, p in self.pairs.items():  # type: ignore[attr-defined]
            spec = self.model_spec(p["aligned"])  # type: ignore[attr-defined]
            if spec["source"] == "train":
                hp = self.hparams(p["aligned"])  # type: ignore[attr-defined]
                meta[pair] = {
                    "method": spec["method"],
                    "fraction": float(spec.get("fraction", 1.0)),
                    "freeze": hp.get("freeze"),
                    "components": p.get("components"),
                }
        out = {
            "pairs": self.pairs,  # type: ignore[attr-defined]
            "pair_meta": meta,
            "prompt_sets": self.multimodal_prompt_sets(),
            "dev_prompt_set": self.dev_prompt_set,  # type: ignore[attr-defined]
            "bootstrap": ev.get("bootstrap", 1000),
            "seed": ev.get("seed", 0),
        }
        if ev.get("hallucination_select"):  # only when set: the params of existing reports stay as they are
            out["select_by"] = list(ev["hallucination_select"])
        return out

    def vlm_training_records(self) -> list[str]:
        """Trained image-modality models whose curves the hallucination report plots."""
        return [m for m in self.trained_models() if self.is_image(m)]  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ checks

    def _check_multimodal(self) -> None:
        if self.uses_shapes_world() and "shapes_world" not in self.config:
            raise _error("a dataset or prompt set uses the shapes world but the config has no `shapes_world:`")
        for key in self.trained_models():  # type: ignore[attr-defined]
            spec = self.models[key]  # type: ignore[attr-defined]
            if self.is_image(key) and spec["method"] not in ("sft", "dpo", "ddpo"):
                raise _error(f"models.{key}: method {spec['method']!r} is not available for modality image")
            if "base" in spec and self.is_image(key) != self.is_image(spec["base"]):
                raise _error(f"models.{key}: modality differs from its base {spec['base']!r}'s")


def _error(msg: str) -> ValueError:
    from .experiment import ConfigError

    return ConfigError(msg)
