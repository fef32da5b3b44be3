"""The experiment a config describes: pairs, α, schemes, variants, what answers and scores what.

``Experiment(config)`` is built once when Snakemake parses the workflow (``rules/common.smk``) and
answers every planning question the rules ask, so the rules hold paths and one-line calls only.
Constructing it runs every cross-reference check a JSON schema cannot express; each failure is a
:class:`ConfigError` naming the culprit, which ``common.smk`` turns into one ``WorkflowError`` line.

How to extend it: a new variant kind adds a method that yields :class:`~.layout.Variant` objects and
joins :meth:`Experiment.variants`; a new prompt-set rule edits :meth:`Experiment.variants_for`; a
new cross-reference check is a function in :mod:`.experiment_checks` listed in its ``CHECKS``.

Torch-free (stdlib + the scheme parser): importing it costs milliseconds at DAG time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .common import format_alpha
from .experiment_evaluation import EvaluationPlanning
from .experiment_multimodal import MultimodalPlanning
from .layout import BASE_GROUP, Layout, Variant

VARIANT_SELECTION_KEYS = ("alphas", "schemes")
"""Prompt-set keys that choose which variants answer the set, not what the prompts are: kept out
of the prompt and reference params so narrowing them never rebuilds those files."""

PREFERENCE_METHODS = ("dpo", "simpo", "ddpo")
PREFERENCE_HPARAMS = (
    "beta",
    "lr",
    "epochs",
    "batch_size",
    "grad_accum",
    "max_length",
    "gamma_beta_ratio",
    "lora",
    "seed",
    "ddpo",
)
SUPERVISED_HPARAMS = ("epochs", "lr", "batch_size", "grad_accum", "max_length", "seed")
VLM_HPARAMS = (
    "beta",
    "lr",
    "epochs",
    "batch_size",
    "grad_accum",
    "max_length",
    "lora",
    "seed",
    "ddpo",
    "freeze",
    "weight_decay",
    "warmup_ratio",
)
HPARAMS_BY_METHOD = {
    "sft": SUPERVISED_HPARAMS,
    "reward": SUPERVISED_HPARAMS,
    "dpo": PREFERENCE_HPARAMS,
    "simpo": PREFERENCE_HPARAMS,
    "ddpo": PREFERENCE_HPARAMS,
}
"""Training hyperparameters each method accepts (checked when the DAG is built, not in the job)."""

GENERATION_ONLY_DECODING_KEYS = ("backend", "batch_size")
"""Decoding keys that choose how answers are computed, not what they are (not part of a preset)."""


class ConfigError(ValueError):
    """A config the workflow cannot run, with a message naming the key at fault."""


def _fail(msg: str) -> None:
    raise ConfigError(msg)


class Experiment(EvaluationPlanning, MultimodalPlanning):
    """Planning queries over one validated config (schema defaults already applied)."""

    def __init__(self, config: Mapping[str, Any], *, check: bool = True):
        self.config = config
        self.name: str = config["experiment"]
        self.layout = Layout(self.name)
        from .search.planning import SearchPlanning

        self.search = SearchPlanning(self)
        if check:
            from .experiment_checks import run_checks  # it imports this module's names

            run_checks(self)

    # ------------------------------------------------------------------ models

    @property
    def models(self) -> Mapping[str, Mapping[str, Any]]:
        return self.config["models"]

    def model_spec(self, key: str) -> Mapping[str, Any]:
        if key not in self.models:
            _fail(f"unknown model {key!r}; defined models: {sorted(self.models)}")
        return self.models[key]

    def model_dir(self, key: str) -> str:
        """Folder of a model checkpoint: trained here, or materialized by the checkpoint stage.

        Local folders also go through the checkpoint stage, which validates them and links their
        files (no multi-GB copy), so a broken folder fails there rather than in a GPU job.
        """
        if self.model_spec(key)["source"] == "train":
            return self.layout.trained(key)
        return self.layout.checkpoint(key)

    def adapter_base(self, key: str) -> str | None:
        """The model key a PEFT adapter source is merged into (``adapter_of``), None for full models."""
        return self.model_spec(key).get("adapter_of")

    def checkpoint_spec(self, key: str) -> Mapping[str, Any]:
        """The checkpoint stage's spec: the model entry, plus the base folder for an adapter or the
        two part folders of a composed model (the entry unchanged for every other model, so
        finished checkpoint jobs keep their params)."""
        base = self.adapter_base(key)
        spec = self.model_spec(key)
        if spec["source"] == "compose":
            return {**spec, **{f"{k}_dir": v for k, v in self.checkpoint_inputs(key).items()}}
        return spec if base is None else {**spec, "base_dir": self.model_dir(base)}

    def checkpoint_inputs(self, key: str) -> dict[str, str]:
        """An adapter's checkpoint job needs its base model's folder, a composed model its vision
        and language models' folders; other sources need nothing."""
        spec = self.model_spec(key)
        if spec["source"] == "compose":
            return {"vision": self.model_dir(spec["vision"]), "language": self.model_dir(spec["language"])}
        base = self.adapter_base(key)
        return {} if base is None else {"base": self.model_dir(base)}

    def downloaded_models(self) -> list[str]:
        """Models the checkpoint stage makes (downloaded, linked, converted, merged or composed)."""
        return [k for k, s in self.models.items() if s["source"] in ("hub", "gguf", "local", "compose")]

    def trained_models(self) -> list[str]:
        return [k for k, s in self.models.items() if s["source"] == "train"]

    def world_architecture(self, name: str) -> Mapping[str, Any]:
        archs = (self.config.get("world") or {}).get("architectures", {})
        if name not in archs:
            _fail(f"unknown world architecture {name!r}; defined: {sorted(archs)}")
        return archs[name]

    def model_num_layers(self, key: str, _seen: frozenset[str] = frozenset()) -> int | None:
        """Decoder depth when it is known before anything runs: a world architecture, a trained
        model's base, or a local folder's ``config.json``; None for hub and GGUF checkpoints."""
        spec = self.model_spec(key)
        if "adapter_of" in spec:
            base = spec["adapter_of"]
            if base in _seen | {key}:
                _fail(f"model {key!r}: adapter bases form a cycle ({sorted(_seen | {key})})")
            return self.model_num_layers(base, _seen | {key})
        if spec["source"] == "local":
            return _local_num_layers(spec)
        if spec["source"] == "compose":  # the decoder is the language model's
            if spec["language"] in _seen | {key}:
                _fail(f"model {key!r}: compose parts form a cycle ({sorted(_seen | {key})})")
            return self.model_num_layers(spec["language"], _seen | {key})
        if spec["source"] != "train":
            return None
        if "init" in spec:
            arch = self.init_architecture(key)
            return (arch["text"] if self.is_image(key) else arch)["num_hidden_layers"]
        seen = _seen | {key}
        if spec["base"] in seen:
            _fail(f"model {key!r}: training bases form a cycle ({sorted(seen)})")
        return self.model_num_layers(spec["base"], seen)

    def model_is_multimodal(self, key: str, _seen: frozenset[str] = frozenset()) -> bool | None:
        """True for a vision-language model when that is known before anything runs (a local
        folder's ``config.json`` has a ``vision_config``; a trained model or an adapter inherits
        its base's answer; ``modality: image`` training; a ``compose`` source), None when unknown."""
        spec = self.model_spec(key)
        if spec["source"] == "compose" or spec.get("modality") == "image":
            return True
        base = spec.get("adapter_of") or (spec.get("base") if spec["source"] == "train" else None)
        if base is not None and base not in _seen:
            return self.model_is_multimodal(base, _seen | {key})
        if spec["source"] == "train" and "init" in spec:
            return False
        if spec["source"] == "local" and "adapter_of" not in spec:
            cfg = _local_config(spec)
            return None if cfg is None else isinstance(cfg.get("vision_config"), dict)
        return None

    # ------------------------------------------------------------------ pairs, α and schemes

    @property
    def pairs(self) -> Mapping[str, Mapping[str, Any]]:
        return self.config["pairs"]

    @property
    def schemes(self) -> Mapping[str, Any]:
        return self.config["extrapolation"].get("schemes", {})

    def pair_alphas(self, pair: str) -> list[str]:
        """Formatted α of one pair (its own list or the global one), deduplicated, in order."""
        raw = self.pairs[pair].get("alphas") or self.config["extrapolation"]["alphas"]
        return list(dict.fromkeys(format_alpha(a) for a in raw))

    def logit_alphas(self) -> list[str]:
        """Formatted α of the decoding-time (logit) extrapolation variants, in order."""
        return list(dict.fromkeys(format_alpha(a) for a in self.config["extrapolation"].get("logit_alphas") or []))

    def logit_report_files(self) -> list[str]:
        """Answers, scores and job timings of each logit α and its weight counterpart (same α), on
        every prompt set but the dev set: the weight-vs-logit table's inputs."""
        L, out = self.layout, []
        for ps in self.prompt_sets:
            if ps == self.dev_prompt_set:
                continue
            for pair in self.pairs:
                for a in self.logit_alphas():
                    for v in (Variant.logit_of(pair, a), Variant.alpha_of(pair, a)):
                        out += [L.generation(ps, pair, v.name), L.benchmark("generate", ps, pair, v.name)]
                        out += [L.score(ps, rm, pair, v.name) for rm in self.reward_models if self.scorable(ps, rm)]
                    out.append(L.benchmark("extrapolate", pair, Variant.alpha_of(pair, a).name))
        return out

    def pair_schemes(self, pair: str) -> list[str]:
        chosen = self.pairs[pair].get("schemes", list(self.schemes))
        for s in chosen:
            if s not in self.schemes:
                _fail(f"pair {pair!r} names unknown scheme {s!r}; defined: {sorted(self.schemes)}")
        return list(chosen)

    def scheme_spec(self, name: str) -> Any:
        return self.schemes[name]

    def alpha_spec(self, pair: str, alpha: str) -> Any:
        """The extrapolate job's α: a number, or with the pair's fixed per-component α a component
        scheme in which the sweep's α moves only the other components."""
        from .scheme_components import with_component_defaults

        return with_component_defaults(float(alpha), self.pairs[pair].get("components"))

    def pair_scheme_spec(self, pair: str, name: str) -> Any:
        """A named scheme as the pair's extrapolate job gets it (the pair's fixed component α merged
        in); a layer-search candidate's scheme is read from its name."""
        from .scheme_components import with_component_defaults
        from .search.planning import SCHEME_NAME_PREFIX

        spec = self.search.scheme(pair, name) if name.startswith(SCHEME_NAME_PREFIX) else self.scheme_spec(name)
        return with_component_defaults(spec, self.pairs[pair].get("components"))

    def base_models(self) -> list[str]:
        """SFT and aligned models of every pair: the baselines every table compares against."""
        return list(dict.fromkeys(k for p in self.pairs.values() for k in (p["sft"], p["aligned"])))

    def aligned_models(self) -> set[str]:
        return {p["aligned"] for p in self.pairs.values()}

    def pair_variants(self, pair: str) -> Iterator[Variant]:
        """The extrapolations of one pair: uniform α first, then layer schemes, then logit α."""
        for a in self.pair_alphas(pair):
            yield Variant.alpha_of(pair, a)
        for s in self.pair_schemes(pair):
            yield Variant.scheme_of(pair, s)
        for a in self.logit_alphas():
            yield Variant.logit_of(pair, a)

    def variants(self) -> list[Variant]:
        """Every model whose answers are generated and scored: baselines (group ``base``, named by
        model key, answered once even when pairs share one), then each pair's extrapolations."""
        out = [Variant.base(m) for m in self.base_models()]
        for pair in self.pairs:
            out += list(self.pair_variants(pair))
        return out

    def extrapolations(self) -> list[Variant]:
        """Variants with an extrapolated checkpoint (and manifest); logit variants have none."""
        return [v for v in self.variants() if v.group != BASE_GROUP and v.kind != "logit"]

    # ------------------------------------------------------------------ prompt sets

    @property
    def prompt_sets(self) -> Mapping[str, Mapping[str, Any]]:
        return self.config["prompt_sets"]

    @property
    def evaluation(self) -> Mapping[str, Any]:
        return self.config.get("evaluation") or {}

    @property
    def dev_prompt_set(self) -> str | None:
        return self.evaluation.get("dev_prompt_set")

    def has_reference(self, prompt_set: str) -> bool:
        return bool(self.prompt_sets[prompt_set].get("reference"))

    def variants_for(self, prompt_set: str) -> list[Variant]:
        """Variants answered on a prompt set.

        The dev set exists to choose α, so it only needs the uniform-α variants and the aligned
        baselines they are compared with (no SFT, no schemes): on a 7B model that saves hours of
        generation per dev set. A prompt set's own ``alphas:`` / ``schemes:`` narrow it further
        (the full sweep on a cheap set, a subset on an expensive one). Reference outputs, when
        configured, are scored like a variant (group ``reference``).
        """
        spec = self.prompt_sets[prompt_set]
        keep_alpha = None if spec.get("alphas") is None else {format_alpha(a) for a in spec["alphas"]}
        keep_scheme = None if spec.get("schemes") is None else set(spec["schemes"])
        aligned = self.aligned_models()
        dev = prompt_set == self.dev_prompt_set
        out = []
        for v in self.variants():
            if v.kind == "base":
                ok = v.name in aligned or not dev
            elif v.kind == "alpha":
                ok = keep_alpha is None or v.alpha_text in keep_alpha
            elif v.kind == "logit":
                ok = not dev
            else:
                ok = not dev and (keep_scheme is None or v.scheme in keep_scheme)
            if ok:
                out.append(v)
        return out + ([Variant.reference()] if self.has_reference(prompt_set) else [])

    def answered(self) -> Iterator[tuple[str, Variant]]:
        """Every (prompt set, variant) that gets answers."""
        for ps in self.prompt_sets:
            for v in self.variants_for(ps):
                yield ps, v

    def prompt_spec(self, prompt_set: str) -> dict[str, Any]:
        """What the prompts are (the ``prompt_set`` rule's params), without the variant selection."""
        return {k: v for k, v in self.prompt_sets[prompt_set].items() if k not in VARIANT_SELECTION_KEYS}

    def reference_spec(self, prompt_set: str) -> dict[str, Any]:
        """Where a prompt set's reference outputs come from (the ``reference_outputs`` rule's params)."""
        spec = self.prompt_sets[prompt_set]
        ref = dict(spec.get("reference") or {})
        if spec["source"] in ("file", "world"):
            return {"source": "file", **ref, "limit": spec.get("limit")}
        base = {k: v for k, v in spec.items() if k not in ("reference", "split", *VARIANT_SELECTION_KEYS)}
        return {**base, **ref}

    def uses_world(self) -> bool:
        srcs = [d["source"] for d in self.config.get("datasets", {}).values()]
        srcs += [p["source"] for p in self.prompt_sets.values()]
        return "world" in srcs or any("init" in m and m.get("modality") != "image" for m in self.models.values())

    # ------------------------------------------------------------------ training

    def dataset_spec(self, key: str) -> Mapping[str, Any]:
        ds = self.config.get("datasets", {})
        if key not in ds:
            _fail(f"unknown dataset {key!r}; defined datasets: {sorted(ds)}")
        return ds[key]

    def hparams(self, model: str) -> dict[str, Any]:
        """The method's defaults under ``training``, overridden by the model's own ``hparams``."""
        spec = self.model_spec(model)
        hp = dict((self.config.get("training") or {}).get(spec["method"], {}))
        hp.update(spec.get("hparams", {}))
        return hp

    def train_params(self, model: str) -> dict[str, Any]:
        """Everything that changes a trained model's weights (changing it retrains, nothing else)."""
        spec = self.model_spec(model)
        ds = self.dataset_spec(spec["data"])
        params = {
            "method": spec["method"],
            "fraction": spec.get("fraction", 1.0),
            "hparams": self.hparams(model),
            "init": self.init_architecture(model) if "init" in spec else None,
            "dataset": ds if ds["source"] == "hub" else None,
        }
        return {**params, "modality": "image"} if self.is_image(model) else params

    def training_records(self) -> list[str]:
        """Preference-trained baselines, whose training curves the report plots."""
        bases = set(self.base_models())
        return [m for m in self.trained_models() if self.models[m]["method"] in PREFERENCE_METHODS and m in bases]


def _local_num_layers(spec: Mapping[str, Any]) -> int | None:
    """``num_hidden_layers`` of a local folder's ``config.json`` (None when it cannot be read yet:
    the checkpoint stage reports a broken folder with its own message)."""
    cfg = _local_config(spec)
    if cfg is None:
        return None
    cfg = cfg.get("text_config", cfg)
    n = cfg.get("num_hidden_layers") if isinstance(cfg, dict) else None
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None


def _local_config(spec: Mapping[str, Any]) -> dict | None:
    """A local folder's ``config.json``, or None when it cannot be read (yet)."""
    if spec.get("package"):
        import importlib.util

        try:
            found = importlib.util.find_spec(spec["package"].replace("-", "_"))
        except (ImportError, ValueError):
            return None
        if found is None or not found.submodule_search_locations:
            return None
        folder = Path(next(iter(found.submodule_search_locations))) / spec["path"]
    else:
        folder = Path(spec["path"])
    try:
        cfg = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return cfg if isinstance(cfg, dict) else None
