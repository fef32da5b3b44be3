"""Cross-reference checks of a config, the ones a JSON schema cannot express.

Each check takes the :class:`~.experiment.Experiment` being built and raises a
:class:`~.experiment.ConfigError` naming the culprit (a pair naming an unknown model, a layer range
outside the model, a dev prompt set that does not exist…). :data:`CHECKS` lists them in the order
they run: the world first (other checks build world models' specs), decoding last. A new check is a
function here, added to :data:`CHECKS`, with a case in ``tests/test_experiment.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .common import format_alpha
from .experiment import (
    GENERATION_ONLY_DECODING_KEYS,
    HPARAMS_BY_METHOD,
    PREFERENCE_HPARAMS,
    Experiment,
    _fail,
)
from .experiment_multimodal import VLM_ONLY_HPARAMS
from .layout import RESERVED_GROUPS


def check_models(exp: Experiment) -> None:
    for key, spec in exp.models.items():
        if "adapter_of" in spec:
            if spec["source"] not in ("hub", "local"):
                _fail(f"model {key!r}: adapter_of needs a hub or local adapter, not source {spec['source']!r}")
            exp.model_spec(spec["adapter_of"])
            exp.model_num_layers(key)  # a cycle of adapter bases fails here
        if spec["source"] == "compose":
            check_compose(exp, key, spec)
        if spec["source"] != "train":
            continue
        exp.dataset_spec(spec["data"])
        if "base" in spec:
            exp.model_spec(spec["base"])
            exp.model_num_layers(key)  # a cycle of bases fails here
        else:
            exp.init_architecture(key)


def check_compose(exp: Experiment, key: str, spec: Mapping[str, Any]) -> None:
    """A composed model names two other models, neither of them composed or a VLM itself."""
    for part in ("vision", "language"):
        name = spec[part]
        if name == key:
            _fail(f"models.{key}.{part}: a composed model cannot be its own {part} part")
        other = exp.model_spec(name)
        if other["source"] == "compose" or (part == "language" and exp.model_is_multimodal(name)):
            _fail(f"models.{key}.{part}: {name!r} is a vision-language model; name a plain {part} model")
    exp.model_num_layers(key)  # a cycle through the language model fails here


def check_pairs(exp: Experiment) -> None:
    for pair, p in exp.pairs.items():
        if pair in RESERVED_GROUPS:
            _fail(f"pair {pair!r}: the name is reserved for the workflow's own groups {list(RESERVED_GROUPS)}")
        for side in ("sft", "aligned"):
            if p[side] not in exp.models:
                _fail(f"pair {pair!r}: {side} model {p[side]!r} is not defined under `models`")
        base = exp.adapter_base(p["aligned"])
        if base is not None and base != p["sft"]:
            _fail(
                f"pair {pair!r}: aligned model {p['aligned']!r} is an adapter over {base!r}, not over the "
                f"pair's SFT model {p['sft']!r}; Δ = θ_aligned − θ_sft needs the adapter's own base"
            )
        exp.pair_schemes(pair)


def check_vlm_pairs(exp: Experiment) -> None:
    """A vision-language pair is extrapolated only with α per component: with a plain α the engine
    would count vision layers as decoder layers (it refuses such a job; this says so before any
    job runs)."""
    for pair, p in exp.pairs.items():
        if p.get("components") or not exp.model_is_multimodal(p["sft"]):
            continue
        plain = [s for s in exp.pair_schemes(pair) if "components" not in exp.scheme_spec(s)]
        what = f"its α sweep and schemes {plain}" if plain else "its α sweep"
        _fail(
            f"pair {pair!r}: SFT model {p['sft']!r} is a vision-language model, and {what} would treat "
            "vision-tower layers as decoder layers; set the pair's `components:` (e.g. {vision_tower: 0, "
            "multi_modal_projector: 0}) so the sweep moves only the language model"
        )


def check_schemes(exp: Experiment) -> None:
    from .schemes import Scheme

    for pair, p in exp.pairs.items():
        depth = exp.model_num_layers(p["sft"])
        for s in exp.pair_schemes(pair):
            try:
                scheme = Scheme.from_config(exp.pair_scheme_spec(pair, s))
                if depth is not None:
                    scheme.validate_for(depth)
            except ValueError as exc:
                _fail(f"extrapolation.schemes.{s} (pair {pair!r}, sft model {p['sft']!r}): {exc}")


def check_reward_models(exp: Experiment) -> None:
    for name, rm in exp.reward_models.items():
        if "model" in rm and rm["model"] not in exp.models:
            _fail(f"reward model {name!r}: model {rm['model']!r} is not defined under `models`")


def check_prompt_sets(exp: Experiment) -> None:
    all_alphas = {a for pair in exp.pairs for a in exp.pair_alphas(pair)}
    for ps, spec in exp.prompt_sets.items():
        for a in spec.get("alphas") or []:
            if format_alpha(a) not in all_alphas:
                _fail(f"prompt set {ps!r}: α {a} is not in any pair's α list {sorted(all_alphas, key=float)}")
        for s in spec.get("schemes") or []:
            if s not in exp.schemes:
                _fail(f"prompt set {ps!r}: unknown scheme {s!r}; defined: {sorted(exp.schemes)}")
        ref = spec.get("reference")
        if ref is not None and spec["source"] == "ultrafeedback":
            _fail(f"prompt set {ps!r}: no reference outputs are known for ultrafeedback prompts")
        if ref is not None and spec["source"] in ("file", "world") and "path" not in ref:
            _fail(
                f"prompt set {ps!r}: reference outputs for a {spec['source']} prompt set need "
                "`reference: {path: answers.jsonl}` (ids and instructions matching the prompts)"
            )


def check_evaluation(exp: Experiment) -> None:
    ev = exp.evaluation
    if ev.get("baseline") == "reference" and not any(exp.has_reference(ps) for ps in exp.prompt_sets):
        _fail("evaluation.baseline is 'reference' but no prompt set has `reference:` outputs")
    if ev.get("primary_reward") and ev["primary_reward"] not in exp.reward_models:
        _fail(f"evaluation.primary_reward {ev['primary_reward']!r} is not a reward model")
    dev = ev.get("dev_prompt_set")
    if dev and dev not in exp.prompt_sets:
        _fail(f"evaluation.dev_prompt_set {dev!r} is not a prompt set")


def check_world(exp: Experiment) -> None:
    if exp.uses_world() and "world" not in exp.config:
        _fail("a dataset, prompt set or model uses the demo world but the config has no `world:`")


def check_training(exp: Experiment) -> None:
    for method, hp in (exp.config.get("training") or {}).items():
        check_hparams(f"training.{method}", method, hp, VLM_ONLY_HPARAMS)
    for key in exp.trained_models():
        spec = exp.models[key]
        extra = exp.modality_hparams(key)
        check_hparams(f"models.{key}.hparams", spec["method"], spec.get("hparams", {}), extra)
        if spec["method"] == "ddpo" and "ddpo" not in exp.hparams(key):
            _fail(f"models.{key}: method ddpo needs hparams.ddpo {{gamma: <number>, average: <bool>}}")


def check_multimodal(exp: Experiment) -> None:
    """The image-model checks live beside the multimodal planning they check."""
    exp._check_multimodal()


def check_decoding(exp: Experiment) -> None:
    from .decoding import resolve_decoding

    spec = {k: v for k, v in exp.decoding().items() if k not in GENERATION_ONLY_DECODING_KEYS}
    try:
        resolve_decoding(spec)
    except ValueError as exc:
        _fail(str(exc))  # names the key: "decoding top_k=-1: must be ..."


def check_hparams(where: str, method: str, hp: Mapping[str, Any], extra: tuple[str, ...] = ()) -> None:
    """Training hyperparameters a method does not take fail at DAG time, not inside the job."""
    known = (*HPARAMS_BY_METHOD.get(method, PREFERENCE_HPARAMS), *extra)
    unknown = sorted(set(hp) - set(known))
    if unknown:
        _fail(f"{where}: {unknown} are not {method} hyperparameters; known: {list(known)}")


def check_search(exp: Experiment) -> None:
    try:
        exp.search.check()
    except ValueError as exc:
        _fail(str(exc))


CHECKS: tuple[Callable[[Experiment], None], ...] = (
    check_world,
    check_multimodal,
    check_models,
    check_pairs,
    check_vlm_pairs,
    check_schemes,
    check_reward_models,
    check_prompt_sets,
    check_evaluation,
    check_training,
    check_decoding,
    check_search,
)


def run_checks(exp: Experiment) -> None:
    """Run every check on ``exp``; the first failure raises."""
    for check in CHECKS:
        check(exp)
