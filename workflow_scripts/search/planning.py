"""The α search as the workflow plans it: which files each search round and the result need.

Why a chain of checkpoints: the candidates of round r are known only once the dev scores of the
rounds before exist. Snakemake's pattern for that is one checkpoint per round: round r's plan
(``search/<pair>/plan/round<r>.json``) needs the dev scores of every candidate the earlier plans
asked for, and lists the candidates to evaluate next. Those candidates are ordinary
``<pair>/alpha<α>`` extrapolate → generate → score jobs, the same files as the fixed grid's, so a
candidate the grid already has costs nothing and every job is cached and runs in parallel.

Why the plans carry no budget: a plan is computed with an unbounded budget and the budget is
applied here, when the rounds are walked (a round the budget cuts keeps its first candidates, as
the search library's replay does). Raising the budget therefore leaves every finished plan file
valid: Snakemake only plans the next round's new jobs. The search result (a checkpoint too, since
the chosen α decides which eval jobs exist) is computed by the library with the real budget and
reaches the same candidates.

Why the layer search waits for the uniform search to converge: its rounds start from the best
uniform α, and a uniform search its budget cut has a best α that more budget would move, so the
budget-free plans and the budgeted walk would disagree on where the layer rounds start. Layer
rounds therefore follow only a uniform search that stopped on its own (noise, resolution); each
stage has its own budget, applied here the same way.

Layer candidates are ``<pair>/scheme_search_<partition>_<α runs>`` variants built by the ordinary
scheme rule; their name encodes the group α vector, so the extrapolation job reads its scheme from
its wildcards (:meth:`SearchPlanning.scheme`), never from a plan file.

Stdlib only at import time (the Snakefile builds the DAG with it); ``check`` and :meth:`scheme`
import the search library.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ..layout import Variant

UNBOUNDED = 10**6
"""Budget of a plan round: the real budget is applied when the rounds are walked."""
DEFAULT_BUDGET = 8
"""The search library's default budget (``UniformConfig.budget``), used when the config sets none."""
DEFAULT_LAYER_BUDGET = 24
"""The layer search's default budget (``LayerConfig.budget``)."""
ALIGNED = "alpha0"
"""The search library's name for the aligned model (the reference every candidate is compared with)."""
SCHEME_NAME_PREFIX = "search_"
"""Scheme names of layer-search candidates (``scheme_search_...`` variants); reserved in the config."""
SPEC_KEYS = ("grid", "factor", "max_alpha", "min_ratio", "min_alpha", "level")

PlanLoader = Callable[[int], Mapping[str, Any]]
"""``round -> plan.json content``; in the workflow it calls ``checkpoints.search_plan.get``."""


