"""The results tree in one place: path templates, the report's files and the variant grammar.

Every stage that writes or reads ``results/<experiment>/`` names its paths through this module, so
the grammar of a variant (``base/<model>``, ``<pair>/alpha<α>``, ``<pair>/scheme_<name>``,
``reference/reference``) is spelled once. The report recovers a variant's identity from a file
path with :meth:`Variant.parse` instead of parsing names by hand.

Torch-free and stdlib-only: the Snakefile imports it while the DAG is built.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .common import format_alpha

BASE_GROUP = "base"
"""Group of the SFT and aligned checkpoints, named by model key (answered once even when pairs share one)."""
REFERENCE_GROUP = "reference"
"""Group of a prompt set's reference outputs (e.g. GPT-4's answers), scored like a variant."""
RESERVED_GROUPS = (BASE_GROUP, REFERENCE_GROUP)
"""Group names the workflow uses itself: a pair may not be called one of them."""

SEED_PREFIX = "seed"
"""File stem of one sampling seed's answers or scores (``decoding.seeds``): ``<variant>/seed<s>.json``."""
SEED_REGEX = r"[0-9]+"
"""The seed wildcard: sampling seeds are non-negative integers (the schema says so)."""

ALPHA_PREFIX = "alpha"
SCHEME_PREFIX = "scheme_"
LOGIT_PREFIX = "logit"

REPORT_FILES = {
    "summary_csv": "summary.csv",
    "summary_md": "summary.md",
    "summary_html": "summary.html",
    "results_long": "results_long.csv",
    "per_prompt": "per_prompt.csv",
    "answers_html": "answers.html",
    "overview_rst": "overview.rst",
    "reward_plot": "reward_vs_alpha.png",
    "diagnostics_plot": "diagnostics_vs_alpha.png",
    "delta_csv": "layer_delta.csv",
    "delta_plot": "layer_delta.png",
    "training_plot": "training_curves.png",
    "published_csv": "published_comparison.csv",
    "study_csv": "study.csv",
    "study_md": "study.md",
}
"""The report's outputs (key = the report rule's output name), relative to ``<root>/report``."""

SEARCH_REPORT_FILES = {
    "search_csv": "alpha_search.csv",
    "search_plot": "alpha_search.png",
    "search_vs_grid": "search_vs_grid.csv",
}
"""The α search's report outputs (``extrapolation.search``), relative to ``<root>/report``."""
LOGIT_REPORT_FILE = "logit_vs_weight.csv"
"""Weight vs logit extrapolation at the same α, with time per token (``extrapolation.logit_alphas``)."""
HALLUCINATION_FILES = {
    "table_csv": "hallucination.csv",
    "table_md": "hallucination.md",
    "table_html": "hallucination.html",
    "alpha_plot": "hallucination_vs_alpha.png",
    "component_csv": "component_delta.csv",
    "component_plot": "component_delta.png",
    "training_plot": "vlm_training_curves.png",
}
"""The hallucination report's outputs (multimodal experiments only), relative to ``<root>/report``."""
EVALUATION_FILES = {
    "evaluation_md": "evaluation.md",
    "evaluation_html": "evaluation.html",
    "mtbench_csv": "mtbench.csv",
    "capability_csv": "capability.csv",
    "judge_csv": "judge_win_rates.csv",
    "evaluation_long": "evaluation_long.csv",
    "capability_plot": "capability_vs_alpha.png",
}
"""The MT-Bench / capability / judge report's outputs (when one of those stages is configured),
relative to ``<root>/report``."""


