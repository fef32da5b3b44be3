"""Evaluation planning of an :class:`~workflow_scripts.experiment.Experiment`: reward-model
scores, the AlpacaEval and local judges, MT-Bench and capability runs, decoding and the report's
params.

A mixin so ``experiment.py`` keeps to models, pairs, variants and prompt sets; these queries only
read those. Torch-free, like the rest of the planning.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from .layout import Layout, Variant


def _fail(msg: str) -> None:
    from .experiment import ConfigError  # experiment.py imports this module

    raise ConfigError(msg)


class EvaluationPlanning:
    """Queries the scoring, judging and report rules ask (mixed into ``Experiment``; uses its models, pairs,
    prompt sets and variants)."""

    config: Mapping[str, Any]
    layout: Layout
    models: Mapping[str, Mapping[str, Any]]
    pairs: Mapping[str, Mapping[str, Any]]
    prompt_sets: Mapping[str, Mapping[str, Any]]
    evaluation: Mapping[str, Any]

    @property
    def reward_models(self) -> Mapping[str, Mapping[str, Any]]:
        return self.config["reward_models"]

    def rm_spec(self, rm: str) -> dict[str, Any]:
        """What a score job needs to know about its reward model (the ``score`` rule's params)."""
        spec = self.reward_models[rm]
        return {"type": spec.get("type", "model"), "trust_remote_code": spec.get("trust_remote_code", False)}

    def is_gold(self, rm: str) -> bool:
        return self.reward_models[rm].get("type") == "gold"

    def scorable(self, prompt_set: str, rm: str) -> bool:
        """The gold reward exists on the demo worlds' prompt sets and on POPE (yes/no correctness)."""
        return not self.is_gold(rm) or self.prompt_sets[prompt_set]["source"] in ("world", "shapes_world", "pope")

    def scored(self) -> Iterator[tuple[str, str, Variant]]:
        """Every (prompt set, reward model, variant) that gets a score file."""
        for ps in self.prompt_sets:
            for rm in self.reward_models:
                if self.scorable(ps, rm):
                    for v in self.variants_for(ps):  # type: ignore[attr-defined]
                        yield ps, rm, v

    @property
    def judge_annotator(self) -> str | None:
        return self.evaluation.get("alpaca_eval_judge")

    def judged(self) -> Iterator[tuple[str, Variant]]:
        """Real-AlpacaEval judgements, only when an annotator is configured (costs API money)."""
        if not self.judge_annotator:
            return
        for ps, spec in self.prompt_sets.items():
            if spec["source"] == "alpaca_eval":
                for v in self.variants_for(ps):  # type: ignore[attr-defined]
                    yield ps, v

    def local_judge_spec(self) -> dict[str, Any] | None:
        return self.evaluation.get("local_judge")

    def local_judged(self) -> Iterator[tuple[str, Variant]]:
        """Extrapolated variants judged against their pair's aligned model by a local checkpoint."""
        spec = self.local_judge_spec()
        if not spec:
            return
        for ps in spec.get("prompt_sets") or list(self.prompt_sets):
            if ps not in self.prompt_sets:
                _fail(f"evaluation.local_judge.prompt_sets: unknown prompt set {ps!r}")
            for v in self.variants_for(ps):  # type: ignore[attr-defined]
                if v.kind in ("alpha", "scheme"):
                    yield ps, v

    def local_judge_baseline(self, group: str) -> str:
        """The aligned model a pair's extrapolations are judged against."""
        return self.pairs[group]["aligned"]

    def mtbench_spec(self) -> dict[str, Any] | None:
        return self.evaluation.get("mtbench")

    def mtbench_generation(self) -> dict[str, Any]:
        """What changes MT-Bench answers (the ``mtbench_answers`` rule's params)."""
        spec = self.mtbench_spec() or {}
        return {"max_new_tokens": spec.get("max_new_tokens", 256), "limit": spec.get("limit")}

    def mtbench_grading(self) -> dict[str, Any]:
        """What changes MT-Bench grades (the ``mtbench_grade`` rule's params)."""
        spec = self.mtbench_spec() or {}
        return {"judge": spec.get("judge"), "n_runs": spec.get("n_runs", 1)}

    def capability_spec(self) -> dict[str, Any] | None:
        return self.evaluation.get("capability")

    def model_variants(self) -> list[Variant]:
        """Every variant backed by a checkpoint (MT-Bench and capability run on these)."""
        return [v for v in self.variants() if v.kind != "reference"]  # type: ignore[attr-defined]

    def evaluation_reported(self) -> bool:
        """Whether any benchmark beyond reward models is configured (then its tables are built)."""
        return bool(self.mtbench_spec() or self.capability_spec() or self.local_judge_spec() or self.judge_annotator)

    def evaluation_report_params(self) -> dict[str, Any]:
        """What the ``evaluation_report`` rule needs besides its inputs: the pairs and the variant order."""
        return {"pairs": self.pairs, "variants": [v.as_tuple() for v in self.variants()]}  # type: ignore[attr-defined]

    def judge_model_dir(self, judge: str) -> str | None:
        """Checkpoint folder of a judge naming a configured model; None for ``api:<model>`` judges."""
        if judge.startswith("api:"):
            return None
        if judge not in self.models:
            _fail(f"judge {judge!r} is neither a configured model ({sorted(self.models)}) nor api:<model>")
        return self.model_dir(judge)  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ decoding and the report

    def decoding(self) -> dict[str, Any]:
        """The decoding spec as configured (the ``generate`` rule's params; the schema's default),
        without ``seeds``: each seed's job gets :meth:`seeded_decoding` instead."""
        return {k: v for k, v in self.config["decoding"].items() if k != "seeds"}

    def sampling_seeds(self) -> list[int]:
        """``decoding.seeds``: each variant is answered once per seed (empty: once, with ``decoding.seed``)."""
        return [int(s) for s in self.config["decoding"].get("seeds") or []]

    def seeded_decoding(self, seed: int | str) -> dict[str, Any]:
        """The ``generate_seeded`` rule's decoding: the configured one with this run seed, which
        :func:`~workflow_scripts.seeded_sampling.prompt_seed` hashes with each prompt id."""
        return {**self.decoding(), "seed": int(seed)}

    def seeds_of(self, variant: Variant) -> list[int | None]:
        """The seeds a variant's answers exist for: ``[None]`` (one unseeded file) without
        ``decoding.seeds`` and for reference outputs, which are not sampled here."""
        seeds = self.sampling_seeds()
        return [None] if not seeds or variant.kind == "reference" else list(seeds)

    def generation_files(self) -> list[str]:
        """Every answers file: one per (prompt set, variant, seed)."""
        answered = self.answered()  # type: ignore[attr-defined]
        return [self.layout.generation(ps, v.group, v.name, s) for ps, v in answered for s in self.seeds_of(v)]

    def score_files(self) -> list[str]:
        """Every score file: one per (prompt set, reward model, variant, seed)."""
        L = self.layout
        return [L.score(ps, rm, v.group, v.name, s) for ps, rm, v in self.scored() for s in self.seeds_of(v)]

    def pair_meta(self) -> dict[str, dict[str, Any]]:
        """Method and data fraction of each pair whose aligned model is trained here (DPO/SimPO).

        Read from ``models``, not parsed from pair names, so the controlled-study table cannot be
        fooled by a name; pairs with downloaded aligned models are left out (training unknown).
        """
        from .experiment import PREFERENCE_METHODS  # experiment.py imports this module

        out = {}
        for pair, p in self.pairs.items():
            spec = self.model_spec(p["aligned"])  # type: ignore[attr-defined]
            if spec["source"] == "train" and spec["method"] in PREFERENCE_METHODS:
                out[pair] = {
                    "method": spec["method"],
                    "fraction": float(spec.get("fraction", 1.0)),
                    "aligned": p["aligned"],
                }
        return out

    def report_params(self) -> dict[str, Any]:
        """Settings that change the report's numbers (not paths: those are inputs)."""
        ev = dict(self.config.get("evaluation", {}))
        ev.setdefault("primary_reward", next(iter(self.reward_models)))
        ev.pop("hallucination_select", None)  # the hallucination report's choice (its own params)
        return {
            "evaluation": ev,
            "variants": [v.as_tuple() for v in self.variants()],  # type: ignore[attr-defined]
            "variants_by_prompt_set": {ps: [v.as_tuple() for v in self.variants_for(ps)] for ps in self.prompt_sets},
            "pairs": self.pairs,
            "prompt_sets": list(self.prompt_sets),
            "prompt_set_sources": {k: v["source"] for k, v in self.prompt_sets.items()},
            "reward_models": {
                k: {"label": v.get("label", k), "type": v.get("type", "model")} for k, v in self.reward_models.items()
            },
            "max_new_tokens": self.config.get("decoding", {}).get("max_new_tokens"),
            "pair_meta": self.pair_meta(),
        }