class SearchPlanning:
    """Planning queries of ``extrapolation.search`` over one :class:`~..experiment.Experiment`."""

    def __init__(self, exp):
        self.exp = exp
        self.config: Mapping[str, Any] | None = exp.config["extrapolation"].get("search")

    @property
    def enabled(self) -> bool:
        return self.config is not None

    @property
    def pairs(self) -> list[str]:
        if not self.enabled:
            return []
        return list(self.config.get("pairs") or self.exp.pairs)

    @property
    def budget(self) -> int:
        return int(self.config.get("budget", DEFAULT_BUDGET))

    @property
    def layers(self) -> Mapping[str, Any] | None:
        """``extrapolation.search.layers``: the layer-group search after the uniform one (None: off)."""
        return None if not self.enabled else self.config.get("layers")

    @property
    def layer_budget(self) -> int:
        return int((self.layers or {}).get("budget", DEFAULT_LAYER_BUDGET))

    def num_layers(self, pair: str) -> int | None:
        """Decoder depth of the pair when known before the run (needed by the per-layer partition)."""
        return self.exp.model_num_layers(self.exp.pairs[pair]["aligned"])

    def objective(self) -> dict[str, Any]:
        """The configured objective; by default the primary reward (the grid's selection rule)."""
        obj = dict(self.config.get("objective") or {})
        if "rms" not in obj:
            ev = self.exp.evaluation
            obj["rms"] = [ev.get("primary_reward") or next(iter(self.exp.reward_models))]
        obj.setdefault("kind", "reward")
        return obj

    def plan_spec(self, pair: str | None = None) -> dict[str, Any]:
        """What a plan round's numbers depend on (its params): every knob but the budgets, and with
        a layer search the pair's decoder depth."""
        spec = {k: self.config[k] for k in SPEC_KEYS if k in self.config}
        spec = {**spec, "objective": self.objective(), "budget": UNBOUNDED}
        if self.layers is not None:
            spec["layers"] = {**self.layers, "budget": UNBOUNDED}
            spec["num_layers"] = None if pair is None else self.num_layers(pair)
        return spec

    def result_spec(self, pair: str | None = None) -> dict[str, Any]:
        spec = {**self.plan_spec(pair), "budget": self.budget}
        if self.layers is not None:
            spec["layers"] = {**spec["layers"], "budget": self.layer_budget}
        return spec

    def scheme(self, pair: str, name: str) -> dict[str, Any]:
        """The engine scheme of layer candidate ``scheme_<name>``, read from its name."""
        from .core import Candidate
        from .layers import LayerConfig, scheme_spec

        cfg = LayerConfig.from_config({k: v for k, v in (self.layers or {}).items() if k != "budget"})
        return scheme_spec(Candidate.from_name(f"scheme_{name}"), self.num_layers(pair), cfg)

    # ------------------------------------------------------------------ files

    @property
    def dev(self) -> str:
        return self.exp.dev_prompt_set

    def variant(self, pair: str, name: str) -> Variant:
        """The workflow variant behind a search candidate: ``alpha0`` is the aligned checkpoint."""
        if name == ALIGNED:
            return Variant.base(self.exp.pairs[pair]["aligned"])
        return Variant(pair, name)

    def candidate_files(self, pair: str, name: str) -> list[str]:
        """Dev score files of one candidate (and its answers when the objective penalises length)."""
        v = self.variant(pair, name)
        L = self.exp.layout
        out = [L.score(self.dev, rm, v.group, v.name) for rm in self.objective()["rms"]]
        if self.objective().get("length_penalty"):
            out.append(L.generation(self.dev, v.group, v.name))
        return out

    # ------------------------------------------------------------------ walking the rounds

    def trail(self, load_plan: PlanLoader, rounds: int | None = None) -> tuple[list[str], int]:
        """(candidates asked for, index of the last plan read) walking plans ``0 .. rounds-1``.

        With ``rounds=None`` the walk goes on until a plan says done, has nothing new, or the
        budget of the plan's stage is used; a round the budget cuts keeps its first candidates. A
        uniform stage that used its budget exactly is followed by one more plan when a layer
        search is configured: that plan says whether the uniform search converged (its layer
        round is then walked) or wanted more (the walk stops). ``load_plan`` raising (the round's
        checkpoint has not run yet) is how Snakemake learns which round to run next.
        """
        asked: list[str] = []
        used = {"uniform": 0, "layers": 0}
        budgets = {"uniform": self.budget, "layers": self.layer_budget}
        if rounds is not None:
            budgets = dict.fromkeys(budgets, UNBOUNDED)
        r = 0
        while rounds is None or r < rounds:
            if r > sum(budgets.values()) + 2:
                raise RuntimeError(f"search walked {r} rounds without stopping (budgets {budgets})")
            plan = load_plan(r)
            stage = plan.get("stage", "uniform")
            new = [p["variant"] for p in plan["pending"] if p["variant"] not in asked]
            take = new[: max(budgets[stage] - used[stage], 0)]
            asked += take
            used[stage] += len(take)
            if plan["done"] or not new:
                return asked, r
            if used[stage] >= budgets[stage]:
                if stage == "layers" or self.layers is None or len(take) < len(new):
                    return asked, r
            r += 1
        return asked, r - 1

    def plan_inputs(self, pair: str, rnd: int, load_plan: PlanLoader) -> list[str]:
        """Round ``rnd``'s inputs: the aligned model's and every earlier candidate's dev scores."""
        asked, _ = self.trail(load_plan, rnd) if rnd > 0 else ([], 0)
        files = [f for name in [ALIGNED, *asked] for f in self.candidate_files(pair, name)]
        if rnd > 0:
            files.append(self.exp.layout.search_plan(pair, rnd - 1))
        return files

    def result_inputs(self, pair: str, load_plan: PlanLoader) -> list[str]:
        """The result's inputs: the last plan read and the dev scores of every candidate within budget."""
        asked, last = self.trail(load_plan)
        files = [f for name in [ALIGNED, *asked] for f in self.candidate_files(pair, name)]
        return [*files, self.exp.layout.search_plan(pair, last)]

    def chosen(self, pair: str, result: Mapping[str, Any]) -> list[Variant]:
        """The searched pair's chosen variants, from its ``result.json``: the best uniform α, and
        the layer search's best group vector when it kept a step."""
        alpha = result.get("best_uniform_alpha")
        if alpha is None:
            raise ValueError(f"search of pair {pair!r} chose no α: {result.get('stop_reason')}")
        out = [Variant.alpha_of(pair, alpha)]
        best = (result.get("best") or {}).get("variant", "")
        if result.get("stage") == "layers" and best.startswith(f"scheme_{SCHEME_NAME_PREFIX}"):
            out.append(Variant(pair, best))
        return out

    def targets(self, pair: str, result: Mapping[str, Any]) -> Iterator[str]:
        """Generation and score files of the chosen variants on every prompt set (the summary's rows)."""
        L = self.exp.layout
        for v in self.chosen(pair, result):
            for ps in self.exp.prompt_sets:
                yield L.generation(ps, v.group, v.name)
                for rm in self.exp.reward_models:
                    if self.exp.scorable(ps, rm):
                        yield L.score(ps, rm, v.group, v.name)

    def grid_files(self, pair: str) -> list[str]:
        """Dev score files of the fixed grid (and the aligned model): the curve the search is drawn on."""
        dev_alphas = {v.name for v in self.exp.variants_for(self.dev) if v.group == pair}
        names = [ALIGNED] + [f"alpha{a}" for a in self.exp.pair_alphas(pair) if f"alpha{a}" in dev_alphas]
        return [f for name in names for f in self.candidate_files(pair, name)]

    def report_spec(self) -> dict[str, dict[str, Any]]:
        """Per searched pair, the files the search report reads (its params: how they group)."""
        L = self.exp.layout
        return {
            p: {
                "aligned": self.exp.pairs[p]["aligned"],
                "result": L.search_result(p),
                "log": L.search_log(p),
                "grid": self.grid_files(p),
            }
            for p in self.pairs
        }

    def report_files(self) -> list[str]:
        return [f for s in self.report_spec().values() for f in (s["result"], s["log"], *s["grid"])]

    # ------------------------------------------------------------------ checks

    def check(self) -> None:
        """Cross-references of ``extrapolation.search`` (ValueError naming the key at fault)."""
        if not self.enabled:
            return
        where = "extrapolation.search"
        for p in self.config.get("pairs") or []:
            if p not in self.exp.pairs:
                raise ValueError(f"{where}.pairs: unknown pair {p!r}; defined: {sorted(self.exp.pairs)}")
        if not self.dev:
            raise ValueError(f"{where} needs evaluation.dev_prompt_set (the search chooses α on it)")
        for rm in self.objective()["rms"]:
            if rm not in self.exp.reward_models:
                raise ValueError(f"{where}.objective.rms: {rm!r} is not a reward model")
            if not self.exp.scorable(self.dev, rm):
                raise ValueError(f"{where}.objective.rms: {rm!r} cannot score the dev set {self.dev!r}")
        for s in self.exp.schemes:
            if s.startswith(SCHEME_NAME_PREFIX):
                raise ValueError(f"extrapolation.schemes.{s}: names starting {SCHEME_NAME_PREFIX!r} are the search's")
        from .layers import LayerConfig
        from .objective import Objective
        from .uniform import UniformConfig

        try:
            Objective.from_config(self.objective())
            UniformConfig.from_config(self.result_spec())
            layer_cfg = LayerConfig.from_config(self.layers or {})
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from None
        if self.layers is not None and "layers" in layer_cfg.partitions:
            for p in self.pairs:
                if self.num_layers(p) is None:
                    raise ValueError(
                        f"{where}.layers.partitions: 'layers' needs pair {p!r}'s decoder depth before the run "
                        "(a world, trained or local model); use thirds / sixths for hub checkpoints"
                    )