@dataclass(frozen=True, order=True)
class Variant:
    """One model whose answers are generated and scored: a folder ``group`` and a file stem ``name``.

    ``kind`` is ``base`` (an SFT or aligned checkpoint), ``alpha`` (uniform extrapolation),
    ``scheme`` (layerwise extrapolation), ``logit`` (decoding-time extrapolation from both models)
    or ``reference`` (reference outputs).
    """

    group: str
    name: str

    @classmethod
    def base(cls, model: str) -> Variant:
        return cls(BASE_GROUP, model)

    @classmethod
    def alpha_of(cls, pair: str, alpha: float | str) -> Variant:
        return cls(pair, f"{ALPHA_PREFIX}{format_alpha(alpha)}")

    @classmethod
    def logit_of(cls, pair: str, alpha: float | str) -> Variant:
        return cls(pair, f"{LOGIT_PREFIX}{format_alpha(alpha)}")

    @classmethod
    def scheme_of(cls, pair: str, scheme: str) -> Variant:
        return cls(pair, f"{SCHEME_PREFIX}{scheme}")

    @classmethod
    def reference(cls) -> Variant:
        return cls(REFERENCE_GROUP, REFERENCE_GROUP)

    @classmethod
    def parse(cls, path: str | Path) -> Variant:
        """``.../<group>/<name>[.json]`` (a generation, score or judge path) → its variant."""
        p = Path(path)
        return cls(p.parent.name, p.name[: -len(".json")] if p.name.endswith(".json") else p.name)

    @property
    def kind(self) -> str:
        if self.group == REFERENCE_GROUP:
            return "reference"
        if self.group == BASE_GROUP:
            return "base"
        if self.name.startswith(ALPHA_PREFIX):
            return "alpha"
        if self.name.startswith(SCHEME_PREFIX):
            return "scheme"
        if self.name.startswith(LOGIT_PREFIX):
            return "logit"
        raise ValueError(f"{self.group}/{self.name} is not a variant name (alpha<α>, logit<α> or scheme_<name>)")

    @property
    def alpha_text(self) -> str:
        """The α as written in paths (only for ``alpha`` and ``logit`` variants)."""
        kind = self.kind
        if kind not in ("alpha", "logit"):
            raise ValueError(f"{self.group}/{self.name} has no uniform α")
        return self.name[len(ALPHA_PREFIX if kind == "alpha" else LOGIT_PREFIX) :]

    @property
    def scheme(self) -> str:
        return self.name[len(SCHEME_PREFIX) :] if self.kind == "scheme" else ""

    def role(self, pair: Mapping[str, str]) -> str:
        """Kind within a pair: ``sft`` / ``aligned`` for baselines, else :attr:`kind`."""
        if self.kind == "base":
            return "sft" if self.name == pair["sft"] else "aligned"
        return self.kind

    def alpha(self, pair: Mapping[str, str]) -> float:
        """Position on the extrapolation line θ_aligned + α·(θ_aligned − θ_sft): SFT −1, aligned 0;
        NaN for layer schemes and reference outputs."""
        role = self.role(pair)
        if role in ("sft", "aligned"):
            return -1.0 if role == "sft" else 0.0
        return float(self.alpha_text) if role in ("alpha", "logit") else math.nan

    def label(self, pair: Mapping[str, str]) -> str:
        """The name a table shows: ``aligned (dpo)``, ``α=2``, ``thirds``, ``reference outputs``."""
        role = self.role(pair)
        if role in ("sft", "aligned"):
            return f"{role} ({self.name})"
        if role == "reference":
            return "reference outputs"
        if role == "logit":
            return f"logit α={self.alpha_text}"
        return f"α={self.alpha_text}" if role == "alpha" else self.scheme

    def as_tuple(self) -> tuple[str, str]:
        return (self.group, self.name)


class Layout:
    """Paths of one experiment's results (``results/<experiment>``); arguments may be ``{wildcards}``."""

    def __init__(self, experiment: str, results: str = "results"):
        self.root = f"{results}/{experiment}"

    def checkpoint(self, model: str) -> str:
        return f"{self.root}/checkpoints/{model}"

    def trained(self, model: str) -> str:
        return f"{self.root}/trained/{model}"

    def extrapolated(self, pair: str, variant: str) -> str:
        return f"{self.root}/extrapolated/{pair}/{variant}"

    def manifest(self, pair: str, variant: str) -> str:
        return f"{self.root}/manifests/{pair}/{variant}.json"

    def card(self, pair: str, variant: str) -> str:
        """Model card with evaluation results (the checkpoint's own README.md has none)."""
        return f"{self.root}/cards/{pair}/{variant}/README.md"

    def prompts(self, prompt_set: str) -> str:
        return f"{self.root}/prompts/{prompt_set}.jsonl"

    def generation(self, prompt_set: str, group: str, variant: str, seed: int | str | None = None) -> str:
        """A variant's answers; with a sampling seed (``decoding.seeds``) one file per seed under
        ``<variant>/``, so adding a seed adds files and never renames one."""
        stem = variant if seed is None else f"{variant}/{SEED_PREFIX}{seed}"
        return f"{self.root}/generations/{prompt_set}/{group}/{stem}.json"

    def score(self, prompt_set: str, rm: str, group: str, variant: str, seed: int | str | None = None) -> str:
        stem = variant if seed is None else f"{variant}/{SEED_PREFIX}{seed}"
        return f"{self.root}/scores/{prompt_set}/{rm}/{group}/{stem}.json"

    def judge(self, prompt_set: str, group: str, variant: str) -> str:
        return f"{self.root}/alpaca_eval/{prompt_set}/{group}/{variant}"

    def search_plan(self, pair: str, rnd: int | str) -> str:
        """One round of a pair's α search (a checkpoint: the candidates it asks for next)."""
        return f"{self.root}/search/{pair}/plan/round{rnd}.json"

    def search_result(self, pair: str) -> str:
        return f"{self.root}/search/{pair}/result.json"

    def search_log(self, pair: str) -> str:
        return f"{self.root}/search/{pair}/alpha_search.csv"

    @property
    def search_report_files(self) -> dict[str, str]:
        return {k: f"{self.root}/report/{v}" for k, v in SEARCH_REPORT_FILES.items()}

    @property
    def logit_report(self) -> str:
        return f"{self.root}/report/{LOGIT_REPORT_FILE}"

    def world_file(self, name: str) -> str:
        return f"{self.root}/world/data/{name}.jsonl"

    @property
    def world_tokenizer(self) -> str:
        return f"{self.root}/world/tokenizer"

    def shapes_file(self, name: str) -> str:
        return f"{self.root}/shapes_world/data/{name}.jsonl"

    @property
    def shapes_tokenizer(self) -> str:
        return f"{self.root}/shapes_world/tokenizer"

    def hallucination(self, prompt_set: str, group: str, variant: str) -> str:
        return f"{self.root}/hallucination/{prompt_set}/{group}/{variant}.json"

    @property
    def hallucination_files(self) -> dict[str, str]:
        return {k: f"{self.root}/report/{v}" for k, v in HALLUCINATION_FILES.items()}

    @property
    def evaluation_files(self) -> dict[str, str]:
        return {k: f"{self.root}/report/{v}" for k, v in EVALUATION_FILES.items()}

    def log(self, stage: str, *parts: str) -> str:
        return "/".join([f"{self.root}/logs/{stage}", *parts]) + ".log"

    def benchmark(self, stage: str, *parts: str) -> str:
        return "/".join([f"{self.root}/benchmarks/{stage}", *parts]) + ".tsv"

    @property
    def report_files(self) -> dict[str, str]:
        return {k: f"{self.root}/report/{v}" for k, v in REPORT_FILES.items()}


def split_seed(path: str | Path, stage: str) -> tuple[str, int | None]:
    """A ``stage`` (``generations`` / ``scores``) file path → (the unseeded path of its variant, its
    sampling seed or None): ``…/<group>/<variant>/seed<s>.json`` → ``…/<group>/<variant>.json``, s.

    Told apart by depth below ``stage`` (one level more with a seed), not by the file name alone,
    because a base model may itself be called ``seed1``.
    """
    p = Path(path)
    depth = {"generations": 4, "scores": 5}[stage]
    seeded = (
        len(p.parts) > depth
        and p.parts[-depth - 1] == stage
        and p.name.startswith(SEED_PREFIX)
        and p.name.endswith(".json")
        and p.name[len(SEED_PREFIX) : -len(".json")].isdigit()
    )
    if not seeded:
        return str(p), None
    return f"{p.parent}.json", int(p.name[len(SEED_PREFIX) : -len(".json")])


def parse_generation_path(path: str) -> tuple[str, Variant]:
    """``.../generations/<prompt_set>/<group>/<variant>.json`` → (prompt_set, variant)."""
    return Path(path).parts[-3], Variant.parse(path)


def parse_score_path(path: str) -> tuple[str, str, Variant]:
    """``.../scores/<prompt_set>/<rm>/<group>/<variant>.json`` → (prompt_set, rm, variant)."""
    p = Path(path)
    return p.parts[-4], p.parts[-3], Variant.parse(path)
